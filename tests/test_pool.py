"""SandboxPool against the local emulator: ordering, errors as data, reuse, prepare, fork, warm,
acquire, streaming input with bounded memory, progress, argument checks.

Each test gets its own tenant (``server.add_tenant()``), so "what is left" is read through the
public list API and covers only the sandboxes that test made.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _pool_support import SHAPE, live_ids

from createos_sandbox_async import AsyncSession, PoolStats, Sandbox, SandboxPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(emulator: Any) -> Any:
    """The emulator (tests/conftest.py) under this file's name for it."""
    return emulator


@pytest.fixture
async def session(server: Any) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(api_key=server.add_tenant(), base_url=server.base_url) as s:
        yield s


async def test_map_returns_results_in_input_order(session: AsyncSession) -> None:
    async def job(sb: Sandbox, i: int) -> tuple[int, str]:
        # Later items finish first: completion order is the reverse of input order.
        await anyio.sleep((30 - i) * 0.002)
        return i, sb.id

    async with SandboxPool(session, shape=SHAPE, max_concurrency=30) as pool:
        results = await pool.map(job, range(30))
        assert await live_ids(session) == []  # reuse=False: destroyed as each item ends
    assert [i for i, _ in results] == list(range(30))
    assert len({sid for _, sid in results}) == 30  # one fresh sandbox per item
    assert pool.stats.created == pool.stats.destroyed == 30
    assert pool.stats.completed == 30 and pool.stats.failed == 0


async def test_map_runs_real_commands_within_the_concurrency_bound(session: AsyncSession) -> None:
    running = most_running = most_alive = 0

    async def job(sb: Sandbox, i: int) -> str:
        nonlocal running, most_running, most_alive
        running += 1
        most_running = max(most_running, running)
        most_alive = max(most_alive, pool.stats.alive)
        try:
            res = await sb.exec("python3", ["-c", f"print({i} * {i})"])
        finally:
            running -= 1
        return str(res.stdout).strip()

    async with SandboxPool(session, shape=SHAPE, max_concurrency=4) as pool:
        results = await pool.map(job, [3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    assert results == ["9", "1", "16", "1", "25", "81", "4", "36", "25", "9"]
    assert most_running <= 4
    assert most_alive <= 4
    assert await live_ids(session) == []


async def test_return_exceptions_gives_partial_failure_as_data(session: AsyncSession) -> None:
    async def job(sb: Sandbox, i: int) -> int:
        if i % 4 == 1:
            raise ValueError(f"bad item {i}")
        return i * 10

    async with SandboxPool(session, shape=SHAPE, max_concurrency=5) as pool:
        results = await pool.map(job, range(12), return_exceptions=True)
    for i, r in enumerate(results):
        if i % 4 == 1:
            assert isinstance(r, ValueError) and str(r) == f"bad item {i}"
        else:
            assert r == i * 10
    assert pool.stats.failed == 3 and pool.stats.completed == 9
    assert await live_ids(session) == []


async def test_first_failure_cancels_the_rest_and_is_raised_as_itself(
    session: AsyncSession,
) -> None:
    started: list[int] = []
    finished: list[int] = []

    async def job(sb: Sandbox, i: int) -> int:
        started.append(i)
        if i == 3:
            raise KeyError("item 3")
        await anyio.sleep(30)  # would hang the test if not cancelled
        finished.append(i)
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=4) as pool:
        with pytest.raises(KeyError, match="item 3"):
            await pool.map(job, range(40))
        # The failing item's sandbox and the cancelled ones are gone before the pool exits.
        assert await live_ids(session) == []
    assert finished == []
    assert sorted(started) == [0, 1, 2, 3]  # nothing new started after the failure
    assert pool.stats.created == pool.stats.destroyed


async def test_failures_racing_the_cancellation_come_as_an_exception_group(
    session: AsyncSession,
) -> None:
    go = anyio.Event()
    arrived = 0

    async def job(sb: Sandbox, i: int) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            go.set()  # both items wake in the same loop iteration
        await go.wait()
        raise RuntimeError(f"item {i}")

    async with SandboxPool(session, shape=SHAPE, max_concurrency=2) as pool:
        with pytest.raises(ExceptionGroup) as info:
            await pool.map(job, range(2))
    assert sorted(str(e) for e in info.value.exceptions) == ["item 0", "item 1"]
    assert await live_ids(session) == []


async def test_reuse_prepares_each_sandbox_once_and_resets_between_items(
    session: AsyncSession,
) -> None:
    prepared: list[str] = []
    resets: list[str] = []

    async def prepare(sb: Sandbox) -> None:
        prepared.append(sb.id)
        await sb.files.upload("/workspace/setup.txt", b"ready")

    async def reset(sb: Sandbox) -> None:
        resets.append(sb.id)

    async def job(sb: Sandbox, i: int) -> str:
        res = await sb.exec("cat", ["/workspace/setup.txt"])
        return f"{res.stdout}-{i}"

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=3, reuse=True, prepare=prepare, reset=reset
    ) as pool:
        results = await pool.map(job, range(15))
        assert len(await live_ids(session)) == pool.stats.created  # kept for the next items
    assert results == [f"ready-{i}" for i in range(15)]
    assert pool.stats.created <= 3
    assert sorted(prepared) == sorted(set(prepared)) and len(prepared) == pool.stats.created
    assert len(resets) == 15
    assert await live_ids(session) == []


