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
import inspect
import json as _json
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, TypeGuard

import aiohttp
import attrs
from yarl import URL

from ._config import API_KEY_ENVS, Limits, Timeouts
from ._retry import RetryPolicy
from ._validate import check_timeout
from .errors import (
    MAX_ERROR_BODY,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthError,
    ProtocolError,
    make_api_error,
    redact_text,
    scrub,
)

__all__ = [
    "UNSET",
    "CompleteEvent",
    "Hooks",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "Transport",
]

logger = logging.getLogger("createos_sandbox_async")

_loads: Callable[[bytes], Any]
try:  # optional `speed` extra: faster JSON decoding, same results
    from orjson import loads as _loads  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _loads = _json.loads


#: Bodies that can be sent again as they are.
_REPLAYABLE: Final = (bytes, bytearray, memoryview)

# aiohttp warns (ResourceWarning) when a bytes body exceeds 1 MiB, because it writes it in one
# go. Bigger bodies go out as zero-copy 1 MiB memoryview slices from a fresh generator per
# attempt, so they stay replayable. Measured on a 64 MiB upload: a BytesIO per attempt cost 4x
# the client CPU per MiB and a full copy of the body (``BytesIO.getbuffer`` unshares it).
_LARGE_BODY: Final = 1024 * 1024


def _size(body: object) -> int | None:
    """The size of a body of known length (None: no body, or a stream)."""
    return len(body) if isinstance(body, _REPLAYABLE) else None


def _is_large(body: object) -> TypeGuard[bytes]:
    return type(body) is bytes and len(body) > _LARGE_BODY


