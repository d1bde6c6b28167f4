"""Exec through the SDK vs a minimal hand-written aiohttp client, in one run, same server.

Two workloads against the cheap fake API of ``_fakeserver.py`` (its own process, pinned to
another CPU where there is one):

- buffered exec at concurrency 16: ops/s and client CPU µs per op;
- a 32 MiB exec stream (~100-byte stdout/stderr frames plus heartbeats): events/s and MB/s.

The raw client is the floor: one pooled ``ClientSession``, ``json.loads`` of the JSend body for
exec, and for the stream a line splitter over ``iter_any()`` with one ``json.loads`` per line.
Both clients do the same counting work per event and check their totals against the server's
recipe. Rounds alternate the order of the clients; the median round is reported. Printed ratios
are SDK / raw (higher is better, except CPU per op).

Targets (issue 5): CPU per buffered exec <= 1.15x raw; stream events/s >= 2x raw with stdlib
json; with orjson (``--json orjson``, both sides) events/s >= 1.0x raw+orjson.

    .venv/bin/python benchmarks/exec_stream.py            # ~30 s
    .venv/bin/python benchmarks/exec_stream.py --quick    # ~8 s, noisier
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _fakeserver import SANDBOX_ID, FakeServer, StreamExpect, cpu_plan, stream_frames

EXEC_CMD = "python3"
EXEC_ARGS = ["-c", "print(1+1)"]


def _loads_for(name: str) -> Callable[[bytes], Any]:
    if name == "orjson":
        import orjson

        loads: Callable[[bytes], Any] = orjson.loads
        return loads
    return json.loads


class Counts:
    """What one parsed stream contained; both clients must agree with the server's recipe."""

    __slots__ = ("c_err", "c_out", "code", "n_err", "n_out")

    def __init__(self) -> None:
        self.n_out = self.n_err = self.c_out = self.c_err = 0
        self.code: int | None = None

    def check(self, want: StreamExpect) -> int:
        got = (self.n_out, self.n_err, self.c_out, self.c_err, self.code)
        exp = (want.stdout_events, want.stderr_events, want.stdout_chars, want.stderr_chars, 0)
        if got != exp:
            raise AssertionError(f"stream mismatch: got {got}, want {exp}")
        return self.n_out + self.n_err + 1


# ---------------------------------------------------------------- the two clients


class RawClient:
    """The floor: no retries, no models, no hooks."""

    name = "raw aiohttp"

    def __init__(self, base_url: str, api_key: str, loads: Callable[[bytes], Any]) -> None:
        self.loads = loads
        self.exec_url = f"{base_url}/v1/sandboxes/{SANDBOX_ID}/exec"
        self.headers = {"X-Api-Key": api_key, "Content-Type": "application/json"}
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        self.no_total = aiohttp.ClientTimeout(total=None, sock_connect=30)

    async def aclose(self) -> None:
        await self.session.close()

    async def exec_once(self) -> None:
        body = json.dumps({"cmd": EXEC_CMD, "args": EXEC_ARGS}).encode()
        async with self.session.post(self.exec_url, data=body, headers=self.headers) as r:
            raw = await r.read()
            if r.status != 200:
                raise RuntimeError(f"exec: {r.status}")
        env = json.loads(raw)
        if env.get("status") != "success":
            raise RuntimeError("not JSend success")
        res = env["data"]["result"]
        if res["stdout"] != "2\n" or res["exit_code"] != 0:
            raise AssertionError(res)

    async def stream_once(self, size: int) -> tuple[Counts, int]:
        loads = self.loads
        n = Counts()
        wire = 0
        body = json.dumps({"cmd": "bench", "args": ["stream", str(size)], "stream": True}).encode()
        async with self.session.post(
            self.exec_url,
            params={"stream": "true"},
            data=body,
            headers=self.headers,
            timeout=self.no_total,
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"stream: {r.status}")
            buf = b""
            async for chunk in r.content.iter_any():
                wire += len(chunk)
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if not line:
                        continue
                    frame = loads(line)
                    if frame.get("hb"):
                        continue
                    s = frame.get("stdout")
                    if s:
                        n.n_out += 1
                        n.c_out += len(s)
                        continue
                    s = frame.get("stderr")
                    if s:
                        n.n_err += 1
                        n.c_err += len(s)
                        continue
                    if "exit_code" in frame:
                        n.code = frame["exit_code"]
        return n, wire


