"""Load with random cancellation (issue 10, promises 1 and 3 plus "no leaks").

Thousands of calls through ONE session, about a third of them cancelled at random points (an
anyio cancel scope, ``Task.cancel()``, ``break`` out of a stream), from a seeded RNG. Afterwards
nothing may be left: no connection checked out of the pool, no request still being handled by the
server, no command still running in the emulator, no sandbox left, no ``ResourceWarning`` or
"Unclosed" warning (warnings are errors in this suite, and ``gc.collect()`` runs before the end),
and resident memory flat across repeated rounds.

Two servers, for two reasons. The emulator runs every exec as a real process in bubblewrap: on
2 cores it sustains about 400 execs/s, so 10,000 execs would take most of a minute on their own.
The SDK's side of the promise (pool, cancellation, stream teardown, memory) does not depend on
what runs the command, so the big counts (10,000 buffered execs, 5 x 1,000 concurrent streams)
go to a lean purpose-built exec server; the emulator gets a smaller load (600 execs, 100
concurrent streams) to show that a cancelled command is really stopped and nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _emulator import require_bwrap
from aiohttp import web

from createos_sandbox_async import AsyncSession, Limits, Timeouts
from createos_sandbox_async._convert import structure
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.timeout(600)

SEED = 20_260_510
ROUNDS = 5
EXECS_PER_ROUND = 2_000
EXEC_WORKERS = 100
STREAMS_PER_ROUND = 1_000  # all open at once
FRAMES = 8
#: Resident memory may grow this much from round 2 to round 4 (the first rounds warm up caches).
RSS_TOLERANCE = 16 * 1024 * 1024
SID = "sb_01LOADLOADLOADLOADLOADLOAD"

_RESULT = (
    b'{"status":"success","data":{"result":{"stdout":"ok\\n","stderr":"","exit_code":0},'
    b'"exec_ms":0.1}}'
)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LeanExecServer:
    """Buffered and streamed exec, as fast as aiohttp goes; counts handlers still running."""

    def __init__(self) -> None:
        self.inflight = 0
        self.peak = 0  # most handlers running at once
        self.handled = 0
        self.disconnects = 0
        self.base_url = ""

    async def exec(self, request: web.Request) -> web.StreamResponse:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await request.read()
            self.handled += 1
            if request.query.get("stream") != "true":
                await asyncio.sleep(0.001 * (self.handled % 4))  # give cancels something to hit
                return web.Response(body=_RESULT, content_type="application/json")
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                for i in range(FRAMES):
                    await resp.write(b'{"stdout":"line %d\\n"}\n' % i)
                    await asyncio.sleep(0.01)
                await resp.write(b'{"exit_code":0}\n')
                await resp.write_eof()
            except (asyncio.CancelledError, ConnectionResetError):
                self.disconnects += 1
                raise
            return resp
        finally:
            self.inflight -= 1

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LeanExecServer]:
        app = web.Application()
        app.router.add_post("/v1/sandboxes/{id}/exec", self.exec)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
            await site.start()
            self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            yield self
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def leak_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning of the block (and of a final ``gc.collect()``), so the test can count
    ``ResourceWarning``/"Unclosed" ones and report the figure; any other warning is re-raised."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen
        gc.collect()
    leaks = [w for w in seen if _is_leak(w)]
    for w in seen:
        if not _is_leak(w):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    seen[:] = leaks


def _is_leak(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, ResourceWarning) or "Unclosed" in str(w.message)


def checked_out(session: AsyncSession) -> int:
    """Connections currently handed out by the session's aiohttp connector."""
    connector: Any = session._transport.connector
    return 0 if connector is None else len(connector._acquired)


