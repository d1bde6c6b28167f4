"""Latency of the local emulator itself: p50/p90 of create, exec (buffered and streamed) and
destroy over N runs, against baselines measured in the same run on the same machine:

- spawn: `asyncio.create_subprocess_exec("true")`, the floor of any real command execution;
- http: `GET /healthz` on the emulator, the floor of any API call.

Run: .venv/bin/python benchmarks/emulator_latency.py [--runs 200] [--json]
The emulator is driven with raw aiohttp (no SDK) so only the server is measured. ``--json`` prints
p50/p90 in ms per operation for benchmarks/run.py, which puts the issue-14 targets (buffered
`true` p50 <= 2.5 ms, create p50 <= 10 ms) into RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp

from createos_sandbox_async.local import LocalServer


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def measure(runs: int) -> dict[str, list[float]]:
    """Seconds per run of each operation, baselines first."""

    async def spawn() -> None:
        proc = await asyncio.create_subprocess_exec(
            "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await proc.communicate()

    async with (
        LocalServer() as server,
        aiohttp.ClientSession(server.base_url, headers={"X-Api-Key": server.api_key}) as http,
    ):

        async def health() -> None:
            async with http.get("/healthz") as resp:
                await resp.read()

        ids: list[str] = []

        async def create() -> None:
            async with http.post("/v1/sandboxes", json={"shape": "s-1vcpu-256mb"}) as resp:
                ids.append((await resp.json())["data"]["id"])

        await create()  # warm-up, and the sandbox the exec runs use
        sid = ids[0]

        async def exec_buffered() -> None:
            async with http.post(f"/v1/sandboxes/{sid}/exec", json={"cmd": "true"}) as resp:
                assert (await resp.json())["data"]["result"]["exit_code"] == 0

        async def exec_stream() -> None:
            async with http.post(
                f"/v1/sandboxes/{sid}/exec?stream=true", json={"cmd": "echo", "args": ["hi"]}
            ) as resp:
                assert (await resp.read()).endswith(b'{"exit_code":0}\n')

        destroy_ids: list[str] = []

        async def destroy() -> None:
            async with http.delete(f"/v1/sandboxes/{destroy_ids.pop()}") as resp:
                await resp.read()

        for fn in (spawn, health, exec_buffered):
            await _timed(fn, 5)  # warm-up
        results = {
            "baseline: spawn `true`": await _timed(spawn, runs),
            "baseline: GET /healthz": await _timed(health, runs),
            "create (POST /v1/sandboxes)": await _timed(create, runs),
            "exec buffered (`true`)": await _timed(exec_buffered, runs),
            "exec stream (`echo hi`)": await _timed(exec_stream, runs),
        }
        destroy_ids = ids[1:]
        results["destroy (DELETE)"] = await _timed(destroy, len(destroy_ids))
    return results


#: Short keys of the operations in ``--json`` output.
KEYS = {
    "baseline: spawn `true`": "spawn",
    "baseline: GET /healthz": "healthz",
    "create (POST /v1/sandboxes)": "create",
    "exec buffered (`true`)": "exec",
    "exec stream (`echo hi`)": "exec_stream",
    "destroy (DELETE)": "destroy",
}


async def main(runs: int, as_json: bool) -> None:
    results = await measure(runs)
    if as_json:
        figures = {"runs": runs}
        for name, samples in results.items():
            figures[f"{KEYS[name]}_p50_ms"] = _pct(samples, 0.5)
            figures[f"{KEYS[name]}_p90_ms"] = _pct(samples, 0.9)
        print(json.dumps(figures))
        return
    spawn_p50 = statistics.median(results["baseline: spawn `true`"]) * 1000
    http_p50 = statistics.median(results["baseline: GET /healthz"]) * 1000
    print(f"emulator latency, {runs} runs each (isolation=bubblewrap)")
    print(f"{'operation':32} {'p50 ms':>8} {'p90 ms':>8} {'x spawn':>8} {'x http':>8}")
    for name, samples in results.items():
        p50 = _pct(samples, 0.5)
        print(
            f"{name:32} {p50:8.2f} {_pct(samples, 0.9):8.2f} "
            f"{p50 / spawn_p50:8.1f} {p50 / http_p50:8.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="p50/p90 ms per operation as JSON")
    args = parser.parse_args()
    if not 1 <= args.runs <= 5000:
        parser.error("--runs must be in 1..5000")
    asyncio.run(main(args.runs, args.json))
