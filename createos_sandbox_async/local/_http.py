"""JSend envelopes, request parsing and pagination: the wire conventions every route shares."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from aiohttp import web

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
MAX_LIMIT = 500
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
    except (ValueError, UnicodeDecodeError):
        fail(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        fail(400, "request body must be a JSON object")
    return body


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
