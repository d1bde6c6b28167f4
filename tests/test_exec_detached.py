"""A cancelled or timed-out exec stops its command even on a service that lets a buffered exec run
on after its client went away (the emulator's ``detached_buffered_exec`` switch plays one).

WIRE §11 promises kill-on-disconnect for streams only, so an exec with a deadline runs over the
stream route; these tests prove the command is gone, counted by the emulator itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _emulator import require_bwrap

from createos_sandbox_async import APITimeoutError
from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

#: Writes its start marker, then runs long enough that no test bound waits it out.
LONG = ["-c", "touch /tmp/started; sleep 30; touch /tmp/x"]


def running_commands(server: LocalServer) -> int:
    """Exec commands the emulator is tracking (a process group each) across every sandbox."""
    emu: Any = server._emu
    return sum(len(sb.runtime.groups) for sb in emu.sandboxes.values() if sb.runtime is not None)


@pytest.fixture
async def detached() -> AsyncIterator[tuple[LocalServer, Any]]:
    require_bwrap()
    async with (
        LocalServer(detached_buffered_exec=True) as server,
        server.session() as session,
    ):
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sb:
            yield server, sb


async def _exists(sb: Any, path: str) -> bool:
    return bool((await sb.exec("test", ["-e", path])).exit_code == 0)


async def _wait_for(sb: Any, path: str) -> None:
    """Poll (bounded in count and time) until ``path`` exists in the guest."""
    with anyio.fail_after(20):
        for _ in range(2000):
            if await _exists(sb, path):
                return
            await anyio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


async def _no_commands_left(server: LocalServer) -> None:
    """Bounded wait until the emulator tracks no running exec (the command takes 30 s)."""
    with anyio.fail_after(10):
        while running_commands(server):
            await anyio.sleep(0.02)


async def _cancel_after_start(sb: Any, **kw: Any) -> None:
    """Start the long exec in a task, wait until the command runs, then cancel the task."""
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await sb.exec("sh", LONG, **kw)
            raise AssertionError("the exec should have been cancelled")

        tg.start_soon(run)
        await _wait_for(sb, "/tmp/started")
        tg.cancel_scope.cancel()


async def test_the_switch_lets_a_buffered_exec_outlive_its_client(
    detached: tuple[LocalServer, Any],
) -> None:
    """The emulator side: a plain exec (one buffered POST) whose task is cancelled runs on."""
    server, sb = detached
    script = ["-c", "touch /tmp/started; sleep 0.5; touch /tmp/done"]
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await sb.exec("sh", script)

        tg.start_soon(run)
        await _wait_for(sb, "/tmp/started")
        tg.cancel_scope.cancel()
    await _wait_for(sb, "/tmp/done")  # the command ran to its end without its client
    await _no_commands_left(server)


async def test_a_cancelled_exec_with_a_timeout_stops_its_command(
    detached: tuple[LocalServer, Any],
) -> None:
    server, sb = detached
    await _cancel_after_start(sb, timeout=60)
    await _no_commands_left(server)
    assert not await _exists(sb, "/tmp/x")


async def test_a_cancelled_exec_under_a_deadline_scope_stops_its_command(
    detached: tuple[LocalServer, Any],
) -> None:
    server, sb = detached
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with anyio.fail_after(60):  # a deadline around the call, none on it
                await sb.sh("touch /tmp/started; sleep 30; touch /tmp/x")

        tg.start_soon(run)
        await _wait_for(sb, "/tmp/started")
        tg.cancel_scope.cancel()
    await _no_commands_left(server)
    assert not await _exists(sb, "/tmp/x")


async def test_a_timed_out_exec_stops_its_command(detached: tuple[LocalServer, Any]) -> None:
    server, sb = detached
    with pytest.raises(APITimeoutError):
        await sb.exec("sh", LONG, timeout=1, check=True)
    assert await _exists(sb, "/tmp/started")  # it did run
    await _no_commands_left(server)
    assert not await _exists(sb, "/tmp/x")


async def test_collected_exec_returns_what_a_buffered_one_does(
    detached: tuple[LocalServer, Any],
) -> None:
    """Over the stream route the result is the same, stdin, env and errors included."""
    _, sb = detached
    script = "cat; echo err >&2; exit 3"
    fast = await sb.sh(script, stdin="in\n")
    bounded = await sb.sh(script, stdin="in\n", timeout=30)
    assert (
        (bounded.stdout, bounded.stderr, bounded.exit_code, bounded.error)
        == (
            fast.stdout,
            fast.stderr,
            fast.exit_code,
            fast.error,
        )
        == ("in\n", "err\n", 3, None)
    )
    assert fast.exec_ms is not None and bounded.exec_ms is None
    missing = await sb.exec("definitely-not-a-command", timeout=30)
    assert missing.error and not missing.ok  # the stream sends no exit status with the error
