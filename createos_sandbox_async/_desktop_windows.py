"""The desktop's windows and virtual screens: ``computer.windows`` and ``computer.screens``.

Re-exported from ``computer``; both are ``_desktop.Desktop`` groups like the mouse and keyboard.
"""

from __future__ import annotations

from typing import Any

from ._convert import structure
from ._desktop import Desktop, _list_of, _screen, _window_path
from ._resource_models import Screen, ScreenConnection, Window, WindowGeometry
from ._validate import check_int, check_str

__all__ = ["Screens", "Windows"]


class Windows(Desktop):
    """Windows of the desktop: ``sandbox.computer.windows``. Ids come from ``list``/``current``."""

    __slots__ = ()

    async def list(
        self,
        *,
        application: str | None = None,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> list[Window]:
        """Visible windows.

        Args:
            application: Only this application's windows.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The windows.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        params: dict[str, object] | None = None
        if application is not None:
            params = {"application": check_str("application", application, allow_empty=True)}
        data = await self._call(
            "GET", "/windows", screen_id=screen_id, params=params, timeout=timeout
        )
        return _list_of(data, Window, "windows")

    async def current(
        self, *, screen_id: str | None = None, timeout: float | None = None
    ) -> Window:
        """The focused window.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The window.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        data = await self._call("GET", "/windows/current", screen_id=screen_id, timeout=timeout)
        return structure(data, Window)

    async def get(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> Window:
        """One window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The window.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        data = await self._call(
            "GET", _window_path(window_id), screen_id=screen_id, timeout=timeout
        )
        return structure(data, Window)

    async def geometry(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> WindowGeometry:
        """A window's position and size.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            ``x``, ``y``, ``width``, ``height``.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        suffix = _window_path(window_id) + "/geometry"
        return structure(
            await self._call("GET", suffix, screen_id=screen_id, timeout=timeout), WindowGeometry
        )

    async def _action(
        self,
        window_id: str,
        action: str,
        screen_id: str | None,
        body: Any = None,
        *,
        timeout: float | None = None,
    ) -> None:
        suffix = f"{_window_path(window_id)}/{action}"
        await self._call("POST", suffix, screen_id=screen_id, body=body, timeout=timeout)

    async def focus(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Bring a window to the front and give it the keyboard.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "focus", screen_id, timeout=timeout)

    async def move(
        self,
        window_id: str,
        x: int,
        y: int,
        *,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Move a window's top-left corner to (x, y).

        Args:
            window_id: The window's id.
            x: Pixels from the left.
            y: Pixels from the top.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(
            window_id,
            "move",
            screen_id,
            {"x": check_int("x", x, 0), "y": check_int("y", y, 0)},
            timeout=timeout,
        )

    async def resize(
        self,
        window_id: str,
        width: int,
        height: int,
        *,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Resize a window.

        Args:
            window_id: The window's id.
            width: New width in pixels.
            height: New height in pixels.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"width": check_int("width", width, 1), "height": check_int("height", height, 1)}
        await self._action(window_id, "resize", screen_id, body, timeout=timeout)

    async def maximize(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Maximize a window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "maximize", screen_id, timeout=timeout)

    async def minimize(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Minimize a window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "minimize", screen_id, timeout=timeout)

    async def restore(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Restore a maximized or minimized window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "restore", screen_id, timeout=timeout)

    async def close(
        self, window_id: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Close a window (as its close button would).

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._call("DELETE", _window_path(window_id), screen_id=screen_id, timeout=timeout)


class Screens(Desktop):
    """``sandbox.computer.screens``: up to eight virtual screens, each with a VNC server."""

    __slots__ = ()

    @staticmethod
    def _size(width: int | None, height: int | None) -> dict[str, int]:
        body: dict[str, int] = {}
        if width is not None:
            body["width"] = check_int("width", width, 1)
        if height is not None:
            body["height"] = check_int("height", height, 1)
        return body

    async def list(self, *, timeout: float | None = None) -> list[Screen]:
        """Every configured screen.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The screens.

        Raises:
            APIError: An error status.
        """
        return _list_of(await self._call("GET", "/screens", timeout=timeout), Screen, "screens")

    async def create(
        self, *, width: int | None = None, height: int | None = None, timeout: float | None = None
    ) -> Screen:
        """Add a screen.

        Args:
            width: Width in pixels (server default when omitted).
            height: Height in pixels.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The new screen.

        Raises:
            ValidationError: All eight screens exist (409).
            APIError: Another error status.
        """
        body = self._size(width, height)
        return structure(await self._call("POST", "/screens", body=body, timeout=timeout), Screen)

    async def get(self, screen_id: str, *, timeout: float | None = None) -> Screen:
        """One screen.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The screen.

        Raises:
            ValueError: A bad ``screen_id``.
            NotFoundError: No such screen.
        """
        return structure(
            await self._call("GET", f"/screens/{_screen(screen_id)}", timeout=timeout), Screen
        )

    async def resize(
        self,
        screen_id: str,
        *,
        width: int | None = None,
        height: int | None = None,
        timeout: float | None = None,
    ) -> Screen:
        """Change a screen's size.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.
            width: New width in pixels.
            height: New height in pixels.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The screen.

        Raises:
            ValueError: A bad ``screen_id`` or size.
            NotFoundError: No such screen.
        """
        body = self._size(width, height)
        suffix = f"/screens/{_screen(screen_id)}/resize"
        return structure(await self._call("POST", suffix, body=body, timeout=timeout), Screen)

    async def delete(self, screen_id: str, *, timeout: float | None = None) -> None:
        """Remove a screen.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id``.
            APIError: The server refused (``NotFoundError``: no such screen).
        """
        await self._call("DELETE", f"/screens/{_screen(screen_id)}", timeout=timeout)

    async def connect(self, screen_id: str, *, timeout: float | None = None) -> ScreenConnection:
        """Mint a short-lived noVNC credential for watching or driving a screen in a browser.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The connection; its ``token`` and ``url`` are secrets (never log them).

        Raises:
            ValueError: A bad ``screen_id``.
            NotFoundError: No such screen.
        """
        data = await self._call("GET", f"/screens/{_screen(screen_id)}/connect", timeout=timeout)
        conn = structure(data, ScreenConnection)
        transport = self._transport
        transport.add_secret(conn.token.get_secret_value())
        if conn.url is not None:
            transport.add_secret(conn.url.get_secret_value())
        return conn
