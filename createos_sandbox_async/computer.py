"""Desktop control for sandboxes with a desktop rootfs such as ``desktop:1`` (WIRE §15).

Reached as ``sandbox.computer``: screenshots, screen and cursor, clipboard, opening URLs and
launching applications, plus ``mouse``, ``keyboard``, ``windows`` and ``screens`` groups. Most
calls take ``screen_id`` (``"screen-0"`` .. ``"screen-7"``; None = the default screen). The desktop
may need tens of seconds after create: :meth:`Computer.wait_ready` polls until it answers.

Actions are POSTs and, like every POST, are never resent after a failure (only on 429/503).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from ._convert import structure
from ._idle import IdleTimer
from ._resource_models import Point, Screen, ScreenConnection, ScreenSize, Window, WindowGeometry
from ._validate import check_int, check_str, id_segment
from .errors import APIError, ProtocolError

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["Computer", "Keyboard", "Mouse", "Screens", "Windows"]

T = TypeVar("T")

SCREEN_IDS = frozenset(f"screen-{i}" for i in range(8))
MouseButton = Literal["left", "middle", "right"]
_BUTTONS = ("left", "middle", "right")
#: Screenshots are read up to this size; a PNG of the largest screen is far smaller.
_MAX_SCREENSHOT = 256 * 1024 * 1024


def _screen(screen_id: object, argument: str = "screen_id") -> str:
    if screen_id not in SCREEN_IDS:
        raise ValueError(f"{argument} must be one of screen-0 .. screen-7, got {screen_id!r}")
    assert isinstance(screen_id, str)
    return screen_id


def _screen_params(screen_id: str | None) -> dict[str, object] | None:
    return None if screen_id is None else {"screen_id": _screen(screen_id)}


def _button(button: object) -> str:
    if button not in _BUTTONS:
        raise ValueError(f"button must be 'left', 'middle' or 'right', got {button!r}")
    assert isinstance(button, str)
    return button


def _keys(keys: Sequence[str] | str) -> list[str]:
    """``"ctrl+c"`` is not split: pass ``["ctrl", "c"]`` (or ``"ctrl", "c"``) for a combination."""
    if isinstance(keys, str):
        keys = [keys]
    out = list(keys)
    if not out or not all(isinstance(k, str) and k for k in out):
        raise ValueError("keys must be one or more non-empty key names")
    return out


def _window_path(window_id: object) -> str:
    return "/windows/" + id_segment("window_id", window_id)


def _list_of(data: Any, cls: type[T], what: str) -> list[T]:
    """Bare arrays in ``data`` (WIRE §8); ``{"data": [...]}`` is accepted too (as Python does)."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise ProtocolError(f"{what} response is not a list")
    return [structure(item, cls) for item in data]


