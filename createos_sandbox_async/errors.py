"""Every exception the SDK raises, and the one table that maps an HTTP status to a class.

::

    CreateosError                      base of everything below
    ├── APIError                       the server answered with a non-2xx status
    │   ├── ValidationError            400, 409, 422 (bad input, wrong state, conflict)
    │   ├── AuthError                  401 (key missing, unknown or revoked)
    │   ├── PaymentRequiredError       402 (no credit; never retried)
    │   ├── PermissionDeniedError      403 (quota, admin route, token misuse)
    │   ├── NotFoundError              404 (unknown id, another tenant's resource)
    │   ├── RateLimitError             429 (``retry_after`` seconds when the server said)
    │   └── ServerError                5xx
    ├── APIConnectionError             no response at all (DNS, refused, reset, TLS)
    ├── APITimeoutError                a deadline expired (also a builtin TimeoutError)
    ├── StreamError                    a streaming response went wrong after it started
    │   ├── StreamStalledError         no byte, not even a heartbeat, for the idle timeout
    │   └── StreamInterruptedError     the stream ended without its exit frame
    ├── ProtocolError                  the server sent something off the wire format
    ├── CommandError                   ``check=True`` and the command failed (holds ``result``)
    ├── SandboxStateError              the sandbox's state makes the operation impossible
    └── PoolCleanupError               a SandboxPool could not destroy all it created (``ids``)

Messages carry the method and the endpoint path, never the host, the query string or a credential.
Errors built from a server's answer are scrubbed of the request's secrets in every field (see
:func:`scrub`), and every error pickles and unpickles to an equal-looking copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from . import _json
from ._retry import parse_retry_after

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthError",
    "CommandError",
    "CreateosError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PoolCleanupError",
    "ProtocolError",
    "RateLimitError",
    "SandboxStateError",
    "ServerError",
    "StreamError",
    "StreamInterruptedError",
    "StreamStalledError",
    "ValidationError",
]

#: Error bodies are read up to this many bytes (WIRE §4): a proxy may send anything.
MAX_ERROR_BODY = 4 * 1024 * 1024

#: What a secret is replaced with, in errors, hook payloads and log lines.
REDACTED = "[redacted]"

#: Secrets at least this long are cut out wherever they occur inside a text. Shorter ones
#: ("", "1", "true", "prod") are too common to cut out of a message without wrecking it, and too
#: short to be worth guessing: they are redacted only where a whole value equals them.
MIN_SECRET_LEN = 6


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[redacted]`` (short secrets: whole-value only)."""
    for secret in secrets:
        if not secret:
            continue
        if text == secret:
            return REDACTED
        if len(secret) >= MIN_SECRET_LEN and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub_value(value: Any, secrets: tuple[str, ...], depth: int = 0) -> Any:
    """A copy of ``value`` with secrets redacted in every string, key and nested container.

    Types it does not know (numbers, None, responses, ...) come back unchanged; mappings come
    back as the same type when it can be rebuilt from pairs (aiohttp's header multidicts), else
    as a dict.
    """
    if isinstance(value, str):
        return redact_text(value, secrets)
    if depth > 50:  # a body nested this deep is hostile; drop what is below rather than recurse
        return None
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        clean = redact_text(text, secrets)
        return value if clean == text else clean.encode()
    if isinstance(value, Mapping):
        pairs = [
            (_scrub_value(k, secrets, depth + 1), _scrub_value(v, secrets, depth + 1))
            for k, v in value.items()
        ]
        return _rebuild_mapping(value, pairs)
    if isinstance(value, list):
        return [_scrub_value(v, secrets, depth + 1) for v in value]
    if isinstance(value, tuple):
        items = [_scrub_value(v, secrets, depth + 1) for v in value]
        if hasattr(value, "_make"):  # a named tuple (aiohttp's RequestInfo since 3.10)
            return value._make(items)
        return tuple(items)
    if attrs.has(type(value)):  # an attrs instance (aiohttp's RequestInfo before 3.10)
        return _scrub_attrs(value, secrets, depth)
    return value


def _scrub_attrs(value: Any, secrets: tuple[str, ...], depth: int) -> Any:
    """A copy of an attrs instance with its init fields scrubbed (the same object if clean)."""
    changes = {}
    for field in attrs.fields(type(value)):
        if not field.init:
            continue
        old = getattr(value, field.name)
        new = _scrub_value(old, secrets, depth + 1)
        if new is not old:
            changes[field.alias or field.name.lstrip("_")] = new
    return attrs.evolve(value, **changes) if changes else value


def _rebuild_mapping(original: Mapping[Any, Any], pairs: list[tuple[Any, Any]]) -> Any:
    if type(original) is dict:
        return dict(pairs)
    try:  # multidict: CIMultiDictProxy(CIMultiDict(pairs)) keeps repeated keys and the type
        from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

        if isinstance(original, CIMultiDictProxy):
            return CIMultiDictProxy(CIMultiDict(pairs))
        if isinstance(original, MultiDictProxy):
            return MultiDictProxy(MultiDict(pairs))
        return type(original)(pairs)  # type: ignore[call-arg]
    except Exception:
        return dict(pairs)


