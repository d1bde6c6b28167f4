"""``PoolStats``, the snapshot a ``SandboxPool`` reports, and the percentiles in it.

Apart from the pool so that the progress bar (``_progress``), which only reads a snapshot, does not
import the pool: data flows from the pool to the bar, never back.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["TIMES_KEPT", "PoolStats", "percentile"]

#: Item durations kept for p50/p95 (a ring: recent items, bounded memory).
TIMES_KEPT = 4096


@attrs.frozen
class PoolStats:
    """A snapshot of a pool. Counts are over the pool's lifetime; times are in seconds.

    ``running``: items in progress; ``queued``: items read or known but not started (None-free:
    0 when unknown); ``alive``: sandboxes created and not yet destroyed; ``retries``: create/fork
    attempts beyond the first for a sandbox (429/503 and answers that never arrived);
    ``rate_limited``: 429/503 answers to creates; ``create_limit``: the adaptive window of
    concurrent creates; ``rate``: finished items per second since the first item started;
    ``p50``/``p95``: item time (sandbox checkout + job) over the last 4096 items.
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
