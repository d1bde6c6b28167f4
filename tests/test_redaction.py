"""Secrets in and around errors: a missing key fails locally, echoed secrets leave no field.

Guards of issue 16: header redaction by value (the key inside another header) and by name in
any letter case (``x-api-key`` per call, ``AUTHORIZATION``), each with a test that fails when
the guard in ``_credentials.redact_headers`` / ``is_secret_header`` / ``merge_headers`` goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
from typing import Any

import pytest
from _servers import API_KEY, always, error, ok, serve
from aiohttp import web

from createos_sandbox_async import (
    APIConnectionError,
    AuthError,
    CommandError,
    CreateosError,
    Hooks,
    ProtocolError,
    RateLimitError,
    RequestEvent,
    ResponseEvent,
    ServerError,
    ValidationError,
)
from createos_sandbox_async.errors import (
    APITimeoutError,
    NotFoundError,
    make_api_error,
    redact_text,
)
from createos_sandbox_async.exec import ExecEvent, ExecResult
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

KEY_ENVS = ("CREATEOS_SANDBOX_API_KEY", "CREATEOS_API_KEY")


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)


def _catalog_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", always(lambda: ok({"up": True})))
    app.router.add_get("/readyz", always(lambda: ok({})))
    app.router.add_get("/v1/shapes", always(lambda: ok([{"id": "s-1"}])))
    app.router.add_get("/v1/rootfs", always(lambda: ok({"rootfs": ["a"], "default": "a"})))
    app.router.add_route("*", "/v1/{tail:.*}", always(lambda: ok({"user_id": "u"})))
    return app


# -- 5. a missing key fails locally ---------------------------------------------------------------


@pytest.mark.usefixtures("no_key_env")
async def test_no_key_fails_before_sending_and_names_the_variables() -> None:
    async with serve(_catalog_app()) as srv, srv.session(api_key=None) as session:
        with pytest.raises(AuthError) as info:
            await session.whoami()
        err = info.value
        assert err.status == 401 and err.request_id is None and err.body is None
        assert "CREATEOS_SANDBOX_API_KEY" in str(err) and "CREATEOS_API_KEY" in str(err)
        assert (err.method, err.endpoint) == ("GET", "/v1/whoami")
        with pytest.raises(AuthError):
            await session.sandboxes.create(shape="s-1")
        with pytest.raises(AuthError):
            async with session.stream("POST", "/v1/sandboxes/sb_1/exec", json={"cmd": "x"}):
                pass  # pragma: no cover - never reached
        with pytest.raises(AuthError):
            await session.request("GET", "/v1/anything")
        assert srv.count() == 0  # nothing at all reached the server
        # the open routes of WIRE §2 need no key and still work
        assert (await session.health()).up is True
        assert (await session.ready()).ready is True
        assert [s.id for s in await session.shapes()] == ["s-1"]
        assert (await session.rootfs()).default == "a"
        assert await session.request("GET", "/v1/x", auth=False) == {"user_id": "u"}
    assert srv.count() == 5
    assert not any(k.lower() == "x-api-key" for r in srv.requests for k in r.headers)


@pytest.mark.usefixtures("no_key_env")
async def test_a_blank_key_counts_as_none_and_a_per_call_key_is_enough() -> None:
    async with serve(_catalog_app()) as srv, srv.session(api_key="   ") as session:
        with pytest.raises(AuthError):
            await session.whoami()
        assert srv.count() == 0
        token = "skp_sb_percall_token_123"
        got = await session.request("GET", "/v1/whoami", headers={"X-Api-Key": token})
        assert got == {"user_id": "u"}
    assert srv.requests[0].headers["X-Api-Key"] == token


async def test_a_key_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREATEOS_SANDBOX_API_KEY", raising=False)
    monkeypatch.setenv("CREATEOS_API_KEY", "from-the-environment")
    async with serve(_catalog_app()) as srv, srv.session(api_key=None) as session:
        await session.whoami()
    assert srv.requests[0].headers["X-Api-Key"] == "from-the-environment"


# -- issue 16 guards: redaction of request headers in hooks ---------------------------------------


async def test_key_inside_another_header_is_redacted_by_value() -> None:
    """Guard: ``_credentials.redact_headers`` redacts any header whose value holds a secret."""
    events: list[Any] = []
    hooks = Hooks(on_request=events.append)
    session_headers = {"X-Forwarded-Key": API_KEY}
    async with (
        serve(_catalog_app()) as srv,
        srv.session(headers=session_headers, hooks=hooks) as session,
    ):
        await session.request("GET", "/v1/x", headers={"X-Debug": f"Bearer {API_KEY} (copy)"})
    (event,) = events
    assert isinstance(event, RequestEvent)
    assert event.headers["X-Forwarded-Key"] == "[redacted]"
    assert event.headers["X-Debug"] == "[redacted]"
    assert event.headers["User-Agent"].startswith("createos-sandbox-async/")  # others kept
    assert API_KEY not in repr(events)
    # redaction is for observers only: the server got the headers as given
    assert srv.requests[0].headers["X-Debug"] == f"Bearer {API_KEY} (copy)"


async def test_credential_header_names_are_matched_in_any_case() -> None:
    """Guards: ``is_secret_header`` (lower-cased name) and ``merge_headers`` (drops credentials)."""
    events: list[Any] = []
    token = "skp_sb_lower_case_token_77"  # not the session key: only its name marks it secret
    hooks = Hooks(on_request=events.append)
    session_headers = {"AUTHORIZATION": "Bearer session-level-zzz"}
    async with (
        serve(_catalog_app()) as srv,
        srv.session(headers=session_headers, hooks=hooks) as session,
    ):
        await session.request("GET", "/v1/a", headers={"x-api-key": token})
        await session.request("GET", "/v1/b", headers={"X-API-KEY": token + "2"})
        await session.request("GET", "/v1/c", headers={"AUTHORIZATION": "Bearer per-call-zzz"})
        await session.request("GET", "/v1/d", headers={"X-AUTH-TOKEN": "per-call-yyy"})
    assert [e.headers.get("x-api-key") for e in events[:1]] == ["[redacted]"]
    assert [e.headers.get("X-API-KEY") for e in events[1:2]] == ["[redacted]"]
    assert token not in repr(events) and "zzz" not in repr(events)
    sent = [{k.lower(): v for k, v in r.headers.items()} for r in srv.requests]
    assert [h["x-api-key"] for h in sent[:2]] == [token, token + "2"]  # per call wins
    for headers in sent:
        assert "authorization" not in headers and "x-auth-token" not in headers
    assert [headers["x-api-key"] for headers in sent[2:]] == [API_KEY, API_KEY]


# -- 6. echoed secrets leave no field -------------------------------------------------------------


def _echo_everything(status: int) -> web.Application:
    """Answers ``status`` with every request header and body value echoed in every field."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        values = [*request.headers.values(), body.decode("utf-8", "replace")]
        if body:
            doc = json.loads(body)
            for key in ("env", "envs"):
                values += list((doc.get(key) or {}).values())
        joined = " | ".join(values)
        envelope = {
            "status": "fail",
            "message": joined,
            "code": joined,
            "data": {"code": joined, "message": joined, "echo": values, joined: values},
        }
        headers = {"X-Request-Id": joined.replace("\n", " ")[:4000], "Retry-After": "0"}
        return web.json_response(envelope, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def _every_text(obj: Any, depth: int = 0, seen: set[int] | None = None) -> list[str]:
    """str/repr of an object and, for errors, of every attribute, arg, note, cause and context."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return []
    seen.add(id(obj))
    texts = [repr(obj), str(obj)]
    if isinstance(obj, BaseException):
        if isinstance(obj, CreateosError):  # ours pickle (aiohttp's headers proxies do not)
            texts.append(repr(pickle.dumps(obj)))
        children: list[Any] = [*obj.args, obj.__cause__, obj.__context__]
        children += getattr(obj, "__notes__", [])
        children += list(vars(obj).values())
        for child in children:
            if child is not None:
                texts += _every_text(child, depth + 1, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            texts += _every_text(k, depth + 1, seen) + _every_text(v, depth + 1, seen)
    elif isinstance(obj, list | tuple):
        for v in obj:
            texts += _every_text(v, depth + 1, seen)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        for name in getattr(obj, "__slots__", ()) or vars(obj):
            texts += _every_text(getattr(obj, name, None), depth + 1, seen)
    return texts


@pytest.mark.parametrize("status", [400, 401, 404, 422, 429, 503])
async def test_echoed_key_and_env_values_leave_no_error_field(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    env_value = "env-secret-5d1e0c"
    events: list[Any] = []
    hooks = Hooks(on_request=events.append, on_response=events.append, on_retry=events.append)
    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    async with serve(_echo_everything(status)) as srv, srv.session(hooks=hooks) as session:
        with pytest.raises(Exception) as info:
            await session.request("POST", "/v1/sandboxes/sb_1/exec", json={
                "cmd": "env", "env": {"TOKEN": env_value, "SHORT": "1"}})  # fmt: skip
    err = info.value
    blob = "\n".join(
        _every_text(err) + [repr(e) for e in events] + [r.getMessage() for r in caplog.records]
    )
    assert API_KEY not in blob and env_value not in blob
    assert "[redacted]" in str(err) and "[redacted]" in repr(err.body)
    assert err.request_id is not None and API_KEY not in err.request_id
    responses = [e for e in events if isinstance(e, ResponseEvent)]
    assert responses and all("[redacted]" in (e.request_id or "") for e in responses)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), repr(copy), vars(copy)) == (
        type(err), str(err), repr(err), vars(err)
    )  # fmt: skip
    assert copy.args == err.args
    assert srv.count() >= 1


def test_short_values_are_redacted_only_as_whole_values() -> None:
    secrets = ("1", "abc", "long-secret-value")
    assert redact_text("exit code 1 at line 12", secrets) == "exit code 1 at line 12"
    assert redact_text("1", secrets) == "[redacted]"
    assert redact_text("abc", secrets) == "[redacted]"
    assert redact_text("x=long-secret-value;", secrets) == "x=[redacted];"
    body = json.dumps(
        {"status": "fail", "data": {"code": "abc", "message": "bad value long-secret-value"}}
    ).encode()
    err = make_api_error(
        422, body, method="POST", endpoint="/v1/x", request_id="abc", secrets=secrets
    )
    assert err.message == "bad value [redacted]"
    assert err.code == "[redacted]" and err.request_id == "[redacted]"
    assert err.body == {
        "status": "fail",
        "data": {"code": "[redacted]", "message": "bad value [redacted]"},
    }
    assert err.args == ("bad value [redacted]",)


def test_every_error_class_pickles() -> None:
    result = ExecResult("out", "err", 3, 1.5, None)
    errors: list[BaseException] = [
        make_api_error(404, b"{}", method="GET", endpoint="/v1/x", request_id="r1"),
        make_api_error(429, b"", method="GET", endpoint="/v1/x", request_id=None, retry_after="2"),
        make_api_error(503, b"<html>", method="GET", endpoint="/v1/x", request_id=None),
        ValidationError("bad", status=409, method="POST", endpoint="/v1/y", code="conflict"),
        APITimeoutError("GET /v1/x: timed out"),
        APIConnectionError("GET /v1/x: connection failed (OSError)"),
        ProtocolError("odd"),
        CommandError(result),
    ]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert (str(copy), repr(copy), copy.args, vars(copy)) == (
            str(err), repr(err), err.args, vars(err)
        )  # fmt: skip
    assert isinstance(errors[0], NotFoundError)
    assert (
        isinstance(errors[1], RateLimitError)
        and pickle.loads(pickle.dumps(errors[1])).retry_after == 2.0
    )
    assert isinstance(errors[2], ServerError)
    assert pickle.loads(pickle.dumps(errors[-1])).result == result


async def test_aiohttp_request_info_in_a_chained_error_loses_the_key() -> None:
    """A malformed response makes aiohttp raise with the request headers (the key) attached."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: not-a-number\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    from createos_sandbox_async import AsyncSession, RetryPolicy

    try:
        async with AsyncSession(
            API_KEY, base_url=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=0)
        ) as session:
            with pytest.raises(APIConnectionError) as info:
                await session.whoami()
    finally:
        server.close()
        await server.wait_closed()
    cause = info.value.__cause__
    assert cause is not None and hasattr(cause, "request_info")  # aiohttp's ClientResponseError
    assert cause.request_info.headers["X-Api-Key"] == "[redacted]"
    assert API_KEY not in "\n".join(_every_text(info.value))