def scrub(exc: BaseException, secrets: Iterable[str]) -> None:
    """Redact ``secrets`` in place from ``exc``: args, every attribute, notes, cause and context.

    Used on every error built from a server's answer or wrapping a network failure, so a secret
    the server echoed (or aiohttp kept, like the request headers in ``request_info``) leaves the
    SDK through no field: not ``str``, ``repr``, ``vars``, ``args``, a pickle or a chained error.
    """
    wanted = tuple(s for s in secrets if s)
    if not wanted:
        return
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 100:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.args = _scrub_value(current.args, wanted)
        except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
            pass
        for name, value in list(getattr(current, "__dict__", {}).items()):
            if isinstance(value, BaseException):
                todo.append(value)
                continue
            clean = _scrub_value(value, wanted)
            if clean is not value:
                try:
                    setattr(current, name, clean)
                except (AttributeError, TypeError):  # pragma: no cover - read-only attribute
                    pass
        todo.append(current.__cause__)
        todo.append(current.__context__)
        todo.extend(e for e in getattr(current, "exceptions", ()) if isinstance(e, BaseException))


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """Unpickle an error without calling its ``__init__`` (whose signature differs per class)."""
    return cls.__new__(cls, *args)


class CreateosError(Exception):
    """Base class: ``except CreateosError`` catches everything this SDK raises on purpose.

    Bad arguments are not among them: they raise the builtin ``TypeError`` / ``ValueError``
    before anything is sent. No error message holds the API key or an env value.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickles ``args`` and calls ``cls(*args)``, which fails for APIError
        # (keyword-only status) and mangles CommandError; restore args and attributes instead.
        return (_rebuild, (type(self), self.args), dict(vars(self)))


class APIError(CreateosError):
    """The server answered with a non-2xx status. The subclass says which.

    ``str(err)`` is ``"<status>: <message> (<method> <endpoint>) [request_id=...]"``.

    Attributes:
        message: The server's message (secrets cut out).
        status: The HTTP status.
        method: The request's method.
        endpoint: The request's path.
        request_id: The server's request id (``X-Request-Id``), for support tickets.
        code: The envelope's machine-readable code when there is one: ``data.code`` (a string,
            from ``fail`` envelopes) or the top-level ``code`` (an integer, from ``error``
            envelopes).
        body: The parsed JSON envelope (None when the body was not JSON).

    Example:
        ```python
        try:
            await session.sandboxes.get("sb_nope")
        except NotFoundError as err:
            print(err.status, err.request_id)
        ```
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str = "",
        endpoint: str = "",
        request_id: str | None = None,
        code: str | int | None = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.method = method
        self.endpoint = endpoint
        self.request_id = request_id
        self.code = code
        self.body = body
        super().__init__(message)

    def __str__(self) -> str:
        where = f" ({self.method} {self.endpoint})" if self.method else ""
        rid = f" [request_id={self.request_id}]" if self.request_id else ""
        return f"{self.status}: {self.message}{where}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, message={self.message!r}, "
            f"method={self.method!r}, endpoint={self.endpoint!r}, request_id={self.request_id!r}, "
            f"code={self.code!r})"
        )


class ValidationError(APIError):
    """400, 409 or 422: bad body or query, an invalid state transition, a conflict."""


class AuthError(APIError):
    """401: the API key is missing, unknown or revoked."""


class PaymentRequiredError(APIError):
    """402: the account has no credit. Never retried."""


class PermissionDeniedError(APIError):
    """403: authenticated but not allowed (quota, administrator route, token misuse)."""


class NotFoundError(APIError):
    """404: unknown id, another tenant's resource, or a sandbox that is not running."""


