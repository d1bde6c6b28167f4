"""Fault matrix: every operation against every network and server fault (issue 10, promise 1).

Each cell runs one operation against a purpose-built server that answers the operation's route
with one fault, on every request. A cell passes when the operation ends in success or in exactly
one typed error from ``createos_sandbox_async.errors`` (never another exception type, never a
hang), within a generous bound of its deadline, with the number of requests the retry matrix of
WIRE §7 allows, and with no connection left checked out of the pool. The gzip bomb and the 50 MB
line must also not grow the client's memory by more than ``MEMORY_BOUND``.

The cells run once per module, concurrently (they mostly wait on timers), except the two that
measure memory, which run alone afterwards; each ``test_cell`` then checks one cell's record, so a
known failure is marked ``xfail(strict=True)`` on exactly its cell.

``exec`` comes in both its forms: ``exec`` (no ``timeout=``: one buffered POST, bounded by the
session's ``Timeouts.total``) and ``exec_deadline`` (``timeout=``: the stream route, its output
collected). Each cell also checks that the call kept to its own route.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import attrs
import pytest

from createos_sandbox_async import AsyncSession, RetryPolicy, SandboxPool, Timeouts
from createos_sandbox_async._convert import structure
from createos_sandbox_async.errors import APITimeoutError, CreateosError
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

from ._faultserver import FAULTS, PROCESS_ID, SANDBOX_ID, SANDBOX_VIEW, FaultServer

pytestmark = pytest.mark.timeout(900)

#: The deadline passed to every call that takes ``timeout=`` (and the caller's own deadline
#: around the two streams that have no total deadline by design: download_iter and process
#: output).
D = 2.0
TIMEOUTS = Timeouts(connect=1.0, request=2.0, stream_idle=1.0)
#: The buffered exec (no timeout=) is bounded session-wide: D for the whole call, per attempt
#: far more, so that it is the whole-call bound that the cells test.
SESSION_TIMEOUTS = {"exec": attrs.evolve(TIMEOUTS, request=30.0, total=D)}
#: For each op, the route it must not touch: the two forms of exec each keep to their own.
OTHER_ROUTE = {"exec": "exec_stream", "exec_deadline": "exec"}
RETRY = RetryPolicy(base=0.05, cap=0.2)  # 2 retries (3 attempts), fast backoff
POOL_ATTEMPTS = 3
POOL_CREATE_TIMEOUT = 1.0
MAX_RECONNECTS = 1
#: A call must be over this long after it started (generous: 2-core CI under load).
BOUND = {"pool": POOL_ATTEMPTS * POOL_CREATE_TIMEOUT + 3.0}
DEFAULT_BOUND = D + 3.0
#: Past its bound plus this, a call is given up on and recorded as "hung".
GUARD_SLACK = 1.5
#: Growth of the client's resident memory allowed while it meets a gzip bomb or a 50 MB line.
MEMORY_BOUND = 256 * 1024 * 1024
#: Cells run at once (they mostly sleep on timers).
CONCURRENCY = 12
HEAVY = ("gzip_bomb", "line_50mb")

OPS = (
    "get",
    "exec",
    "exec_deadline",
    "exec_stream",
    "upload_bytes",
    "upload_iter",
    "download",
    "process",
    "pool",
)
TARGET = {
    "get": "get",
    "exec": "exec",
    "exec_deadline": "exec_stream",  # exec(timeout=) runs over the stream route, collected
    "exec_stream": "exec_stream",
    "upload_bytes": "upload",
    "upload_iter": "upload",
    "download": "download",
    "process": "process",
    "pool": "create",
}
#: Streams without a total deadline by design: the caller bounds them (anyio.move_on_after).
CALLER_DEADLINE = ("download", "process")

#: Cells that fail on today's code for a known reason (cell -> reason), marked strict xfail.
#: Empty: the whole-call deadlines, the Retry-After cap, the bounded answer of an upload of
#: unknown length and the 64 MiB bound of buffered bodies (the gzip bomb) fixed every cell.
KNOWN: dict[tuple[str, str], str] = {}


# -- what the retry matrix allows --------------------------------------------------------------

_STATUS_ERROR = {"429": "RateLimitError", "503": "ServerError"}


def expectation(op: str, fault: str) -> tuple[frozenset[str], int, int]:
    """(acceptable outcomes, fewest and most requests to the faulted route) for one cell.

    WIRE §7 as this SDK applies it: a GET or a bytes PUT is resent after a connection error, a
    timeout, 408/500/502/504, 429 and 503; a POST (``exec``, ``exec_deadline``, the pool's
    create) only after 429/503; a stream and an upload that cannot be replayed never. Every call
    here has a 2 s whole-call deadline (``timeout=D``, or ``Timeouts.total`` for the buffered
    exec), and a resend whose wait would cross it is not made.
    """
    # Read whole by the transport: a cut body is a connection error, a stall the call's timeout.
    buffered = op in ("get", "exec", "exec_deadline", "upload_bytes", "upload_iter", "pool")
    if op in ("get", "upload_bytes"):
        conn = timeouts = status5 = 3
    elif op == "pool":
        conn = timeouts = status5 = POOL_ATTEMPTS
    else:
        conn = timeouts = status5 = 1
    throttle = 3 if op in ("get", "exec", "exec_deadline", "upload_bytes") else 1
    if op == "pool":
        throttle = POOL_ATTEMPTS
    reconnect = 1 + MAX_RECONNECTS if op == "process" else 1

    def out(*names: str) -> frozenset[str]:
        return frozenset(names)

    if fault == "refused":
        return out("APIConnectionError"), 0, 0
    if fault == "reset_before_headers":
        return out("APIConnectionError"), conn, conn
    if fault in ("reset_after_headers", "truncated_body", "truncated_mid_frame"):
        if op == "exec_deadline" and fault == "truncated_body":
            # the chunked body ends cleanly, without its exit frame (exec._collect)
            return out("StreamInterruptedError"), 1, 1
        if buffered:
            return out("APIConnectionError"), conn, conn
        if op == "process":  # reconnects after a break, then gives up
            return out("StreamInterruptedError", "APIConnectionError"), 1, reconnect
        return out("StreamInterruptedError", "APIConnectionError"), 1, 1
    if fault in ("stalled_before_first_frame", "stalled_after_first_frame", "drip"):
        if op == "pool":  # a lost create is tried again, each attempt with its create_timeout
            return out("APITimeoutError"), timeouts, timeouts
        if buffered:  # the first attempt uses up the whole-call deadline: nothing is resent
            return out("APITimeoutError"), 1, 1
        if op == "exec_stream":
            return out("StreamStalledError", "APITimeoutError"), 1, 1
        if op == "download":
            if fault == "drip":
                return out("caller_deadline", "StreamStalledError"), 1, 1
            return out("StreamStalledError"), 1, 1
        return out("StreamStalledError", "caller_deadline"), 1, reconnect
    if fault[:3] in _STATUS_ERROR:
        error = out(_STATUS_ERROR[fault[:3]])
        if fault.endswith(("_huge", "_date")):
            return error, 1, 1  # above RetryPolicy.max_retry_after (20 s): give up at once
        if fault.endswith("_ra"):
            if op == "pool":  # the pool's own create loop honours it; it is not bound by D
                return error, throttle, throttle
            # Retry-After: 1 against a 2 s deadline: resent once at ~1 s; the next wait would
            # end at ~2 s, past the deadline, so it is not made
            return error, min(2, throttle), min(2, throttle)
        return error, throttle, throttle
    if fault == "html_502":
        return out("ServerError"), status5, status5
    if fault == "malformed_json":
        if op == "download":
            return out("ok"), 1, 1
        if op == "pool":  # an answer that cannot be read: the create may have happened
            return out("ProtocolError"), POOL_ATTEMPTS, POOL_ATTEMPTS
        return out("ProtocolError"), 1, 1
    if fault == "slow_body":
        return out("ok"), 1, 1
    if fault in HEAVY:
        if op == "download":
            return out("ok", "caller_deadline"), 1, 1
        if op in ("exec_stream", "process", "exec_deadline"):
            return out("ProtocolError"), 1, 1  # one line over max_line (16 MiB)
        if fault == "gzip_bomb":  # 512 MiB expanded: over the 64 MiB bound of a buffered answer
            if op == "pool":  # read as an unreadable create answer, like malformed_json
                return out("ProtocolError"), POOL_ATTEMPTS, POOL_ATTEMPTS
            return out("ProtocolError"), 1, 1
        return out("ok"), 1, 1  # a 50 MB JSON answer is within the 64 MiB bound
    raise AssertionError(fault)


# -- the operations ------------------------------------------------------------------------------


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(4):
        yield b"i" * 1024


async def _job(sandbox: Sandbox, item: int) -> str:
    return sandbox.id


async def op_get(session: AsyncSession, sb: Sandbox) -> None:
    await session.sandboxes.get(SANDBOX_ID, timeout=D)


async def op_exec(session: AsyncSession, sb: Sandbox) -> None:
    # No timeout=: the buffered route, bounded by the session's Timeouts.total (SESSION_TIMEOUTS).
    await sb.exec("echo", ["hi"])


async def op_exec_deadline(session: AsyncSession, sb: Sandbox) -> None:
    # timeout=: the stream route, its output collected (the command dies with the connection).
    await sb.exec("echo", ["hi"], timeout=D)


async def op_exec_stream(session: AsyncSession, sb: Sandbox) -> None:
    async with sb.exec_stream("echo", ["hi"], timeout=D) as stream:
        async for _ in stream:
            pass
    assert stream.exit_code == 0


async def op_upload_bytes(session: AsyncSession, sb: Sandbox) -> None:
    await sb.files.upload("/tmp/f", b"u" * 4096, timeout=D)


async def op_upload_iter(session: AsyncSession, sb: Sandbox) -> None:
    # No timeout=: the default bound of an upload of unknown length is what is under test.
    await sb.files.upload("/tmp/f", _chunks())


async def op_download(session: AsyncSession, sb: Sandbox) -> None:
    size = 0
    async with sb.files.download_iter("/tmp/f", timeout=D) as chunks:
        async for chunk in chunks:
            size += len(chunk)
    assert size > 0


async def op_process(session: AsyncSession, sb: Sandbox) -> None:
    async with sb.processes.connect(PROCESS_ID, max_reconnects=MAX_RECONNECTS) as out:
        async for _ in out:
            pass
    assert out.exit_code == 0


async def op_pool(session: AsyncSession, sb: Sandbox) -> None:
    async with SandboxPool(
        session,
        shape="s-1vcpu-256mb",
        max_concurrency=1,
        create_attempts=POOL_ATTEMPTS,
        create_timeout=POOL_CREATE_TIMEOUT,
        backoff=0.05,
        backoff_cap=0.2,
        cleanup_timeout=5.0,
    ) as pool:
        ids = await pool.map(_job, [0])
    assert len(ids) == 1


OP_FUNCS: dict[str, Callable[[AsyncSession, Sandbox], Awaitable[None]]] = {
    "get": op_get,
    "exec": op_exec,
    "exec_deadline": op_exec_deadline,
    "exec_stream": op_exec_stream,
    "upload_bytes": op_upload_bytes,
    "upload_iter": op_upload_iter,
    "download": op_download,
    "process": op_process,
    "pool": op_pool,
}


# -- running a cell ------------------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples resident memory from a thread while a block runs; ``growth`` = peak - start."""

    def __init__(self) -> None:
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