async def test_reuse_discards_a_sandbox_whose_job_raised(session: AsyncSession) -> None:
    used: list[str] = []

    async def job(sb: Sandbox, i: int) -> int:
        used.append(sb.id)
        if i == 0:
            raise ValueError("dirty")
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=1, reuse=True) as pool:
        results = await pool.map(job, range(3), return_exceptions=True)
    assert isinstance(results[0], ValueError) and results[1:] == [1, 2]
    assert used[0] != used[1] and used[1] == used[2]
    assert pool.stats.created == 2 == pool.stats.destroyed


async def test_fork_strategy_prepares_one_template_and_forks_children(
    session: AsyncSession,
) -> None:
    prepared: list[str] = []

    async def prepare(sb: Sandbox) -> None:
        prepared.append(sb.id)
        await sb.files.upload("/workspace/model.txt", b"weights")

    async def job(sb: Sandbox, i: int) -> tuple[str, str | None]:
        res = await sb.exec("cat", ["/workspace/model.txt"])
        return str(res.stdout), sb.data.forked_from

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=3, strategy="fork", prepare=prepare
    ) as pool:
        results = await pool.map(job, range(5))
    assert len(prepared) == 1
    assert results == [("weights", prepared[0])] * 5
    assert pool.stats.created == 1 + 5
    assert await live_ids(session) == []


async def test_warm_sandboxes_are_created_ahead(server: Any, session: AsyncSession) -> None:
    async with SandboxPool(session, shape=SHAPE, max_concurrency=2, warm=2) as pool:
        with anyio.fail_after(10):
            while pool.stats.alive < 2:  # bounded poll: the filler works in the background
                await anyio.sleep(0.005)
        assert len(await live_ids(session)) == 2
        seen: list[str] = []

        async def job(sb: Sandbox, i: int) -> int:
            seen.append(sb.id)
            return i

        assert await pool.map(job, range(4)) == [0, 1, 2, 3]
        assert len(set(seen)) == 4
    assert pool.stats.created <= 4 + 2
    assert await live_ids(session) == []


async def test_acquire_checks_out_and_returns_a_sandbox(session: AsyncSession) -> None:
    async with SandboxPool(session, shape=SHAPE, max_concurrency=2, reuse=True) as pool:
        async with pool.acquire() as first:
            res = await first.exec("echo", ["hi"])
            assert res.stdout == "hi\n"
        async with pool.acquire() as second:
            assert second.id == first.id  # reuse=True: the same sandbox came back
        with pytest.raises(ZeroDivisionError):
            async with pool.acquire() as third:
                assert third.id == first.id
                _ = 1 / 0
        assert await live_ids(session) == []  # a block that raised destroys its sandbox
    assert pool.stats.created == pool.stats.destroyed == 1


async def test_acquire_without_reuse_destroys_on_exit(session: AsyncSession) -> None:
    async with SandboxPool(session, shape=SHAPE) as pool:
        async with pool.acquire() as sb:
            assert await live_ids(session) == [sb.id]
        assert await live_ids(session) == []


