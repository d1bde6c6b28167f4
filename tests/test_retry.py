"""Every row of the retry matrix (WIRE §7), proven by counting what the server received."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _servers import Attempts, error, ok, raw, serve
from aiohttp import web

from createos_sandbox_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    ServerError,
    Timeouts,
    ValidationError,
)

pytestmark = pytest.mark.anyio

IDEMPOTENT = ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"]
NON_IDEMPOTENT = ["POST", "PATCH"]
PATH = "/v1/thing"


def _app(factory: Any) -> web.Application:
    """One route for every method, answering with ``factory(request)``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        result = factory(request)
        if asyncio.iscoroutine(result):
            result = await result
        return result  # type: ignore[no-any-return]

    app = web.Application()
    app.router.add_route("*", PATH, handler)
    return app


def _body(method: str) -> dict[str, Any]:
    return {"json": {"a": 1}} if method in ("POST", "PATCH", "PUT") else {}


@pytest.mark.parametrize("status", [408, 500, 502, 504])
@pytest.mark.parametrize("method", IDEMPOTENT + NON_IDEMPOTENT)
async def test_idempotent_only_statuses(method: str, status: int) -> None:
    async with serve(_app(lambda r: error(status, "nope"))) as srv, srv.session() as session:
        with pytest.raises(APIError) as info:
            await session.request(method, PATH, **_body(method))
    assert info.value.status == status
    expected = 3 if method in IDEMPOTENT else 1  # POST/PATCH are never resent on these
    assert srv.count(method, PATH) == expected


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("method", IDEMPOTENT + NON_IDEMPOTENT)
async def test_always_retried_statuses(method: str, status: int) -> None:
    headers = {"Retry-After": "0"}
    app = _app(lambda r: error(status, "busy", headers=headers))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises((RateLimitError, ServerError)) as info:
            await session.request(method, PATH, **_body(method))
    assert info.value.status == status
    assert srv.count(method, PATH) == 3  # 1 attempt + 2 retries


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422, 501, 505, 418])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_other_statuses_never_retried(method: str, status: int) -> None:
    async with serve(_app(lambda r: error(status, "no"))) as srv, srv.session() as session:
        with pytest.raises(APIError):
            await session.request(method, PATH, **_body(method))
    assert srv.count(method, PATH) == 1


async def test_create_answered_500_sent_exactly_once() -> None:
    app = web.Application()

    async def create(_r: web.Request) -> web.Response:
        return error(500, "internal")

    app.router.add_post("/v1/sandboxes", create)
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ServerError):
            await session.sandboxes.create(shape="s-1vcpu-256mb")
    assert srv.count("POST", "/v1/sandboxes") == 1


async def test_post_429_with_retry_after_zero_is_resent() -> None:
    answers = [error(429, "slow down", headers={"Retry-After": "0"}), ok({"done": True})]
    async with serve(_app(lambda r: answers.pop(0))) as srv, srv.session() as session:
        assert await session.request("POST", PATH, json={}) == {"done": True}
    assert srv.count("POST", PATH) == 2


@pytest.mark.parametrize("method", IDEMPOTENT + NON_IDEMPOTENT)
async def test_network_error_retried_for_idempotent_only(method: str) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # no response at all
        await asyncio.Event().wait()  # cancelled by handler_cancellation
        raise AssertionError("unreachable")

    async with serve(_app(reset)) as srv, srv.session() as session:
        with pytest.raises(APIConnectionError):
            await session.request(method, PATH, **_body(method))
    assert srv.count(method, PATH) == (3 if method in IDEMPOTENT else 1)


@pytest.mark.parametrize(("method", "expected"), [("GET", 3), ("POST", 1)])
async def test_timeouts_retried_for_idempotent_only(method: str, expected: int) -> None:
    never = asyncio.Event()

    async def hang(_r: web.Request) -> web.Response:
        await never.wait()
        return ok(None)

    sent = Attempts()
    async with (
        serve(_app(hang)) as srv,
        srv.session(timeout=Timeouts(request=0.05), hooks=sent.hooks) as session,
    ):
        with pytest.raises(APITimeoutError) as info:
            await session.request(method, PATH, **_body(method))
    assert isinstance(info.value, TimeoutError)
    assert sent.count == expected  # counted by the client: the server may not have seen the last
    assert srv.count(method, PATH) <= expected


async def test_timeouts_not_retried_when_disabled() -> None:
    never = asyncio.Event()

    async def hang(_r: web.Request) -> web.Response:
        await never.wait()
        return ok(None)

    policy = RetryPolicy(base=0, jitter=False, retry_timeouts=False)
    sent = Attempts()
    async with (
        serve(_app(hang)) as srv,
        srv.session(timeout=0.05, retry=policy, hooks=sent.hooks) as session,
    ):
        with pytest.raises(APITimeoutError):
            await session.request("GET", PATH)
    assert sent.count == 1  # counted by the client: the server may not have seen it yet
    assert srv.count("GET", PATH) <= 1


