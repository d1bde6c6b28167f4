"""A plain-text progress bar for batches: no dependency, safe in logs and pipes.

On a terminal it redraws one line in place (``\\r``); anywhere else (CI logs, a captured pipe) it
prints a fresh line only every ``line_every`` seconds or 10 % of the way, so a 10,000-item batch
does not produce 10,000 lines. It reads a ``PoolStats`` and nothing else, so it can also be fed by
hand from ``SandboxPool(on_progress=...)``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ._pool_stats import PoolStats

__all__ = ["ProgressBar", "Reporter", "format_stats"]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1.0:
        return f"{value * 1000:.0f}ms"
    return f"{value:.1f}s"


def format_stats(stats: PoolStats, width: int = 24) -> str:
    """One line: bar (when the total is known), counts, rate and item-time percentiles."""
    done = stats.completed + stats.failed
    parts: list[str] = []
    if stats.total:
        frac = min(1.0, done / stats.total)
        filled = int(frac * width)
        parts.append("[" + "#" * filled + "." * (width - filled) + "]")
        parts.append(f"{done}/{stats.total} {frac * 100:3.0f}%")
    else:
        parts.append(f"{done} done")
    parts.append(f"ok {stats.completed}")
    parts.append(f"failed {stats.failed}")
    parts.append(f"running {stats.running}")
    if stats.queued:
        parts.append(f"queued {stats.queued}")
    parts.append(f"{stats.rate:.1f}/s")
    parts.append(f"p50 {_seconds(stats.p50)} p95 {_seconds(stats.p95)}")
    if stats.retries:
        parts.append(f"retries {stats.retries}")
    return "  ".join(parts)


class ProgressBar:
    """Draws ``PoolStats`` on ``file`` (default stderr); call ``update`` often, ``close`` once."""

    def __init__(
        self,
        file: TextIO | None = None,
        *,
        width: int = 24,
        line_every: float = 5.0,
        tty: bool | None = None,
    ) -> None:
        self._file = file if file is not None else sys.stderr
        self._width = width
        self._line_every = line_every
        if tty is None:
            isatty = getattr(self._file, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self._tty = tty
        self._last_line = 0.0
        self._last_decile = -1
        self._drawn = False
        self._last_len = 0
        self._last_text = ""

    def update(self, stats: PoolStats) -> None:
        """Redraw (terminal) or maybe print a line (pipe); cheap to call on every item."""
        line = format_stats(stats, self._width)
        if self._tty:
            pad = " " * max(0, self._last_len - len(line))
            self._file.write("\r" + line + pad)
            self._file.flush()
            self._last_len = len(line)
            self._drawn = True
            return
        now = time.monotonic()
        done = stats.completed + stats.failed
        decile = (done * 10 // stats.total) if stats.total else -1
        if decile != self._last_decile or now - self._last_line >= self._line_every:
            self._last_decile = decile
            self._last_line = now
            self._print(line)

    def close(self, stats: PoolStats | None = None) -> None:
        """Draw the final state and end the line."""
        if stats is not None:
            line = format_stats(stats, self._width)
            if self._tty:
                pad = " " * max(0, self._last_len - len(line))
                self._file.write("\r" + line + pad + "\n")
            else:
                self._print(line)
        elif self._tty and self._drawn:
            self._file.write("\n")
        self._file.flush()
        self._drawn = False
        self._last_len = 0

    def _print(self, line: str) -> None:
        """A whole line (pipes and logs), never the same one twice in a row."""
        if line != self._last_text:
            self._last_text = line
            self._file.write(line + "\n")
            self._file.flush()


class Reporter:
    """A pool's progress: feeds ``on_progress`` and the bar, at most every ``interval`` seconds."""

    __slots__ = ("_bar", "_interval", "_last", "_on_progress", "active")

    def __init__(
        self,
        on_progress: Callable[[PoolStats], object] | None,
        progress: bool | ProgressBar,
        interval: float,
    ) -> None:
        self._on_progress = on_progress
        self._bar = progress if isinstance(progress, ProgressBar) else None
        if progress is True:
            self._bar = ProgressBar()
        self._interval = interval
        self._last = 0.0
        #: Anyone listening; when not, the pool skips building snapshots.
        self.active = on_progress is not None or self._bar is not None

    def tick(self, stats: Callable[[], PoolStats], final: bool) -> Exception | None:
        """Report ``stats()`` when due (``final``: the end of a run: always, ending the bar's line).

        Returns what ``on_progress`` raised, for the pool to stop its runs with.
        """
        now = time.perf_counter()
        if not final and now - self._last < self._interval:
            return None
        self._last = now
        snapshot = stats()
        if self._bar is not None:
            if final:
                self._bar.close(snapshot)
            else:
                self._bar.update(snapshot)
        if self._on_progress is not None:
            try:
                self._on_progress(snapshot)
            except Exception as exc:
                return exc
        return None
