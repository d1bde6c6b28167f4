"""Every way out of an exec stream closes its connection: the server sees the disconnect (and would
kill the command), and nothing half-read goes back to the pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from _fake_exec_api import FakeExecAPI, frames, hang, pool_state
from aiohttp import web

from createos_sandbox_async import AsyncSession, ExecEvent
from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


@pytest.fixture
async def api() -> AsyncIterator[FakeExecAPI]:
    async with FakeExecAPI() as server:

        async def one_frame_then_hang(request: web.Request, resp: web.StreamResponse) -> None:
            await frames(resp, b'{"stdout":"first\\n"}', b'{"hb":true}')
            await hang()

        server.stream = one_frame_then_hang
        yield server


@pytest.fixture
async def session(api: FakeExecAPI) -> AsyncIterator[AsyncSession]:
    async with api.session() as s:
        yield s


@pytest.fixture
async def sb(api: FakeExecAPI, session: AsyncSession) -> Any:
    return await api.sandbox(session)


# Each way out starts a stream, reads the first event, then leaves. Returns what it saw.
# (`api` is there for the ways that wait for the server to act.)


async def by_break(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen = []
    async with sb.exec_stream("tail", ["-f", "log"]) as stream:
        async for ev in stream:
            seen.append(ev)
            break
    return seen


async def by_aclose(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    stream = sb.exec_stream("tail", ["-f", "log"])
    async with stream:
        seen = [await stream.__anext__()]
        await stream.aclose()
        await stream.aclose()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await stream.__anext__()
    return seen


async def by_consumer_exception(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen = []
    with pytest.raises(Boom):
        async with sb.exec_stream("tail", ["-f", "log"]) as stream:
            async for ev in stream:
                seen.append(ev)
                raise Boom
    return seen


async def by_task_group_cancel(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen: list[ExecEvent] = []
    got = anyio.Event()

    async def consume() -> None:
        async with sb.exec_stream("tail", ["-f", "log"]) as stream:
            async for ev in stream:
                seen.append(ev)
                got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await got.wait()
        tg.cancel_scope.cancel()
    return seen


async def by_asyncio_task_cancel(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen: list[ExecEvent] = []
    got = asyncio.Event()

    async def consume() -> None:
        async with sb.exec_stream("tail", ["-f", "log"]) as stream:
            async for ev in stream:
                seen.append(ev)
                got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    return seen


# The deadline-based ways expire right after the first event, not on a timer that a loaded
# machine could outrun before the first event arrives.


async def by_fail_after(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen = []
    with pytest.raises(TimeoutError):
        with anyio.fail_after(60) as scope:
            async with sb.exec_stream("tail", ["-f", "log"]) as stream:
                async for ev in stream:
                    seen.append(ev)
                    scope.deadline = anyio.current_time()
    return seen


async def by_move_on_after(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen = []
    with anyio.move_on_after(60) as scope:
        async with sb.exec_stream("tail", ["-f", "log"]) as stream:
            async for ev in stream:
                seen.append(ev)
                scope.deadline = anyio.current_time()
    assert scope.cancelled_caught
    return seen


async def by_break_out_of_lines(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    seen = []
    async with sb.exec_stream("tail", ["-f", "log"]) as stream:
        async for line in stream.lines():
            seen.append(ExecEvent(line.kind, line.data + "\n"))
            break
    return seen


async def by_cancelled_wait(sb: Any, api: FakeExecAPI) -> list[ExecEvent]:
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_when, api.stream_started, scope)
            await sb.exec_stream("tail", ["-f", "log"]).wait()
    assert scope.cancelled_caught
    return [ExecEvent("stdout", "first\n")]  # wait() keeps its output to itself


async def _cancel_when(event: asyncio.Event, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` once the server did something (bounded)."""
    with anyio.fail_after(30):
        await event.wait()
    scope.cancel()


WAYS: list[Callable[[Any, FakeExecAPI], Awaitable[list[ExecEvent]]]] = [
    by_break,
    by_aclose,
    by_consumer_exception,
    by_task_group_cancel,
    by_asyncio_task_cancel,
    by_fail_after,
    by_move_on_after,
    by_break_out_of_lines,
    by_cancelled_wait,
]