async def test_retry_false_sends_once() -> None:
    app = _app(lambda r: error(503, "busy", headers={"Retry-After": "0"}))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ServerError):
            await session.request("GET", PATH, retry=False)
    assert srv.count("GET", PATH) == 1


async def test_max_retries_zero_sends_once() -> None:
    app = _app(lambda r: error(503, "busy"))
    async with serve(app) as srv, srv.session(retry=RetryPolicy(max_retries=0)) as session:
        with pytest.raises(ServerError):
            await session.request("GET", PATH)
    assert srv.count("GET", PATH) == 1


async def test_stream_body_never_retried() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"chunk-1"
        yield b"chunk-2"

    app = _app(lambda r: error(503, "busy", headers={"Retry-After": "0"}))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ServerError):
            await session.request("PUT", PATH, data=body())
    assert srv.count("PUT", PATH) == 1


async def test_bytes_body_replayed_identically() -> None:
    answers = [error(503, "busy"), error(502, "bad gateway"), ok({"ok": True})]
    async with serve(_app(lambda r: answers.pop(0))) as srv, srv.session() as session:
        assert await session.request("PUT", PATH, data=b"payload") == {"ok": True}
    bodies = [r.body for r in srv.requests]
    assert bodies == [b"payload"] * 3


async def test_retry_after_date_form_and_hook_delay() -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    answers = [error(429, "slow", headers={"Retry-After": past}), ok(1)]
    events: list[RetryEvent] = []
    policy = RetryPolicy(base=5.0, jitter=False)  # a computed delay would be 5 s: the header wins
    app = _app(lambda r: answers.pop(0))
    async with (
        serve(app) as srv,
        srv.session(retry=policy, hooks={"on_retry": events.append}) as session,
    ):
        assert await session.request("POST", PATH, json={}) == 1
    assert srv.count("POST", PATH) == 2
    assert [(e.attempt, e.delay, e.status) for e in events] == [(1, 0.0, 429)]


async def test_retry_after_seconds_used_as_delay() -> None:
    answers = [error(503, "busy", headers={"Retry-After": "0.001"}), ok(1)]
    events: list[RetryEvent] = []
    async with (
        serve(_app(lambda r: answers.pop(0))) as srv,
        srv.session(retry=RetryPolicy(base=5.0), hooks={"on_retry": events.append}) as session,
    ):
        assert await session.request("GET", PATH) == 1
    assert [e.delay for e in events] == [0.001]


async def test_final_error_after_exhaustion_is_mapped() -> None:
    app = _app(lambda r: error(429, "slow", headers={"Retry-After": "0"}))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(RateLimitError) as info:
            await session.request("GET", PATH)
    assert info.value.retry_after == 0.0
    assert info.value.endpoint == PATH


async def test_large_failed_bodies_are_dropped_before_retry() -> None:
    big = b"x" * (6 * 1024 * 1024)  # bigger than the 4 MiB read bound: the connection is closed
    answers = [raw(503, big), raw(502, big), ok({"fine": True}), ok({"fine": True})]
    app = _app(lambda r: answers.pop(0))
    async with serve(app) as srv, srv.session(max_connections=1) as session:
        assert await session.request("GET", PATH) == {"fine": True}
        # the single pooled connection is usable again: nothing half-read was kept
        assert await session.request("GET", PATH) == {"fine": True}
    assert srv.count("GET", PATH) == 4


def test_backoff_schedule() -> None:
    policy = RetryPolicy(base=0.5, cap=30.0, jitter=False)
    assert [policy.delay(a) for a in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    jittered = RetryPolicy(base=0.5, cap=30.0)
    for attempt in range(4):
        low = 0.5 * 2**attempt
        for _ in range(20):
            assert low <= jittered.delay(attempt) <= low + 0.5
    assert policy.delay(3, retry_after=100.0) == 100.0  # Retry-After is uncapped


def test_policy_matrix_without_network() -> None:
    policy = RetryPolicy()
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        assert all(policy.retries_status(method, s) for s in (408, 429, 500, 502, 503, 504))
        assert policy.retries_connection_error(method)
    for method in ("POST", "PATCH"):
        assert [s for s in (408, 429, 500, 502, 503, 504) if policy.retries_status(method, s)] == [
            429,
            503,
        ]
        assert not policy.retries_connection_error(method)
        assert not policy.retries_timeout(method)
    assert not policy.retries_status("GET", 402)


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"max_retries": -1}, ValueError),
        ({"base": -0.1}, ValueError),
        ({"cap": -1}, ValueError),
        ({"max_retries": 1.5}, TypeError),  # a wrong type, as everywhere (see _validate)
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, Any], kind: type[Exception]) -> None:
    with pytest.raises(kind, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)


async def test_validation_error_post_once() -> None:
    async with serve(_app(lambda r: error(409, "conflict"))) as srv, srv.session() as session:
        with pytest.raises(ValidationError):
            await session.request("POST", PATH, json={})
    assert srv.count() == 1