async def _attempt(op: str, session: AsyncSession, sb: Sandbox) -> tuple[str, BaseException | None]:
    """Run the operation once: ("ok" or "caller_deadline", None) or (the error's name, error)."""
    try:
        if op in CALLER_DEADLINE:
            with anyio.move_on_after(D) as caller:
                await OP_FUNCS[op](session, sb)
            return ("caller_deadline" if caller.cancelled_caught else "ok"), None
        await OP_FUNCS[op](session, sb)
        return "ok", None
    except CreateosError as exc:
        return type(exc).__name__, exc
    except Exception as exc:  # the promise is broken: record it, do not raise
        return f"untyped {type(exc).__name__}: {str(exc)[:120]}", exc


async def run_cell(op: str, fault: str, *, measure: bool = False) -> dict[str, Any]:
    """Run one operation against one fault; return what happened and what is wrong with it."""
    server = FaultServer(TARGET[op], fault)
    allowed, lo, hi = expectation(op, fault)
    bound = BOUND.get(op, DEFAULT_BOUND)
    async with server.running():
        base = _closed_port_url() if fault == "refused" else server.base_url
        timeouts = SESSION_TIMEOUTS.get(op, TIMEOUTS)
        session = AsyncSession("sk_fault_matrix", base_url=base, timeout=timeouts, retry=RETRY)
        sb = Sandbox(session, structure(SANDBOX_VIEW, SandboxView))
        error: BaseException | None = None
        outcome = "hung"
        loop = asyncio.get_running_loop()
        memory = PeakRSS() if measure else None
        started = loop.time()
        try:
            if memory is not None:
                memory.__enter__()
            # An asyncio timeout, not an anyio scope: exec() without timeout= keeps to the
            # buffered route only when no anyio deadline encloses it.
            guard = asyncio.timeout(bound + GUARD_SLACK)
            try:
                async with guard:
                    outcome, error = await _attempt(op, session, sb)
            except TimeoutError:
                pass
            if guard.expired():
                outcome = "hung"
        finally:
            if memory is not None:
                memory.__exit__()
        elapsed = loop.time() - started
        connector: Any = session._transport.connector
        acquired = len(connector._acquired) if connector is not None else 0
        await session.aclose()
    requests = server.counts[TARGET[op]]
    problems = []
    if op in OTHER_ROUTE and server.counts[OTHER_ROUTE[op]]:
        problems.append(f"{op} sent {server.counts[OTHER_ROUTE[op]]} request(s) on the wrong route")
    if outcome not in allowed:
        problems.append(f"outcome {outcome}, expected one of {sorted(allowed)}")
    if elapsed > bound:
        problems.append(f"took {elapsed:.1f} s, bound {bound:.1f} s")
    if not lo <= requests <= hi:
        problems.append(f"{requests} requests, the retry matrix allows {lo}..{hi}")
    if acquired:
        problems.append(f"{acquired} connection(s) still checked out")
    sent_retry_after = fault.endswith(("_ra", "_huge", "_date"))
    if sent_retry_after and error is not None and getattr(error, "retry_after", None) is None:
        problems.append("the error does not carry the Retry-After it was given")
    record: dict[str, Any] = {
        "operation": op,
        "fault": fault,
        "outcome": outcome,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "allowed_requests": f"{lo}..{hi}",
        "problems": problems,
    }
    if memory is not None:
        record["memory_growth_mib"] = round(memory.growth / 2**20, 1)
        if memory.growth > MEMORY_BOUND:
            problems.append(
                f"client memory grew {memory.growth / 2**20:.0f} MiB "
                f"(bound {MEMORY_BOUND / 2**20:.0f} MiB)"
            )
    return record


