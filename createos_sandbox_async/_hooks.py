"""Observation hooks: what ``on_request``, ``on_response``, ``on_retry``, ``on_complete`` get.

The transport fires them (a hook that raises is logged and ignored); credential header values in
a ``RequestEvent`` are already redacted.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

__all__ = ["CompleteEvent", "Hook", "Hooks", "RequestEvent", "ResponseEvent", "RetryEvent"]

Hook = Callable[[Any], Awaitable[None] | None]


@attrs.frozen
class RequestEvent:
    """Passed to ``on_request`` before each attempt. Credential header values are redacted."""

    method: str
    path: str
    headers: Mapping[str, str]
    attempt: int
    body_size: int | None = None  # bytes of a body of known size (None: none, or a stream)


@attrs.frozen
class ResponseEvent:
    """Passed to ``on_response`` when response headers arrive (any status)."""

    method: str
    path: str
    status: int
    request_id: str | None
    elapsed: float
    attempt: int
    content_length: int | None = None  # the Content-Length header, when the server sent one


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
class CompleteEvent:
    """Passed to ``on_complete`` once per call, when it returned or raised (every attempt done).

    For a stream that is when its response is closed; ``received`` then counts the body bytes
    read. ``error`` is the class name of what the call raised, None on success.
    """

    method: str
    path: str
    stream: bool
    elapsed: float
    error: str | None
    received: int | None = None


@attrs.frozen
class Hooks:
    """Observation callbacks; sync or async. A hook that raises is logged and ignored."""

    on_request: Hook | None = None
    on_response: Hook | None = None
    on_retry: Hook | None = None
    on_complete: Hook | None = None

    @classmethod
    def coerce(cls, value: Hooks | Mapping[str, Hook] | None) -> Hooks:
        """Accept a ``Hooks`` or a mapping like ``{"on_request": fn}``; reject unknown names."""
        if value is None:
            return cls()
        if isinstance(value, Hooks):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"hooks must be a Hooks or a mapping, got {type(value).__name__}")
        unknown = set(value) - {"on_request", "on_response", "on_retry", "on_complete"}
        if unknown:
            raise ValueError(f"hooks: unknown hook name(s) {sorted(unknown)}")
        for name, fn in value.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"hooks[{name!r}] must be callable")
        return cls(**value)

    def then(self, other: Hooks) -> Hooks:
        """These hooks, then ``other``'s, for every event (both sets keep working)."""

        def both(a: Hook | None, b: Hook | None) -> Hook | None:
            if a is None or b is None:
                return a or b

            async def chained(event: Any) -> None:
                for hook in (a, b):
                    result = hook(event)
                    if inspect.isawaitable(result):
                        await result

            return chained

        return Hooks(
            both(self.on_request, other.on_request),
            both(self.on_response, other.on_response),
            both(self.on_retry, other.on_retry),
            both(self.on_complete, other.on_complete),
        )