class RateLimitError(APIError):
    """429: slow down. Raised after the resends the ``RetryPolicy`` allows.

    Attributes:
        retry_after: The server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed; 503 also means no capacity or a subsystem not configured.

    Attributes:
        retry_after: The server's ``Retry-After`` in seconds, when it sent one (503 usually).
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class APIConnectionError(CreateosError):
    """No response at all: DNS failure, connection refused or reset, TLS error.

    A POST that got no answer is not resent (it may have been processed); the original error is
    the ``__cause__``.
    """


class APITimeoutError(CreateosError, TimeoutError):
    """A deadline expired: a method's ``timeout=``, the session's ``Timeouts``, or a wait.

    Also a builtin ``TimeoutError``, so ``except TimeoutError`` catches it together with
    ``anyio.fail_after``'s.
    """


class StreamError(CreateosError):
    """A streaming response (exec stream, download, process output) went wrong after its headers.

    Streams are never resent automatically: running a command twice is not the SDK's decision.
    """


class StreamStalledError(StreamError):
    """Nothing arrived, not even a heartbeat, for longer than the idle timeout.

    The server or the network is gone; it does not mean the command is slow (a silent command
    still gets heartbeats). The connection is closed.
    """


class StreamInterruptedError(StreamError):
    """The stream ended (EOF or reset) before its terminal frame.

    Whether the command finished is unknown: check the sandbox before running it again.
    """


class ProtocolError(CreateosError):
    """The server sent something that is not the documented wire format.

    A body that is not JSON where JSON is due, a frame over the line limit, an answer over
    64 MiB, a field of the wrong type.
    """


class CommandError(CreateosError):
    """A command run with ``check=True`` exited non-zero or reported an agent error.

    The message names only the exit code and the agent error, never the command line or its
    output (either may hold secrets).

    Attributes:
        result: The ``ExecResult``, with the output (env values of the request cut out).

    Example:
        ```python
        try:
            await sb.sh("make test", check=True)
        except CommandError as err:
            print(err.result.exit_code, err.result.stderr[-2000:])
        ```
    """

    def __init__(self, result: Any, message: str | None = None) -> None:
        self.result = result
        if message is None:
            code = getattr(result, "exit_code", None)
            err = getattr(result, "error", None)
            message = f"command failed with exit code {code}"
            if err:
                message += f": {err}"
        super().__init__(message)


class SandboxStateError(CreateosError):
    """The sandbox is in a state that makes the operation impossible.

    For example waiting for ``running`` on a sandbox that ``failed``, or a preview URL without
    ingress. Raised by the SDK itself; a state conflict the server reports is a
    ``ValidationError`` (409).

    Attributes:
        sandbox_id: The sandbox's id.
        status: The state seen (None when unknown).
    """

    def __init__(self, message: str, *, sandbox_id: str, status: str | None) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id
        self.status = status


class PoolCleanupError(CreateosError):
    """Some sandboxes this pool created could not be destroyed before its cleanup deadline.

    Raised when the pool's ``async with`` block exits (after the block's own exception, if any,
    which it then chains).

    Attributes:
        ids: The sandboxes left behind: destroy them by hand or let them auto-pause.
        errors: The last error each one's DELETE got (absent when the deadline ran out first).
    """

    def __init__(self, ids: Sequence[str], errors: dict[str, BaseException] | None = None) -> None:
        self.ids = tuple(ids)
        self.errors = dict(errors or {})
        shown = ", ".join(self.ids[:20]) + (" ..." if len(self.ids) > 20 else "")
        super().__init__(f"SandboxPool could not destroy {len(self.ids)} sandbox(es): {shown}")


# The one status -> class table (WIRE §5).
_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ValidationError,
    422: ValidationError,
    429: RateLimitError,
}

_DEFAULT_MESSAGES: dict[int, str] = {
    400: "bad request",
    401: "authentication failed: API key missing, unknown or revoked",
    402: "payment required: the account has no credit",
    403: "permission denied",
    404: "not found",
    408: "request timeout",
    409: "conflict",
    422: "unprocessable request",
    429: "rate limited",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


def error_class(status: int) -> type[APIError]:
    """The exception class for an HTTP status (WIRE §5)."""
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    if 500 <= status <= 599:
        return ServerError
    return APIError


def _parse_body(body: bytes) -> Any:
    """Parse an error body as JSON when it looks like JSON; anything else (HTML, text) -> None."""
    text = body.strip()
    if not text or text[:1] not in (b"{", b"["):
        return None
    try:
        return _json.loads(text)
    except ValueError:
        return None


def _message_and_code(envelope: Any, status: int) -> tuple[str, str | int | None]:
    """Message precedence of WIRE §4: message, then data as a string, then data's pairs."""
    default = _DEFAULT_MESSAGES.get(status, f"HTTP {status}")
    if not isinstance(envelope, dict):
        return default, None
    data = envelope.get("data")
    code: str | int | None = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        code = data["code"]
    elif isinstance(envelope.get("code"), int) and not isinstance(envelope.get("code"), bool):
        code = envelope["code"]
    message = envelope.get("message")
    if isinstance(message, str) and message:
        return message, code
    if isinstance(data, str) and data:
        return data, code
    if isinstance(data, dict) and data:
        if isinstance(data.get("message"), str) and data["message"]:
            return data["message"], code
        pairs = "; ".join(f"{k}: {v}" for k, v in data.items() if k != "code")
        if pairs:
            return pairs, code
    return default, code


def make_api_error(
    status: int,
    body: bytes,
    *,
    method: str,
    endpoint: str,
    request_id: str | None,
    retry_after: str | None = None,
    secrets: tuple[str, ...] = (),
) -> APIError:
    """Build the mapped exception for a non-2xx response; never fails on odd bodies."""
    envelope = _parse_body(body)
    message, code = _message_and_code(envelope, status)
    if secrets:  # the server may echo anything the request carried: scrub every field
        message = redact_text(message, secrets)
        envelope = _scrub_value(envelope, secrets)
        code = _scrub_value(code, secrets)
        request_id = None if request_id is None else redact_text(request_id, secrets)
    cls = error_class(status)
    kw: dict[str, Any] = {
        "status": status,
        "method": method,
        "endpoint": endpoint,
        "request_id": request_id,
        "code": code,
        "body": envelope,
    }
    if cls is RateLimitError or cls is ServerError:
        return cls(message, retry_after=parse_retry_after(retry_after), **kw)
    return cls(message, **kw)
