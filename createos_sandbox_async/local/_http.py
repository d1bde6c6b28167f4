"""JSend envelopes, request parsing and pagination: the wire conventions every route shares."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TypeVar, cast

from aiohttp import web

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
MAX_LIMIT = 500
_T = TypeVar("_T")
DEFAULT_LIMIT = 50

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    429: "rate_limited",
    501: "not_supported_here",
    503: "unavailable",
}


class ApiFail(Exception):
    """Raised by handlers; the error middleware turns it into a JSend body with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.fields = dict(fields or {})


def fail(status: int, message: str, **kw: Any) -> NoReturn:
    """Shorthand: raise an ApiFail."""
    raise ApiFail(status, message, **kw)


def dumps(obj: object) -> str:
    """Compact JSON, the same bytes every time for the same input."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def ok(data: object, status: int = 200) -> web.Response:
    """A JSend success envelope."""
    return web.Response(
        status=status,
        text=dumps({"status": "success", "data": data}),
        content_type=JSON_TYPE,
    )


def error_body(exc: ApiFail) -> dict[str, Any]:
    """4xx -> `fail` with data {code, message, fields...}; 5xx -> `error` with message, code 0."""
    if exc.status >= 500:
        return {"status": "error", "message": exc.message, "code": 0}
    data: dict[str, Any] = {"code": exc.code, "message": exc.message}
    data.update(exc.fields)
    return {"status": "fail", "data": data}


def error_response(exc: ApiFail) -> web.Response:
    """The JSON error response for an ApiFail (always labelled application/json)."""
    return web.Response(status=exc.status, text=dumps(error_body(exc)), content_type=JSON_TYPE)


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else (an empty body is {} when optional)."""
    raw = await request.read()
    if not raw.strip():
        if required:
            fail(400, "request body must be a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        fail(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        fail(400, "request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        fail(
            400,
            "request body holds a lone surrogate escape (such as \\ud800): not valid Unicode",
        )
    return body


# A lone surrogate can only arrive as a \u escape (raw surrogate bytes are invalid UTF-8, which
# json.loads already refuses); decoded, it is a str that cannot be encoded again, so it would
# break a spawn, a file name or the response itself. The regex keeps the walk off the hot path.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    """Any string (key or value) that cannot be encoded as UTF-8? Iterative: a body nested
    nearly as deep as json.loads allows must not hit the recursion limit here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# ----------------------------------------------------------------- what a spawn can take

_MAX_ARG_STRLEN = 32 * 4096  # the kernel's limit on one argument or variable (MAX_ARG_STRLEN)


def check_no_nul(field: str, *values: str) -> None:
    """400 naming `field` when a value holds a NUL byte: no argv, variable or path can carry
    one (the spawn would fail with ValueError, a 500)."""
    if any("\x00" in value for value in values):
        fail(400, f"{field} must not contain NUL bytes", fields={field: "contains a NUL byte"})


def argv_problem(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Why the kernel would refuse to exec `argv` with `env` (E2BIG), agent-style, or None.
    Checked before spawning: a refused exec would otherwise surface as an OSError (a 500)."""
    total = 0
    for item in (*argv, *(f"{k}={v}" for k, v in env.items())):
        size = len(item.encode()) + 1
        if size > _MAX_ARG_STRLEN:
            return (
                "fork/exec: argument list too long "
                f"(one argument or variable is over {_MAX_ARG_STRLEN} bytes)"
            )
        total += size + 8  # the string and its pointer
    if total > _arg_max():
        return f"fork/exec: argument list too long (over {_arg_max()} bytes of arguments)"
    return None


def _arg_max() -> int:
    """The kernel's budget for argv + envp: a quarter of the stack limit, at most 6 MiB (what
    execve enforces, whatever sysconf says for an unlimited stack), less room for the loader."""
    try:
        limit = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        limit = 131072
    return min(limit, 6 << 20) - 4096


def opt_str(body: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    """A string field (null = absent); 400 naming the field otherwise."""
    value = body.get(key)
    if value is None:
        if required:
            fail(400, f"{key} is required", fields={key: "required"})
        return None
    if not isinstance(value, str):
        fail(400, f"{key} must be a string", fields={key: "must be a string"})
    if required and not value:
        fail(400, f"{key} must not be empty", fields={key: "required"})
    return value


def opt_int(body: Mapping[str, Any], key: str) -> int | None:
    """An integer field (bools rejected); 400 naming the field otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        fail(400, f"{key} must be an integer", fields={key: "must be an integer"})
    return value


def opt_bool(body: Mapping[str, Any], key: str) -> bool | None:
    """A boolean field; 400 naming the field otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        fail(400, f"{key} must be a boolean", fields={key: "must be a boolean"})
    return value


def opt_str_list(body: Mapping[str, Any], key: str) -> list[str] | None:
    """A list of strings; 400 naming the field otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(400, f"{key} must be a list of strings", fields={key: "must be a list of strings"})
    return list(value)


def opt_str_map(body: Mapping[str, Any], key: str) -> dict[str, str] | None:
    """An object of string values; 400 naming the field otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        fail(
            400, f"{key} must be an object of strings", fields={key: "must map strings to strings"}
        )
    return dict(value)


def query_bool(request: web.Request, key: str) -> bool:
    """`true`/`1` are true; absent or `false`/`0` false; anything else 400."""
    raw = request.query.get(key)
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    fail(400, f"query parameter {key} must be true or false", fields={key: "must be a boolean"})


def query_int(request: web.Request, key: str, default: int | None = None) -> int | None:
    """A non-negative integer query parameter; 400 for negative or non-integer values."""
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, f"query parameter {key} must be an integer", fields={key: "must be an integer"})
    if value < 0:
        fail(400, f"query parameter {key} must not be negative", fields={key: "must be >= 0"})
    return value


def page(request: web.Request, items: Sequence[object]) -> web.Response:
    """The doubly nested page of WIRE §8: limit default 50, clamped to 500, offset default 0."""
    limit = query_int(request, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
    limit = min(limit, MAX_LIMIT)
    offset = query_int(request, "offset", 0) or 0
    chunk = list(items[offset : offset + limit])
    return ok(
        {
            "data": chunk,
            "pagination": {
                "total": len(items),
                "limit": limit,
                "offset": offset,
                "count": len(chunk),
            },
        }
    )


def prune(view: dict[str, Any]) -> dict[str, Any]:
    """Drop None values: the audited server omits empty optional fields (WIRE §20.12)."""
    return {k: v for k, v in view.items() if v is not None}


def request_key(name: str, kind: type[_T]) -> web.RequestKey[_T]:
    """A typed request-storage key: `web.RequestKey` from aiohttp 3.14 on (which warns about plain
    str keys); older aiohttp has no RequestKey and takes the plain str silently."""
    key_class = getattr(web, "RequestKey", None)
    if key_class is None:
        return cast("web.RequestKey[_T]", name)
    key: web.RequestKey[_T] = key_class(name, kind)
    return key
