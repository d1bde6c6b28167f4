"""Crash safety: the naming convention, pool auto-pause, and ``session.sandboxes.reap``.

The story under test: a batch (a Python child running SandboxPool) is killed by SIGKILL, so no
cleanup runs; its sandboxes stay, auto-pause armed; ``reap(run_id=...)`` then finds and destroys
exactly those, and nobody else's.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _emulator import child_process, python_argv
from _pool_support import SHAPE, live_ids

from createos_sandbox_async import AsyncSession, SandboxPool
from createos_sandbox_async.naming import (
    SandboxName,
    new_run_id,
    parse_sandbox_name,
    sandbox_name,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def session(emulator: Any) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(api_key=emulator.add_tenant(), base_url=emulator.base_url) as s:
        yield s


# -- naming -----------------------------------------------------------------------------------


def test_a_name_carries_prefix_run_id_and_creation_time() -> None:
    when = dt.datetime(2026, 12, 4, 14, 51, 7, 123456, tzinfo=dt.UTC)
    name = sandbox_name("nightly-eval", run_id="3f9a1c2e", created_at=when, seq=17)
    assert name == "nightly-eval-3f9a1c2e-20261204145107-17"
    assert parse_sandbox_name(name) == SandboxName(
        "nightly-eval", "3f9a1c2e", when.replace(microsecond=0), 17
    )
    assert parse_sandbox_name(sandbox_name("ci", run_id="a1", created_at=when)) == SandboxName(
        "ci", "a1", when.replace(microsecond=0)
    )
    # another zone is the same instant in UTC
    other = when.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert sandbox_name("ci", run_id="a1", created_at=other) == "ci-a1-20261204145107"


def test_the_longest_name_is_a_dns_label() -> None:
    name = sandbox_name("p" * 30, run_id="r" * 8, seq=99_999_999)
    assert len(name) <= 63
    assert parse_sandbox_name(name) is not None
    run = new_run_id()
    assert len(run) == 8 and parse_sandbox_name(sandbox_name("x", run_id=run)) is not None


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "happy-otter",
        "pool-3f9a1c2e-1",
        "pool-3f9a1c2e-20261399000000-1",
        "Pool-a-20261204145107",
    ],
)
def test_other_names_do_not_parse(name: str | None) -> None:
    assert parse_sandbox_name(name) is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prefix": "Bad"}, ValueError, "prefix"),
        ({"prefix": "a" * 31}, ValueError, "prefix"),
        ({"prefix": 3}, TypeError, "prefix"),
        ({"run_id": "a-b"}, ValueError, "run_id"),
        ({"run_id": "123456789"}, ValueError, "run_id"),
        ({"seq": -1}, ValueError, "seq"),
        ({"seq": True}, TypeError, "seq"),
        ({"created_at": dt.datetime(2026, 1, 1)}, ValueError, "created_at"),
    ],
)
def test_bad_name_parts_are_refused_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"prefix": "ok", "run_id": "r1", **kwargs}
    with pytest.raises(error, match=match):
        sandbox_name(args.pop("prefix"), **args)


# -- reap filters and outcomes ---------------------------------------------------------------


async def test_reap_needs_a_filter_and_checks_arguments_before_sending(
    emulator: Any, session: AsyncSession
) -> None:
    before = emulator.request_count()
    with pytest.raises(ValueError, match="match_all"):
        await session.sandboxes.reap()
    with pytest.raises(ValueError, match="status"):
        await session.sandboxes.reap("x", status="destroyed")
    with pytest.raises(ValueError, match="run_id"):
        await session.sandboxes.reap(run_id="no-dashes")
    with pytest.raises(ValueError, match="older_than"):
        await session.sandboxes.reap(older_than=-1)
    with pytest.raises(TypeError, match="older_than"):
        await session.sandboxes.reap(older_than="1h")  # type: ignore[arg-type]
    assert emulator.request_count() == before


async def test_reap_filters_by_prefix_status_and_age(emulator: Any, session: AsyncSession) -> None:
    a = await session.sandboxes.create(shape=SHAPE, name="job-a")
    b = await session.sandboxes.create(shape=SHAPE, name="job-b")
    other = await session.sandboxes.create(shape=SHAPE, name="keep-me")
    await b.pause(wait=True)

    dry = await session.sandboxes.reap("job-", dry_run=True)
    assert dry.dry_run and sorted(dry.matched) == sorted([a.id, b.id])
    assert dry.destroyed == () and dry.ok
    assert {o.action for o in dry.outcomes} == {"would destroy"}
    assert "would destroy 2 of 2" in str(dry)
    assert sorted(await live_ids(session)) == sorted([a.id, b.id, other.id])

    paused = await session.sandboxes.reap("job-", status="paused", dry_run=True)
    assert paused.matched == (b.id,)
    young = await session.sandboxes.reap("job-", older_than=3600, dry_run=True)
    assert young.matched == ()  # created seconds ago
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    from createos_sandbox_async._reap import reap

    old = await reap(session, "job-", older_than=dt.timedelta(hours=1), dry_run=True, now=future)
    assert sorted(old.matched) == sorted([a.id, b.id])

    real = await session.sandboxes.reap("job-")
    assert not real.dry_run and sorted(real.destroyed) == sorted([a.id, b.id]) and real.ok
    assert {o.status for o in real.outcomes} == {"running", "paused"}  # as found
    assert await live_ids(session) == [other.id]


async def test_reap_goes_on_past_a_failed_destroy_and_reports_it(
    emulator: Any, session: AsyncSession
) -> None:
    boxes = [await session.sandboxes.create(shape=SHAPE, name=f"tmp-{i}") for i in range(3)]
    stuck = boxes[1]
    emulator.faults.status(500, route=f"/v1/sandboxes/{stuck.id}", method="DELETE", times=None)
    result = await session.sandboxes.reap("tmp-")
    assert result.failed == (stuck.id,)
    assert sorted(result.destroyed) == sorted([boxes[0].id, boxes[2].id])
    assert not result.ok
    failed = next(o for o in result.outcomes if o.action == "failed")
    assert failed.error is not None and "ServerError" in failed.error
    assert "1 failed" in str(result)
    emulator.faults.clear()
    assert await live_ids(session) == [stuck.id]


# -- pool: names and auto-pause --------------------------------------------------------------


async def test_pool_names_follow_the_convention_and_auto_pause_by_default(
    session: AsyncSession,
) -> None:
    seen: list[Any] = []

    async def job(sb: Any, _item: int) -> None:
        seen.append((await sb.refresh()).data)  # a create answer does not carry auto-pause

    async with SandboxPool(session, shape=SHAPE, name_prefix="batch", run_id="r42") as pool:
        await pool.map(job, range(2))
    assert pool.run_id == "r42" and pool.name_prefix == "batch-r42-"
    parsed = [parse_sandbox_name(view.name) for view in seen]
    assert all(p is not None and p.prefix == "batch" and p.run_id == "r42" for p in parsed)
    assert sorted(p.seq for p in parsed if p is not None) == [1, 2]
    assert {view.auto_pause_after_seconds for view in seen} == {1800}

    seen.clear()
    async with SandboxPool(session, shape=SHAPE, auto_pause_after_seconds=None) as pool:
        await pool.map(job, range(1))
    assert seen[0].auto_pause_after_seconds is None


@pytest.mark.emulator(auto_pause_scale=0.001)  # 60 s of auto-pause is 60 ms here
async def test_a_warm_sandbox_that_auto_paused_is_resumed_before_use(
    session: AsyncSession,
) -> None:
    async def job(sb: Any, _item: int) -> tuple[str, str]:
        return sb.id, (await sb.exec("echo", ["ok"], check=True)).stdout

    async with SandboxPool(session, shape=SHAPE, warm=1, auto_pause_after_seconds=60) as pool:
        with anyio.fail_after(20):
            while True:  # the warm sandbox is created, then auto-pauses while nobody uses it
                rows = [sb async for sb in session.sandboxes.list(status="paused")]
                if rows:
                    break
                await anyio.sleep(0.05)
        await anyio.sleep(1.0)  # idle past the pool's check threshold (PARKED_CHECK_AFTER)
        # the paused one was resumed and used, not handed out paused (exec would fail)
        assert await pool.map(job, range(1)) == [(rows[0].id, "ok\n")]


# -- the story: SIGKILL mid-batch, then reap --------------------------------------------------

BATCH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from createos_sandbox_async import AsyncSession, SandboxPool

    async def main():
        async with AsyncSession(api_key=os.environ["KEY"], base_url=os.environ["URL"]) as session:
            async def job(sandbox, item):
                await sandbox.exec("true")
                if item == 0:
                    print("started", flush=True)
                await asyncio.sleep(600)  # killed long before this ends

            async with SandboxPool(session, shape="s-1vcpu-256mb", max_concurrency=4,
                                   name_prefix="batch", run_id=sys.argv[1]) as pool:
                await pool.map(job, range(100))

    asyncio.run(main())
    """
)


