"""What every Python driver shares: the job it is given, the timed loop, and the result it prints.

Stdlib only: the official SDK's driver imports this from its own virtualenv. A driver is run as
``python drivers/<name>.py '<job json>'`` and prints one JSON line. The loop is time-boxed: each of
``concurrency`` workers repeats the operation until ``duration`` seconds have passed (after
``warmup`` untimed operations per worker), so a slow driver does fewer operations, not a longer run.
Every operation checks its own output and raises on a mismatch: no driver wins by skipping work.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

EXEC_CMD = "python3"
EXEC_ARGS = ["-c", "print(1+1)"]
EXEC_STDOUT = "2\n"
SHAPE = "s-1vcpu-256mb"
ROOTFS = "devbox:1"


class Job:
    """The parsed job: workload name, kind, sizes, counts, and where the server is."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.base_url: str = raw["base_url"]
        self.api_key: str = raw["api_key"]
        self.sandbox_id: str = raw["sandbox_id"]
        self.workload: str = raw["workload"]
        self.kind: str = raw["kind"]
        self.concurrency: int = raw["concurrency"]
        self.duration: float = raw["duration"]
        self.warmup: int = raw.get("warmup", 1)
        self.size: int = raw.get("size", 0)
        self.expect: dict[str, int] = raw.get("expect", {})
        self.json_lib: str = raw.get("json", "json")
        self.recipe: str = raw.get("recipe", "uniform")
        self.chunk: int = raw.get("chunk", 0)

    @property
    def path(self) -> str:
        return f"/v1/sandboxes/{self.sandbox_id}"

    def stream_args(self) -> list[str]:
        return ["stream", str(self.size), self.recipe, str(self.chunk)]