class SDKClient:
    """createos_sandbox_async, used the way the README shows."""

    name = "createos_sandbox_async"

    def __init__(self, base_url: str, api_key: str, loads: Callable[[bytes], Any]) -> None:
        from createos_sandbox_async import AsyncSession, _json

        # The SDK picks orjson by itself when importable; pin it to the same decoder as raw.
        _json.loads = loads
        self.session = AsyncSession(api_key, base_url=base_url)
        self.sb: Any = None

    async def setup(self) -> None:
        self.sb = await self.session.sandboxes.get(SANDBOX_ID)

    async def aclose(self) -> None:
        await self.session.aclose()

    async def exec_once(self) -> None:
        res = await self.sb.exec(EXEC_CMD, EXEC_ARGS)
        if res.stdout != "2\n" or res.exit_code != 0:
            raise AssertionError(res)

    async def stream_once(self, size: int) -> tuple[Counts, int]:
        n = Counts()
        async with self.sb.exec_stream("bench", ["stream", str(size)]) as stream:
            async for ev in stream:
                kind = ev.kind
                if kind == "stdout":
                    n.n_out += 1
                    n.c_out += len(ev.data)
                elif kind == "stderr":
                    n.n_err += 1
                    n.c_err += len(ev.data)
                elif kind == "exit":
                    n.code = ev.exit_code
        return n, 0


Client = RawClient | SDKClient


# ---------------------------------------------------------------- measurements


