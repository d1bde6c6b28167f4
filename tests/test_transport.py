"""The transport over real sockets: JSend, headers, redirects, streams, hooks, redaction."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
import pytest
from _servers import API_KEY, Attempts, always, error, fail, ok, raw, serve
from aiohttp import web

from createos_sandbox_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncSession,
    AuthError,
    Hooks,
    NotFoundError,
    ProtocolError,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    ServerError,
    ValidationError,
)

pytestmark = pytest.mark.anyio


def _one(path: str, handler: Any, method: str = "*") -> web.Application:
    app = web.Application()
    app.router.add_route(method, path, handler)
    return app


# -- JSend decoding (WIRE §4) ------------------------------------------------------------------


async def test_success_returns_data() -> None:
    app = _one("/v1/x", always(lambda: ok({"a": [1, 2], "b": None})))
    async with serve(app) as srv, srv.session() as session:
        assert await session.request("GET", "/v1/x") == {"a": [1, 2], "b": None}


async def test_success_status_decided_by_http_status_201() -> None:
    app = _one("/v1/x", always(lambda: ok("made", status=201)))
    async with serve(app) as srv, srv.session() as session:
        assert await session.request("POST", "/v1/x", json={}) == "made"


@pytest.mark.parametrize("status", [204, 205])
async def test_no_content_returns_none(status: int) -> None:
    app = _one("/v1/x", always(lambda: web.Response(status=status)))
    async with serve(app) as srv, srv.session() as session:
        assert await session.request("DELETE", "/v1/x") is None


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"", "application/json"),
        (b"<html>ok</html>", "text/html"),
        (b'{"data": 1}', "application/json"),
        (b'{"status": "fail", "data": {"x": "y"}}', "application/json"),
        (b'{"status": "error", "message": "m"}', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"status": "succ', "application/json"),
    ],
)
async def test_2xx_without_success_envelope_is_protocol_error(body: bytes, ctype: str) -> None:
    app = _one("/v1/x", always(lambda: raw(200, body, content_type=ctype)))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ProtocolError, match="GET /v1/x"):
            await session.request("GET", "/v1/x")
    assert srv.count() == 1  # a protocol error is not retried


@pytest.mark.parametrize(
    ("response", "cls", "message", "code"),
    [
        (lambda: fail(400, {"shape": "required"}), ValidationError, "shape: required", None),
        (lambda: fail(404, "no such sandbox"), NotFoundError, "no such sandbox", None),
        (lambda: fail(409, None), ValidationError, "conflict", None),
        (lambda: fail(409, {"code": "b", "message": "in use"}), ValidationError, "in use", "b"),
        (lambda: error(401, "bad key", code=0), AuthError, "bad key", 0),
        (lambda: raw(502, "<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"),
         ServerError, "bad gateway", None),
        (lambda: raw(500, b""), ServerError, "internal server error", None),
        (lambda: raw(403, b"denied by WAF"), APIError, "permission denied", None),
        (lambda: raw(418, b"teapot"), APIError, "HTTP 418", None),
    ],
)  # fmt: skip
async def test_error_envelopes(response: Any, cls: type[APIError], message: str, code: Any) -> None:
    app = _one("/v1/sandboxes/sb_1", always(response))
    async with serve(app) as srv, srv.session(retry=None) as session:
        with pytest.raises(cls) as info:
            await session.request("POST", "/v1/sandboxes/sb_1", json={})
    err = info.value
    assert err.message == message
    assert err.code == code
    assert err.method == "POST"
    assert err.endpoint == "/v1/sandboxes/sb_1"


async def test_huge_error_body_read_bounded_and_connection_dropped() -> None:
    sent = {"bytes": 0}

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=400)
        resp.content_type = "text/plain"
        await resp.prepare(request)
        chunk = b"e" * 65536
        for _ in range(20 * 16):  # 20 MiB, far past the 4 MiB bound
            await resp.write(chunk)
            sent["bytes"] += len(chunk)
        await resp.write_eof()
        return resp

    app = _one("/v1/x", huge)
    app.router.add_get("/v1/y", always(lambda: ok("after")))
    async with serve(app) as srv, srv.session(max_connections=1) as session:
        with pytest.raises(ValidationError) as info:
            await session.request("GET", "/v1/x")
        assert info.value.message == "bad request"
        # the single connection slot was freed: the next request goes through
        assert await session.request("GET", "/v1/y") == "after"
    assert sent["bytes"] < 20 * 1024 * 1024  # the server could not push it all: we hung up


async def test_request_id_header_and_fallback() -> None:
    app = web.Application()
    app.router.add_get("/a", always(lambda: fail(404, "x", headers={"X-Request-Id": "req-a"})))
    app.router.add_get("/b", always(lambda: fail(404, "x", headers={"x-fc-request-id": "req-b"})))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(NotFoundError) as a:
            await session.request("GET", "/a")
        with pytest.raises(NotFoundError) as b:
            await session.request("GET", "/b")
    assert a.value.request_id == "req-a"
    assert b.value.request_id == "req-b"
    assert "req-a" in str(a.value)


# -- headers, query, body ---------------------------------------------------------------------


async def test_headers_sent_and_credential_headers_stripped() -> None:
    app = _one("/v1/x", always(lambda: ok(None)))
    session_headers = {
        "Authorization": "Bearer other",
        "X-Api-Key": "not-this-one",
        "Cookie": "a=b",
        "X-Team": "blue",
    }
    call_headers = {
        "X-Auth-Token": "t",
        "x-access-token": "t",
        "Proxy-Authorization": "p",
        "X-CSRF-Token": "c",
        "X-Call": "1",
    }
    async with serve(app) as srv, srv.session(headers=session_headers) as session:
        await session.request("GET", "/v1/x", headers=call_headers)
        await session.request("GET", "/v1/x", auth=False)
    with_key, without_key = ({k.lower(): v for k, v in r.headers.items()} for r in srv.requests)
    assert with_key["x-api-key"] == API_KEY
    assert with_key["x-team"] == "blue" and with_key["x-call"] == "1"
    assert with_key["accept"] == "application/json"
    assert with_key["user-agent"].startswith("createos-sandbox-async/")
    for name in ("authorization", "cookie", "x-auth-token", "x-access-token",
                 "proxy-authorization", "x-csrf-token"):  # fmt: skip
        assert name not in with_key
    assert "x-api-key" not in without_key


async def test_json_body_and_content_type() -> None:
    app = _one("/v1/x", always(lambda: ok(None)))
    async with serve(app) as srv, srv.session() as session:
        await session.request("PATCH", "/v1/x", json={"ingress_enabled": False, "n": None})
        await session.request("PUT", "/v1/x", json=None)
    first, second = srv.requests
    assert json.loads(first.body) == {"ingress_enabled": False, "n": None}
    assert first.headers["Content-Type"] == "application/json"
    assert second.body == b"null"


async def test_query_booleans_and_none() -> None:
    app = _one("/v1/x", always(lambda: ok(None)))
    async with serve(app) as srv, srv.session() as session:
        params = {"stream": True, "follow": False, "skip": None, "limit": 5, "q": "a b&c"}
        await session.request("GET", "/v1/x", params=params)
    assert srv.requests[0].query == {
        "stream": "true",
        "follow": "false",
        "limit": "5",
        "q": "a b&c",
    }


async def test_path_prefix_kept() -> None:
    app = _one("/prefix/v1/whoami", always(lambda: ok({"user_id": "u"})))
    async with serve(app) as srv, srv.session(base_url=srv.base_url + "/prefix/") as session:
        assert (await session.whoami()).user_id == "u"
    assert srv.count("GET", "/prefix/v1/whoami") == 1


async def test_quoted_ids_stay_one_segment() -> None:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return ok({"id": request.match_info["id"], "status": "running"})

    app.router.add_get("/v1/sandboxes/{id}", handler)
    async with serve(app) as srv, srv.session() as session:
        sb = await session.sandboxes.get("sb/../x y")
    assert sb.id == "sb/../x y"
    assert srv.requests[0].path == "/v1/sandboxes/sb/../x y"


async def test_redirect_not_followed() -> None:
    app = web.Application()
    app.router.add_get("/v1/x", always(lambda: raw(302, b"", headers={"Location": "/v1/y"})))
    app.router.add_get("/v1/y", always(lambda: ok("followed")))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(APIError) as info:
            await session.request("GET", "/v1/x")
    assert info.value.status == 302
    assert type(info.value) is APIError
    assert srv.count("GET", "/v1/y") == 0


async def test_per_call_timeout_overrides_session() -> None:
    never = asyncio.Event()

    async def hang(_r: web.Request) -> web.Response:
        await never.wait()
        return ok(None)

    app = _one("/v1/x", hang)
    sent = Attempts()
    async with serve(app) as srv, srv.session(timeout=600, hooks=sent.hooks) as session:
        with anyio.fail_after(20):  # the session's 600 s would hang here: the 0.05 s applied
            with pytest.raises(APITimeoutError):
                await session.request("POST", "/v1/x", json={}, timeout=0.05)
    assert sent.count == 1 and srv.count() <= 1


async def test_connection_refused_is_connection_error() -> None:
    app = _one("/v1/x", always(lambda: ok(None)))
    async with serve(app) as srv:
        base = srv.base_url
    async with AsyncSession(API_KEY, base_url=base) as session:
        with pytest.raises(APIConnectionError) as info:
            await session.request("POST", "/v1/x", json={})
    assert "POST /v1/x" in str(info.value)


# -- streams ----------------------------------------------------------------------------------


def _stream_app(release: anyio.Event, disconnected: anyio.Event) -> web.Application:
    async def lines(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/x-ndjson"
        await resp.prepare(request)
        try:
            await resp.write(b'{"stdout":"a"}\n')
            await release.wait()
            await resp.write(b'{"exit_code":0}\n')
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            disconnected.set()
            raise
        return resp

    app = web.Application()
    app.router.add_post("/v1/stream", lines)
    app.router.add_post("/v1/missing", always(lambda: fail(404, {"id": "not running"})))
    return app


async def test_stream_read_to_eof_releases_connection() -> None:
    release, disconnected = anyio.Event(), anyio.Event()
    release.set()
    async with serve(_stream_app(release, disconnected)) as srv, srv.session() as session:
        async with session.stream("POST", "/v1/stream", json={"cmd": "x"}) as resp:
            assert resp.status == 200
            body = await resp.read()
        assert body == b'{"stdout":"a"}\n{"exit_code":0}\n'
        connector = session._transport.connector
        assert connector is not None
        assert sum(len(v) for v in connector._conns.values()) == 1  # back in the pool


async def test_stream_early_exit_closes_connection() -> None:
    release, disconnected = anyio.Event(), anyio.Event()
    async with serve(_stream_app(release, disconnected)) as srv, srv.session() as session:
        async with session.stream("POST", "/v1/stream", json={}) as resp:
            first = await resp.content.readline()
        assert first == b'{"stdout":"a"}\n'
        with anyio.fail_after(5):
            await disconnected.wait()  # the server saw the disconnect
        connector = session._transport.connector
        assert connector is not None
        assert sum(len(v) for v in connector._conns.values()) == 0  # nothing half-read pooled


async def test_stream_has_no_total_deadline() -> None:
    release, disconnected = anyio.Event(), anyio.Event()
    async with serve(_stream_app(release, disconnected)) as srv, srv.session() as session:
        async with session.stream("POST", "/v1/stream", json={}, timeout=0.5) as resp:
            await resp.content.readline()
            await anyio.sleep(1.0)  # longer than the headers deadline: the body may take its time
            release.set()
            rest = await resp.content.read()
        assert rest == b'{"exit_code":0}\n'


async def test_stream_error_status_raises_mapped_error() -> None:
    release, disconnected = anyio.Event(), anyio.Event()
    async with serve(_stream_app(release, disconnected)) as srv, srv.session() as session:
        with pytest.raises(NotFoundError, match="not running"):
            async with session.stream("POST", "/v1/missing", json={}):
                raise AssertionError("not reached")
    assert srv.count("POST", "/v1/missing") == 1


async def test_stream_never_retried() -> None:
    app = _one("/v1/s", always(lambda: error(503, "busy", headers={"Retry-After": "0"})))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ServerError):
            async with session.stream("GET", "/v1/s"):
                pass
    assert srv.count() == 1


async def test_stream_headers_timeout() -> None:
    never = asyncio.Event()

    async def hang(_r: web.Request) -> web.Response:
        await never.wait()
        return ok(None)

    async with serve(_one("/v1/s", hang)) as srv, srv.session() as session:
        with pytest.raises(APITimeoutError):
            async with session.stream("GET", "/v1/s", timeout=0.05):
                pass


# -- session lifecycle ------------------------------------------------------------------------


def test_session_constructed_outside_a_loop() -> None:
    session = AsyncSession("k", base_url="http://127.0.0.1:1")
    assert session._transport.connector is None  # nothing opened yet
    assert not session.closed


async def test_closed_session_raises_clear_error_and_double_close_is_fine() -> None:
    app = _one("/v1/x", always(lambda: ok(1)))
    async with serve(app) as srv:
        session = srv.session()
        assert await session.request("GET", "/v1/x") == 1
        await session.aclose()
        await session.aclose()
        assert session.closed
        with pytest.raises(RuntimeError, match="closed"):
            await session.request("GET", "/v1/x")
        with pytest.raises(RuntimeError, match="closed"):
            async with session.stream("GET", "/v1/x"):
                pass
        with pytest.raises(RuntimeError, match="closed"):
            async with session:
                pass
    assert srv.count() == 1


async def test_close_without_use() -> None:
    session = AsyncSession("k", base_url="http://127.0.0.1:1")
    async with session:
        pass
    assert session.closed


async def test_shared_by_many_tasks_one_pool() -> None:
    app = _one("/v1/x", always(lambda: ok("hi")))
    results: list[Any] = []
    async with serve(app) as srv, srv.session(max_connections=8) as session:

        async def one() -> None:
            results.append(await session.request("GET", "/v1/x"))

        async with anyio.create_task_group() as tg:
            for _ in range(300):
                tg.start_soon(one)
        connector = session._transport.connector
        assert connector is not None and connector.limit == 8
    assert results == ["hi"] * 300
    assert srv.count() == 300


# -- hooks and logging ------------------------------------------------------------------------


async def test_hooks_receive_redacted_data() -> None:
    answers = [error(503, "busy", headers={"Retry-After": "0", "X-Request-Id": "r1"}), ok(1)]
    app = _one("/v1/x", _popper(answers))
    seen: list[Any] = []

    async def on_response(event: ResponseEvent) -> None:  # async hooks are awaited
        seen.append(event)

    hooks = Hooks(on_request=seen.append, on_response=on_response, on_retry=seen.append)
    async with serve(app) as srv, srv.session(hooks=hooks) as session:
        assert await session.request("GET", "/v1/x", headers={"Authorization": "Bearer zzz"}) == 1
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["RequestEvent", "ResponseEvent", "RetryEvent", "RequestEvent", "ResponseEvent"]
    first = seen[0]
    assert isinstance(first, RequestEvent)
    assert first.headers["X-Api-Key"] == "[redacted]"
    assert "Authorization" not in first.headers
    assert isinstance(seen[1], ResponseEvent) and seen[1].status == 503
    assert seen[1].request_id == "r1"
    assert isinstance(seen[2], RetryEvent) and seen[2].attempt == 1 and seen[2].status == 503
    assert [e.attempt for e in seen if isinstance(e, RequestEvent)] == [0, 1]
    assert API_KEY not in repr(seen)


def _popper(answers: list[web.Response]) -> Any:
    async def handler(_request: web.Request) -> web.Response:
        return answers.pop(0)

    return handler


async def test_raising_hooks_never_break_requests(caplog: pytest.LogCaptureFixture) -> None:
    def boom(_event: object) -> None:
        raise RuntimeError("hook bug")

    async def aboom(_event: object) -> None:
        raise RuntimeError("async hook bug")

    answers = [error(429, "slow", headers={"Retry-After": "0"}), ok("fine")]
    app = _one("/v1/x", _popper(answers))
    hooks = {"on_request": boom, "on_response": aboom, "on_retry": boom}
    caplog.set_level(logging.WARNING, logger="createos_sandbox_async")
    async with serve(app) as srv, srv.session(hooks=hooks) as session:
        assert await session.request("POST", "/v1/x", json={}) == "fine"
    assert srv.count() == 2
    assert sum("hook raised" in r.getMessage() for r in caplog.records) == 5


def test_hooks_validation() -> None:
    with pytest.raises(ValueError, match="on_requset"):
        AsyncSession("k", base_url="http://127.0.0.1:1", hooks={"on_requset": print})
    with pytest.raises(TypeError, match="on_request"):
        AsyncSession("k", base_url="http://127.0.0.1:1", hooks={"on_request": 3})  # type: ignore[dict-item]


async def test_secret_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    """Logs, hook payloads, reprs and exception strings never contain the key."""
    app = web.Application()
    app.router.add_get("/v1/whoami", always(lambda: error(401, f"key {API_KEY} revoked", code=7)))
    app.router.add_get("/v1/x", always(lambda: error(503, "busy", headers={"Retry-After": "0"})))
    app.router.add_post("/v1/sandboxes", always(lambda: ok({"id": "sb_1"})))
    app.router.add_delete("/v1/sandboxes/sb_1", always(lambda: ok({"id": "sb_1"})))
    payloads: list[object] = []
    hooks = {"on_request": payloads.append, "on_response": payloads.append,
             "on_retry": payloads.append}  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    texts: list[str] = []
    async with serve(app) as srv, srv.session(hooks=hooks) as session:
        texts += [repr(session), repr(session._transport), str(session.__dict__)]
        with pytest.raises(AuthError) as auth:
            await session.whoami()
        texts += [str(auth.value), repr(auth.value), str(auth.value.args)]
        with pytest.raises(ServerError) as busy:
            await session.request("GET", "/v1/x")
        texts += [str(busy.value), repr(busy.value)]
        sb = await session.sandboxes.create(shape="s", envs={"SECRET_TOKEN": "env-secret-value"})
        texts += [repr(sb), repr(sb.data)]
        with pytest.raises(ValueError) as bad_env:
            await session.sandboxes.create(shape="s", envs={"BAD-KEY": "env-secret-value"})
        texts.append(str(bad_env.value))
        await sb.destroy()
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(p) for p in payloads]
    assert any("request GET /v1/whoami" in t for t in texts)  # logging really happened
    assert len(payloads) >= 10
    blob = "\n".join(texts)
    assert API_KEY not in blob
    assert "env-secret-value" not in blob
    assert "[redacted]" in blob


async def test_cancelled_buffered_request_drops_the_connection() -> None:
    started, disconnected = anyio.Event(), anyio.Event()

    async def dribble(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        try:
            await resp.write(b'{"status":"success","data":')
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            disconnected.set()
            raise
        return resp

    app = _one("/v1/x", dribble)
    async with serve(app) as srv, srv.session() as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.request, "GET", "/v1/x")
            await started.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(5):
            await disconnected.wait()
        connector = session._transport.connector
        assert connector is not None
        assert sum(len(v) for v in connector._conns.values()) == 0
    assert srv.count() == 1


# -- big request bodies ------------------------------------------------------------------------


async def test_big_bytes_body_is_sent_whole_and_replayed_after_429() -> None:
    """Over 1 MiB aiohttp would warn (an error here); the transport streams it, and resends it
    in full after a 429 because bytes are replayable."""
    from _servers import sequence

    body = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_put(
        "/v1/echo",
        sequence([lambda: error(429, "slow down", headers={"Retry-After": "0"}), lambda: ok({})]),
    )
    async with serve(app) as srv, srv.session() as session:
        await session.request("PUT", "/v1/echo", data=body)
    assert [r.body == body for r in srv.requests] == [True, True]
    # Sized, not chunked: the server learns the length up front on every attempt.
    assert [r.headers.get("Content-Length") for r in srv.requests] == [str(len(body))] * 2
    assert not any("Transfer-Encoding" in r.headers for r in srv.requests)


async def test_big_json_body_is_sized_and_replayed_after_429() -> None:
    """A JSON body over 1 MiB (a big exec stdin) takes the same road as big bytes."""
    from _servers import sequence

    payload = {"cmd": "cat", "stdin": "x" * (2 * 1024 * 1024)}
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post(
        "/v1/echo",
        sequence([lambda: error(429, "slow down", headers={"Retry-After": "0"}), lambda: ok({})]),
    )
    async with serve(app) as srv, srv.session() as session:
        await session.request("POST", "/v1/echo", json=payload)
    assert [json.loads(r.body) == payload for r in srv.requests] == [True, True]
    sizes = {r.headers.get("Content-Length") for r in srv.requests}
    assert sizes == {str(len(srv.requests[0].body))}


# -- memory per call in flight (issue 14: 10,000 concurrent execs through one session) ----------


async def test_a_call_in_flight_holds_about_what_raw_aiohttp_holds() -> None:
    """Allocations that stay live while a buffered call waits for its answer, ours against a
    hand-written aiohttp client's, both through the same server (which counts the same for both).
    Header names keyed by plain ``str`` cost ~12 more live blocks per call (aiohttp folds their
    case per request); blocks, not bytes, so the figure does not hang on allocator sizes."""
    import gc
    import tracemalloc

    import aiohttp

    n = 100
    state = {"arrived": 0}
    all_in = asyncio.Event()
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.StreamResponse:
        await request.read()
        state["arrived"] += 1
        if state["arrived"] == n:
            all_in.set()
        await release.wait()
        return ok({"x": 1})

    app = web.Application()
    app.router.add_post("/v1/hold", hold)
    app.router.add_post("/v1/now", always(lambda: ok({"x": 1})))

    async def live_blocks_per_call(call: Any) -> float:
        for _ in range(2):
            await call("/v1/now")  # the first connection, lazy state, imports
        state["arrived"] = 0
        all_in.clear()
        release.clear()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            tasks = [asyncio.ensure_future(call("/v1/hold")) for _ in range(n)]
            with anyio.fail_after(60):
                await all_in.wait()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
            release.set()
        await asyncio.gather(*tasks)
        return sum(s.count_diff for s in after.compare_to(before, "filename")) / n

    async with serve(app) as srv, srv.session(max_connections=n + 1) as session:

        async def ours(path: str) -> None:
            assert await session.request("POST", path, json={"a": 1}) == {"x": 1}

        ours_blocks = await live_blocks_per_call(ours)
        headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=n + 1)
        ) as raw_session:

            async def floor(path: str) -> None:
                url = srv.base_url + path
                async with raw_session.post(url, data=b'{"a": 1}', headers=headers) as r:
                    assert json.loads(await r.read())["data"] == {"x": 1}

            raw_blocks = await live_blocks_per_call(floor)
    assert ours_blocks <= raw_blocks + 6, (ours_blocks, raw_blocks)


async def test_request_adds_no_coroutine_frame_of_its_own() -> None:
    """``Transport.request`` hands back ``_request``'s coroutine (or the hook wrapper's) instead
    of awaiting it in a frame of its own: one frame (~0.4 KiB) less per call in flight."""
    import inspect

    from createos_sandbox_async._transport import Transport

    app = _one("/v1/x", always(lambda: ok(1)))
    async with serve(app) as srv, srv.session() as session:
        assert not inspect.iscoroutinefunction(Transport.request)
        call = session._transport.request("GET", "/v1/x")
        assert inspect.getcoroutinestate(call) == inspect.CORO_CREATED
        assert call.cr_code is Transport._request.__code__
        assert await call == 1
