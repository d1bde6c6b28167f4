"""Lazy iteration over offset-paginated lists (WIRE §8), including the legacy response shapes.

Pages are fetched only as the caller iterates, and the offset advances by the number of items the
server actually returned (it clamps ``limit`` to 500), never by the requested size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ProtocolError

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["Pager", "parse_page"]

T = TypeVar("T")


def parse_page(
    data: Any, legacy_keys: Sequence[str], endpoint: str
) -> tuple[list[Any], int | None]:
    """Split one page into (items, total). ``total is None`` means the list is complete.

    Accepted: ``{"data": [...], "pagination": {"total": N, ...}}``, a bare array, or
    ``{"<legacy key>": [...]}``. Anything else is a ``ProtocolError`` (silently returning ``[]``
    once hid a regression in another SDK).
    """
    if isinstance(data, list):
        return data, None
    if isinstance(data, dict):
        if "pagination" in data or "data" in data:
            items = data.get("data")
            pagination = data.get("pagination")
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ProtocolError(f"{endpoint}: page 'data' is not a list")
            if pagination is None:
                return items, None
            total = pagination.get("total") if isinstance(pagination, dict) else None
            if isinstance(total, bool) or not isinstance(total, int) or total < 0:
                raise ProtocolError(f"{endpoint}: page 'pagination.total' is missing or invalid")
            return items, total
        for key in legacy_keys:
            if key in data:
                items = data[key]
                if items is None:
                    return [], None
                if not isinstance(items, list):
                    raise ProtocolError(f"{endpoint}: legacy list {key!r} is not a list")
                return items, None
    kind = type(data).__name__
    raise ProtocolError(f"{endpoint}: unexpected list response shape ({kind})")


def _check_positive(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class Pager(Generic[T]):
    """An async iterator over every item of a paginated list; pages are fetched on demand.

    ``limit`` caps the number of items yielded in total; ``page_size`` is the ``limit`` query
    parameter sent per page (server default 50, clamped to 500).
    """

    __slots__ = (
        "_auth",
        "_buffer",
        "_convert",
        "_done",
        "_endpoint",
        "_index",
        "_legacy_keys",
        "_limit",
        "_offset",
        "_page_size",
        "_params",
        "_timeout",
        "_transport",
        "_yielded",
    )

    def __init__(
        self,
        transport: Transport,
        path: str,
        convert: Callable[[Any], T],
        *,
        params: Mapping[str, object] | None = None,
        legacy_keys: Sequence[str] = (),
        limit: int | None = None,
        page_size: int | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> None:
        _check_positive("limit", limit)
        _check_positive("page_size", page_size)
        self._transport = transport
        self._endpoint = path
        self._convert = convert
        self._params = dict(params or {})
        self._legacy_keys = tuple(legacy_keys)
        self._limit = limit
        self._page_size = page_size
        self._offset = 0
        self._buffer: list[Any] = []
        self._index = 0
        self._yielded = 0
        self._done = False
        self._auth = auth
        self._timeout = timeout

    def __aiter__(self) -> Pager[T]:
        return self

    async def __anext__(self) -> T:
        if self._limit is not None and self._yielded >= self._limit:
            raise StopAsyncIteration
        while self._index >= len(self._buffer):
            if self._done:
                raise StopAsyncIteration
            await self._fetch()
        item = self._buffer[self._index]
        self._index += 1
        self._yielded += 1
        return self._convert(item)

    async def _fetch(self) -> None:
        params = dict(self._params)
        size = self._page_size
        if self._limit is not None:
            remaining = self._limit - self._yielded
            size = remaining if size is None else min(size, remaining)
        if size is not None:
            params["limit"] = size
        if self._offset:
            params["offset"] = self._offset
        data = await self._transport.request(
            "GET", self._endpoint, params=params, auth=self._auth, timeout=self._timeout
        )
        items, total = parse_page(data, self._legacy_keys, self._endpoint)
        self._buffer = items
        self._index = 0
        self._offset += len(items)
        if total is None or not items or self._offset >= total:
            self._done = True

    async def to_list(self) -> list[T]:
        """Walk every remaining page and return the items."""
        return [item async for item in self]