@pytest.mark.parametrize("way", WAYS, ids=[w.__name__ for w in WAYS])
async def test_every_way_out_closes_the_connection(
    api: FakeExecAPI,
    sb: Any,
    session: AsyncSession,
    way: Callable[[Any, FakeExecAPI], Awaitable[list[ExecEvent]]],
) -> None:
    seen = await way(sb, api)
    # At once, before any other task runs: nothing in use, nothing half-read kept in the pool.
    assert pool_state(session) == (0, 0)
    assert seen == [ExecEvent("stdout", "first\n")]
    await api.wait_disconnect()  # the server handler was cancelled by the disconnect
    assert api.disconnects == 1 and api.completed_streams == 0
    stream_port = api.exec_requests()[0].port
    await sb.exec("true")  # the pool still works, on a fresh connection
    assert api.requests[-1].port != stream_port
    assert pool_state(session) == (0, 1)


async def test_cancel_while_waiting_for_headers(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    api.stream_headers_hang = True
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_when, api.exec_received, scope)
            async with sb.exec_stream("x"):
                raise AssertionError("headers never come")
    assert scope.cancelled_caught
    assert pool_state(session) == (0, 0)
    stream_port = api.exec_requests()[0].port
    await sb.exec("true")
    assert api.requests[-1].port != stream_port


async def test_many_streams_cut_short_leave_the_pool_empty(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    async def one() -> None:
        async with sb.exec_stream("tail") as stream:
            async for _ in stream:
                break

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert pool_state(session) == (0, 0)
    with anyio.fail_after(10):
        while api.disconnects < 20:
            await asyncio.sleep(0.01)
    assert api.disconnects == 20


# ---------------------------------------------------------------- the emulator kills the command


@pytest.fixture
async def emu_sb(emulator: LocalServer) -> AsyncIterator[Any]:
    async with emulator.session() as s:
        sb = await s.sandboxes.create(shape="s-1vcpu-256mb")
        async with sb:
            yield sb


SCRIPT = "sleep 300 & echo $! > /tmp/child.pid; echo started; wait"


async def _alive(sb: Any) -> bool:
    """The child is running (a zombie waiting to be reaped counts as gone)."""
    res = await sb.sh(
        "pid=$(cat /tmp/child.pid) && state=$(grep '^State:' /proc/$pid/status) && "
        'case "$state" in *Z*) exit 1;; esac'
    )
    return bool(res.exit_code == 0)


async def _leave_by_break(sb: Any) -> None:
    async with sb.exec_stream("bash", ["-c", SCRIPT]) as stream:
        async for ev in stream:
            assert ev == ExecEvent("stdout", "started\n")
            assert await _alive(sb)  # the check below can fail: the child is running now
            break


async def _leave_by_cancel(sb: Any) -> None:
    got = anyio.Event()

    async def consume() -> None:
        async with sb.exec_stream("bash", ["-c", SCRIPT]) as stream:
            async for _ in stream:
                got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await got.wait()
        assert await _alive(sb)
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("leave", [_leave_by_break, _leave_by_cancel], ids=["break", "cancel"])
async def test_leaving_a_stream_kills_the_command_in_the_emulator(
    emu_sb: Any, leave: Callable[[Any], Awaitable[None]]
) -> None:
    await leave(emu_sb)
    with anyio.fail_after(10):  # the API promises ~5 s; the emulator kills at once
        while await _alive(emu_sb):
            await anyio.sleep(0.02)
    assert not await _alive(emu_sb)
    assert (await emu_sb.exec("true")).exit_code == 0  # the sandbox itself is fine


async def test_cancel_while_draining_after_the_exit_frame_closes_the_connection(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    """After the exit frame the stream drains the rest of the body (up to 1 s) to reuse the
    connection; a cancel in that window must still close it, not leave it to the GC."""

    async def exit_then_hang(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"first\\n"}', b'{"exit_code":0}')
        await hang()

    api.stream = exit_then_hang
    seen = []
    with anyio.move_on_after(60) as scope:
        async with sb.exec_stream("x") as stream:
            async for ev in stream:
                seen.append(ev)
                if ev.kind == "exit":  # now draining the rest of the body: cancel in there
                    scope.deadline = anyio.current_time()
    assert scope.cancelled_caught
    assert seen == [ExecEvent("stdout", "first\n"), ExecEvent("exit", "", 0)]
    assert pool_state(session) == (0, 0)
    await api.wait_disconnect()