async def measure(fn: Callable[[], Awaitable[int]]) -> tuple[int, float, float]:
    """(work units, wall seconds, client CPU seconds) of one timed call."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    units = await fn()
    return units, time.perf_counter() - t0, time.process_time() - c0


async def buffered(client: Client, ops: int, concurrency: int) -> int:
    per_worker = ops // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await client.exec_once()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_worker * concurrency


async def streamed(client: Client, size: int, want: StreamExpect) -> int:
    counts, _ = await client.stream_once(size)
    return counts.check(want)


async def run(args: argparse.Namespace, server: FakeServer) -> dict[str, dict[str, list[float]]]:
    loads = _loads_for(args.json)
    size = args.stream_mib * 1024 * 1024
    _, want = stream_frames(size)
    clients: list[Client] = [
        RawClient(server.base_url, server.api_key, loads),
        SDKClient(server.base_url, server.api_key, loads),
    ]
    sdk = clients[1]
    assert isinstance(sdk, SDKClient)
    await sdk.setup()
    results: dict[str, dict[str, list[float]]] = {
        c.name: {"ops_s": [], "cpu_us_op": [], "ev_s": [], "mb_s": [], "cpu_ns_ev": []}
        for c in clients
    }
    try:
        for c in clients:  # warm-up: connections, caches, code paths
            await buffered(c, args.concurrency * 20, args.concurrency)
            await streamed(c, size, want)
        for rnd in range(args.rounds):
            order = clients if rnd % 2 == 0 else clients[::-1]
            for c in order:
                ops, wall, cpu = await measure(
                    lambda c=c: buffered(c, args.ops, args.concurrency)  # type: ignore[misc]
                )
                r = results[c.name]
                r["ops_s"].append(ops / wall)
                r["cpu_us_op"].append(cpu / ops * 1e6)
            for c in order:
                ev, wall, cpu = await measure(
                    lambda c=c: streamed(c, size, want)  # type: ignore[misc]
                )
                r = results[c.name]
                r["ev_s"].append(ev / wall)
                r["mb_s"].append(want.wire_bytes / wall / 1e6)
                r["cpu_ns_ev"].append(cpu / ev * 1e9)
            print(f"  round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for c in clients:
            await c.aclose()
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    """Medians per client, and the median of the per-round SDK/raw ratios.

    Each round runs the two clients back to back, so a round's ratio compares them under the same
    machine load; the median of those ratios is what the targets are checked against.
    """
    raw_r, sdk_r = results["raw aiohttp"], results["createos_sandbox_async"]
    raw = {k: statistics.median(v) for k, v in raw_r.items()}
    sdk = {k: statistics.median(v) for k, v in sdk_r.items()}
    ratio = {
        k: statistics.median(s / r for s, r in zip(sdk_r[k], raw_r[k], strict=True)) for k in raw_r
    }
    print(
        f"\nexec benchmark: json={args.json}, concurrency={args.concurrency}, "
        f"{args.ops} execs and one {args.stream_mib} MiB stream per client per round, "
        f"{args.rounds} rounds (medians)\n"
    )
    rows = [
        ("buffered exec ops/s", "ops_s", "{:,.0f}", ""),
        ("buffered exec CPU µs/op", "cpu_us_op", "{:,.1f}", " (lower is better)"),
        ("stream events/s", "ev_s", "{:,.0f}", ""),
        ("stream MB/s", "mb_s", "{:,.1f}", ""),
        ("stream CPU ns/event", "cpu_ns_ev", "{:,.0f}", " (lower is better)"),
    ]
    print(f"{'metric':<26}{'raw aiohttp':>14}{'SDK':>14}{'SDK/raw':>10}")
    for label, key, fmt, note in rows:
        print(
            f"{label:<26}{fmt.format(raw[key]):>14}{fmt.format(sdk[key]):>14}"
            f"{ratio[key]:>9.2f}x{note}"
        )
    cpu_ratio = ratio["cpu_us_op"]
    ev_ratio = ratio["ev_s"]
    ev_cpu_ratio = 1 / ratio["cpu_ns_ev"]
    ev_target = 1.0 if args.json == "orjson" else 2.0
    print()
    verdict = "OK" if cpu_ratio <= 1.15 else "MISSED"
    print(f"target CPU per buffered exec <= 1.15x raw: {cpu_ratio:.2f}x {verdict}")
    verdict = "OK" if ev_ratio >= ev_target else "MISSED"
    print(f"target stream events/s >= {ev_target:.1f}x raw: {ev_ratio:.2f}x {verdict}")
    print(
        f"  (events per CPU second: {ev_cpu_ratio:.2f}x raw; on a busy machine the wall-clock "
        "rate also depends on the scheduler)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ops", type=int, default=8000, help="buffered execs per client per round")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stream-mib", type=int, default=32)
    ap.add_argument(
        "--json",
        choices=("json", "orjson"),
        default="json",
        help="decoder for BOTH clients (orjson needs the `speed` extra)",
    )
    ap.add_argument("--quick", action="store_true", help="3 rounds, 2000 execs, 8 MiB stream")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.ops, args.stream_mib = 3, 2000, 8
    if args.ops < args.concurrency:
        ap.error("--ops must be >= --concurrency")
    server_cpus, client_cpus = cpu_plan()
    size = args.stream_mib * 1024 * 1024
    with FakeServer(server_cpus=server_cpus, warm_sizes=(size,)) as server:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        print(
            f"fake server {server.base_url} on CPUs {server_cpus or 'any'}, "
            f"client on {client_cpus or 'any'}",
            file=sys.stderr,
        )
        before = server.stats()["other"]  # the startup probes
        results = asyncio.run(run(args, server))
        stats = server.stats()
    if stats["other"] != before:
        raise SystemExit(f"the server saw unexpected requests: {stats}")
    report(results, args)


if __name__ == "__main__":
    main()
