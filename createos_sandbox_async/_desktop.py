"""The desktop's call path and its input devices: ``computer.mouse`` and ``computer.keyboard``.

``computer`` re-exports the groups (windows and screens are in ``_desktop_windows``); they live
apart so that module keeps the screen itself (screenshots, cursor, clipboard, launching). Every
class is a ``Desktop``: the sandbox's ``/computer`` routes, ``screen_id`` sent as a query value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from ._convert import structure
from ._resource import Resource
from ._validate import check_int, check_str, id_segment
from .errors import ProtocolError

__all__ = ["SCREEN_IDS", "Desktop", "Keyboard", "Mouse", "MouseButton"]

T = TypeVar("T")

SCREEN_IDS = frozenset(f"screen-{i}" for i in range(8))
MouseButton = Literal["left", "middle", "right"]
_BUTTONS = ("left", "middle", "right")


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


class Desktop(Resource):
    """A transport and a sandbox's ``/computer`` base path, with the one call every method makes."""

    __slots__ = ()

    async def _call(
        self,
        method: str,
        suffix: str,
        *,
        screen_id: str | None = None,
        params: dict[str, object] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        query = _screen_params(screen_id) or {}
        if params:
            query.update(params)
        kwargs: dict[str, Any] = {"params": query or None, "timeout": timeout}
        if body is not None:
            kwargs["json"] = body
        return await self._transport.request(method, self._base + suffix, **kwargs)


class Mouse(Desktop):
    """The pointer: ``sandbox.computer.mouse``. Coordinates are pixels from the top-left."""

    __slots__ = ()

    async def move(
        self, x: int, y: int, *, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Move the pointer to (x, y).

        Args:
            x: Pixels from the left.
            y: Pixels from the top.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"x": check_int("x", x, 0), "y": check_int("y", y, 0)}
        await self._call("POST", "/mouse/move", screen_id=screen_id, body=body, timeout=timeout)

    async def click(
        self,
        x: int | None = None,
        y: int | None = None,
        *,
        button: MouseButton | None = None,
        count: int | None = None,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Click at (x, y) if given, else where the pointer is.

        Args:
            x: Pixels from the left.
            y: Pixels from the top.
            button: ``"left"`` (server default), ``"middle"`` or ``"right"``.
            count: Clicks: 2 double-clicks.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

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
        await self._call("POST", "/mouse/click", screen_id=screen_id, body=body, timeout=timeout)

    async def scroll(
        self,
        direction: Literal["up", "down"],
        amount: int | None = None,
        *,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Scroll up or down.

        Args:
            direction: ``"up"`` or ``"down"``.
            amount: Steps (server default when None).
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        body: dict[str, Any] = {"direction": direction}
        if amount is not None:
            body["amount"] = check_int("amount", amount, 1)
        await self._call("POST", "/mouse/scroll", screen_id=screen_id, body=body, timeout=timeout)

    async def drag(
        self,
        start: tuple[int, int],
        end: tuple[int, int],
        *,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Press at ``start``, move to ``end``, release.

        Args:
            start: ``(x, y)`` to press at.
            end: ``(x, y)`` to release at.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        (x0, y0), (x1, y1) = start, end
        body = {
            "from": {"x": check_int("start x", x0, 0), "y": check_int("start y", y0, 0)},
            "to": {"x": check_int("end x", x1, 0), "y": check_int("end y", y1, 0)},
        }
        await self._call("POST", "/mouse/drag", screen_id=screen_id, body=body, timeout=timeout)

    async def down(
        self,
        button: MouseButton | None = None,
        *,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Press a button and hold it (``up`` releases it).

        Args:
            button: ``"left"`` (server default), ``"middle"`` or ``"right"``.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {} if button is None else {"button": _button(button)}
        await self._call("POST", "/mouse/down", screen_id=screen_id, body=body, timeout=timeout)

    async def up(
        self,
        button: MouseButton | None = None,
        *,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Release a held button.

        Args:
            button: ``"left"`` (server default), ``"middle"`` or ``"right"``.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {} if button is None else {"button": _button(button)}
        await self._call("POST", "/mouse/up", screen_id=screen_id, body=body, timeout=timeout)


class Keyboard(Desktop):
    """The keyboard: ``sandbox.computer.keyboard``; key names as in xdotool (``"ctrl"``)."""

    __slots__ = ()

    async def type(
        self,
        text: str,
        *,
        delay_ms: int | None = None,
        screen_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Type text into the focused window.

        Args:
            text: The text.
            delay_ms: Milliseconds between characters.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body: dict[str, Any] = {"text": check_str("text", text, allow_empty=True)}
        if delay_ms is not None:
            body["delay_in_ms"] = check_int("delay_ms", delay_ms, 0)
        await self._call("POST", "/keyboard/type", screen_id=screen_id, body=body, timeout=timeout)

    async def press(
        self, *keys: str, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Press and release a key or a combination.

        Args:
            *keys: Key names, pressed together.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).

        Example:
            ```python
            await sb.computer.keyboard.press("ctrl", "c")
            ```
        """
        body = {"keys": _keys(keys)}
        await self._call("POST", "/keyboard/press", screen_id=screen_id, body=body, timeout=timeout)

    async def down(
        self, *keys: str, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Press keys and hold them (``up`` releases them).

        Args:
            *keys: Key names.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"keys": _keys(keys)}
        await self._call("POST", "/keyboard/down", screen_id=screen_id, body=body, timeout=timeout)

    async def up(
        self, *keys: str, screen_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Release held keys.

        Args:
            *keys: Key names.
            screen_id: ``"screen-0"`` .. ``"screen-7"``; None = the default screen.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A bad ``screen_id`` or other argument (checked before sending).
            APIError: The desktop refused (``NotFoundError``: no desktop or no such screen).
        """
        body = {"keys": _keys(keys)}
        await self._call("POST", "/keyboard/up", screen_id=screen_id, body=body, timeout=timeout)
