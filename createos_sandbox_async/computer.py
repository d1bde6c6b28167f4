"""Desktop control for sandboxes with a desktop rootfs such as ``desktop:1`` (WIRE §15).

Reached as ``sandbox.computer``: screenshots, screen and cursor, clipboard, opening URLs and
launching applications, plus ``mouse``, ``keyboard``, ``windows`` and ``screens`` groups. Most
calls take ``screen_id`` (``"screen-0"`` .. ``"screen-7"``; None = the default screen). The desktop
may need tens of seconds after create: :meth:`Computer.wait_ready` polls until it answers.

Actions are POSTs and, like every POST, are never resent after a failure (only on 429/503).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ._convert import structure
from ._desktop import SCREEN_IDS, Desktop, Keyboard, Mouse, MouseButton
from ._desktop import _screen_params as screen_params
from ._desktop_windows import Screens, Windows
from ._idle import IdleTimer
from ._resource_models import Point, ScreenSize
from ._validate import check_int, check_str
from .errors import APIError, ProtocolError

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["SCREEN_IDS", "Computer", "Keyboard", "Mouse", "MouseButton", "Screens", "Windows"]

#: Screenshots are read up to this size; a PNG of the largest screen is far smaller.
_MAX_SCREENSHOT = 256 * 1024 * 1024


class Computer(Desktop):
    """The desktop of a sandbox made from a desktop rootfs (``desktop:1``): ``sandbox.computer``.

    Screenshots, screen and cursor, clipboard, opening URLs and launching applications here;
    ``mouse``, ``keyboard``, ``windows`` and ``screens`` group the rest. Most methods take
    ``screen_id`` (``"screen-0"`` .. ``"screen-7"``; None = the default screen). Actions are POSTs,
    never resent after a failure (only after 429/503).

    Example:
        ```python
        sb = await session.sandboxes.create(shape="s-2vcpu-2gb", rootfs="desktop:1")
        with anyio.fail_after(120):
            await sb.computer.wait_ready()
        await sb.computer.open("https://example.com")
        png = await sb.computer.screenshot()
        ```
    """

    __slots__ = ("_sandbox", "keyboard", "mouse", "screens", "windows")

    def __init__(self, sandbox: Sandbox) -> None:
        transport, base = sandbox._transport, sandbox._path("/computer")
        super().__init__(transport, base)
        self._sandbox = sandbox
        self.mouse = Mouse(transport, base)
        self.keyboard = Keyboard(transport, base)
        self.windows = Windows(transport, base)
        self.screens = Screens(transport, base)

    def __repr__(self) -> str:
        return f"Computer(sandbox={self._sandbox.id!r})"

    async def screenshot(
        self,
        *,
        screen_id: str | None = None,
        window_id: str | None = None,
        x: int | None = None,
        y: int | None = None,
        width: int | None = None,
        height: int | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """A PNG of the screen, of one window (``window_id``), or of a region.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            window_id: Only this window.
            x: Left edge of the region (0 is sent, as the API needs it).
            y: Top edge of the region.
            width: Width of the region; the PNG is exactly width x height.
            height: Height of the region.
            timeout: Seconds for the whole call.

        Returns:
            The PNG's bytes.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
            ProtocolError: The answer is not a PNG, or too big.
        """
        params: dict[str, object] = dict(screen_params(screen_id) or {})
        if window_id is not None:
            if not isinstance(window_id, str) or not window_id:
                raise TypeError("window_id must be a non-empty str")
            params["window_id"] = window_id
        if x is not None:
            params["x"] = check_int("x", x, 0)
        if y is not None:
            params["y"] = check_int("y", y, 0)
        if width is not None:
            params["width"] = check_int("width", width, 1)
        if height is not None:
            params["height"] = check_int("height", height, 1)
        transport = self._transport
        idle = transport.timeouts.stream_idle
        path = self._base + "/screenshot"
        parts: list[bytes] = []
        size = 0
        async with transport.stream("GET", path, params=params or None, timeout=timeout) as resp:
            timer = IdleTimer(resp.content, idle, "screenshot")
            try:
                while chunk := await timer.read():
                    size += len(chunk)
                    if size > _MAX_SCREENSHOT:
                        raise ProtocolError("screenshot is larger than 256 MiB")
                    parts.append(chunk)
            finally:
                timer.cancel()
        return b"".join(parts)

    async def screen(
        self, *, screen_id: str | None = None, timeout: float | None = None
    ) -> ScreenSize:
        """The screen's size in pixels.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            ``width`` and ``height``.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        return structure(
            await self._call("GET", "/screen", screen_id=screen_id, timeout=timeout), ScreenSize
        )

    async def wait_ready(
        self,
        *,
        screen_id: str | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,
    ) -> ScreenSize:
        """Poll ``screen`` until the desktop answers.

        The desktop may need tens of seconds after create. Errors other than "not there yet"
        (404, 409, 5xx) are raised at once.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            poll_interval: Seconds between polls.
            timeout: Seconds for the whole wait, every poll included (default: no bound on the
                wait; each poll has the session's request timeout).

        Returns:
            The screen's size, once it answers.

        Raises:
            APITimeoutError: ``timeout`` expired before the desktop answered.
            APIError: An error other than "not there yet" (``AuthError``, ...).
        """
        poll = lambda: self._poll_ready(screen_id, poll_interval)  # noqa: E731
        return await self._within(timeout, poll, "waiting for the desktop")

    async def _poll_ready(self, screen_id: str | None, poll_interval: float) -> ScreenSize:
        while True:
            try:
                return await self.screen(screen_id=screen_id)
            except APIError as err:
                if err.status not in (404, 409) and err.status < 500:
                    raise
            await anyio.sleep(poll_interval)

    async def cursor(self, *, screen_id: str | None = None, timeout: float | None = None) -> Point:
        """Where the mouse pointer is.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The pointer's ``x`` and ``y``.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        return structure(
            await self._call("GET", "/cursor", screen_id=screen_id, timeout=timeout), Point
        )

    async def clipboard(self, *, screen_id: str | None = None, timeout: float | None = None) -> str:
        """The clipboard's text.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The text.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        data = await self._call("GET", "/clipboard", screen_id=screen_id, timeout=timeout)
        if not isinstance(data, dict) or not isinstance(data.get("text", ""), str):
            raise ProtocolError("clipboard response has no text")
        text: str = data.get("text", "")
        return text

    async def set_clipboard(
        self, text: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Replace the clipboard's text.

        Args:
            text: The new text.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"text": check_str("text", text, allow_empty=True)}
        await self._call("PUT", "/clipboard", screen_id=screen_id, body=body, timeout=timeout)

    async def open(
        self, target: str, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Open a URL or file with the desktop's default handler.

        Args:
            target: A URL, or a guest file path.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        if not check_str("target", target, allow_empty=True):
            raise ValueError("target must be a non-empty str")
        await self._call(
            "POST", "/open", screen_id=screen_id, body={"target": target}, timeout=timeout
        )

    async def launch(
        self,
        application: str,
        *,
        uri: str | None = None,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Start an installed application, optionally with a URI to open.

        Args:
            application: The application's name (e.g. ``"firefox"``).
            uri: A URI for it to open.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        if not check_str("application", application, allow_empty=True):
            raise ValueError("application must be a non-empty str")
        body: dict[str, Any] = {"application": application}
        if uri is not None:
            body["uri"] = check_str("uri", uri, allow_empty=True)
        await self._call("POST", "/launch", screen_id=screen_id, body=body, timeout=timeout)
