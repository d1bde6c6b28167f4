"""The core under the framework adapters (createos_sandbox_async.integrations.core) on the
emulator: the per-conversation holder, the output budget, tool errors, commands and file helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from createos_sandbox_async import AsyncSession, NotFoundError, RateLimitError, RetryPolicy
from createos_sandbox_async.integrations import core
from createos_sandbox_async.integrations.core import (
    OutputBudget,
    SandboxGoneError,
    SandboxHolder,
    tool_error,
)
from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def session(emulator: LocalServer) -> AsyncIterator[AsyncSession]:
    async with emulator.session(retry=RetryPolicy(base=0.01, cap=0.05)) as session:
        yield session


async def wait_for(predicate: Any, what: str) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.01)


# ---------------------------------------------------------------- holder


async def test_concurrent_first_uses_create_one_sandbox(
    emulator: LocalServer, session: AsyncSession
) -> None:
    setups: list[str] = []

    async def setup(sb: Any) -> None:
        setups.append(sb.id)

    holder = SandboxHolder(session, setup=setup)
    assert holder.id is None and emulator.request_count() == 0  # no I/O when built
    seen: list[str] = []

    async def use() -> None:
        seen.append((await holder.sandbox()).id)

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(use)
    assert emulator.request_count("POST", "/v1/sandboxes") == 1
    assert set(seen) == {holder.id} and setups == [holder.id] and holder.created
    assert await holder.destroy()
    with pytest.raises(SandboxGoneError):
        await holder.sandbox()


async def test_a_cancel_mid_create_keeps_the_id(
    emulator: LocalServer, session: AsyncSession
) -> None:
    slow = emulator.faults.slow(route="/v1/sandboxes", method="POST", delay=0.05, chunk_size=64)
    holder = SandboxHolder(session)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.sandbox)
            await wait_for(lambda: slow.hits == 1, "the create request")
            scope.cancel()  # the create is in flight: its answer is on its way
    assert scope.cancelled_caught
    assert holder.id is not None  # recorded although the caller was cancelled
    sandbox = await session.sandboxes.get(holder.id)
    assert str(sandbox.status) == "running"
    again = await holder.sandbox()  # the same sandbox, no second create
    assert again.id == holder.id and emulator.request_count("POST", "/v1/sandboxes") == 1
    await holder.destroy()


async def test_reattach_by_id_and_a_gone_sandbox_is_an_error(session: AsyncSession) -> None:
    first = SandboxHolder(session)
    sb = await first.sandbox()
    await sb.sh("echo kept > /tmp/state")
    second = SandboxHolder(session, sandbox_id=first.id)
    assert (await (await second.sandbox()).exec("cat", ["/tmp/state"])).stdout == "kept\n"
    assert not second.created
    await sb.destroy()
    third = SandboxHolder(session, sandbox_id=first.id)
    with pytest.raises(SandboxGoneError, match=str(first.id)):
        await third.sandbox()
    with pytest.raises(SandboxGoneError):  # and it stays an error: nothing is re-created
        await third.sandbox()
    with pytest.raises(ValueError, match="sandbox_id"):
        SandboxHolder(session, sandbox_id="")


async def test_idle_bound_destroys_an_unused_sandbox(
    emulator: LocalServer, session: AsyncSession
) -> None:
    holder = SandboxHolder(session, idle_timeout=0.3)
    async with holder.use() as sb:
        sandbox_id = sb.id
    with anyio.fail_after(10):
        await holder.reap_idle()
    assert holder.gone
    with pytest.raises(NotFoundError):
        await (await session.sandboxes.get(sandbox_id)).exec("true", [])
    with pytest.raises(SandboxGoneError, match="without use"):
        await holder.sandbox()


# ---------------------------------------------------------------- output budget and errors


def test_budget_is_bounded_in_bytes_and_keeps_head_and_tail() -> None:
    budget = OutputBudget.of(10)
    for _ in range(100):
        budget.add("é" * 7)  # 2 bytes per character
    text, cut = budget.render()
    assert cut and budget.truncated and budget.seen == 1400
    head, _, tail = text.partition("\n... [")
    assert head == "ééé" or head == "éé"  # never half a character
    assert len(head.encode()) <= 5 and len(tail.rpartition("\n")[2].encode()) <= 5
    assert "bytes cut" in text
    whole = OutputBudget.of(10)
    whole.add("é" * 5)
    assert whole.render() == ("é" * 5, False)
    with pytest.raises(ValueError, match="limit"):
        OutputBudget.of(1)


def test_tool_errors_never_carry_a_foreign_exception_text() -> None:
    err = tool_error(RuntimeError("key=sk-very-secret-123"))
    assert "sk-very" not in str(err) and err.message == "internal error (RuntimeError)"
    assert not err.retryable
    bad = tool_error(ValueError("timeout must be > 0"))
    assert bad.message == "invalid input: timeout must be > 0" and not bad.retryable
    gone = tool_error(SandboxGoneError("sandbox sb_1 was destroyed"))
    assert "create a new sandbox" in gone.message


async def test_a_429_is_a_retryable_tool_error(
    emulator: LocalServer, session: AsyncSession
) -> None:
    emulator.faults.status(429, route="/v1/sandboxes", method="POST", times=None, retry_after=0)
    with pytest.raises(RateLimitError) as info:
        await SandboxHolder(session).sandbox()
    err = tool_error(info.value)
    assert err.retryable and err.retry_after == 0
    assert "429" in str(err) and "try again" in str(err)
    assert emulator.api_key not in str(err) and err.to_dict()["retryable"] is True


# ---------------------------------------------------------------- commands and files


@pytest.fixture
async def sandbox(session: AsyncSession) -> AsyncIterator[Any]:
    sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
    async with sb:
        await sb.exec("mkdir", ["-p", "/workspace"])
        yield sb


async def collect(sb: Any, argv: list[str], **kw: Any) -> tuple[Any, str, str]:
    out: list[str] = []
    err: list[str] = []
    outcome = await core.run_command(
        sb, argv, lambda k, d: (out if k == "stdout" else err).append(d), cwd="/workspace", **kw
    )
    return outcome, "".join(out), "".join(err)


async def test_commands_get_env_cwd_and_eof_and_the_env_stays_off_the_command_line(
    sandbox: Any,
) -> None:
    script = (
        'pwd; printf "%s\\n" "$SECRET_X"; read v || echo eof; ps -eo args | grep -c "sk-[v]alue"'
    )
    outcome, out, _ = await collect(sandbox, ["sh", "-c", script], env={"SECRET_X": "sk-value"})
    assert outcome.exit_code == 1  # grep -c found nothing
    assert out == "/workspace\nsk-value\neof\n0\n"  # no process shows the value
    missing, _, err = await collect(sandbox, ["no-such-program-x"])
    assert missing.exit_code == 127 and "command not found" in err
    with pytest.raises(ValueError, match="env"):
        await collect(sandbox, ["true"], env={"BAD NAME": "x"})


async def test_a_background_child_does_not_hold_up_the_command(sandbox: Any) -> None:
    script = "(sleep 30; echo late) & echo $! > /tmp/bg.pid; printf done"
    with anyio.fail_after(20):  # a hang guard: the exec would otherwise wait 30 s
        outcome, out, _ = await collect(sandbox, ["sh", "-c", script])
    assert (outcome.exit_code, out) == (0, "done")
    alive = await sandbox.sh('kill -0 "$(cat /tmp/bg.pid)"')
    assert alive.exit_code == 0  # the child was not killed either


async def test_cancel_kills_the_command_and_leaves_the_sandbox_usable(sandbox: Any) -> None:
    script = "echo $$ > /tmp/run.pid; echo started; exec sleep 300"
    with anyio.CancelScope() as scope:

        async def saw(kind: str, text: str) -> None:
            scope.cancel()

        await core.run_command(sandbox, ["sh", "-c", script], saw, cwd="/workspace")
    assert scope.cancelled_caught
    with anyio.fail_after(10):
        while (await sandbox.sh('kill -0 "$(cat /tmp/run.pid)"')).exit_code == 0:
            await anyio.sleep(0.02)
    assert (await sandbox.exec("echo", ["ok"])).stdout == "ok\n"


async def test_a_sandbox_destroyed_under_a_command_is_gone(session: AsyncSession) -> None:
    sb = await session.sandboxes.create(shape="s-1vcpu-256mb")

    async def destroy_when_started(kind: str, text: str) -> None:
        await sb.destroy()

    with pytest.raises(SandboxGoneError):
        await core.run_command(
            sb, ["sh", "-c", "echo go; sleep 300"], destroy_when_started, cwd="/"
        )


async def test_file_helpers_raise_builtin_errors(sandbox: Any) -> None:
    await core.write_file(sandbox, "/workspace/d/f.txt", b"\x00data\xff")
    assert await core.read_file(sandbox, "/workspace/d/f.txt") == b"\x00data\xff"
    await sandbox.exec("ln", ["-s", "/workspace/d/f.txt", "/workspace/link"])
    await core.write_file(sandbox, "/workspace/link", b"through")
    assert await core.read_file(sandbox, "/workspace/d/f.txt") == b"through"
    info = await core.stat(sandbox, "/workspace/d/f.txt")
    assert (info.name, info.is_dir, info.size) == ("f.txt", False, 7)
    names = [(e.name, e.is_dir) for e in await core.list_dir(sandbox, "/workspace")]
    assert names == [("d", True), ("link", False)]
    cases = [
        (FileNotFoundError, core.read_file(sandbox, "/workspace/missing")),
        (IsADirectoryError, core.read_file(sandbox, "/workspace/d")),
        (NotADirectoryError, core.write_file(sandbox, "/workspace/d/f.txt/x", b"")),
        (FileExistsError, core.make_dir(sandbox, "/workspace/d/f.txt")),
        (NotADirectoryError, core.list_dir(sandbox, "/workspace/d/f.txt")),
        (ValueError, core.remove(sandbox, "/", working_dir="/workspace")),
        (ValueError, core.read_file(sandbox, "relative/path")),
    ]
    for kind, call in cases:
        with pytest.raises(kind):
            await call
    await core.remove(sandbox, "/workspace/d", working_dir="/workspace")
    assert not await core.exists(sandbox, "/workspace/d")


async def test_merged_output_keeps_the_order_the_command_wrote_it(sandbox: Any) -> None:
    script = "for i in 1 2 3 4 5; do printf o$i; printf e$i >&2; done"
    for _ in range(3):  # separate relays could reorder this; one stream cannot
        outcome, out, err = await collect(sandbox, ["sh", "-c", script], merge_output=True)
        assert (outcome.exit_code, out, err) == (0, "o1e1o2e2o3e3o4e4o5e5", "")
    missing, out, _ = await collect(sandbox, ["no-such-program-x"], merge_output=True)
    assert missing.exit_code == 127 and out == "no-such-program-x: command not found\n"
