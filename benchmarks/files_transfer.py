"""File transfer through the SDK vs a minimal raw aiohttp client, in one run, same server.

Workloads (64 MiB by default) against the cheap fake API of ``_fakeserver.py`` (its own process,
pinned to another CPU where there is one):

- ``upload_mem``    bytes already in memory -> PUT ...files (raw: ``data=bytes``)
- ``upload_file``   a local file -> PUT (raw: ``data=open(f, "rb")``, aiohttp's file payload;
                    SDK: ``files.upload(path, Path)``, 1 MiB reads in a worker thread)
- ``download_mem``  GET ...files -> bytes (raw: ``await resp.read()``; SDK: ``files.download``)
- ``download_file`` GET -> a local file (raw: ``iter_chunked`` + blocking ``write``; SDK:
                    ``files.download_to``: temp file + rename, writes in a worker thread)

Each measurement runs in a fresh child process pinned to the client CPU(s): it warms up with a
small transfer, resets the kernel's RSS high-water mark (``/proc/self/clear_refs``), runs the
transfers, and reports MB/s and the peak RSS growth over its baseline. Rounds alternate the
order of the clients; medians are printed with the SDK / raw ratio (target >= 0.9x MB/s). A
last step measures RSS growth once for a 500 MiB file streamed both ways (target < 32 MiB).

    .venv/bin/python benchmarks/files_transfer.py            # ~1 min
    .venv/bin/python benchmarks/files_transfer.py --quick    # ~20 s, noisier
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _fakeserver import SANDBOX_ID, FakeServer, cpu_plan  # noqa: E402

MiB = 1 << 20
OPS = ("upload_mem", "upload_file", "download_mem", "download_file")
CLIENTS = ("raw", "sdk")


# ---------------------------------------------------------------- child side


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM so the peak covers only what follows (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


async def _raw_client(base_url: str, api_key: str, op: str, src: str, dst: str) -> Any:
    """The floor: one aiohttp session, the same requests, nothing else."""
    import aiohttp

    url = f"{base_url}/v1/sandboxes/{SANDBOX_ID}/files"
    auth = {"X-Api-Key": api_key}
    octet = {**auth, "Content-Type": "application/octet-stream"}
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
    memory = _load(src) if op == "upload_mem" else {}

    async def one(source: str, n: int) -> None:
        if op == "upload_mem":
            body = memory[source]
            async with session.put(url, params={"path": "/w/x"}, data=body, headers=octet) as r:
                await r.read()
                assert r.status == 200, r.status
        elif op == "upload_file":
            with open(source, "rb") as fh:  # noqa: ASYNC230 - aiohttp reads it in a thread
                async with session.put(url, params={"path": "/w/x"}, data=fh, headers=octet) as r:
                    await r.read()
                    assert r.status == 200, r.status
        elif op == "download_mem":
            async with session.get(url, params={"path": f"/bench/{n}"}, headers=auth) as r:
                data = await r.read()
            assert len(data) == n
        else:
            got = 0
            with open(dst, "wb") as out:  # noqa: ASYNC230 - the minimal client writes inline
                async with session.get(url, params={"path": f"/bench/{n}"}, headers=auth) as r:
                    async for chunk in r.content.iter_chunked(MiB):
                        out.write(chunk)
                        got += len(chunk)
            assert got == n

    return session.close, one


async def _sdk_client(base_url: str, api_key: str, op: str, src: str, dst: str) -> Any:
    from createos_sandbox_async import AsyncSession
    from createos_sandbox_async.models import SandboxView
    from createos_sandbox_async.sandbox import Sandbox

    session = AsyncSession(api_key, base_url=base_url, timeout=600.0)
    files = Sandbox(session, SandboxView(id=SANDBOX_ID)).files
    memory = _load(src) if op == "upload_mem" else {}

    async def one(source: str, n: int) -> None:
        if op == "upload_mem":
            await files.upload("/w/x", memory[source])
        elif op == "upload_file":
            await files.upload("/w/x", Path(source))
        elif op == "download_mem":
            assert len(await files.download(f"/bench/{n}")) == n
        else:
            assert await files.download_to(f"/bench/{n}", dst) == n

    return session.aclose, one


def _load(src: str) -> dict[str, bytes]:
    """Both upload sources in memory, read before the clock starts."""
    return {path: Path(path).read_bytes() for path in (src, _warm(src))}


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _warm(src: str) -> str:
    """The 1 MiB warm-up file next to ``src``."""
    return os.path.join(os.path.dirname(src), "warm.bin")


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    make = _raw_client if args.client == "raw" else _sdk_client
    dst = os.path.join(args.workdir, f"dst-{os.getpid()}.bin")
    close, one = await make(args.base_url, args.api_key, args.op, args.src, dst)
    try:
        await one(_warm(args.src), MiB)  # connection, imports, thread pool
        baseline = _rss_kib("VmRSS")
        clean = _reset_peak()
        times = []
        cpu0 = time.process_time()  # all threads of this process: the SDK's readers/writers too
        for _ in range(args.count):
            t0 = time.perf_counter()
            await one(args.src, args.size)
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
        peak = _rss_kib("VmHWM")
    finally:
        await close()
        _remove(dst)
    return {
        "mb_per_s": args.size * len(times) / sum(times) / 1e6,
        "cpu_ms_per_mib": cpu * 1e3 / (args.size * len(times) / MiB),
        "rss_growth_mib": max(0, peak - baseline) / 1024,
        "baseline_mib": baseline / 1024,
        "peak_clean": clean,
    }


def child_main(args: argparse.Namespace) -> None:
    warnings.simplefilter("ignore")  # raw aiohttp warns about big bytes bodies; that is the floor
    print(json.dumps(asyncio.run(_child(args))))


# ---------------------------------------------------------------- harness side


def run_child(
    server: FakeServer,
    client: str,
    op: str,
    size: int,
    count: int,
    src: str,
    workdir: str,
    cpus: set[int] | None,
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--client", client, "--op", op]
    cmd += ["--size", str(size), "--count", str(count), "--src", src, "--workdir", workdir]
    cmd += ["--base-url", server.base_url, "--api-key", server.api_key]

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, preexec_fn=pin, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _fetch_and_discard(server: FakeServer, size: int) -> None:
    """One throwaway download so no client pays for the server building a big body."""
    import http.client

    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request(
        "GET",
        f"/v1/sandboxes/{SANDBOX_ID}/files?path=/bench/{size}",
        headers={"X-Api-Key": server.api_key},
    )
    resp = conn.getresponse()
    while resp.read(MiB):
        pass
    conn.close()


def make_file(path: str, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(MiB, left)])
            left -= MiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rounds and transfers")
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--big-mib", type=int, default=500, help="the measure-once RSS file (0: skip)")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated workloads to run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--client", "--op", "--src", "--workdir", "--base-url", "--api-key"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_main(args)
        return

    rounds, count = (2, 3) if args.quick else (5, 5)
    ops = [op for op in args.ops.split(",") if op]
    if unknown := set(ops) - set(OPS):
        p.error(f"unknown workloads: {sorted(unknown)}")
    size = args.size_mib * MiB
    server_cpus, client_cpus = cpu_plan()
    with tempfile.TemporaryDirectory(prefix="files-bench-") as work:
        src = os.path.join(work, "src.bin")
        make_file(src, size)
        make_file(_warm(src), MiB)
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        with FakeServer(server_cpus=server_cpus, warm_sizes=()) as server:
            before = server.stats()
            for r in range(rounds):
                for op in ops:
                    order = CLIENTS if r % 2 == 0 else tuple(reversed(CLIENTS))
                    for client in order:
                        res = run_child(server, client, op, size, count, src, work, client_cpus)
                        results.setdefault((client, op), []).append(res)
            stats = server.stats()
            uploaded = stats["upload_bytes"] - before["upload_bytes"]
            big: dict[str, list[dict[str, Any]]] = {}
            if args.big_mib:
                big_size = args.big_mib * MiB
                big_src = os.path.join(work, "big.bin")
                make_file(big_src, big_size)
                _fetch_and_discard(server, big_size)  # the server builds its body once
                for r in range(1 if args.quick else 2):
                    order = CLIENTS if r % 2 == 0 else tuple(reversed(CLIENTS))
                    for client in order:
                        for op in ("upload_file", "download_file"):
                            res = run_child(
                                server, client, op, big_size, 1, big_src, work, client_cpus
                            )
                            big.setdefault(f"{client} {op}", []).append(res)
                os.unlink(big_src)

    print(
        f"files_transfer: {args.size_mib} MiB x {count} per round, {rounds} rounds "
        f"(server CPUs {server_cpus}, client CPUs {client_cpus})"
    )
    print(f"server counted {uploaded / MiB:.0f} MiB uploaded (incl. warm-ups)")
    print(
        f"{'workload':<15}{'raw MB/s':>9}{'sdk MB/s':>9}{'ratio':>7}{'raw CPU':>9}{'sdk CPU':>9}"
        f"{'ratio':>7}{'raw RSS+':>9}{'sdk RSS+':>9}"
    )
    print(f"{'':<40}(ms/MiB, client, all threads)  (MiB)")
    med = statistics.median
    for op in ops:
        raw = results[("raw", op)]
        sdk = results[("sdk", op)]
        pairs = list(zip(raw, sdk, strict=True))
        speed = med(s["mb_per_s"] / r["mb_per_s"] for r, s in pairs)
        cost = med(s["cpu_ms_per_mib"] / r["cpu_ms_per_mib"] for r, s in pairs)
        rate_raw, rate_sdk = med(x["mb_per_s"] for x in raw), med(x["mb_per_s"] for x in sdk)
        cpu_raw, cpu_sdk = (
            med(x["cpu_ms_per_mib"] for x in raw),
            med(x["cpu_ms_per_mib"] for x in sdk),
        )
        rss_raw, rss_sdk = (
            med(x["rss_growth_mib"] for x in raw),
            med(x["rss_growth_mib"] for x in sdk),
        )
        print(
            f"{op:<15}{rate_raw:>9.0f}{rate_sdk:>9.0f}{speed:>6.2f}x{cpu_raw:>9.2f}{cpu_sdk:>9.2f}"
            f"{cost:>6.2f}x{rss_raw:>9.1f}{rss_sdk:>9.1f}"
        )
    print("ratios: median over rounds of sdk/raw, both measured back to back in the same round")
    if big:
        print(
            f"\n{args.big_mib} MiB file streamed (target: SDK RSS growth < 32 MiB; max over runs):"
        )
        for name, runs in sorted(big.items()):
            rate = med(x["mb_per_s"] for x in runs)
            cpu = med(x["cpu_ms_per_mib"] for x in runs)
            growth = max(x["rss_growth_mib"] for x in runs)
            line = f"  {name:<20} {rate:>6.0f} MB/s  {cpu:5.2f} ms CPU/MiB"
            print(f"{line}  RSS growth {growth:5.1f} MiB")


if __name__ == "__main__":
    main()
