"""The README's demo: a small real batch against the local emulator, no account needed.

It starts ``LocalServer`` in-process, creates a few sandboxes, streams a command's output as
it is produced, then runs a batch of Python snippets through ``SandboxPool`` and destroys
everything. It lives in the package (not ``examples/``) so ``python -m`` can always find it.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

import anyio

SNIPPET = "import sys; n = int(sys.argv[1]); print(sum(i * i for i in range(n)))"


def _pick_isolation(requested: str) -> str:
    """Use bubblewrap when present; fall back to ``none`` only when asked for ``auto``."""
    if requested != "auto":
        return requested
    if shutil.which("bwrap"):
        return "bubblewrap"
    print(
        "note: bubblewrap is not installed (apt-get install bubblewrap); the demo runs commands\n"
        "      WITHOUT isolation (isolation='none'). Do not run untrusted code this way.",
        file=sys.stderr,
    )
    return "none"


async def _stream_part(session: Any) -> None:
    """Create three sandboxes and stream one command in each, concurrently."""
    print("== streaming: 3 sandboxes, output shown as it is produced")

    async def one(n: int) -> None:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb", envs={"WHO": f"box{n}"})
        async with sb:
            script = 'for i in 1 2 3; do echo "$WHO line $i"; sleep 0.2; done; echo done >&2'
            async with sb.exec_stream("bash", ["-c", script]) as stream:
                async for event in stream:
                    if event.kind in ("stdout", "stderr"):
                        print(f"  [{sb.id[-6:]} {event.kind}] {event.data.rstrip()}")
            print(f"  [{sb.id[-6:]}] exit code {stream.exit_code}")

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(one, n)


async def _batch_part(session: Any, n_items: int) -> int:
    """Run ``n_items`` snippets through a SandboxPool; return the number that failed."""
    from .pool import SandboxPool

    print(f"== batch: {n_items} Python snippets through SandboxPool")

    async def job(sb: Any, n: int) -> str:
        res = await sb.exec("python3", ["-c", SNIPPET, str(n)], timeout=30, check=True)
        return str(res.stdout).strip()

    items = list(range(1, n_items + 1))
    async with SandboxPool(
        session, shape="s-1vcpu-256mb", max_concurrency=8, reuse=True, progress=True
    ) as pool:
        results = await pool.map(job, items, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    ok = len(results) - len(failed)
    print(f"  {ok} ok, {len(failed)} failed; e.g. sum of squares below {n_items} = {results[-1]}")
    st = pool.stats
    p50, p95 = ((t or 0.0) * 1000 for t in (st.p50, st.p95))
    print(
        f"  sandboxes created {st.created}, destroyed {st.destroyed}; "
        f"item time p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    )
    return len(failed)


async def run_demo(n_items: int = 40, isolation: str = "auto") -> int:
    """Start the emulator, run both parts, check nothing is left; 0 on success."""
    from .local import LocalServer

    started = time.perf_counter()
    async with LocalServer(port=0, isolation=_pick_isolation(isolation)) as server:
        print(f"local emulator at {server.base_url} (no account needed)")
        async with server.session() as session:
            await _stream_part(session)
            failed = await _batch_part(session, n_items)
            left = [sb.id async for sb in session.sandboxes.list(status="running")]
    print(f"== done in {time.perf_counter() - started:.1f}s; sandboxes left running: {len(left)}")
    return 1 if failed or left else 0