class Computer:
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
        self._sandbox = sandbox
        self.mouse = Mouse(self)
        self.keyboard = Keyboard(self)
        self.windows = Windows(self)
        self.screens = Screens(self)

    def __repr__(self) -> str:
        return f"Computer(sandbox={self._sandbox.id!r})"

    async def _call(
        self,
        method: str,
        suffix: str,
        *,
        screen_id: str | None = None,
        params: dict[str, object] | None = None,
        body: Any = None,
    ) -> Any:
        query = _screen_params(screen_id) or {}
        if params:
            query.update(params)
        kwargs: dict[str, Any] = {"params": query or None}
        if body is not None:
            kwargs["json"] = body
        path = self._sandbox._path("/computer" + suffix)
        return await self._sandbox._transport.request(method, path, **kwargs)

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
        params: dict[str, object] = dict(_screen_params(screen_id) or {})
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
        transport = self._sandbox._transport
        idle = transport.timeouts.stream_idle
        path = self._sandbox._path("/computer/screenshot")
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

    async def screen(self, *, screen_id: str | None = None) -> ScreenSize:
        """The screen's size in pixels.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            ``width`` and ``height``.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        return structure(await self._call("GET", "/screen", screen_id=screen_id), ScreenSize)

    async def wait_ready(
        self, *, screen_id: str | None = None, poll_interval: float = 1.0
    ) -> ScreenSize:
        """Poll ``screen`` until the desktop answers; bound it with ``anyio.fail_after``.

        The desktop may need tens of seconds after create. Errors other than "not there yet"
        (404, 409, 5xx) are raised at once.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            poll_interval: Seconds between polls.

        Returns:
            The screen's size, once it answers.

        Raises:
            APIError: An error other than "not there yet" (``AuthError``, ...).
        """
        while True:
            try:
                return await self.screen(screen_id=screen_id)
            except APIError as err:
                if err.status not in (404, 409) and err.status < 500:
                    raise
            await anyio.sleep(poll_interval)

    async def cursor(self, *, screen_id: str | None = None) -> Point:
        """Where the mouse pointer is.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            The pointer's ``x`` and ``y``.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        return structure(await self._call("GET", "/cursor", screen_id=screen_id), Point)

    async def clipboard(self, *, screen_id: str | None = None) -> str:
        """The clipboard's text.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            The text.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        data = await self._call("GET", "/clipboard", screen_id=screen_id)
        if not isinstance(data, dict) or not isinstance(data.get("text", ""), str):
            raise ProtocolError("clipboard response has no text")
        text: str = data.get("text", "")
        return text

    async def set_clipboard(self, text: str, *, screen_id: str | None = None) -> None:
        """Replace the clipboard's text.

        Args:
            text: The new text.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"text": check_str("text", text, allow_empty=True)}
        await self._call("PUT", "/clipboard", screen_id=screen_id, body=body)

    async def open(self, target: str, *, screen_id: str | None = None) -> None:
        """Open a URL or file with the desktop's default handler.

        Args:
            target: A URL, or a guest file path.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        if not check_str("target", target, allow_empty=True):
            raise ValueError("target must be a non-empty str")
        await self._call("POST", "/open", screen_id=screen_id, body={"target": target})

    async def launch(
        self, application: str, *, uri: str | None = None, screen_id: str | None = None
    ) -> None:
        """Start an installed application, optionally with a URI to open.

        Args:
            application: The application's name (e.g. ``"firefox"``).
            uri: A URI for it to open.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        if not check_str("application", application, allow_empty=True):
            raise ValueError("application must be a non-empty str")
        body: dict[str, Any] = {"application": application}
        if uri is not None:
            body["uri"] = check_str("uri", uri, allow_empty=True)
        await self._call("POST", "/launch", screen_id=screen_id, body=body)


