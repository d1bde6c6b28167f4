"""A call never outlives its deadline, and a server cannot make the SDK sleep for as long as it
likes: ``timeout=`` bounds every attempt, backoff and Retry-After wait of a call, and a
Retry-After above ``RetryPolicy.max_retry_after`` is not waited for at all.

Every test counts what the server received after the call and bounds time generously: the
server asks for far longer waits than the bounds allow, so only the fix can pass.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from _emulator import require_bwrap
from _servers import error, ok, run_app, serve
from aiohttp import web

from createos_sandbox_async import (
    APITimeoutError,
    AsyncSession,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    SandboxPool,
    ServerError,
    Timeouts,
)
from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

SID = "sb_01DEADLINEDEADLINEDEADLINE"


def _busy_app(status: int, retry_after: str | None) -> web.Application:
    """A sandbox that exists, and every other route answering ``status`` with Retry-After."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}

    async def get(_r: web.Request) -> web.Response:
        return ok({"id": SID, "status": "running"})

    async def busy(_r: web.Request) -> web.Response:
        return error(status, "slow down", headers=headers)

    app = web.Application()
    app.router.add_get(f"/v1/sandboxes/{SID}", get)
    app.router.add_route("*", "/{tail:.*}", busy)
    return app


# Each call gets timeout=1 while the server keeps asking for 3 s (under the Retry-After cap).
CALLS: dict[str, Callable[[AsyncSession, Any], Awaitable[object]]] = {
    "exec": lambda s, sb: sb.exec("true", timeout=1),
    "sh-check": lambda s, sb: sb.sh("true", timeout=1, check=True),
    "pause": lambda s, sb: sb.pause(timeout=1),
    "get_egress": lambda s, sb: sb.get_egress(timeout=1),
    "upload": lambda s, sb: sb.files.upload("/tmp/f", b"data", timeout=1),
    "create": lambda s, sb: s.sandboxes.create(shape="s-1vcpu-256mb", timeout=1),
    "request": lambda s, sb: s.request("GET", "/v1/whoami", timeout=1),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(("status", "kind"), [(429, RateLimitError), (503, ServerError)])
async def test_a_retry_that_would_cross_the_deadline_is_not_made(
    call: Callable[[AsyncSession, Any], Awaitable[object]], status: int, kind: type[Exception]
) -> None:
    async with serve(_busy_app(status, "3")) as srv, srv.session(retry=RetryPolicy()) as session:
        sb = await session.sandboxes.get(SID)
        before = srv.count()
        started = time.monotonic()
        with anyio.fail_after(20), pytest.raises(kind) as info:
            await call(session, sb)
        elapsed = time.monotonic() - started
    assert srv.count() - before == 1  # the 3 s wait would cross the 1 s deadline: no resend
    assert info.value.retry_after == 3.0  # type: ignore[attr-defined]
    assert elapsed < 2.5  # raised at once, not after sleeping (the old code took 6 s)


async def test_retries_that_fit_the_deadline_are_made() -> None:
    answers = [error(429, "slow", headers={"Retry-After": "0.05"}) for _ in range(2)]
    answers.append(ok({"done": 1}))
    app = web.Application()

    async def answer(_r: web.Request) -> web.Response:
        return answers.pop(0)

    app.router.add_post("/v1/thing", answer)
    async with serve(app) as srv, srv.session(retry=RetryPolicy()) as session:
        assert await session.request("POST", "/v1/thing", json={}, timeout=10) == {"done": 1}
    assert srv.count("POST", "/v1/thing") == 3


def _hanging_app() -> tuple[web.Application, asyncio.Event]:
    release = asyncio.Event()

    async def hang(_r: web.Request) -> web.Response:
        await release.wait()
        return ok(None)

    app = web.Application()
    app.router.add_get("/v1/slow", hang)
    return app, release


async def test_timed_out_attempts_share_one_deadline() -> None:
    """An idempotent GET is resent after a timed-out attempt, but never past the call's deadline:
    the old code gave every attempt a fresh ``timeout`` (3 attempts, 3 s and more)."""
    app, release = _hanging_app()
    async with serve(app) as srv, srv.session() as session:
        started = time.monotonic()
        with anyio.fail_after(20), pytest.raises(APITimeoutError):
            await session.request("GET", "/v1/slow", timeout=1)
        elapsed = time.monotonic() - started
        release.set()
    assert srv.count("GET", "/v1/slow") == 1
    assert elapsed < 5


async def test_timeouts_total_bounds_calls_without_their_own_timeout() -> None:
    app, release = _hanging_app()
    timeouts = Timeouts(request=3, total=1)  # without total: 3 attempts of 3 s
    async with serve(app) as srv, srv.session(timeout=timeouts) as session:
        started = time.monotonic()
        with anyio.fail_after(20), pytest.raises(APITimeoutError):
            await session.request("GET", "/v1/slow")
        elapsed = time.monotonic() - started
        release.set()
    assert srv.count("GET", "/v1/slow") == 1
    assert elapsed < 2.5


# ---------------------------------------------------------------- Retry-After cap

YEARS_AHEAD = email.utils.formatdate(time.time() + 5 * 365 * 86400, usegmt=True)


@pytest.mark.parametrize("retry_after", ["100000", YEARS_AHEAD, "21"])
@pytest.mark.parametrize(("status", "kind"), [(429, RateLimitError), (503, ServerError)])
async def test_a_retry_after_above_the_cap_gives_up_at_once(
    retry_after: str, status: int, kind: type[Exception]
) -> None:
    async with serve(_busy_app(status, retry_after)) as srv, srv.session() as session:
        started = time.monotonic()
        with anyio.fail_after(20), pytest.raises(kind) as info:
            await session.request("GET", "/v1/anything")  # no deadline at all
        elapsed = time.monotonic() - started
    assert srv.count("GET", "/v1/anything") == 1
    assert info.value.retry_after > 20  # type: ignore[attr-defined]
    assert elapsed < 5


@pytest.mark.parametrize("retry_after", ["-5", "soon", "", "nan", "1e999"])
async def test_negative_or_garbage_retry_after_never_means_a_long_sleep(retry_after: str) -> None:
    delays: list[float] = []

    def on_retry(event: RetryEvent) -> None:
        delays.append(event.delay)

    async with (
        serve(_busy_app(429, retry_after)) as srv,
        srv.session(hooks={"on_retry": on_retry}) as session,
    ):
        with anyio.fail_after(20), pytest.raises(RateLimitError):
            await session.request("GET", "/v1/anything")
    assert srv.count("GET", "/v1/anything") == 3  # retried, with the computed (zero) backoff
    assert delays == [0.0, 0.0]


async def test_max_retry_after_is_configurable() -> None:
    delays: list[float] = []
    policy = RetryPolicy(max_retries=1, max_retry_after=0.01)
    async with (
        serve(_busy_app(429, "0.01")) as srv,
        srv.session(retry=policy, hooks={"on_retry": lambda e: delays.append(e.delay)}) as s,
    ):
        with pytest.raises(RateLimitError):
            await s.request("GET", "/v1/anything")
    assert delays == [0.01] and srv.count("GET", "/v1/anything") == 2
    async with serve(_busy_app(429, "0.02")) as srv, srv.session(retry=policy) as s:
        with pytest.raises(RateLimitError):
            await s.request("GET", "/v1/anything")
    assert srv.count("GET", "/v1/anything") == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "20"])
