"""The status -> class table, message precedence and Retry-After parsing (WIRE §4, §5)."""

from __future__ import annotations

import email.utils
import json

import pytest

from createos_sandbox_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthError,
    CommandError,
    CreateosError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamError,
    StreamInterruptedError,
    StreamStalledError,
    ValidationError,
    errors,
)
from createos_sandbox_async._retry import parse_retry_after
from createos_sandbox_async.errors import error_class, make_api_error


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ValidationError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (599, ServerError),
        (408, APIError),
        (418, APIError),
        (302, APIError),
    ],
)
def test_status_table(status: int, cls: type[APIError]) -> None:
    assert error_class(status) is cls
    err = make_api_error(status, b"", method="GET", endpoint="/v1/x", request_id=None)
    assert type(err) is cls
    assert err.status == status


def test_hierarchy() -> None:
    for cls in (APIError, APIConnectionError, APITimeoutError, StreamError, ProtocolError):
        assert issubclass(cls, CreateosError)
    for cls in (StreamStalledError, StreamInterruptedError):
        assert issubclass(cls, StreamError)
    assert issubclass(APITimeoutError, TimeoutError)
    assert not issubclass(APIConnectionError, APIError)
    assert issubclass(CommandError, CreateosError)


def test_every_public_exception_lives_in_errors_and_its_tree() -> None:
    """One error table: every exception the package exports is defined in errors.py, listed in
    errors.__all__ and drawn in the tree of its docstring; old import paths still work."""
    import createos_sandbox_async as pkg
    from createos_sandbox_async import pool, sandbox

    exported = [getattr(pkg, name) for name in pkg.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, BaseException)]
    assert len(classes) >= 18
    doc = errors.__doc__ or ""
    for cls in classes:
        assert cls.__module__ == "createos_sandbox_async.errors", cls
        assert cls.__name__ in errors.__all__, cls
        assert f" {cls.__name__} " in doc, cls
    assert sandbox.SandboxStateError is errors.SandboxStateError
    assert pool.PoolCleanupError is errors.PoolCleanupError
    assert errors.parse_retry_after is parse_retry_after


def _err(status: int, body: object, **kw: object) -> APIError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return make_api_error(status, raw, method="POST", endpoint="/v1/sandboxes", request_id="r1")


def test_message_precedence_top_level_message_wins() -> None:
    err = _err(500, {"status": "error", "message": "boom", "code": 0, "data": "ignored"})
    assert err.message == "boom"
    assert err.code == 0


def test_message_from_string_data() -> None:
    err = _err(400, {"status": "fail", "data": "shape is required"})
    assert err.message == "shape is required"
    assert err.code is None


def test_message_from_data_pairs_and_string_code() -> None:
    err = _err(409, {"status": "fail", "data": {"code": "name_taken", "name": "already used"}})
    assert err.message == "name: already used"
    assert err.code == "name_taken"
    assert isinstance(err, ValidationError)


def test_message_from_data_message_field() -> None:
    err = _err(403, {"status": "fail", "data": {"message": "quota reached", "code": "quota"}})
    assert err.message == "quota reached"
    assert err.code == "quota"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"upstream connect error",
        b"{not json",
        b"[1, 2]",
        json.dumps({"status": "fail", "data": None}).encode(),
        json.dumps({"status": "fail"}).encode(),
        json.dumps("just a string").encode(),
    ],
)
def test_odd_bodies_classified_by_status(body: bytes) -> None:
    err = make_api_error(502, body, method="GET", endpoint="/v1/whoami", request_id=None)
    assert isinstance(err, ServerError)
    assert err.message == "bad gateway"


def test_str_has_method_endpoint_request_id_not_host() -> None:
    err = _err(404, {"status": "fail", "data": {"id": "unknown sandbox"}})
    text = str(err)
    assert "404" in text and "POST /v1/sandboxes" in text and "request_id=r1" in text
    assert "http" not in text
    assert "NotFoundError" in repr(err)


def test_secret_in_server_message_is_redacted() -> None:
    body = json.dumps({"status": "error", "message": "bad key sk_live_123"}).encode()
    err = make_api_error(
        401, body, method="GET", endpoint="/v1/whoami", request_id=None, secrets=("sk_live_123",)
    )
    assert "sk_live_123" not in str(err)
    assert "sk_live_123" not in repr(err)
    assert "[redacted]" in err.message


def test_rate_limit_carries_retry_after() -> None:
    err = make_api_error(
        429, b"", method="POST", endpoint="/v1/sandboxes", request_id=None, retry_after="7"
    )
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 7.0
    err = make_api_error(429, b"", method="GET", endpoint="/x", request_id=None, retry_after="soon")
    assert isinstance(err, RateLimitError)
    assert err.retry_after is None


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("tomorrow") is None
    now = 1_800_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_command_error_message_names_exit_code_only() -> None:
    class Result:
        exit_code = 3
        error = ""
        stdout = "TOKEN=hunter2"
        stderr = "hunter2"

    err = CommandError(Result())
    assert "3" in str(err)
    assert "hunter2" not in str(err)
    assert err.result.exit_code == 3

    class Failed(Result):
        exit_code = 0
        error = "could not start: no such file"

    assert "could not start" in str(CommandError(Failed()))