class Mouse:
    """The pointer: ``sandbox.computer.mouse``. Coordinates are pixels from the top-left."""

    __slots__ = ("_computer",)

    def __init__(self, computer: Computer) -> None:
        self._computer = computer

    async def move(self, x: int, y: int, *, screen_id: str | None = None) -> None:
        """Move the pointer to (x, y).

        Args:
            x: Pixels from the left.
            y: Pixels from the top.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"x": check_int("x", x, 0), "y": check_int("y", y, 0)}
        await self._computer._call("POST", "/mouse/move", screen_id=screen_id, body=body)

    async def click(
        self,
        x: int | None = None,
        y: int | None = None,
        *,
        button: MouseButton | None = None,
        count: int | None = None,
        screen_id: str | None = None,
    ) -> None:
        """Click at (x, y) if given, else where the pointer is.

        Args:
            x: Pixels from the left.
            y: Pixels from the top.
            button: ``"left"`` (server default), ``"middle"`` or ``"right"``.
            count: Clicks: 2 double-clicks.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).

        Example:
            ```python
            await sb.computer.mouse.click(200, 120, count=2)
            ```
        """
        if (x is None) != (y is None):
            raise ValueError("pass both x and y, or neither")
        body: dict[str, Any] = {}
        if button is not None:
            body["button"] = _button(button)
        if x is not None:
            body["x"] = check_int("x", x, 0)
            body["y"] = check_int("y", y, 0)
        if count is not None:
            body["count"] = check_int("count", count, 1)
        await self._computer._call("POST", "/mouse/click", screen_id=screen_id, body=body)

    async def scroll(
        self,
        direction: Literal["up", "down"],
        amount: int | None = None,
        *,
        screen_id: str | None = None,
    ) -> None:
        """Scroll up or down.

        Args:
            direction: ``"up"`` or ``"down"``.
            amount: Steps (server default when None).
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        body: dict[str, Any] = {"direction": direction}
        if amount is not None:
            body["amount"] = check_int("amount", amount, 1)
        await self._computer._call("POST", "/mouse/scroll", screen_id=screen_id, body=body)

    async def drag(
        self,
        start: tuple[int, int],
        end: tuple[int, int],
        *,
        screen_id: str | None = None,
    ) -> None:
        """Press at ``start``, move to ``end``, release.

        Args:
            start: ``(x, y)`` to press at.
            end: ``(x, y)`` to release at.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        (x0, y0), (x1, y1) = start, end
        body = {
            "from": {"x": check_int("start x", x0, 0), "y": check_int("start y", y0, 0)},
            "to": {"x": check_int("end x", x1, 0), "y": check_int("end y", y1, 0)},
        }
        await self._computer._call("POST", "/mouse/drag", screen_id=screen_id, body=body)

    async def down(
        self, button: MouseButton | None = None, *, screen_id: str | None = None
    ) -> None:
        """Press a button and hold it (``up`` releases it).

        Args:
            button: ``"left"`` (server default), ``"middle"`` or ``"right"``.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {} if button is None else {"button": _button(button)}
        await self._computer._call("POST", "/mouse/down", screen_id=screen_id, body=body)

    async def up(self, button: MouseButton | None = None, *, screen_id: str | None = None) -> None:
        """Release a held button.

        Args:
            button: ``"left"`` (server default), ``"middle"`` or ``"right"``.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {} if button is None else {"button": _button(button)}
        await self._computer._call("POST", "/mouse/up", screen_id=screen_id, body=body)


class Keyboard:
    """The keyboard: ``sandbox.computer.keyboard``; key names as in xdotool (``"ctrl"``)."""

    __slots__ = ("_computer",)

    def __init__(self, computer: Computer) -> None:
        self._computer = computer

    async def type(
        self, text: str, *, delay_ms: int | None = None, screen_id: str | None = None
    ) -> None:
        """Type text into the focused window.

        Args:
            text: The text.
            delay_ms: Milliseconds between characters.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body: dict[str, Any] = {"text": check_str("text", text, allow_empty=True)}
        if delay_ms is not None:
            body["delay_in_ms"] = check_int("delay_ms", delay_ms, 0)
        await self._computer._call("POST", "/keyboard/type", screen_id=screen_id, body=body)

    async def press(self, *keys: str, screen_id: str | None = None) -> None:
        """Press and release a key or a combination.

        Args:
            *keys: Key names, pressed together.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).

        Example:
            ```python
            await sb.computer.keyboard.press("ctrl", "c")
            ```
        """
        body = {"keys": _keys(keys)}
        await self._computer._call("POST", "/keyboard/press", screen_id=screen_id, body=body)

    async def down(self, *keys: str, screen_id: str | None = None) -> None:
        """Press keys and hold them (``up`` releases them).

        Args:
            *keys: Key names.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"keys": _keys(keys)}
        await self._computer._call("POST", "/keyboard/down", screen_id=screen_id, body=body)

    async def up(self, *keys: str, screen_id: str | None = None) -> None:
        """Release held keys.

        Args:
            *keys: Key names.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"keys": _keys(keys)}
        await self._computer._call("POST", "/keyboard/up", screen_id=screen_id, body=body)


