"""SandboxPool under faults: cancellation anywhere, Ctrl-C, 429/503 bursts, 402/403, lost create
answers. The invariant everywhere: afterwards the API lists no live sandbox, and every create
attempt is accounted for (``server.request_count("POST", "/v1/sandboxes")``).
"""

from __future__ import annotations

import os
import random
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _emulator import child_process, python_argv
from _pool_support import SHAPE, live_ids

from createos_sandbox_async import (
    AsyncSession,
    PaymentRequiredError,
    PermissionDeniedError,
    PoolCleanupError,
    RateLimitError,
    RetryPolicy,
    Sandbox,
    SandboxPool,
)

CREATE = "/v1/sandboxes"

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(emulator: Any) -> Any:
    """The emulator (tests/conftest.py) under this file's name for it."""
    return emulator


@pytest.fixture
async def session(server: Any) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(api_key=server.add_tenant(), base_url=server.base_url) as s:
        yield s


async def wait_for(predicate: Any, seconds: float = 20.0) -> None:
    """Poll a cheap condition with a bound (the server gives no event to wait on)."""
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.002)


@pytest.mark.parametrize("seed", range(6))
async def test_cancel_at_a_random_point_leaves_no_sandbox(
    server: Any, session: AsyncSession, seed: int
) -> None:
    rng = random.Random(seed)
    where = ("job", "create", "destroy")[seed % 3]
    k = rng.randrange(1, 60)
    if where == "create":  # creates in flight when the cancel lands: the answer comes slowly
        server.faults.slow(route=CREATE, method="POST", times=None, delay=0.005, chunk_size=32)
    if where == "destroy":
        server.faults.slow(
            route="/v1/sandboxes/*", method="DELETE", times=None, delay=0.005, chunk_size=8
        )
    started = 0

    async def job(sb: Sandbox, i: int) -> int:
        nonlocal started
        started += 1
        await anyio.sleep(rng.random() * 0.01)
        return i

    creates_before = server.request_count("POST", CREATE)
    async with SandboxPool(session, shape=SHAPE, max_concurrency=16) as pool:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_at_k() -> None:
                    if where == "job":
                        await wait_for(lambda: started >= k)
                    elif where == "create":
                        await wait_for(lambda: server.request_count("POST", CREATE) >= k)
                    else:
                        await wait_for(
                            lambda: server.request_count("DELETE", "/v1/sandboxes/*") >= k
                        )
                    scope.cancel()

                tg.start_soon(cancel_at_k)
                await pool.map(job, range(100))
                pytest.fail("the map should have been cancelled")
        assert scope.cancelled_caught
    stats = pool.stats
    assert await live_ids(session) == []
    assert stats.alive == 0 and stats.cleanup_failed == ()
    assert stats.created == stats.destroyed
    # Creates are shielded: every create the server got is one the pool knew about.
    assert server.request_count("POST", CREATE) - creates_before == stats.created


