"""``AsyncSession``: the object you create once and share between every task.

It resolves configuration (arguments, then environment), owns the one transport (and through it the
aiohttp connection pool), and exposes the resource namespaces. Creating it does no I/O and needs no
running event loop; the pool is opened on the first request.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from ._config import (
    Limits,
    Timeouts,
    check_transport_security,
    coerce_timeouts,
    resolve_api_key,
    resolve_base_url,
)
from ._retry import RetryPolicy
from ._transport import UNSET, Hook, Hooks, Transport
from .models import Health, Host, Readiness, RootfsCatalog, Shape, WhoAmI
from .resources import catalog as _catalog
from .resources.disks import Disks
from .resources.networks import Networks
from .resources.sandboxes import Sandboxes

if TYPE_CHECKING:
    from .resources.templates import Templates

__all__ = ["AsyncSession"]

_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class AsyncSession:
    """A connection pool plus configuration; ``async with`` it or ``await session.aclose()``.

    - ``api_key``: explicit > ``CREATEOS_SANDBOX_API_KEY`` > ``CREATEOS_API_KEY`` (blank = unset).
      Without one, only the open routes work; other calls raise ``AuthError`` before sending.
    - ``base_url``: explicit > ``CREATEOS_SANDBOX_BASE_URL`` > ``https://api.sb.createos.sh``.
    - ``timeout``: a ``Timeouts`` or a number (the per-attempt request deadline, default 60 s);
      a method's own ``timeout=`` bounds that whole call instead (retries and waits included).
    - ``retry``: a ``RetryPolicy`` (default: 2 retries per WIRE §7).
    - ``limits`` / ``max_connections``: pool size (default 100 connections).
    - ``headers``: extra headers on every request (credential headers are dropped).
    - ``hooks``: ``Hooks`` or ``{"on_request": fn, "on_response": fn, "on_retry": fn}``.
    - ``allow_insecure_http``: permit sending the key over plain http to a non-loopback host.

    Safe to share between thousands of tasks: after the pool exists, requests take no lock.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeouts | float | None = None,
        retry: RetryPolicy | None = None,
        limits: Limits | None = None,
        max_connections: int | None = None,
        headers: Mapping[str, str] | None = None,
        hooks: Hooks | Mapping[str, Hook] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        key = resolve_api_key(api_key)
        url, source = resolve_base_url(base_url)
        if not allow_insecure_http:
            check_transport_security(url, source, key)
        if retry is None:
            retry = RetryPolicy()
        elif not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if limits is None:
            limits = Limits()
        elif not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
        if max_connections is not None:
            limits = Limits(
                max_connections=max_connections,
                max_connections_per_host=limits.max_connections_per_host,
                keepalive_expiry=limits.keepalive_expiry,
            )
        if headers is not None and not isinstance(headers, Mapping):
            raise TypeError("headers must be a mapping of str to str")
        self._transport = Transport(
            api_key=key,
            base_url=url,
            timeouts=coerce_timeouts(timeout),
            retry=retry,
            limits=limits,
            headers=headers,
            hooks=Hooks.coerce(hooks),
        )
        self.sandboxes = Sandboxes(self)

    def __repr__(self) -> str:
        state = "closed" if self._transport.closed else "open"
        return f"<AsyncSession {self._transport.base_url} {state}>"

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncSession:
        if self._transport.closed:
            raise RuntimeError("this AsyncSession is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Safe to call twice; the session cannot be reused."""
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def timeouts(self) -> Timeouts:
        return self._transport.timeouts

    # -- resource namespaces ----------------------------------------------------------------------
    # Templates load on first use (with the stream readers they add ~4 ms to the package import);
    # networks and disks cost well under 1 ms, so they are imported with this module.

    @property
    def templates(self) -> Templates:
        from .resources.templates import Templates

        return Templates(self._transport)

    @property
    def networks(self) -> Networks:
        return Networks(self._transport)

    @property
    def disks(self) -> Disks:
        return Disks(self._transport)

    # -- catalog and identity ---------------------------------------------------------------------

    async def whoami(self, *, timeout: float | None = None) -> WhoAmI:
        """Who the API key belongs to, with sandbox counts."""
        return await _catalog.whoami(self._transport, timeout)

    async def shapes(self, *, timeout: float | None = None) -> list[Shape]:
        """Every sandbox shape."""
        return await _catalog.shapes(self._transport, timeout)

    async def rootfs(self, *, timeout: float | None = None) -> RootfsCatalog:
        """The built-in root filesystems and the default one."""
        return await _catalog.rootfs(self._transport, timeout)

    async def hosts(self, *, timeout: float | None = None) -> list[Host]:
        """Worker hosts (may be refused to ordinary keys)."""
        return await _catalog.hosts(self._transport, timeout)

    async def health(self, *, timeout: float | None = None) -> Health:
        """Liveness of the API."""
        return await _catalog.health(self._transport, timeout)

    async def ready(self, *, timeout: float | None = None) -> Readiness:
        """Readiness of the API (a 503 is returned as ``ready=False``, not raised)."""
        return await _catalog.ready(self._transport, timeout)

    # -- escape hatches ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        json: object = UNSET,
        data: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        auth: bool = True,
        retry: bool = True,
    ) -> Any:
        """Call a route the SDK does not model; returns the JSend ``data`` payload.

        ``path`` is relative to the base URL (``"/v1/metrics"``); retries, errors and redaction are
        the same as for modelled calls.
        """
        return await self._transport.request(
            _method(method),
            _path(path),
            params=params,
            json=json,
            data=data,
            headers=headers,
            timeout=timeout,
            auth=auth,
            retry=retry,
        )

    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        json: object = UNSET,
        data: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        auth: bool = True,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """Open a raw streaming response for an unmodelled route (sent once, never retried).

        ``async with session.stream("GET", path) as resp:`` yields the aiohttp response of a 2xx;
        errors raise the mapped exception. Leaving the block early closes the connection.
        """
        return self._transport.stream(
            _method(method),
            _path(path),
            params=params,
            json=json,
            data=data,
            headers=headers,
            timeout=timeout,
            auth=auth,
        )


def _method(method: str) -> str:
    if not isinstance(method, str) or not method.isalpha():
        raise ValueError(f"method must be an HTTP method name like 'GET', got {method!r}")
    return method.upper()


def _path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path must be a str starting with '/', got {path!r}")
    if "?" in path or "#" in path:
        raise ValueError("path must not contain '?' or '#'; pass query values in params=")
    return quote(path, safe=_PATH_SAFE)
