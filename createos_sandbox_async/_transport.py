"""The single seam between the SDK and the network.

Every request goes through :class:`Transport`: it owns the aiohttp connection pool, applies the
retry matrix (WIRE §7), decodes JSend envelopes (WIRE §4), maps failures to ``errors.*`` and keeps
the API key out of hooks and logs. Resource code above it only builds paths and bodies.

The buffered path is hot (thousands of small calls per second), so headers, URL prefix and timeouts
are precomputed, and hook/log work is skipped entirely when nobody listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import aiohttp
from multidict import istr
from yarl import URL

from ._config import Limits, Timeouts
from ._credentials import merge_headers, request_secrets
from ._hooks import CompleteEvent, Hook, Hooks, RequestEvent, ResponseEvent, RetryEvent
from ._observe import after, before, completed_call, completed_stream, retrying
from ._reader import lean
from ._response import (
    MAX_BODY,
    decode_jsend,
    missing_key,
    read_capped,
    read_limited,
    request_id_of,
)
from ._retry import RetryPolicy
from ._send import (
    REPLAYABLE,
    body_size,
    bound_after_upload,
    encode_json,
    query_params,
    send_body,
    with_content_length,
)
from ._validate import check_timeout
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    make_api_error,
    scrub,
)

__all__ = [
    "MAX_BODY",
    "UNSET",
    "CompleteEvent",
    "Hook",
    "Hooks",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "Transport",
]

logger = logging.getLogger("createos_sandbox_async")

_INF: Final = float("inf")


def _bound(timeout: float) -> float | None:
    """A checked ``timeout=`` as a bound: inf means none."""
    return None if timeout == _INF else timeout


#: Stands in for the per-attempt scope of a request whose deadline never moves.
_NO_SCOPE: Final = contextlib.nullcontext()


class _Unset:
    """Sentinel type: "no JSON body" (``None`` is a valid JSON body: ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()

#: Minted tokens a session remembers for redaction (see ``Transport.add_secret``).
_MAX_MINTED: Final = 256


def _user_agent() -> str:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"createos-sandbox-async/{__version__} python/{py} aiohttp/{aiohttp.__version__}"


def _interned(headers: Mapping[str, str]) -> dict[str, str]:
    """The same headers keyed by ``istr``: aiohttp copies every request's headers into a
    case-insensitive multidict, which folds the case of each plain ``str`` name anew for every
    request and keeps it while the call is in flight; an ``istr`` carries its folded form. With
    10,000 calls in flight that is ~0.3 KiB each for our four headers."""
    return {istr(k): v for k, v in headers.items()}


class Transport:
    """One aiohttp pool plus the rules every request obeys. Owned by an ``AsyncSession``."""

    __slots__ = (
        "_api_key",
        "_auth_headers",
        "_base_url",
        "_closed",
        "_hooks",
        "_json_auth_headers",
        "_json_noauth_headers",
        "_limits",
        "_lock",
        "_noauth_headers",
        "_observed",
        "_prefix",
        "_retry",
        "_secrets",
        "_session",
        "_stream_timeout",
        "_timeout",
        "_timeouts",
    )

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        timeouts: Timeouts,
        retry: RetryPolicy,
        limits: Limits,
        headers: Mapping[str, str] | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._prefix = self._base_url
        self._timeouts = timeouts
        self._retry = retry
        self._limits = limits
        self._hooks = hooks or Hooks()
        # request/response observers present: only then build events on the hot path
        self._observed = self._hooks.on_request is not None or self._hooks.on_response is not None
        self._secrets: tuple[str, ...] = (api_key,) if api_key else ()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._lock = asyncio.Lock()
        base: dict[str, str] = {"Accept": "application/json", "User-Agent": _user_agent()}
        for key, value in (headers or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("headers must map str to str")
        base = _interned(merge_headers(base, headers or {}, allow_key=False))
        self._noauth_headers = base
        self._auth_headers = _interned({**base, "X-Api-Key": api_key} if api_key else base)
        self._json_noauth_headers = _interned({**base, "Content-Type": "application/json"})
        self._json_auth_headers = _interned(
            {**self._auth_headers, "Content-Type": "application/json"}
        )
        self._timeout = self._client_timeout(timeouts.request)
        self._stream_timeout = self._client_timeout(None)

    # -- public attributes -------------------------------------------------------------------------

    @property
    def timeouts(self) -> Timeouts:
        """The session's deadlines (streams read ``stream_idle`` from here)."""
        return self._timeouts

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def closed(self) -> bool:
        return self._closed

    def secrets_for(self, json: object = UNSET) -> tuple[str, ...]:
        """The secrets a request with this JSON body must never leak (key, tokens, env values)."""
        return request_secrets(self._secrets, json, None)

    def add_hooks(self, hooks: Hooks) -> None:
        """Observe with ``hooks`` too, after the session's own (e.g. ``otel.instrument``)."""
        self._hooks = self._hooks.then(hooks)
        self._observed = self._hooks.on_request is not None or self._hooks.on_response is not None

    def add_secret(self, value: str) -> None:
        """Treat ``value`` (a token the server just minted) like the key from now on.

        Errors, hook payloads and log lines of this session redact it, as they redact the key.
        The most recent ``_MAX_MINTED`` values are kept (each error is scrubbed of all of them).
        """
        if not value or value in self._secrets:
            return
        key = (self._api_key,) if self._api_key else ()
        minted = self._secrets[len(key) :]
        self._secrets = (*key, *minted[-(_MAX_MINTED - 1) :], value)

    @property
    def connector(self) -> aiohttp.BaseConnector | None:
        """The live aiohttp connector (None before the first request); for stats in tests."""
        return self._session.connector if self._session is not None else None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Transport {self._base_url} {state}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    def _client_timeout(self, total: float | None) -> aiohttp.ClientTimeout:
        if total is not None and total <= 0:
            raise APITimeoutError("the call's deadline has passed")
        t = self._timeouts
        return aiohttp.ClientTimeout(total=total, connect=t.pool, sock_connect=t.connect)

    async def _open(self) -> aiohttp.ClientSession:
        """Create the aiohttp session once, inside the running loop (aiohttp requires it)."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("this AsyncSession is closed; create a new one")
            if self._session is None:
                limits = self._limits
                connector = aiohttp.TCPConnector(
                    limit=limits.max_connections,
                    limit_per_host=limits.max_connections_per_host,
                    keepalive_timeout=limits.keepalive_expiry,
                )
                self._session = aiohttp.ClientSession(
                    connector=connector,
                    cookie_jar=aiohttp.DummyCookieJar(),
                    timeout=self._timeout,
                    trust_env=False,
                )
                # aiohttp silently resends idempotent requests once after a disconnect; the
                # retry matrix (and the "never resend a stream body" rule) must be ours alone.
                if hasattr(self._session, "_retry_connection"):
                    self._session._retry_connection = False
            return self._session

    async def aclose(self) -> None:
        """Close the pool. Idempotent; in-flight requests fail with a connection error."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _check_open(self) -> aiohttp.ClientSession | None:
        if self._closed:
            raise RuntimeError("this AsyncSession is closed; create a new one")
        return self._session

    @staticmethod
    def _check_key(method: str, path: str, headers: Mapping[str, str] | None) -> None:
        """No key configured: an authenticated call fails here, before anything is sent.

        A per-call ``X-Api-Key`` header (a delegated token, say) counts as a key.
        """
        if not headers or not any(k.lower() == "x-api-key" and v for k, v in headers.items()):
            raise missing_key(method, path)

    # -- helpers -----------------------------------------------------------------------------------

    def _headers(
        self, auth: bool, is_json: bool, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        if is_json:
            base = self._json_auth_headers if auth else self._json_noauth_headers
        else:
            base = self._auth_headers if auth else self._noauth_headers
        if not extra:
            return base
        return merge_headers(base, extra, allow_key=auth)

    def _url(self, path: str) -> URL:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        return URL(self._prefix + path, encoded=True)

    def _map_exception(
        self, exc: BaseException, method: str, path: str, secrets: tuple[str, ...] = ()
    ) -> APIConnectionError | APITimeoutError:
        """The typed error for a network failure; ``exc`` (chained as its cause) is scrubbed.

        aiohttp keeps the request headers (the key) in ``request_info`` and the server's headers
        and text in its errors; they become our error's ``__cause__``, so they lose the secrets.
        """
        scrub(exc, secrets or self._secrets)
        if isinstance(exc, TimeoutError):
            return APITimeoutError(f"{method} {path}: timed out")
        kind = type(exc).__name__
        return APIConnectionError(f"{method} {path}: connection failed ({kind})")

    # -- buffered requests -------------------------------------------------------------------------

    def request(
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
        send_timeout: float | None = None,
        decode: Callable[[int, bytes, aiohttp.ClientResponse], Any] | None = None,
    ) -> Awaitable[Any]:
        """``_request`` (below), then ``on_complete`` when a hook listens for it.

        A plain function returning the awaitable, not a coroutine of its own: a buffered call in
        flight then holds one coroutine frame fewer (~0.4 KiB each of 10,000 concurrent calls).
        """
        call = self._request(
            method,
            path,
            params=params,
            json=json,
            data=data,
            headers=headers,
            timeout=timeout,
            auth=auth,
            retry=retry,
            send_timeout=send_timeout,
            decode=decode,
        )
        hook = self._hooks.on_complete
        if hook is None:
            return call
        return completed_call(method, path, call, hook)

    async def _request(
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
        send_timeout: float | None = None,
        decode: Callable[[int, bytes, aiohttp.ClientResponse], Any] | None = None,
    ) -> Any:
        """Send one logical request (with retries) and return the JSend ``data`` payload.

        ``timeout`` bounds the whole call (every attempt, backoff and ``Retry-After`` wait; inf:
        no bound); without it ``Timeouts.request`` bounds each attempt and ``Timeouts.total`` the
        call. ``send_timeout`` (only without ``timeout``) bounds an attempt while a streamed
        body is being sent; once its last byte is out, the answer must come within
        ``Timeouts.request``. ``decode`` replaces JSend decoding of a 2xx answer.
        """
        if self._closed:
            raise RuntimeError("this AsyncSession is closed; create a new one")
        if auth and self._api_key is None:
            self._check_key(method, path, headers)
        if timeout is not None:
            timeout = check_timeout("timeout", timeout)
        session = self._session or await self._open()
        if path[:1] != "/":
            raise ValueError(f"path must start with '/', got {path!r}")
        url = URL(self._prefix + path, encoded=True)
        secrets = request_secrets(self._secrets, json, headers)
        policy = self._retry
        max_retries = policy.max_retries if retry else 0
        streamed = False
        if json is not UNSET:
            if data is not None:
                raise ValueError("pass either json= or data=, not both")
            body: Any = encode_json(json)
            if headers:
                hdrs = self._headers(auth, True, headers)
            else:
                hdrs = self._json_auth_headers if auth else self._json_noauth_headers
        else:
            body = data
            hdrs = self._headers(auth, False, headers)
            if body is not None and not isinstance(body, REPLAYABLE):
                max_retries = 0  # a stream body cannot be replayed
                streamed = True
        hdrs = with_content_length(hdrs, body)
        query = query_params(params) if params else None
        # The whole-call deadline (loop time) and the bound of each attempt within it.
        timeouts = self._timeouts
        if timeout is not None:
            total = per_attempt = _bound(timeout)
            send_timeout = None
        else:
            total, per_attempt = timeouts.total, timeouts.request
            if send_timeout is not None:
                per_attempt = send_timeout
        after_body = timeouts.request if streamed and send_timeout is not None else None
        loop = asyncio.get_running_loop()
        deadline = None if total is None else loop.time() + total
        observe = self._observed or logger.isEnabledFor(logging.DEBUG)
        started = 0.0
        attempt = 0
        while True:
            if deadline is None:
                bound = per_attempt
            else:
                remaining = deadline - loop.time()
                bound = remaining if per_attempt is None else min(per_attempt, remaining)
            if bound is per_attempt and per_attempt is timeouts.request:
                client_timeout = self._timeout  # the hot path: one prebuilt object
            else:
                client_timeout = self._client_timeout(bound)
            attempt_scope: Any = _NO_SCOPE
            send: Any = send_body(body)
            if after_body is not None:
                # The attempt's deadline moves in once the last body byte is out (see docstring).
                attempt_scope = asyncio.timeout(bound and loop.time() + bound)
                send = bound_after_upload(send, attempt_scope, after_body)
                client_timeout = self._stream_timeout
            if observe:
                started = await before(
                    self._hooks, self._secrets, method, path, hdrs, attempt, body_size(body)
                )
            error: APIError | APIConnectionError | APITimeoutError
            retry_after: float | None = None
            status: int | None = None
            try:
                async with (
                    attempt_scope,
                    session.request(
                        method,
                        url,
                        params=query,
                        data=send,
                        headers=hdrs,
                        timeout=client_timeout,
                        allow_redirects=False,
                    ) as resp,
                ):
                    status = resp.status
                    if observe:
                        await after(self._hooks, method, path, resp, attempt, started, secrets)
                    if 200 <= status < 300:
                        raw = await read_capped(resp, method, path)
                        if decode is not None:
                            return decode(status, raw, resp)
                        return decode_jsend(status, raw, method, path, resp, secrets)
                    raw = await read_limited(resp)
                    if not resp.content.at_eof():
                        resp.close()  # do not return a half-read connection to the pool
                    error = make_api_error(
                        status,
                        raw,
                        method=method,
                        endpoint=path,
                        request_id=request_id_of(resp),
                        retry_after=resp.headers.get("Retry-After"),
                        secrets=secrets,
                    )
                    can_retry = policy.retries_status(method, status)
                    if can_retry:
                        retry_after = policy.parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if self._closed:
                    raise RuntimeError("this AsyncSession was closed during the request") from exc
                error = self._map_exception(exc, method, path, secrets)
                if isinstance(error, APITimeoutError):
                    can_retry = policy.retries_timeout(method)
                else:
                    can_retry = policy.retries_connection_error(method)
                error.__cause__ = exc
            if not can_retry or attempt >= max_retries or not policy.honours(retry_after):
                raise error
            delay = policy.delay(attempt, retry_after)
            if deadline is not None and loop.time() + delay >= deadline:
                raise error  # the wait would cross the call's deadline: give up now
            attempt += 1
            if self._hooks.on_retry is not None or logger.isEnabledFor(logging.DEBUG):
                await retrying(self._hooks, method, path, attempt, delay, status, error)
            await asyncio.sleep(delay)
            if deadline is not None and loop.time() >= deadline:
                raise error  # overslept the deadline: the last answer stands

    # -- streams -----------------------------------------------------------------------------------

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
        """Send once (never retried) and yield the raw 2xx response without a total deadline.

        ``timeout`` (default ``Timeouts.request``; inf: no bound) bounds connecting plus receiving
        the headers only. On exit the connection goes back to the pool only if the body was read
        to EOF; otherwise it is closed, so the server sees the disconnect (and kills the command).
        """
        inner = self._stream(method, path, params, json, data, headers, timeout, auth)
        hook = self._hooks.on_complete
        return inner if hook is None else completed_stream(method, path, inner, hook)

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        path: str,
        params: Mapping[str, object] | None,
        json: object,
        data: bytes | AsyncIterable[bytes] | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        auth: bool,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        if timeout is not None:
            timeout = check_timeout("timeout", timeout)
        deadline = self._timeouts.request if timeout is None else _bound(timeout)
        session = self._check_open() or await self._open()
        if auth and self._api_key is None:
            self._check_key(method, path, headers)
        url = self._url(path)
        secrets = request_secrets(self._secrets, json, headers)
        is_json = json is not UNSET
        if is_json:
            if data is not None:
                raise ValueError("pass either json= or data=, not both")
            body: Any = encode_json(json)
        else:
            body = data
        hdrs = with_content_length(self._headers(auth, is_json, headers), body)
        query = query_params(params) if params else None
        observe = self._observed or logger.isEnabledFor(logging.DEBUG)
        started = 0.0
        if observe:
            size = body_size(body)
            started = await before(self._hooks, self._secrets, method, path, hdrs, 0, size)
        try:
            async with asyncio.timeout(deadline):
                resp = await session.request(
                    method,
                    url,
                    params=query,
                    data=send_body(body),
                    headers=hdrs,
                    timeout=self._stream_timeout,
                    allow_redirects=False,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if self._closed:
                raise RuntimeError("this AsyncSession was closed during the request") from exc
            raise self._map_exception(exc, method, path, secrets) from exc
        try:
            if observe:
                await after(self._hooks, method, path, resp, 0, started, secrets)
            if not 200 <= resp.status < 300:
                try:
                    async with asyncio.timeout(deadline):
                        raw = await read_limited(resp)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    raw = b""
                raise make_api_error(
                    resp.status,
                    raw,
                    method=method,
                    endpoint=path,
                    request_id=request_id_of(resp),
                    retry_after=resp.headers.get("Retry-After"),
                    secrets=secrets,
                )
            lean(resp.content)
            yield resp
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
