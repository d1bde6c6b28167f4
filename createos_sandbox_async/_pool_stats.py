"""``PoolStats``, the snapshot a ``SandboxPool`` reports, the counters and percentiles behind it.

Apart from the pool so that the progress bar (``_progress``), which only reads a snapshot, does not
import the pool: data flows from the pool to the bar, never back.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

import attrs

__all__ = ["TIMES_KEPT", "Counters", "PoolStats", "percentile"]

#: Item durations kept for p50/p95 (a ring: recent items, bounded memory).
TIMES_KEPT = 4096


@attrs.frozen
class PoolStats:
    """A snapshot of a pool (``pool.stats``). Counts are over the pool's lifetime; times in seconds.

    Attributes:
        total: Items of the current run, when known (None for an iterator of unknown length).
        completed: Items whose job returned.
        failed: Items whose job raised.
        running: Items in progress.
        queued: Items read or known but not started (0 when unknown).
        created: Sandboxes created (forks included).
        destroyed: Sandboxes destroyed.
        alive: Sandboxes created and not yet destroyed.
        retries: Create/fork attempts beyond the first (429/503, and answers that never came).
        rate_limited: 429/503 answers to creates.
        create_limit: The adaptive window of concurrent creates.
        rate: Finished items per second since the first item started.
        p50: Median item time (sandbox checkout + job) over the last 4096 items.
        p95: 95th percentile of the same.
        elapsed: Seconds since the first item started.
        cleanup_failed: Ids the cleanup could not destroy.
    """

    total: int | None
    completed: int
    failed: int
    running: int
    queued: int
    created: int
    destroyed: int
    alive: int
    retries: int
    rate_limited: int
    create_limit: int
    rate: float
    p50: float | None
    p95: float | None
    elapsed: float
    cleanup_failed: tuple[str, ...] = ()


# Its public home: reprs, pickles and the docs name ``createos_sandbox_async.pool.PoolStats``.
PoolStats.__module__ = "createos_sandbox_async.pool"


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


class Counters:
    """The item counters of a pool, and the ``PoolStats`` snapshot built from them."""

    __slots__ = ("completed", "failed", "running", "t_first", "times", "total")

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.running = 0
        self.total: int | None = 0
        self.times: collections.deque[float] = collections.deque(maxlen=TIMES_KEPT)
        self.t_first: float | None = None

    def add_run(self, total: int | None) -> None:
        """A run of ``total`` items (None: unknown) starts; the pool's total follows."""
        if self.total is not None:
            self.total = None if total is None else self.total + total

    def started(self) -> None:
        """A run starts driving: the clock of ``rate`` and ``elapsed`` starts with the first."""
        if self.t_first is None:
            self.t_first = time.perf_counter()

    def snapshot(self, **others: Any) -> PoolStats:
        """``PoolStats`` of these counters plus ``others`` (sandbox, gate and cleanup fields)."""
        ordered = sorted(self.times)
        elapsed = time.perf_counter() - self.t_first if self.t_first is not None else 0.0
        done = self.completed + self.failed
        return PoolStats(
            total=self.total,
            completed=self.completed,
            failed=self.failed,
            running=self.running,
            rate=done / elapsed if elapsed > 0 else 0.0,
            p50=percentile(ordered, 0.50),
            p95=percentile(ordered, 0.95),
            elapsed=elapsed,
            **others,
        )
