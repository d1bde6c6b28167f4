"""Observation hooks: what ``on_request``, ``on_response`` and ``on_retry`` receive.

The transport fires them (a hook that raises is logged and ignored); credential header values in
a ``RequestEvent`` are already redacted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

__all__ = ["Hook", "Hooks", "RequestEvent", "ResponseEvent", "RetryEvent"]

Hook = Callable[[Any], Awaitable[None] | None]


@attrs.frozen
class RequestEvent:
    """Passed to ``on_request`` before each attempt. Credential header values are redacted."""

    method: str
    path: str
    headers: Mapping[str, str]
    attempt: int


@attrs.frozen
class ResponseEvent:
    """Passed to ``on_response`` when response headers arrive (any status)."""

    method: str
    path: str
    status: int
    request_id: str | None
    elapsed: float
    attempt: int


@attrs.frozen
class RetryEvent:
    """Passed to ``on_retry`` before sleeping ``delay`` seconds for retry number ``attempt``."""

    method: str
    path: str
    attempt: int
    delay: float
    status: int | None
    error: str


@attrs.frozen
class Hooks:
    """Observation callbacks; sync or async. A hook that raises is logged and ignored."""

    on_request: Hook | None = None
    on_response: Hook | None = None
    on_retry: Hook | None = None

    @classmethod
    def coerce(cls, value: Hooks | Mapping[str, Hook] | None) -> Hooks:
        """Accept a ``Hooks`` or a mapping like ``{"on_request": fn}``; reject unknown names."""
        if value is None:
            return cls()
        if isinstance(value, Hooks):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"hooks must be a Hooks or a mapping, got {type(value).__name__}")
        unknown = set(value) - {"on_request", "on_response", "on_retry"}
        if unknown:
            raise ValueError(f"hooks: unknown hook name(s) {sorted(unknown)}")
        for name, fn in value.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"hooks[{name!r}] must be callable")
        return cls(**value)
