"""Evaluate 200 small Python snippets in sandboxes, each with its own deadline, and summarise.

This is the shape of a real evaluation harness: many untrusted programs, some of which print the
right answer, some crash and some hang. ``SandboxPool`` runs them with bounded concurrency and a
progress bar, keeps a few sandboxes busy across items (``reuse=True``), and destroys every sandbox
it created when the block exits, even on Ctrl-C.

Run it against the local emulator (no account needed; needs bubblewrap)::

    python examples/batch_eval.py            # 200 snippets
    python examples/batch_eval.py --items 40 --concurrency 4

or against your account by passing a session to ``main(session=...)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
import attrs

from createos_sandbox_async import AsyncSession, Sandbox, SandboxPool

SHAPE = "s-1vcpu-256mb"


@attrs.frozen
class Snippet:
    """One program to run and what it should print."""

    index: int
    code: str
    expected: str | None  # None: no expectation (it is meant to crash or hang)


@attrs.frozen
class Outcome:
    """What happened to one snippet."""

    index: int
    verdict: str  # "pass", "wrong", "error" (non-zero exit), "timeout", "infra"
    seconds: float
    detail: str = ""


@attrs.frozen
class Summary:
    """The whole batch, as returned by ``main``."""

    outcomes: tuple[Outcome, ...]
    verdicts: dict[str, int]
    elapsed: float
    sandboxes_created: int
    sandboxes_left: int


def make_snippets(n: int) -> list[Snippet]:
    """A deterministic mix: mostly correct programs, some wrong, some crashing, a few hanging."""
    out: list[Snippet] = []
    for i in range(n):
        if i % 50 == 49:  # hangs (no CPU burnt: it sleeps) -> hits the per-item timeout
            out.append(Snippet(i, "import time; time.sleep(600)", None))
        elif i % 10 == 7:  # crashes
            out.append(Snippet(i, f"print(1 / ({i} - {i}))", None))
        elif i % 10 == 3:  # prints a wrong answer on purpose (off by one)
            out.append(Snippet(i, f"print(sum(range({i})) + 1)", str(sum(range(i)))))
        else:
            out.append(
                Snippet(
                    i, f"print(sum(k * k for k in range({i})))", str(sum(k * k for k in range(i)))
                )
            )
    return out


async def evaluate(sb: Sandbox, snippet: Snippet, item_timeout: float) -> Outcome:
    """Run one snippet with a deadline and classify the result (the program may misbehave)."""
    started = time.perf_counter()
    # On timeout the request is closed and the server kills the program; the exception reaches
    # the pool, which replaces this sandbox (a job that raised never hands its sandbox on).
    res = await sb.exec("python3", ["-c", snippet.code], timeout=item_timeout)
    seconds = time.perf_counter() - started
    if res.exit_code != 0:
        last = (res.stderr.strip().splitlines() or [""])[-1]
        return Outcome(snippet.index, "error", seconds, last)
    got = res.stdout.strip()
    if snippet.expected is not None and got != snippet.expected:
        return Outcome(snippet.index, "wrong", seconds, f"got {got!r}, want {snippet.expected!r}")
    return Outcome(snippet.index, "pass", seconds)


async def main(
    n_items: int = 200,
    *,
    session: AsyncSession | None = None,
    concurrency: int = 8,
    item_timeout: float = 3.0,
    progress: bool = True,
    out: Any = None,
) -> Summary:
    """Run the batch on ``session`` (or on a fresh local emulator) and print a summary."""
    out = out if out is not None else sys.stdout
    if session is None:
        from createos_sandbox_async.local import LocalServer

        async with LocalServer(port=0) as server, server.session() as local_session:
            return await main(
                n_items,
                session=local_session,
                concurrency=concurrency,
                item_timeout=item_timeout,
                progress=progress,
                out=out,
            )

    snippets = make_snippets(n_items)
    started = time.perf_counter()

    async def job(sb: Sandbox, snippet: Snippet) -> Outcome:
        return await evaluate(sb, snippet, item_timeout)

    async with SandboxPool(
        session, shape=SHAPE, max_concurrency=concurrency, reuse=True, progress=progress
    ) as pool:
        results = await pool.map(job, snippets, return_exceptions=True)
    outcomes: list[Outcome] = []
    for snippet, result in zip(snippets, results, strict=True):
        if isinstance(result, Outcome):
            outcomes.append(result)
        elif isinstance(result, TimeoutError):
            outcomes.append(Outcome(snippet.index, "timeout", item_timeout))
        else:
            outcomes.append(Outcome(snippet.index, "infra", 0.0, repr(result)))
    gone = ("destroying", "destroyed", "failed")
    left = [sb.id async for sb in session.sandboxes.list() if str(sb.status) not in gone]
    summary = Summary(
        outcomes=tuple(outcomes),
        verdicts=dict(Counter(o.verdict for o in outcomes)),
        elapsed=time.perf_counter() - started,
        sandboxes_created=pool.stats.created,
        sandboxes_left=len(left),
    )
    print_summary(summary, out)
    return summary


def print_summary(summary: Summary, out: Any) -> None:
    """A few lines a person can read at a glance."""
    n = len(summary.outcomes)
    times = sorted(o.seconds for o in summary.outcomes if o.verdict != "timeout")
    print(
        f"\n{n} snippets in {summary.elapsed:.1f}s "
        f"({summary.sandboxes_created} sandboxes created, {summary.sandboxes_left} left)",
        file=out,
    )
    for verdict in ("pass", "wrong", "error", "timeout", "infra"):
        count = summary.verdicts.get(verdict, 0)
        if count:
            print(f"  {verdict:<8} {count:>4}  ({count / n:.0%})", file=out)
    if times:
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(
            f"  run time: median {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
            file=out,
        )
    for o in [o for o in summary.outcomes if o.verdict in ("wrong", "error", "infra")][:3]:
        print(f"  e.g. #{o.index} {o.verdict}: {o.detail}", file=out)


async def run_demo(n_items: int = 200, concurrency: int = 8, item_timeout: float = 3.0) -> int:
    """The README demo: the batch on a local emulator; exit code 0 when nothing went wrong."""
    summary = await main(n_items, concurrency=concurrency, item_timeout=item_timeout)
    return 1 if summary.verdicts.get("infra", 0) or summary.sandboxes_left else 0


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=200, help="number of snippets (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="sandboxes at once (8)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per snippet (3)")
    ns = parser.parse_args(argv)
    return anyio.run(run_demo, ns.items, ns.concurrency, ns.timeout)


if __name__ == "__main__":
    raise SystemExit(cli())
