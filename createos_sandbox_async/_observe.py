"""The transport's observation side: debug log lines and the hooks of ``_hooks.Hooks``.

``_transport`` calls these only when someone listens (a hook is set, or DEBUG logging is on), so
the buffered hot path pays one attribute test. A hook that raises is logged and ignored:
observers never break a request. Header values reach a hook redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp

from ._credentials import redact_headers
from ._hooks import CompleteEvent, Hook, Hooks, RequestEvent, ResponseEvent, RetryEvent
from ._response import request_id_of

__all__ = ["after", "before", "completed_call", "completed_stream", "fire", "retrying"]

logger = logging.getLogger("createos_sandbox_async")


async def fire(name: str, hook: Hook, event: object) -> None:
    """Run one hook; whatever it raises is logged and swallowed (observers never break I/O)."""
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.warning("createos_sandbox_async: %s hook raised; ignored", name, exc_info=True)


async def before(
    hooks: Hooks,
    secrets: tuple[str, ...],
    method: str,
    path: str,
    hdrs: Mapping[str, str],
    attempt: int,
    size: int | None = None,
) -> float:
    """Before an attempt: log it, fire ``on_request``; returns the loop time it started."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("request %s %s attempt=%d", method, path, attempt)
    hook = hooks.on_request
    if hook is not None:
        event = RequestEvent(method, path, redact_headers(hdrs, secrets), attempt, size)
        await fire("on_request", hook, event)
    return asyncio.get_running_loop().time()


async def after(
    hooks: Hooks,
    method: str,
    path: str,
    resp: aiohttp.ClientResponse,
    attempt: int,
    started: float,
    secrets: tuple[str, ...],
) -> None:
    """Once an attempt's headers arrived (any status): log it, fire ``on_response``."""
    elapsed = asyncio.get_running_loop().time() - started
    rid = request_id_of(resp, secrets)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "response %s %s -> %d in %.1f ms request_id=%s",
            method,
            path,
            resp.status,
            elapsed * 1000,
            rid,
        )
    hook = hooks.on_response
    if hook is not None:
        event = ResponseEvent(method, path, resp.status, rid, elapsed, attempt, resp.content_length)
        await fire("on_response", hook, event)


async def retrying(
    hooks: Hooks,
    method: str,
    path: str,
    attempt: int,
    delay: float,
    status: int | None,
    error: object,
) -> None:
    """Before sleeping for a retry: log it, fire ``on_retry``."""
    text = str(error)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("retry %d of %s %s in %.3f s after: %s", attempt, method, path, delay, text)
    hook = hooks.on_retry
    if hook is not None:
        await fire("on_retry", hook, RetryEvent(method, path, attempt, delay, status, text))


async def completed_call(method: str, path: str, call: Awaitable[Any], hook: Hook) -> Any:
    """Await a buffered call, then fire ``on_complete`` (every attempt done, raised or not)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    error: str | None = None
    try:
        return await call
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        event = CompleteEvent(method, path, False, loop.time() - started, error)
        await fire("on_complete", hook, event)


@contextlib.asynccontextmanager
async def completed_stream(
    method: str,
    path: str,
    inner: AbstractAsyncContextManager[aiohttp.ClientResponse],
    hook: Hook,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A stream, then ``on_complete`` once it is closed (with the body bytes read)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    error: str | None = None
    received: int | None = None
    try:
        async with inner as resp:
            try:
                yield resp
            finally:
                received = getattr(resp.content, "total_bytes", None)
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        event = CompleteEvent(method, path, True, loop.time() - started, error, received)
        await fire("on_complete", hook, event)
