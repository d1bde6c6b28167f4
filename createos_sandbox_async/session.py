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
    """A connection pool plus configuration: create one per program and share it between tasks.

    Creating a session does no I/O and needs no running event loop; the aiohttp connection pool
    is opened on the first request. Close it with ``async with`` or ``await session.aclose()``.
    Safe to share between thousands of tasks: after the pool exists, requests take no lock.

    Args:
        api_key: The API key. When None: ``CREATEOS_SANDBOX_API_KEY``, then ``CREATEOS_API_KEY``
            (a blank value counts as unset). Without a key only the open routes (``health``,
            ``ready``, ``shapes``, ``rootfs``) work; other calls raise ``AuthError`` before
            sending anything. The key never appears in a repr, a log line or an exception.
        base_url: The API's URL. When None: ``CREATEOS_SANDBOX_BASE_URL``, then
            ``https://api.sb.createos.sh``. ``http://`` or ``https://``, without user, query or
            fragment.
        timeout: A ``Timeouts``, or a number of seconds for ``Timeouts(request=...)``: the
            deadline of each attempt of a buffered request (default 60 s). A method's own
            ``timeout=`` bounds that whole call instead, retries and waits included.
        retry: When and how often to resend (default ``RetryPolicy()``: 2 resends, and a POST
            only after 429 or 503).
        limits: Connection pool sizes (default ``Limits()``: 100 connections).
        max_connections: Shortcut for ``limits.max_connections``.
        headers: Extra headers sent with every request (credential headers are dropped).
        hooks: A ``Hooks``, or a mapping ``{"on_request": fn, "on_response": fn, "on_retry": fn}``
            of async callables receiving ``RequestEvent`` / ``ResponseEvent`` / ``RetryEvent``.
        allow_insecure_http: Allow sending the key over plain ``http://`` to a host that is not
            a loopback address (refused by default).

    Attributes:
        sandboxes: Create, get and list sandboxes: a ``Sandboxes``.

    Raises:
        TypeError: An argument has the wrong type (``retry`` not a ``RetryPolicy``, ...).
        ValueError: A bad base URL, timeout or limit, or an API key about to be sent over plain
            ``http://`` to a remote host.

    Example:
        ```python
        async with AsyncSession() as session:  # key and URL from the environment
            sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
            async with sb:
                print((await sb.exec("echo", ["hi"])).stdout)
        ```
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
        self._networks = Networks(self._transport)
        self._disks = Disks(self._transport)
        self._templates: Templates | None = None

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
        """Close the connection pool. Safe to call twice; the session cannot be used again.

        Sandboxes are not destroyed: they belong to the account, not to the session.
        """
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True after ``aclose()``."""
        return self._transport.closed

    @property
    def base_url(self) -> str:
        """The API's base URL this session talks to (resolved from the argument or env)."""
        return self._transport.base_url

    @property
    def timeouts(self) -> Timeouts:
        """The session's default deadlines."""
        return self._transport.timeouts

    # -- resource namespaces ----------------------------------------------------------------------
    # Built once per session. Templates load on first use (with the stream readers they add ~4 ms
    # to the package import); networks and disks cost well under 1 ms, so they are imported here.

    @property
    def templates(self) -> Templates:
        """Template builds of the account: a ``Templates``."""
        if self._templates is None:
            from .resources.templates import Templates

            self._templates = Templates(self._transport)
        return self._templates

    @property
    def networks(self) -> Networks:
        """Private networks of the account: a ``Networks``."""
        return self._networks

    @property
    def disks(self) -> Disks:
        """S3 disks of the account: a ``Disks``."""
        return self._disks

    # -- catalog and identity ---------------------------------------------------------------------

    async def whoami(self, *, timeout: float | None = None) -> WhoAmI:
        """Who the API key belongs to (``GET /v1/whoami``), with sandbox counts.

        Args:
            timeout: Seconds for the whole call, retries included (default: the session's).

        Returns:
            The identity: ``user_id`` and ``stats`` (counts of sandboxes by state).

        Raises:
            AuthError: No key, or the key is unknown or revoked.
            APIError: Another error status; ``APIConnectionError`` / ``APITimeoutError`` when
                there was no answer in time.
        """
        return await _catalog.whoami(self._transport, timeout)

    async def shapes(self, *, timeout: float | None = None) -> list[Shape]:
        """Every sandbox shape (``GET /v1/shapes``; open route, no key needed).

        Args:
            timeout: Seconds for the whole call, pages included (default: the session's).

        Returns:
            The shapes: ``id`` (what ``create(shape=...)`` takes), ``vcpu``, ``mem_mib``, ...

        Raises:
            APIError: An error status (``APIConnectionError`` / ``APITimeoutError``: no answer).
        """
        return await _catalog.shapes(self._transport, timeout)

    async def rootfs(self, *, timeout: float | None = None) -> RootfsCatalog:
        """The built-in root filesystems and the default one (``GET /v1/rootfs``; open route).

        Args:
            timeout: Seconds for the whole call (default: the session's).

        Returns:
            The catalog: ``rootfs`` names, ``entries`` and ``default`` (used without ``rootfs=``).

        Raises:
            APIError: An error status (``APIConnectionError`` / ``APITimeoutError``: no answer).
        """
        return await _catalog.rootfs(self._transport, timeout)

    async def hosts(self, *, timeout: float | None = None) -> list[Host]:
        """Worker hosts (``GET /v1/hosts``).

        Args:
            timeout: Seconds for the whole call, pages included (default: the session's).

        Returns:
            The hosts, with their status and capacity.

        Raises:
            PermissionDeniedError: The key is not allowed to see hosts (ordinary keys may not be).
            APIError: Another error status.
        """
        return await _catalog.hosts(self._transport, timeout)

    async def health(self, *, timeout: float | None = None) -> Health:
        """Liveness of the API (``GET /healthz``; open route, no key needed).

        Args:
            timeout: Seconds for the whole call (default: the session's).

        Returns:
            The health view: ``up``.

        Raises:
            APIError: An error status (``APIConnectionError`` / ``APITimeoutError``: no answer).
        """
        return await _catalog.health(self._transport, timeout)

    async def ready(self, *, timeout: float | None = None) -> Readiness:
        """Readiness of the API (``GET /readyz``; open route, no key needed).

        Args:
            timeout: Seconds for the whole call (default: the session's).

        Returns:
            ``ready`` and ``reason``; a 503 answer is returned as ``ready=False``, not raised.

        Raises:
            APIError: Another error status (``APIConnectionError`` / ``APITimeoutError``: no
                answer).
        """
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

        Retries, errors, hooks and redaction are the same as for modelled calls: a POST is resent
        only after 429 or 503.

        Args:
            method: The HTTP method (``"GET"``, ``"post"``, ...).
            path: The path below the base URL, starting with ``/`` (``"/v1/metrics"``), without a
                query string: pass query values in ``params``.
            params: Query parameters.
            json: A JSON body (omit for none; ``None`` sends ``null``).
            data: A raw body: bytes, or an async iterable of bytes (never resent).
            headers: Extra headers for this request.
            timeout: Seconds for the whole call, retries included (default: the session's).
            auth: False sends no API key (for open routes).
            retry: False never resends.

        Returns:
            The decoded ``data`` of the JSend envelope (dict, list, str, ... or None).

        Raises:
            ValueError: ``method`` is not a method name, or ``path`` does not start with ``/`` or
                holds ``?`` / ``#``.
            APIError: The server answered with an error status (the subclass says which).
            APIConnectionError: No answer (refused, reset, DNS, TLS).
            APITimeoutError: The deadline expired.

        Example:
            ```python
            data = await session.request("GET", "/v1/sandboxes", params={"limit": 1})
            ```
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

        Args:
            method: The HTTP method.
            path: The path below the base URL, starting with ``/``, without a query string.
            params: Query parameters.
            json: A JSON body (omit for none).
            data: A raw body: bytes, or an async iterable of bytes.
            headers: Extra headers for this request.
            timeout: Seconds for connecting and receiving the headers; the body has no deadline
                (bound it with ``anyio.fail_after``).
            auth: False sends no API key.

        Returns:
            An async context manager yielding the ``aiohttp.ClientResponse`` of a 2xx answer.
            Leaving the block early closes the connection; reading to the end returns it to the
            pool.

        Raises:
            ValueError: A bad ``method`` or ``path``.
            APIError: The server answered with an error status (raised on entering the block).
            APIConnectionError: No answer.
            APITimeoutError: No headers within ``timeout``.

        Example:
            ```python
            async with session.stream("GET", "/v1/some/stream") as resp:
                async for chunk in resp.content.iter_any():
                    ...
            ```
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