async def run_matrix(cells: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The light cells concurrently, then the memory-measuring ones alone."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(op: str, fault: str) -> None:
        async with gate:
            results[(op, fault)] = await run_cell(op, fault)

    light = [c for c in cells if c[1] not in HEAVY]
    await asyncio.gather(*(one(op, fault) for op, fault in light))
    for op, fault in cells:
        if fault in HEAVY:
            gc.collect()
            results[(op, fault)] = await run_cell(op, fault, measure=True)
            gc.collect()
    return results


CELLS = [(op, fault) for op in OPS for fault in FAULTS]


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    """Run the cells selected in this session (all of them, or those picked with -k)."""
    wanted = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if item.module is request.module and spec is not None and "op" in spec.params:
            wanted.append((spec.params["op"], spec.params["fault"]))
    started = time.perf_counter()
    results = asyncio.run(run_matrix(wanted))
    for record in results.values():
        record["matrix_seconds"] = round(time.perf_counter() - started, 1)
    return results


def _param(op: str, fault: str) -> Any:
    reason = KNOWN.get((op, fault))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(op, fault, marks=marks, id=f"{op}-{fault}")


@pytest.mark.parametrize(("op", "fault"), [_param(op, fault) for op, fault in CELLS])
def test_cell(
    matrix: dict[tuple[str, str], dict[str, Any]], op: str, fault: str, reliability_figures: Any
) -> None:
    record = matrix[(op, fault)]
    reliability_figures.section = "faults"
    reliability_figures.row({**record, "known_issue": KNOWN.get((op, fault))})
    assert not record["problems"], record


def test_the_matrix_covers_every_operation_and_fault() -> None:
    """The matrix is the full product (a cell dropped by mistake would go unnoticed)."""
    assert len(CELLS) == len(OPS) * len(FAULTS) == len(set(CELLS))
    assert set(KNOWN) <= set(CELLS)


@pytest.mark.anyio
async def test_download_timeout_bounds_the_whole_call() -> None:
    """files.download(timeout=) covers the body too: a byte every 0.5 s does not outlive it."""
    server = FaultServer("download", "drip")
    async with (
        server.running(),
        AsyncSession(
            "sk_fault_matrix", base_url=server.base_url, timeout=TIMEOUTS, retry=RETRY
        ) as session,
    ):
        sb = Sandbox(session, structure(SANDBOX_VIEW, SandboxView))
        started = time.perf_counter()
        with anyio.move_on_after(DEFAULT_BOUND + GUARD_SLACK) as guard:
            with pytest.raises(APITimeoutError):
                await sb.files.download("/tmp/f", timeout=D)
        elapsed = time.perf_counter() - started
    assert not guard.cancelled_caught, "download(timeout=2) was still running"
    assert elapsed < DEFAULT_BOUND