SIGINT_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    import anyio
    from createos_sandbox_async import AsyncSession, SandboxPool

    async def main():
        started = 0
        async with AsyncSession(api_key=os.environ["POOL_KEY"],
                                base_url=os.environ["POOL_URL"]) as session:
            async def job(sb, i):
                nonlocal started
                started += 1
                if started == 10:
                    print("started", flush=True)
                await anyio.sleep(60)

            async with SandboxPool(session, shape="s-1vcpu-256mb", max_concurrency=10) as pool:
                await pool.map(job, range(100))

    if sys.argv[1] == "asyncio":
        asyncio.run(main())
    else:
        anyio.run(main)
    """
)


@pytest.mark.parametrize("runner", ["asyncio", "anyio"])
async def test_ctrl_c_under_asyncio_run_destroys_everything(
    server: Any, tmp_path: Path, runner: str
) -> None:
    key = server.add_tenant()
    script = tmp_path / "interrupted.py"
    script.write_text(SIGINT_SCRIPT)
    env = {**os.environ, "POOL_KEY": key, "POOL_URL": server.base_url}
    # python_argv: Ctrl-C live in the child even when this run has SIGINT ignored (`pytest &`).
    async with child_process(
        python_argv(str(script), runner), env=env, cwd=str(Path(__file__).parent.parent)
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        with anyio.fail_after(60):
            line = b""
            while b"started" not in line:
                chunk = await proc.stdout.receive()
                line += chunk
        async with AsyncSession(api_key=key, base_url=server.base_url) as session:
            assert len(await live_ids(session)) == 10
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(60):
                code = await proc.wait()
            err = b""
            async for chunk in proc.stderr:
                err += chunk
            assert code != 0 and b"KeyboardInterrupt" in err, err.decode(errors="replace")
            assert await live_ids(session) == []
    assert server.request_count("POST", CREATE) >= 10


@pytest.mark.parametrize("status", [429, 503])
async def test_rate_limit_burst_is_absorbed_with_bounded_attempts(
    server: Any, session: AsyncSession, status: int
) -> None:
    burst = server.faults.status(status, route=CREATE, method="POST", times=25, retry_after=0.01)

    async def job(sb: Sandbox, i: int) -> int:
        return i * i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=8) as pool:
        results = await pool.map(job, range(60))
    assert results == [i * i for i in range(60)]  # no item lost
    assert burst.hits == 25
    # The pool sends its creates with transport retries off: attempts = successes + 429s, exactly.
    assert server.request_count("POST", CREATE) == 60 + 25
    assert pool.stats.rate_limited == 25 and pool.stats.retries == 25
    assert pool.stats.create_limit == 8  # the window halved, then grew back
    assert await live_ids(session) == []


async def test_persistent_rate_limit_gives_up_after_create_attempts(
    server: Any, session: AsyncSession
) -> None:
    server.faults.status(429, route=CREATE, method="POST", times=None, retry_after=0)

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=2, create_attempts=3, backoff=0.001
    ) as pool:
        results = await pool.map(job, range(4), return_exceptions=True)
    assert all(isinstance(r, RateLimitError) for r in results)
    assert server.request_count("POST", CREATE) == 4 * 3
    assert pool.stats.created == 0


@pytest.mark.parametrize(
    ("status", "error"), [(402, PaymentRequiredError), (403, PermissionDeniedError)]
)
async def test_no_credit_or_quota_stops_the_batch_with_one_error(
    server: Any, session: AsyncSession, status: int, error: type[Exception]
) -> None:
    fault: list[Any] = []
    done = 0

    async def job(sb: Sandbox, i: int) -> int:
        nonlocal done
        done += 1
        if done == 10 and not fault:  # credit runs out mid-batch
            fault.append(server.faults.status(status, route=CREATE, method="POST", times=None))
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=8) as pool:
        with pytest.raises(error) as info:
            await pool.map(job, range(500), return_exceptions=True)
        assert not isinstance(info.value, BaseExceptionGroup)
        # Only the creates already in flight met the error; nothing was sent after it.
        assert 1 <= fault[0].hits <= 8
        sent = server.request_count("POST", CREATE)
        with pytest.raises(error):  # the pool stays stopped, without asking the server again
            await pool.map(job, range(5))
        assert server.request_count("POST", CREATE) == sent
    assert done < 500
    assert pool.stats.created == pool.stats.destroyed
    assert await live_ids(session) == []


async def test_a_job_that_raises_does_not_leak_its_sandbox(
    server: Any, session: AsyncSession
) -> None:
    ids: list[str] = []

    async def job(sb: Sandbox, i: int) -> int:
        ids.append(sb.id)
        raise OSError("job crashed")

    async with SandboxPool(session, shape=SHAPE, max_concurrency=1, reuse=True) as pool:
        with pytest.raises(OSError, match="job crashed"):
            await pool.map(job, [1])
        assert await live_ids(session) == []  # destroyed at once, not only at pool exit
    assert len(ids) == 1
    sb = await session.sandboxes.get(ids[0])
    assert str(sb.status) == "destroyed"


async def test_a_create_whose_answer_never_came_is_found_and_destroyed(
    server: Any, session: AsyncSession
) -> None:
    # The server creates the sandbox, sends headers, then never the body: the client times out.
    lost = server.faults.stall(route=CREATE, method="POST", times=1)

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=2, create_timeout=1.0, backoff=0.001
    ) as pool:
        assert await pool.map(job, range(4)) == [0, 1, 2, 3]
        assert len(await live_ids(session)) == 1  # the orphan, unknown to the pool so far
    assert lost.hits == 1
    assert await live_ids(session) == []
    assert pool.stats.retries == 1
    assert pool.stats.created == server.request_count("POST", CREATE) == 4 + 1
    assert pool.stats.created == pool.stats.destroyed


@pytest.mark.parametrize("body_raises", [False, True])
async def test_cleanup_failure_is_reported_by_id(server: Any, body_raises: bool) -> None:
    async def job(sb: Sandbox, i: int) -> int:
        return i

    fast = RetryPolicy(base=0.001, cap=0.001)
    async with AsyncSession(
        api_key=server.add_tenant(), base_url=server.base_url, retry=fast
    ) as session:
        pool = SandboxPool(session, shape=SHAPE, max_concurrency=1, reuse=True, cleanup_timeout=5)
        expected: type[BaseException] = ValueError if body_raises else PoolCleanupError
        with pytest.raises(expected) as info:
            async with pool:
                await pool.map(job, [1])
                kept = await live_ids(session)
                # Every DELETE fails from here on (the transport's own retries included).
                server.faults.status(500, route="/v1/sandboxes/*", method="DELETE", times=None)
                if body_raises:
                    raise ValueError("the user's own error")
        assert len(kept) == 1
        assert pool.stats.cleanup_failed == tuple(kept)
        if body_raises:  # the user's error wins; the leak is noted on it (and logged)
            assert any(kept[0] in note for note in info.value.__notes__)
        else:
            assert isinstance(info.value, PoolCleanupError)
            assert info.value.ids == tuple(kept)
            assert "500" in str(info.value.errors[kept[0]])
        server.faults.clear()
        for sid in kept:
            await (await session.sandboxes.get(sid)).destroy()


async def test_fork_strategy_absorbs_rate_limits_on_fork(
    server: Any, session: AsyncSession
) -> None:
    burst = server.faults.status(
        429, route="/v1/sandboxes/*/fork", method="POST", times=3, retry_after=0.01
    )

    async def job(sb: Sandbox, i: int) -> str | None:
        return sb.data.forked_from

    async with SandboxPool(session, shape=SHAPE, max_concurrency=3, strategy="fork") as pool:
        parents = await pool.map(job, range(5))
    assert len(set(parents)) == 1 and parents[0] is not None
    assert burst.hits == 3
    # Forks are sent with transport retries off too: 5 children + 3 refused attempts.
    assert server.request_count("POST", "/v1/sandboxes/*/fork") == 5 + 3
    assert pool.stats.rate_limited == 3 and pool.stats.created == 1 + 5
    assert await live_ids(session) == []


async def test_a_fork_whose_answer_never_came_is_found_and_destroyed(
    server: Any, session: AsyncSession
) -> None:
    # The fork happens server-side, its answer never arrives: only `forked_from` names the child
    # as the pool's (a fork carries no pool name prefix).
    lost = server.faults.stall(route="/v1/sandboxes/*/fork", method="POST", times=1)

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=1, strategy="fork", create_timeout=1.0, backoff=0.001
    ) as pool:
        assert await pool.map(job, range(2)) == [0, 1]
        live = await live_ids(session)
        assert len(live) == 2  # the paused template and the orphaned child
    assert lost.hits == 1
    assert await live_ids(session) == []
    assert pool.stats.created == pool.stats.destroyed == 1 + 2 + 1  # template, children, orphan


async def test_a_create_answered_5xx_is_followed_by_a_sweep_of_this_pool_only(
    server: Any, session: AsyncSession
) -> None:
    # A 5xx may come from a proxy after the backend created the sandbox: the pool cannot know, so
    # at exit it sweeps for its own names. The "orphan" stands for such a sandbox; the bystander
    # belongs to someone else on the same account and must survive the sweep.
    bystander = await session.sandboxes.create(shape=SHAPE, name="not-the-pools")
    failed = server.faults.status(502, route=CREATE, method="POST", times=1)

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=1, backoff=0.001) as pool:
        assert await pool.map(job, range(2)) == [0, 1]
        orphan = await session.sandboxes.create(shape=SHAPE, name=pool.name_prefix + "999")
    assert failed.hits == 1 and pool.stats.retries == 1
    assert await live_ids(session) == [bystander.id]
    assert str((await session.sandboxes.get(orphan.id)).status) == "destroyed"
    await bystander.destroy()


async def test_prepare_raising_fails_the_item_and_destroys_its_sandbox_at_once(
    server: Any, session: AsyncSession
) -> None:
    prepared: list[str] = []

    async def prepare(sb: Sandbox) -> None:
        prepared.append(sb.id)
        if len(prepared) == 2:
            raise OSError("prepare broke")

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=1, prepare=prepare) as pool:
        results = await pool.map(job, range(3), return_exceptions=True)
        assert results[0] == 0 and results[2] == 2
        assert isinstance(results[1], OSError) and str(results[1]) == "prepare broke"
        assert await live_ids(session) == []  # not kept until the pool's exit
    assert pool.stats.failed == 1 and pool.stats.created == pool.stats.destroyed == 3
    assert str((await session.sandboxes.get(prepared[1])).status) == "destroyed"


async def test_reset_raising_destroys_the_sandbox_instead_of_reusing_it(
    server: Any, session: AsyncSession
) -> None:
    used: list[str] = []

    async def reset(sb: Sandbox) -> None:
        raise OSError("reset broke")

    async def job(sb: Sandbox, i: int) -> int:
        used.append(sb.id)
        return i

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=1, reuse=True, reset=reset
    ) as pool:
        assert await pool.map(job, range(3)) == [0, 1, 2]  # the job succeeded: no item fails
        assert await live_ids(session) == []  # each sandbox went at once
    assert len(set(used)) == 3  # a sandbox whose reset failed never serves another item
    assert pool.stats.created == pool.stats.destroyed == 3


@pytest.mark.parametrize("kind", ["iterator", "async iterator"])
async def test_an_input_that_raises_stops_the_run_with_its_error(
    server: Any, session: AsyncSession, kind: str
) -> None:
    def items() -> Any:
        yield from range(3)
        raise LookupError("input broke")

    async def aitems() -> Any:
        for i in items():
            yield i

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=2) as pool:
        with pytest.raises(LookupError, match="input broke"):
            await pool.map(job, items() if kind == "iterator" else aitems())
        assert await live_ids(session) == []
    assert pool.stats.created == pool.stats.destroyed


async def test_on_progress_raising_stops_the_run_with_its_error(
    server: Any, session: AsyncSession
) -> None:
    calls = 0

    def on_progress(stats: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # once: the run's final report must not be what raises it
            raise ArithmeticError("progress broke")

    async def job(sb: Sandbox, i: int) -> int:
        return i

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=2, on_progress=on_progress, progress_interval=0.001
    ) as pool:
        with pytest.raises(ArithmeticError, match="progress broke") as info:
            await pool.map(job, range(20))
        assert not isinstance(info.value, BaseExceptionGroup)
        assert await live_ids(session) == []
    assert calls >= 1 and pool.stats.completed < 20
    assert pool.stats.created == pool.stats.destroyed
