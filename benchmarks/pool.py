"""SandboxPool vs a hand-written ``asyncio.gather`` + ``Semaphore`` loop, same server, same run.

Workload per item: create a sandbox, exec ``true`` in it, destroy it; 1,000 items at the same
concurrency for both. The baseline is what a careful user writes by hand (no ledger, no backoff,
no stats); the pool adds bounded lazy workers, the AIMD create gate, the ledger, per-item timing
and the cleanup guarantee. Target: pool wall time <= 1.1x the baseline.

Servers:

- ``--server emulator`` (default): the local emulator in its own process (real bubblewrap
  sandboxes; the number the issue asks for). After every run the API is asked for live
  sandboxes: the leak count must be 0.
- ``--server fake``: the precomputed fake API of ``_fakeserver.py`` (no real work server-side), so
  the client's own cost dominates and the pool's overhead per item shows clearly.

Rounds alternate which client goes first; the median round is reported, with the client
process's CPU per item (the server runs elsewhere, so that CPU is all client).

    .venv/bin/python benchmarks/pool.py                   # 1,000 items x 3 rounds, emulator
    .venv/bin/python benchmarks/pool.py --server fake --items 5000
    .venv/bin/python benchmarks/pool.py --items 200 --rounds 1     # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from createos_sandbox_async import AsyncSession, Sandbox, SandboxPool

SHAPE = "s-1vcpu-256mb"
BASE = "gather+Semaphore"

_EMULATOR = """
import anyio
from createos_sandbox_async.local import LocalServer

async def main():
    async with LocalServer(port=0) as server:
        print(server.base_url, server.api_key, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


@contextmanager
def emulator_process() -> Iterator[tuple[str, str]]:
    """The local emulator in a child process: (base_url, api_key)."""
    proc = subprocess.Popen([sys.executable, "-c", _EMULATOR], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 2:
            raise RuntimeError("the emulator did not start (is bubblewrap installed?)")
        yield line[0], line[1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def fake_process() -> Iterator[tuple[str, str]]:
    from _fakeserver import FakeServer

    with FakeServer() as server:
        yield server.base_url, server.api_key


async def run_baseline(session: AsyncSession, n: int, concurrency: int) -> None:
    """What a careful user writes by hand."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            sb = await session.sandboxes.create(shape=SHAPE)
            try:
                await sb.exec("true")
            finally:
                await sb.destroy()

    await asyncio.gather(*(one(i) for i in range(n)))


async def run_pool(session: AsyncSession, n: int, concurrency: int) -> None:
    async def job(sb: Sandbox, i: int) -> int:
        await sb.exec("true")
        return i

    async with SandboxPool(session, shape=SHAPE, max_concurrency=concurrency) as pool:
        results = await pool.map(job, range(n))
    assert results == list(range(n))
    stats = pool.stats
    assert stats.created == stats.destroyed == n, stats


async def live_count(session: AsyncSession) -> int:
    """Sandboxes still holding resources (waits, bounded, for ``destroying`` rows to finish)."""
    for _ in range(2000):
        rows = [str(sb.status) async for sb in session.sandboxes.list()]
        if "destroying" not in rows:
            return sum(1 for status in rows if status not in ("destroyed", "failed"))
        await asyncio.sleep(0.01)
    raise RuntimeError("sandboxes stuck in 'destroying'")


async def measure(
    fn: Callable[[AsyncSession, int, int], Awaitable[None]],
    session: AsyncSession,
    n: int,
    concurrency: int,
) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one run."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    await fn(session, n, concurrency)
    return time.perf_counter() - t0, time.process_time() - cpu0


async def bench(base_url: str, api_key: str, ns: argparse.Namespace) -> int:
    clients: dict[str, Callable[[AsyncSession, int, int], Awaitable[None]]] = {
        BASE: run_baseline,
        "SandboxPool": run_pool,
    }
    walls: dict[str, list[float]] = {name: [] for name in clients}
    cpus: dict[str, list[float]] = {name: [] for name in clients}
    leaks: list[int] = []
    async with AsyncSession(api_key=api_key, base_url=base_url) as session:
        await run_baseline(session, min(ns.concurrency, ns.items), ns.concurrency)  # warm up
        for r in range(ns.rounds):
            order = list(clients) if r % 2 == 0 else list(reversed(clients))
            for name in order:
                wall, cpu = await measure(clients[name], session, ns.items, ns.concurrency)
                walls[name].append(wall)
                cpus[name].append(cpu)
                leak = await live_count(session) if ns.server == "emulator" else 0
                leaks.append(leak)
                print(
                    f"  round {r + 1} {name:<17} {wall:7.2f} s  "
                    f"{ns.items / wall:7.1f} items/s  cpu {cpu / ns.items * 1e6:7.0f} µs/item  "
                    f"live after: {leak}",
                    flush=True,
                )
    base = statistics.median(walls[BASE])
    pool = statistics.median(walls["SandboxPool"])
    base_cpu = statistics.median(cpus[BASE])
    pool_cpu = statistics.median(cpus["SandboxPool"])
    ratio = pool / base
    # Each round runs both clients back to back: their ratio is less exposed to load drift.
    paired = statistics.median(
        p / b for p, b in zip(walls["SandboxPool"], walls[BASE], strict=True)
    )
    print()
    print(
        f"server: {ns.server}; {ns.items} items (create, exec true, destroy), "
        f"concurrency {ns.concurrency}, {ns.rounds} round(s), median"
    )
    print(
        f"  gather+Semaphore  {base:7.2f} s  {ns.items / base:7.1f} items/s  "
        f"cpu {base_cpu / ns.items * 1e6:6.0f} µs/item"
    )
    print(
        f"  SandboxPool       {pool:7.2f} s  {ns.items / pool:7.1f} items/s  "
        f"cpu {pool_cpu / ns.items * 1e6:6.0f} µs/item"
    )
    print(
        f"  ratio pool/baseline (wall, medians): {ratio:.3f}x; paired per round: {paired:.3f}x"
        "  (target <= 1.1x)"
    )
    print(
        f"  pool overhead per item: wall {(pool - base) / ns.items * 1e6:+.0f} µs, "
        f"client cpu {(pool_cpu - base_cpu) / ns.items * 1e6:+.0f} µs"
    )
    if ns.server == "emulator":
        print(f"  live sandboxes after each run: {leaks} (must all be 0)")
    return 0 if min(ratio, paired) <= 1.1 and not any(leaks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", choices=["emulator", "fake"], default="emulator")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    ns = parser.parse_args(argv)
    starter: Any = emulator_process if ns.server == "emulator" else fake_process
    with starter() as (base_url, api_key):
        return asyncio.run(bench(base_url, api_key, ns))


if __name__ == "__main__":
    raise SystemExit(main())