async def _slices(body: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(body)
    for start in range(0, len(view), _LARGE_BODY):
        yield view[start : start + _LARGE_BODY]


def _send_body(body: Any) -> Any:
    """The body to hand aiohttp for one attempt: big ``bytes`` as a fresh slice generator.

    The caller adds the Content-Length header (see ``_sized``), so the slices are not chunked.
    """
    return _slices(body) if _is_large(body) else body


def _sized(headers: dict[str, str], body: object) -> dict[str, str]:
    """Headers plus Content-Length for a big bytes body (aiohttp cannot size a generator)."""
    return {**headers, "Content-Length": str(len(body))} if _is_large(body) else headers


_INF: Final = float("inf")


def _bound(timeout: float) -> float | None:
    """A checked ``timeout=`` as a bound: inf means none."""
    return None if timeout == _INF else timeout


def _encode_json(value: object) -> bytes:
    """The JSON body; a str the caller passed that UTF-8 cannot carry is a ValueError here."""
    try:
        return _dumps(value).encode()
    except UnicodeEncodeError:
        raise ValueError(
            "a str argument cannot be encoded as UTF-8 (it holds a lone surrogate)"
        ) from None


#: The most a buffered 2xx answer may hold once decoded (a gzip body counts expanded), and so
#: also the whole output of a collected exec (``exec(timeout=...)``), which reads its stream
#: body the same way. Far above any JSON answer of the API (a buffered exec's output is capped
#: at a few MiB per channel by the service), far below what would hurt the client: a hostile
#: server's gzip bomb or endless body ends in ProtocolError, not in gigabytes held. Bigger
#: output belongs on a stream (``exec_stream``, ``download_iter``), which is never buffered.
MAX_BODY: Final = 64 * 1024 * 1024


async def _read_capped(
    resp: aiohttp.ClientResponse, method: str, path: str, limit: int = MAX_BODY
) -> bytes:
    """A 2xx body, read whole but never past ``limit`` bytes (ProtocolError beyond)."""
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            resp.close()  # the rest is never read: do not return the connection to the pool
            raise ProtocolError(
                f"{method} {path}: HTTP {resp.status} answer is over {limit >> 20} MiB "
                f"({limit} bytes), the most a buffered answer may hold; read big output as a "
                "stream (exec_stream, files.download_iter)"
            )
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: Stands in for the per-attempt scope of a request whose deadline never moves.
_NO_SCOPE: Final = contextlib.nullcontext()


async def _then(body: Any, scope: asyncio.Timeout, after: float | None) -> AsyncIterator[Any]:
    """Pass a streamed body through; once it is all sent, the answer has ``after`` seconds.

    An upload of unknown length gets a long bound for sending; waiting for the answer after the
    last byte is an ordinary response wait and gets the ordinary bound. The attempt's timeout is
    only ever moved in, never out.
    """
    async for chunk in body:
        yield chunk
    if after is not None:
        when = asyncio.get_running_loop().time() + after
        current = scope.when()
        if current is None or when < current:
            scope.reschedule(when)


#: One encoder for every body: ``json.dumps`` with options would build a new one per call.
_dumps: Final = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _Unset:
    """Sentinel type: "no JSON body" (``None`` is a valid JSON body: ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()

#: Caller headers the server would read before X-Api-Key (WIRE §2): always dropped.
CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "x-auth-token",
        "x-access-token",
        "cookie",
        "proxy-authorization",
        "x-csrf-token",
    }
)
#: Header names whose values never reach a hook or a log line.
SECRET_HEADERS: Final = CREDENTIAL_HEADERS | {"x-api-key", "set-cookie"}
REDACTED: Final = "[redacted]"
#: JSON body keys whose values are secrets of that request: ``envs`` (create, fork templates),
#: ``env`` (exec, processes). Their string values are scrubbed from whatever the answer produces.
SECRET_BODY_KEYS: Final = ("envs", "env")
#: Minted tokens a session remembers for redaction (see ``Transport.add_secret``).
_MAX_MINTED: Final = 256


def _is_secret_header(name: str) -> bool:
    """Whether a header's value is a credential, whatever the letter case of its name."""
    return name.lower() in SECRET_HEADERS


def _request_secrets(
    base: tuple[str, ...], json: object, headers: Mapping[str, str] | None
) -> tuple[str, ...]:
    """The session's secrets plus this request's: env values in the body, per-call credentials.

    The transport finds them itself (rather than each resource passing them) so that no route,
    including ``session.request`` for unmodelled ones, can forget to.
    """
    extra: list[str] = []
    if type(json) is dict:
        for key in SECRET_BODY_KEYS:
            env = json.get(key)
            if isinstance(env, Mapping):
                extra.extend(v for v in env.values() if isinstance(v, str) and v)
    if headers:
        extra.extend(v for k, v in headers.items() if _is_secret_header(k) and v)
    return base + tuple(extra) if extra else base


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


def _redact_headers(headers: Mapping[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
    """Headers for a hook: credential names redacted in any case, and any value holding a secret."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        if _is_secret_header(key) or (value and redact_text(value, secrets) != value):
            out[key] = REDACTED
        else:
            out[key] = value
    return out


def _query(params: Mapping[str, object]) -> dict[str, str | list[str]]:
    """Query values on the wire: booleans as true/false, None dropped, the rest as text."""
    out: dict[str, str | list[str]] = {}
    for key, value in params.items():
        if value is None:
            continue
        if value is True:
            out[key] = "true"
        elif value is False:
            out[key] = "false"
        elif isinstance(value, list | tuple):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


def _user_agent() -> str:
    from . import __version__

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"createos-sandbox-async/{__version__} python/{py} aiohttp/{aiohttp.__version__}"


async def _read_limited(resp: aiohttp.ClientResponse, limit: int = MAX_ERROR_BODY) -> bytes:
    """Read at most ``limit`` bytes of a body (error bodies may come from anything)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _request_id(resp: aiohttp.ClientResponse, secrets: tuple[str, ...] = ()) -> str | None:
    """The response's request id; a hostile or buggy server may echo a secret into it."""
    headers = resp.headers
    rid = headers.get("X-Request-Id") or headers.get("X-Fc-Request-Id")
    return redact_text(rid, secrets) if rid and secrets else rid


def _missing_key(method: str, path: str) -> AuthError:
    """The 401 raised locally when an authenticated route is called with no key configured."""
    looked = ", ".join(API_KEY_ENVS)
    return AuthError(
        f"no API key: pass api_key= to AsyncSession or set one of {looked} "
        "(looked at the argument, then those variables; all unset or blank); nothing was sent",
        status=401,
        method=method,
        endpoint=path,
    )


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
            lower = key.lower()
            if lower in CREDENTIAL_HEADERS or lower == "x-api-key":
                continue
            for existing in [k for k in base if k.lower() == lower]:
                del base[existing]
            base[key] = value
        self._noauth_headers = base
        self._auth_headers = {**base, "X-Api-Key": api_key} if api_key else dict(base)
        self._json_noauth_headers = {**base, "Content-Type": "application/json"}
        self._json_auth_headers = {**self._auth_headers, "Content-Type": "application/json"}
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
        return _request_secrets(self._secrets, json, None)

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
            raise _missing_key(method, path)

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
        merged = dict(base)
        for key, value in extra.items():
            lower = key.lower()
            if lower in CREDENTIAL_HEADERS:
                continue
            if lower == "x-api-key" and not auth:
                continue
            for existing in [k for k in merged if k.lower() == lower]:
                del merged[existing]
            merged[key] = value
        return merged

    def _url(self, path: str) -> URL:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        return URL(self._prefix + path, encoded=True)

    async def _fire(self, name: str, hook: Hook, event: object) -> None:
        """Run one hook; whatever it raises is logged and swallowed (observers never break I/O)."""
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.warning("createos_sandbox_async: %s hook raised; ignored", name, exc_info=True)

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
        send_timeout: float | None = None,
        decode: Callable[[int, bytes, aiohttp.ClientResponse], Any] | None = None,
    ) -> Any:
        """``_request`` (below), then ``on_complete`` when a hook listens for it."""
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
            return await call
        started = asyncio.get_running_loop().time()
        error: str | None = None
        try:
            return await call
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            elapsed = asyncio.get_running_loop().time() - started
            await self._fire(
                "on_complete", hook, CompleteEvent(method, path, False, elapsed, error)
            )

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
        secrets = _request_secrets(self._secrets, json, headers)
        policy = self._retry
        max_retries = policy.max_retries if retry else 0
        streamed = False
        if json is not UNSET:
            if data is not None:
                raise ValueError("pass either json= or data=, not both")
            body: Any = _encode_json(json)
            if headers:
                hdrs = self._headers(auth, True, headers)
            else:
                hdrs = self._json_auth_headers if auth else self._json_noauth_headers
        else:
            body = data
            hdrs = self._headers(auth, False, headers)
            if body is not None and not isinstance(body, _REPLAYABLE):
                max_retries = 0  # a stream body cannot be replayed
                streamed = True
        hdrs = _sized(hdrs, body)
        query = _query(params) if params else None
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
            send: Any = _send_body(body)
            if after_body is not None:
                # The attempt's deadline moves in once the last body byte is out (see docstring).
                attempt_scope = asyncio.timeout(bound and loop.time() + bound)
                send = _then(send, attempt_scope, after_body)
                client_timeout = self._stream_timeout
            if observe:
                started = await self._before(method, path, hdrs, attempt, _size(body))
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
                        await self._after(method, path, resp, attempt, started, secrets)
                    if 200 <= status < 300:
                        raw = await _read_capped(resp, method, path)
                        if decode is not None:
                            return decode(status, raw, resp)
                        return self._decode(status, raw, method, path, resp, secrets)
                    raw = await _read_limited(resp)
                    if not resp.content.at_eof():
                        resp.close()  # do not return a half-read connection to the pool
                    error = make_api_error(
                        status,
                        raw,
                        method=method,
                        endpoint=path,
                        request_id=_request_id(resp),
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
                await self._on_retry(method, path, attempt, delay, status, error)
            await asyncio.sleep(delay)
            if deadline is not None and loop.time() >= deadline:
                raise error  # overslept the deadline: the last answer stands

    def _decode(
        self,
        status: int,
        raw: bytes,
        method: str,
        path: str,
        resp: aiohttp.ClientResponse,
        secrets: tuple[str, ...] = (),
    ) -> Any:
        """JSend success decoding (WIRE §4 rules 1, 3, 4)."""
        if status == 204 or status == 205:
            return None
        if not raw:
            raise ProtocolError(f"{method} {path}: HTTP {status} with an empty body")
        try:
            doc = _loads(raw)
        except ValueError:
            doc = UNSET  # raised below, outside the handler: the decode error (its ``doc`` is
            # the whole body) must not ride along as ``__context__``
        if doc is UNSET:
            ctype = redact_text(resp.headers.get("Content-Type", "?"), secrets)
            raise ProtocolError(
                f"{method} {path}: HTTP {status} body is not JSON (Content-Type {ctype})"
            )
        if type(doc) is dict and doc.get("status") == "success":
            return doc.get("data")
        raise ProtocolError(f"{method} {path}: HTTP {status} body is not a JSend success envelope")

    async def _before(
        self,
        method: str,
        path: str,
        hdrs: Mapping[str, str],
        attempt: int,
        size: int | None = None,
    ) -> float:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("request %s %s attempt=%d", method, path, attempt)
        hook = self._hooks.on_request
        if hook is not None:
            headers = _redact_headers(hdrs, self._secrets)
            event = RequestEvent(method, path, headers, attempt, size)
            await self._fire("on_request", hook, event)
        return asyncio.get_running_loop().time()

    async def _after(
        self,
        method: str,
        path: str,
        resp: aiohttp.ClientResponse,
        attempt: int,
        started: float,
        secrets: tuple[str, ...] = (),
    ) -> None:
        elapsed = asyncio.get_running_loop().time() - started
        rid = _request_id(resp, secrets or self._secrets)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "response %s %s -> %d in %.1f ms request_id=%s",
                method,
                path,
                resp.status,
                elapsed * 1000,
                rid,
            )
        hook = self._hooks.on_response
        if hook is not None:
            event = ResponseEvent(
                method, path, resp.status, rid, elapsed, attempt, resp.content_length
            )
            await self._fire("on_response", hook, event)

    async def _on_retry(
        self, method: str, path: str, attempt: int, delay: float, status: int | None, error: object
    ) -> None:
        text = str(error)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "retry %d of %s %s in %.3f s after: %s", attempt, method, path, delay, text
            )
        hook = self._hooks.on_retry
        if hook is not None:
            await self._fire(
                "on_retry", hook, RetryEvent(method, path, attempt, delay, status, text)
            )

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
        return inner if hook is None else self._completing(method, path, inner, hook)

    @contextlib.asynccontextmanager
    async def _completing(
        self,
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
            await self._fire("on_complete", hook, event)

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
        secrets = _request_secrets(self._secrets, json, headers)
        is_json = json is not UNSET
        if is_json:
            if data is not None:
                raise ValueError("pass either json= or data=, not both")
            body: Any = _encode_json(json)
        else:
            body = data
        hdrs = _sized(self._headers(auth, is_json, headers), body)
        query = _query(params) if params else None
        observe = self._observed or logger.isEnabledFor(logging.DEBUG)
        started = await self._before(method, path, hdrs, 0, _size(body)) if observe else 0.0
        try:
            async with asyncio.timeout(deadline):
                resp = await session.request(
                    method,
                    url,
                    params=query,
                    data=_send_body(body),
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
                await self._after(method, path, resp, 0, started, secrets)
            if not 200 <= resp.status < 300:
                try:
                    async with asyncio.timeout(deadline):
                        raw = await _read_limited(resp)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    raw = b""
                raise make_api_error(
                    resp.status,
                    raw,
                    method=method,
                    endpoint=path,
                    request_id=_request_id(resp),
                    retry_after=resp.headers.get("Retry-After"),
                    secrets=secrets,
                )
            yield resp
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