async def test_a_batch_killed_by_sigkill_is_found_and_reaped_alone(
    emulator: Any, tmp_path: Path
) -> None:
    key = emulator.add_tenant()
    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT)
    env = {**os.environ, "KEY": key, "URL": emulator.base_url}
    async with AsyncSession(api_key=key, base_url=emulator.base_url) as session:
        # Bystanders of the same account: another run of the same prefix, and a plain name.
        other_run = await session.sandboxes.create(
            shape=SHAPE, name=sandbox_name("batch", run_id="0ther", seq=1)
        )
        plain = await session.sandboxes.create(shape=SHAPE, name="batch-notes")
        async with child_process(
            python_argv(str(script), "c0ffee"), env=env, cwd=str(Path(__file__).parent.parent)
        ) as proc:
            assert proc.stdout is not None
            with anyio.fail_after(60):
                out = b""
                while b"started" not in out:
                    out += await proc.stdout.receive()
                while len(await live_ids(session)) < 2 + 4:  # all 4 workers hold a sandbox
                    await anyio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(30):
                assert await proc.wait() == -signal.SIGKILL
        # No cleanup ran: the batch's sandboxes are still there, auto-pause armed.
        left = [sb async for sb in session.sandboxes.list()]
        batch = {sb.id for sb in left if (sb.data.name or "").startswith("batch-c0ffee-")}
        assert len(batch) == 4
        assert {sb.data.auto_pause_after_seconds for sb in left if sb.id in batch} == {1800}

        dry = await session.sandboxes.reap(run_id="c0ffee", dry_run=True)
        assert set(dry.matched) == batch and dry.destroyed == ()
        assert len(await live_ids(session)) == 6  # a dry run destroys nothing

        result = await session.sandboxes.reap(run_id="c0ffee")
        assert set(result.destroyed) == batch and result.ok
        assert sorted(await live_ids(session)) == sorted([other_run.id, plain.id])
        again = await session.sandboxes.reap(run_id="c0ffee")
        assert again.matched == ()