def scratch_file(job: Job) -> str:
    """The file download_to workloads (concurrency 1) rewrite each operation; in /dev/shm when
    there is one, so the disk is not what gets measured. Removed at exit."""
    import atexit
    import tempfile

    fd, path = tempfile.mkstemp(
        prefix="bench-dl-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    os.close(fd)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return path


def load_job() -> Job:
    return Job(json.loads(sys.argv[1]))


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over ``execve``
    from the parent, so every driver would report at least the harness's own peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * (os.sysconf("SC_PAGE_SIZE") // 1024)


class Tally:
    """Work done, summed over workers (increments happen on one thread or under the GIL)."""

    def __init__(self) -> None:
        self.ops = 0
        self.bytes = 0
        self.events = 0

    def add(self, nbytes: int = 0, events: int = 0) -> None:
        self.ops += 1
        self.bytes += nbytes
        self.events += events


def result(job: Job, tally: Tally, wall: float, cpu: float, **extra: Any) -> dict[str, Any]:
    out = {
        "workload": job.workload,
        "ops": tally.ops,
        "bytes": tally.bytes,
        "events": tally.events,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_kib": peak_rss_kib(),
    }
    out.update(extra)
    return out


def emit(res: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()


def check_stream(
    job: Job,
    out_events: int,
    err_events: int,
    out_chars: int,
    err_chars: int,
    exit_code: int | None,
) -> int:
    """Compare one frame-per-event stream with the server's recipe; returns the wire frames
    consumed (the figure every driver reports as ``events``)."""
    e = job.expect
    got = (out_events, err_events, out_chars, err_chars, exit_code)
    want = (e["stdout_events"], e["stderr_events"], e["stdout_chars"], e["stderr_chars"], 0)
    if got != want:
        raise AssertionError(f"stream mismatch: got {got}, want {want}")
    return e["frames"]


def check_output(
    job: Job, out_chars: int, err_chars: int, switches: int, exit_code: int | None
) -> int:
    """The same check for a client that may merge consecutive frames of one stream into one
    event: every character of each stream, the same stdout/stderr alternation, exit 0."""
    e = job.expect
    got = (out_chars, err_chars, switches, exit_code)
    want = (e["stdout_chars"], e["stderr_chars"], e["switches"], 0)
    if got != want:
        raise AssertionError(f"stream mismatch: got {got}, want {want}")
    return e["frames"]


def check_exec(stdout: str, exit_code: int) -> None:
    if stdout != EXEC_STDOUT or exit_code != 0:
        raise AssertionError(f"exec mismatch: {stdout!r} {exit_code}")


async def run_async(job: Job, op: Callable[[Tally], Awaitable[None]]) -> dict[str, Any]:
    """Warm up, then run ``op`` from ``concurrency`` tasks until the time box closes."""
    scratch = Tally()
    await asyncio.gather(*(_warm(job, op, scratch) for _ in range(job.concurrency)))
    tally = Tally()
    f0 = minor_faults()
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    stop = t0 + job.duration

    async def worker() -> None:
        while True:
            await op(tally)
            if time.perf_counter() >= stop:
                return

    await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    faults = minor_faults() - f0
    return result(job, tally, wall, cpu, warm_ops=scratch.ops, minor_faults=faults)


async def _warm(job: Job, op: Callable[[Tally], Awaitable[None]], tally: Tally) -> None:
    for _ in range(job.warmup):
        await op(tally)


async def run_idle_async(
    job: Job, open_one: Callable[[], Awaitable[Any]], close_one: Callable[[Any], Awaitable[None]]
) -> dict[str, Any]:
    """Open ``concurrency`` idle streams at once, measure RSS while all are open, close them."""
    rss0 = current_rss_kib()
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    handles = await asyncio.gather(*(open_one() for _ in range(job.concurrency)))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    rss1 = current_rss_kib()
    await asyncio.gather(*(close_one(h) for h in handles))
    tally = Tally()
    tally.ops = len(handles)
    return result(job, tally, wall, cpu, rss_per_stream_kib=(rss1 - rss0) / len(handles))


async def _control(job: Job, method: str, target: str) -> dict[str, Any]:
    """One request to the fake server's ``/bench/`` routes on a connection of its own (stdlib
    asyncio streams), so the client under test gains neither a connection nor an object."""
    host, port = job.base_url.split("://", 1)[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{method} {target}: {head[:100]!r} {body[:200]!r}")
    return json.loads(body)


def raise_nofile(need: int) -> None:
    """Raise the soft descriptor limit to the hard one when ``need`` sockets would not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need + 64:
        raise RuntimeError(f"{need} connections need more descriptors than the limit {soft}")


async def run_inflight_async(
    job: Job, call: Callable[[], Awaitable[None]], warm: Callable[[], Awaitable[None]]
) -> dict[str, Any]:
    """``concurrency`` buffered execs in flight at once through one session: the server holds
    each (``["hold"]``) until all have arrived and the client has measured its RSS, then
    releases them; every call must then complete and check its result.

    RSS is read from /proc (no tracemalloc running) after a warm-up exec and a GC, and again
    when the server reports all N held: the difference over N is what one in-flight call costs,
    its connection included."""
    import gc

    n = job.concurrency
    raise_nofile(n)
    scratch = Tally()
    for _ in range(job.warmup):
        await warm()  # a plain exec: imports, first connection, lazy state
        scratch.add()
    gc.collect()
    rss0 = current_rss_kib()
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    tasks = [asyncio.ensure_future(call()) for _ in range(n)]
    try:
        await _control(job, "GET", f"/bench/held?n={n}")
        rss1 = current_rss_kib()
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - c0
        await _control(job, "POST", "/bench/release")
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    tally = Tally()
    tally.ops = n
    return result(
        job,
        tally,
        wall,
        cpu,
        warm_ops=scratch.ops,
        rss_per_call_kib=(rss1 - rss0) / n,
    )


def run_threads(job: Job, op: Callable[[Tally], None]) -> dict[str, Any]:
    """The thread-pool twin of :func:`run_async`, for synchronous clients."""
    lock = threading.Lock()

    def locked(t: Tally) -> Callable[[int, int], None]:
        def add(nbytes: int = 0, events: int = 0) -> None:
            with lock:
                Tally.add(t, nbytes, events)

        return add

    scratch = Tally()
    scratch.add = locked(scratch)  # type: ignore[method-assign]
    with ThreadPoolExecutor(job.concurrency) as pool:
        list(pool.map(lambda _: [op(scratch) for _ in range(job.warmup)], range(job.concurrency)))
        tally = Tally()
        tally.add = locked(tally)  # type: ignore[method-assign]
        f0 = minor_faults()
        t0 = time.perf_counter()
        c0 = cpu_seconds()
        stop = t0 + job.duration

        def worker(_: int) -> None:
            while True:
                op(tally)
                if time.perf_counter() >= stop:
                    return

        list(pool.map(worker, range(job.concurrency)))
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - c0
        faults = minor_faults() - f0
    return result(job, tally, wall, cpu, warm_ops=scratch.ops, minor_faults=faults)


def run_idle_threads(
    job: Job, open_one: Callable[[], Any], close_one: Callable[[Any], None]
) -> dict[str, Any]:
    """Thread twin of :func:`run_idle_async`: a sync client needs one blocked thread per stream."""
    n = job.concurrency
    opened = threading.Barrier(n + 1)
    release = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            handle = open_one()
        except BaseException as exc:
            errors.append(exc)
            opened.abort()
            return
        try:
            opened.wait()
            release.wait(120)
        finally:
            close_one(handle)

    rss0 = current_rss_kib()
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    threads = [threading.Thread(target=hold, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        opened.wait(120)
    except threading.BrokenBarrierError:
        release.set()
        raise errors[0] if errors else RuntimeError("idle streams did not open") from None
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    rss1 = current_rss_kib()
    release.set()
    for t in threads:
        t.join(60)
    tally = Tally()
    tally.ops = n
    return result(job, tally, wall, cpu, rss_per_stream_kib=(rss1 - rss0) / n)