async def wait_until(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Bounded wait for something the server does asynchronously (a handler noticing a close)."""
    with anyio.move_on_after(limit):
        while not predicate():
            await anyio.sleep(0.01)
    assert predicate(), f"still not true after {limit} s: {what}"


class Tally:
    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.completed = 0
        self.by_way: dict[str, int] = {}

    def cancel(self, way: str) -> None:
        self.cancelled += 1
        self.by_way[way] = self.by_way.get(way, 0) + 1


def pick_way(rng: random.Random, ways: tuple[str, ...]) -> str | None:
    """A third of the calls get one of ``ways`` (equally often); the rest run to the end."""
    draw = rng.random()
    if draw >= 1 / 3:
        return None
    return ways[int(draw * 3 * len(ways))]


async def run_cancelled(
    way: str | None, delay: float, tally: Tally, call: Callable[[], Awaitable[None]]
) -> None:
    """Run ``call``, cancelled after ``delay`` by a cancel scope or ``Task.cancel()`` if asked."""
    tally.calls += 1
    if way == "cancel scope":  # a deadline in the caller
        with anyio.move_on_after(delay) as scope:
            await call()
        cancelled = scope.cancelled_caught
    elif way == "task cancel":  # someone else cancels the task
        task = asyncio.ensure_future(call())
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        cancelled = task.cancelled()
    else:
        await call()
        cancelled = False
    if cancelled:
        tally.cancel(str(way))
    else:
        tally.completed += 1  # a cancel that landed after the call finished counts here


async def one_exec(rng: random.Random, tally: Tally, sb: Sandbox, argv: list[str]) -> None:
    way = pick_way(rng, ("cancel scope", "task cancel"))
    await run_cancelled(way, rng.uniform(0, 0.004), tally, lambda: sb.exec(argv[0], argv[1:]))


async def one_stream(rng: random.Random, tally: Tally, sb: Sandbox, argv: list[str]) -> None:
    """One stream: read to the end, ``break`` early, or be cancelled (scope or task)."""
    way = pick_way(rng, ("break", "cancel scope", "task cancel"))
    delay = rng.uniform(0, 0.15)
    stop_after = rng.randrange(1, 4)

    async def read() -> None:
        async with sb.exec_stream(argv[0], argv[1:]) as stream:
            seen = 0
            async for _ in stream:
                seen += 1
                if way == "break" and seen >= stop_after:
                    break
        if way == "break" and not stream.finished:
            raise _Broke
        assert stream.exit_code == 0

    if way == "break":
        tally.calls += 1
        try:
            await read()
        except _Broke:
            tally.cancel("break")
        else:
            tally.completed += 1
        return
    await run_cancelled(way, delay, tally, read)


async def in_workers(workers: int, count: int, call: Callable[[], Awaitable[None]]) -> None:
    """``count`` calls, ``workers`` at a time."""
    todo = iter(range(count))

    async def worker() -> None:
        for _ in todo:
            await call()

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)


class _Broke(Exception):
    """The consumer left the stream with ``break`` before the exit frame."""


@pytest.mark.anyio
async def test_fast_server_10000_execs_and_1000_concurrent_streams_leave_nothing(
    reliability_figures: Any,
) -> None:
    rng = random.Random(SEED)
    execs, streams = Tally(), Tally()
    rss: list[int] = []
    with leak_warnings() as leaks:
        async with LeanExecServer().running() as server:
            session = AsyncSession(
                "sk_load",
                base_url=server.base_url,
                timeout=Timeouts(request=30.0, stream_idle=10.0),
                limits=Limits(max_connections=STREAMS_PER_ROUND + EXEC_WORKERS),
            )
            async with session:
                sb = Sandbox(session, structure({"id": SID, "status": "running"}, SandboxView))
                for _round in range(ROUNDS):
                    await in_workers(
                        EXEC_WORKERS, EXECS_PER_ROUND, lambda: one_exec(rng, execs, sb, ["true"])
                    )
                    async with anyio.create_task_group() as tg:
                        for _ in range(STREAMS_PER_ROUND):
                            tg.start_soon(one_stream, rng, streams, sb, ["seq", "8"])
                    await wait_until(lambda: server.inflight == 0, "server handlers finished")
                    assert checked_out(session) == 0
                    gc.collect()
                    rss.append(_rss())
    reliability_figures.section = "load"
    reliability_figures.row(
        {
            "server": "purpose-built exec server",
            "buffered execs": execs.calls,
            "buffered cancelled": execs.cancelled,
            "streams": streams.calls,
            "concurrent streams": STREAMS_PER_ROUND,
            "most requests in flight at the server": server.peak,
            "streams cancelled": streams.cancelled,
            "cancelled by": {
                **execs.by_way,
                **{f"stream {k}": v for k, v in streams.by_way.items()},
            },
            "connections checked out after": 0,
            "server handlers left": server.inflight,
            "ResourceWarning / Unclosed warnings": len(leaks),
            "rss_mib_per_round": [round(r / 2**20, 1) for r in rss],
        }
    )
    assert execs.calls == ROUNDS * EXECS_PER_ROUND
    assert streams.calls == ROUNDS * STREAMS_PER_ROUND
    # "about a third" cancelled, by every way (a cancel may land after the call finished)
    assert 0.2 < execs.cancelled / execs.calls < 0.4, execs.__dict__
    assert 0.2 < streams.cancelled / streams.calls < 0.4, streams.__dict__
    assert set(execs.by_way) == {"cancel scope", "task cancel"}
    assert set(streams.by_way) == {"break", "cancel scope", "task cancel"}
    assert leaks == []
    assert server.peak > STREAMS_PER_ROUND // 2  # the streams really were open at once
    assert rss[3] - rss[1] < RSS_TOLERANCE, [r // 2**20 for r in rss]


EMU_EXECS = 600
EMU_WORKERS = 24
EMU_STREAMS = 100
EMU_STREAM_ARGV = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.03; done"]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"{pid} (gone)"


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def emulator_sandbox(server: Any, sandbox_id: str) -> Any:
    """The emulator's record of a sandbox (to look at the commands it runs)."""
    return server._require().sandboxes[sandbox_id]


@pytest.mark.anyio
async def test_emulator_cancelled_commands_stop_and_nothing_is_left(
    reliability_figures: Any, caplog: pytest.LogCaptureFixture
) -> None:
    require_bwrap()
    from createos_sandbox_async.local import LocalServer

    rng = random.Random(SEED + 1)
    execs, streams = Tally(), Tally()
    with leak_warnings() as leaks:
        async with LocalServer(heartbeat_interval=0.2) as server:
            session = server.session(
                timeout=Timeouts(request=30.0, stream_idle=10.0),
                limits=Limits(max_connections=EMU_STREAMS + EMU_WORKERS),
            )
            async with session:
                sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
                record = emulator_sandbox(server, sb.id)

                def commands() -> list[int]:
                    """Processes of the sandbox other than its init: pid 1 and the lifeline
                    reader it keeps (a `cat` child), and its exec helper (local/_helper.py). An
                    orphan of a killed command is also a child of pid 1, so the reader is
                    matched by parent and command line both."""
                    runtime = record.runtime
                    init = runtime.init_pid
                    helper = runtime.helper

                    def machinery(p: int) -> bool:
                        if helper is not None and "createos-local exec helper" in _cmdline(p):
                            return _ppid(p) == helper._proc.pid  # its nsenter, on the host side
                        return p == init or (_ppid(p) == init and _cmdline(p) == "cat")

                    return [p for p in runtime.namespace_pids() if not machinery(p)]

                await in_workers(
                    EMU_WORKERS, EMU_EXECS, lambda: one_exec(rng, execs, sb, ["sleep", "0.003"])
                )
                async with anyio.create_task_group() as tg:
                    for _ in range(EMU_STREAMS):
                        tg.start_soon(one_stream, rng, streams, sb, EMU_STREAM_ARGV)

                def idle() -> bool:
                    return record.busy == 0 and not record.runtime.groups and not commands()

                def still_running() -> str:
                    pids = commands()
                    return (
                        f"busy={record.busy} groups={sorted(record.runtime.groups)} "
                        f"processes={[_cmdline(p) for p in pids]}"
                    )

                with anyio.move_on_after(10):
                    while not idle():
                        await anyio.sleep(0.01)
                assert idle(), f"commands still running after 10 s: {still_running()}"
                left = len(commands())
                assert checked_out(session) == 0
                await sb.destroy(wait=True, wait_timeout=30)
                live = [
                    s.id async for s in session.sandboxes.list() if str(s.status) != "destroyed"
                ]
    reliability_figures.section = "load"
    reliability_figures.row(
        {
            "server": "emulator (bubblewrap)",
            "buffered execs": execs.calls,
            "buffered cancelled": execs.cancelled,
            "streams": streams.calls,
            "concurrent streams": EMU_STREAMS,
            "streams cancelled": streams.cancelled,
            "cancelled by": {
                **execs.by_way,
                **{f"stream {k}": v for k, v in streams.by_way.items()},
            },
            "connections checked out after": 0,
            "commands left running": left,
            "sandboxes left": len(live),
            "ResourceWarning / Unclosed warnings": len(leaks),
            # issue 10 item 8: a client leaving mid-stream should be a DEBUG line (not asserted
            # here; the emulator's own tests own that promise)
            "emulator 'Error handling request' tracebacks": sum(
                "Error handling request" in r.getMessage() for r in caplog.records
            ),
        }
    )
    assert live == []
    assert leaks == []
    assert execs.calls == EMU_EXECS and streams.calls == EMU_STREAMS
    assert 0.2 < execs.cancelled / execs.calls < 0.45, execs.__dict__
    assert 0.15 < streams.cancelled / streams.calls < 0.5, streams.__dict__