class Windows:
    """Windows of the desktop: ``sandbox.computer.windows``. Ids come from ``list``/``current``."""

    __slots__ = ("_computer",)

    def __init__(self, computer: Computer) -> None:
        self._computer = computer

    async def list(
        self, *, application: str | None = None, screen_id: str | None = None
    ) -> list[Window]:
        """Visible windows.

        Args:
            application: Only this application's windows.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            The windows.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        params: dict[str, object] | None = None
        if application is not None:
            params = {"application": check_str("application", application, allow_empty=True)}
        data = await self._computer._call("GET", "/windows", screen_id=screen_id, params=params)
        return _list_of(data, Window, "windows")

    async def current(self, *, screen_id: str | None = None) -> Window:
        """The focused window.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            The window.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        data = await self._computer._call("GET", "/windows/current", screen_id=screen_id)
        return structure(data, Window)

    async def get(self, window_id: str, *, screen_id: str | None = None) -> Window:
        """One window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            The window.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        data = await self._computer._call("GET", _window_path(window_id), screen_id=screen_id)
        return structure(data, Window)

    async def geometry(self, window_id: str, *, screen_id: str | None = None) -> WindowGeometry:
        """A window's position and size.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Returns:
            ``x``, ``y``, ``width``, ``height``.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        suffix = _window_path(window_id) + "/geometry"
        return structure(
            await self._computer._call("GET", suffix, screen_id=screen_id), WindowGeometry
        )

    async def _action(
        self, window_id: str, action: str, screen_id: str | None, body: Any = None
    ) -> None:
        suffix = f"{_window_path(window_id)}/{action}"
        await self._computer._call("POST", suffix, screen_id=screen_id, body=body)

    async def focus(self, window_id: str, *, screen_id: str | None = None) -> None:
        """Bring a window to the front and give it the keyboard.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "focus", screen_id)

    async def move(self, window_id: str, x: int, y: int, *, screen_id: str | None = None) -> None:
        """Move a window's top-left corner to (x, y).

        Args:
            window_id: The window's id.
            x: Pixels from the left.
            y: Pixels from the top.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(
            window_id, "move", screen_id, {"x": check_int("x", x, 0), "y": check_int("y", y, 0)}
        )

    async def resize(
        self, window_id: str, width: int, height: int, *, screen_id: str | None = None
    ) -> None:
        """Resize a window.

        Args:
            window_id: The window's id.
            width: New width in pixels.
            height: New height in pixels.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"width": check_int("width", width, 1), "height": check_int("height", height, 1)}
        await self._action(window_id, "resize", screen_id, body)

    async def maximize(self, window_id: str, *, screen_id: str | None = None) -> None:
        """Maximize a window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "maximize", screen_id)

    async def minimize(self, window_id: str, *, screen_id: str | None = None) -> None:
        """Minimize a window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "minimize", screen_id)

    async def restore(self, window_id: str, *, screen_id: str | None = None) -> None:
        """Restore a maximized or minimized window.

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._action(window_id, "restore", screen_id)

    async def close(self, window_id: str, *, screen_id: str | None = None) -> None:
        """Close a window (as its close button would).

        Args:
            window_id: The window's id.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        await self._computer._call("DELETE", _window_path(window_id), screen_id=screen_id)


class Screens:
    """``sandbox.computer.screens``: up to eight virtual screens, each with a VNC server."""

    __slots__ = ("_computer",)

    def __init__(self, computer: Computer) -> None:
        self._computer = computer

    @staticmethod
    def _size(width: int | None, height: int | None) -> dict[str, int]:
        body: dict[str, int] = {}
        if width is not None:
            body["width"] = check_int("width", width, 1)
        if height is not None:
            body["height"] = check_int("height", height, 1)
        return body

    async def list(self) -> list[Screen]:
        """Every configured screen.

        Returns:
            The screens.

        Raises:
            APIError: An error status.
        """
        return _list_of(await self._computer._call("GET", "/screens"), Screen, "screens")

    async def create(self, *, width: int | None = None, height: int | None = None) -> Screen:
        """Add a screen.

        Args:
            width: Width in pixels (server default when omitted).
            height: Height in pixels.

        Returns:
            The new screen.

        Raises:
            ValidationError: All eight screens exist (409).
            APIError: Another error status.
        """
        body = self._size(width, height)
        return structure(await self._computer._call("POST", "/screens", body=body), Screen)

    async def get(self, screen_id: str) -> Screen:
        """One screen.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.

        Returns:
            The screen.

        Raises:
            ValueError: A bad ``screen_id``.
            NotFoundError: No such screen.
        """
        return structure(
            await self._computer._call("GET", f"/screens/{_screen(screen_id)}"), Screen
        )

    async def resize(
        self, screen_id: str, *, width: int | None = None, height: int | None = None
    ) -> Screen:
        """Change a screen's size.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.
            width: New width in pixels.
            height: New height in pixels.

        Returns:
            The screen.

        Raises:
            ValueError: A bad ``screen_id`` or size.
            NotFoundError: No such screen.
        """
        body = self._size(width, height)
        suffix = f"/screens/{_screen(screen_id)}/resize"
        return structure(await self._computer._call("POST", suffix, body=body), Screen)

    async def delete(self, screen_id: str) -> None:
        """Remove a screen.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.

        Raises:
            ValueError: A bad ``screen_id``.
            APIError: The server refused (``NotFoundError``: no such screen).
        """
        await self._computer._call("DELETE", f"/screens/{_screen(screen_id)}")

    async def connect(self, screen_id: str) -> ScreenConnection:
        """Mint a short-lived noVNC credential for watching or driving a screen in a browser.

        Args:
            screen_id: ``"screen-0"`` .. ``"screen-7"``.

        Returns:
            The connection; its ``token`` and ``url`` are secrets (never log them).

        Raises:
            ValueError: A bad ``screen_id``.
            NotFoundError: No such screen.
        """
        data = await self._computer._call("GET", f"/screens/{_screen(screen_id)}/connect")
        conn = structure(data, ScreenConnection)
        transport = self._computer._sandbox._transport
        transport.add_secret(conn.token.get_secret_value())
        if conn.url is not None:
            transport.add_secret(conn.url.get_secret_value())
        return conn