async def test_streaming_input_is_read_lazily_with_bounded_memory(session: AsyncSession) -> None:
    read = 0
    done = 0
    most_held = 0
    max_concurrency, read_ahead = 8, 4

    async def source() -> AsyncIterator[int]:
        nonlocal read, most_held
        for i in range(10_000):
            read += 1
            most_held = max(most_held, read - done)
            yield i

    async def job(sb: Sandbox, i: int) -> int:
        return i + 1

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=max_concurrency, reuse=True, read_ahead=read_ahead
    ) as pool:
        async for item, result in pool.as_completed(job, source()):
            assert result == item + 1
            done += 1
            # Never read far ahead of what has been consumed.
            assert read - done <= max_concurrency + read_ahead + 2
    assert done == read == 10_000
    assert most_held <= max_concurrency + read_ahead + 2
    assert pool.stats.created <= max_concurrency
    assert pool.stats.completed == 10_000


async def test_as_completed_yields_exceptions_and_stops_on_break(session: AsyncSession) -> None:
    async def job(sb: Sandbox, i: int) -> int:
        if i == 2:
            raise ValueError("two")
        await anyio.sleep(0.001 * i)
        return i

    got: dict[int, Any] = {}
    async with SandboxPool(session, shape=SHAPE, max_concurrency=3) as pool:
        async for item, result in pool.as_completed(job, range(6)):
            got[item] = result
        assert sorted(got) == list(range(6))
        assert isinstance(got[2], ValueError)
        taken = 0
        stream = pool.as_completed(job, range(1000))
        async for _item, _result in stream:
            taken += 1
            if taken == 3:
                break
        await stream.aclose()
    assert pool.stats.completed + pool.stats.failed < 6 + 1000
    assert await live_ids(session) == []


async def test_map_accepts_an_async_iterable_and_keeps_order(session: AsyncSession) -> None:
    async def source() -> AsyncIterator[str]:
        for word in ["a", "bb", "ccc", "dddd"]:
            yield word

    async def job(sb: Sandbox, word: str) -> int:
        await anyio.sleep(0.01 / len(word))
        return len(word)

    async with SandboxPool(session, shape=SHAPE, max_concurrency=4) as pool:
        assert await pool.map(job, source()) == [1, 2, 3, 4]


async def test_progress_callback_and_bar(session: AsyncSession) -> None:
    seen: list[PoolStats] = []
    out = io.StringIO()
    from createos_sandbox_async._progress import ProgressBar

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(
        session,
        shape=SHAPE,
        max_concurrency=4,
        on_progress=seen.append,
        progress=ProgressBar(out, tty=False),
    ) as pool:
        await pool.map(job, range(20))
    assert seen and seen[-1].completed == 20 and seen[-1].total == 20
    assert seen[-1].p50 is not None and seen[-1].p95 is not None
    assert seen[-1].p50 <= seen[-1].p95
    assert "20/20" in out.getvalue() and "ok 20" in out.getvalue()


async def test_bad_arguments_fail_before_any_request(server: Any, session: AsyncSession) -> None:
    before = server.request_count()
    with pytest.raises(ValueError, match="shape"):
        SandboxPool(session, shape="")
    with pytest.raises(ValueError, match="max_concurrency"):
        SandboxPool(session, shape=SHAPE, max_concurrency=0)
    with pytest.raises(ValueError, match="strategy"):
        SandboxPool(session, shape=SHAPE, strategy="clone")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="colour"):
        SandboxPool(session, shape=SHAPE, colour="red")
    with pytest.raises(ValueError, match="envs: invalid key"):  # checked as a create checks it
        SandboxPool(session, shape=SHAPE, envs={"1BAD": "v"})
    with pytest.raises(TypeError, match="name_prefix must be a str"):
        SandboxPool(session, shape=SHAPE, name_prefix=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        SandboxPool(session, shape=SHAPE, name="mine")
    with pytest.raises(ValueError, match="reset"):
        SandboxPool(session, shape=SHAPE, reset=lambda sb: anyio.lowlevel.checkpoint())
    with pytest.raises(ValueError, match="warm"):
        SandboxPool(session, shape=SHAPE, warm=-1)
    pool = SandboxPool(session, shape=SHAPE)
    with pytest.raises(RuntimeError, match="async with"):
        await pool.map(lambda sb, i: anyio.lowlevel.checkpoint(), [1])
    async with pool:
        with pytest.raises(TypeError, match="job"):
            await pool.map("not callable", [1])  # type: ignore[arg-type]
    assert server.request_count() == before