async def test_a_minted_access_token_is_redacted_like_the_key() -> None:
    token = "skp_sb_minted_9c2e41d0aa"
    app = web.Application()
    app.router.add_post(
        "/v1/sandboxes/sb_1/access-token",
        always(lambda: ok({"token": token, "enabled": True})),
    )
    app.router.add_get(
        "/v1/sandboxes/sb_1",
        always(lambda: error(500, f"token {token} broke", headers={"X-Request-Id": token})),
    )
    async with serve(app) as srv, srv.session() as session:
        sb = Sandbox(session, SandboxView(id="sb_1"))
        created = await sb.access_token.create()
        assert created.token.get_secret_value() == token
        with pytest.raises(ServerError) as info:
            await session.request("GET", "/v1/sandboxes/sb_1", retry=False)
    assert token not in "\n".join(_every_text(info.value))
    assert "[redacted]" in str(info.value)


def test_structure_errors_never_quote_a_value() -> None:
    from createos_sandbox_async._convert import structure
    from createos_sandbox_async.models import SandboxView

    with pytest.raises(ProtocolError) as bad:
        structure({"id": "sb_1", "vcpu": "value-that-is-a-secret"}, SandboxView)
    assert "value-that-is-a-secret" not in "\n".join(_every_text(bad.value))
    with pytest.raises(ProtocolError, match="missing field 'id'"):
        structure({"vcpu": 1}, SandboxView)


def test_output_reprs_show_sizes_not_text() -> None:
    secret = "printed-by-env-123"
    result = ExecResult(f"TOKEN={secret}\n", secret, 0, None, None)
    assert secret not in repr(result) and "<25 chars>" in repr(result)
    assert secret not in repr(ExecEvent("stdout", secret))
    from createos_sandbox_async.models import ProcessEvent

    assert secret not in repr(ProcessEvent(kind="data", data=secret.encode()))