def test_max_retry_after_is_validated(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="max_retry_after"):
        RetryPolicy(max_retry_after=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- uploads of unknown length


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(4):
        yield b"x" * 1000


class _NoSize:
    """A file object that cannot tell its size (no fileno, no seek)."""

    def __init__(self) -> None:
        self._buf = io.BytesIO(b"y" * 4000)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


@pytest.mark.parametrize("source", [_chunks, _NoSize], ids=["async-iterable", "file-no-size"])
async def test_an_upload_of_unknown_length_waits_for_its_answer_like_any_request(
    source: Callable[[], Any],
) -> None:
    """The server reads the whole body, then never answers: the wait after the last byte is
    bounded by Timeouts.request (1 s here), not by the hour an unknown length may take to send."""
    received = asyncio.Event()
    sizes: list[int] = []
    release = asyncio.Event()

    async def get(_r: web.Request) -> web.Response:
        return ok({"id": SID, "status": "running"})

    async def put(request: web.Request) -> web.Response:
        sizes.append(len(await request.read()))
        received.set()
        await release.wait()  # never answers (until the test ends)
        return ok(None)

    app = web.Application()
    app.router.add_get(f"/v1/sandboxes/{SID}", get)
    app.router.add_put(f"/v1/sandboxes/{SID}/files", put)
    async with run_app(app) as url, AsyncSession("k", base_url=url, timeout=1.0) as session:
        sb = await session.sandboxes.get(SID)
        started = time.monotonic()
        with anyio.fail_after(30), pytest.raises(APITimeoutError):
            await sb.files.upload("/tmp/f", source())
        elapsed = time.monotonic() - started
        release.set()
    assert received.is_set() and sizes == [4000]  # the whole body went out first
    assert elapsed < 8


# ---------------------------------------------------------------- the pool's create gate


@pytest.mark.parametrize("retry_after", [100000, YEARS_AHEAD])
async def test_the_pool_gate_obeys_the_retry_after_cap(retry_after: float | str) -> None:
    """The pool's own create loop honours Retry-After too; above the session's cap it gives that
    create up at once with the typed error instead of parking every worker for a day."""
    require_bwrap()
    async with LocalServer() as server, server.session() as session:
        server.faults.status(
            429, route="/v1/sandboxes", method="POST", times=None, retry_after=retry_after
        )

        async def job(sb: Any, i: int) -> int:
            return i

        started = time.monotonic()
        with anyio.fail_after(30):
            async with SandboxPool(session, shape="s-1vcpu-256mb", max_concurrency=1) as pool:
                results = await pool.map(job, range(2), return_exceptions=True)
        elapsed = time.monotonic() - started
        assert all(isinstance(r, RateLimitError) and r.retry_after > 20 for r in results)
        assert server.request_count("POST", "/v1/sandboxes") == 2  # one attempt per item
        assert pool.stats.created == 0 and pool.stats.retries == 0
    assert elapsed < 10
