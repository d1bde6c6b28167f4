"""The base of every resource class: the transport, a base path, and the paths built under it.

``session.networks``, ``sb.files``, ``sb.computer.mouse`` and the rest differ in their routes,
not in how they reach the network: each holds the session's transport and the path its routes
share, builds item paths with ``_item`` (an id checked and quoted as one path segment) and sends
through ``_request``. ``timeout=`` means the same everywhere: seconds for the whole call, retries
included (None: the session's default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._validate import check_timeout, id_segment
from .errors import APITimeoutError

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["Resource"]

T = TypeVar("T")


class Resource:
    """A transport plus the base path of a resource's routes."""

    __slots__ = ("_base", "_transport")

    def __init__(self, transport: Transport, base: str) -> None:
        self._transport = transport
        self._base = base

    def _path(self, suffix: str = "") -> str:
        """``<base><suffix>``."""
        return self._base + suffix

    def _item(self, name: str, value: object, suffix: str = "") -> str:
        """``<base>/<value><suffix>``, ``value`` checked as an id named ``name`` and quoted."""
        return self._base + "/" + id_segment(name, value) + suffix

    async def _request(self, method: str, suffix: str = "", **kwargs: Any) -> Any:
        """Send ``method`` to ``<base><suffix>`` through the transport (JSend ``data`` back)."""
        return await self._transport.request(method, self._base + suffix, **kwargs)

    @staticmethod
    async def _within(timeout: float | None, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()`` (a wait of many requests) with ``timeout=`` bounding the whole of it.

        None leaves it unbounded (each request keeps the session's timeout); when ``timeout``
        runs out, ``APITimeoutError`` naming ``what``.
        """
        bound = check_timeout("timeout", timeout)
        if bound is None:
            return await call()
        with anyio.move_on_after(bound):
            return await call()
        raise APITimeoutError(f"{what} did not finish within {timeout} s")
