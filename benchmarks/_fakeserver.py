"""A cheap fake CreateOS Sandbox API for benchmarks, so the client is what gets measured.

Every answer is precomputed bytes: the server never builds JSON per request, never parses the
body of a buffered exec, and sends streams and downloads in 64 KiB pieces. It runs in its own
process(es) (``aiohttp`` low-level server, uvloop when installed), pinned to a CPU other than the
client's where the machine has one. Counters live in a shared memory file so the harness can check
that every driver really did the work it claims (requests, bytes, streams), without asking the
server over HTTP.

Routes (any sandbox id, any API key):

- ``POST /v1/sandboxes`` -> CreateSandboxResponse with a fresh id
- ``GET /v1/sandboxes/{id}`` -> SandboxView (running)
- ``DELETE /v1/sandboxes/{id}`` -> ``{id, status: "destroyed"}`` (nothing to poll)
- ``POST /v1/sandboxes/{id}/exec`` -> buffered result, stdout ``"2\\n"``
- ``POST /v1/sandboxes/{id}/exec?stream=true`` with body args ``["stream", "<bytes>"]`` ->
  NDJSON frames (see :func:`stream_frames`); args ``["idle"]`` -> one heartbeat, then nothing
  until the client goes away
- ``PUT /v1/sandboxes/{id}/files?path=...`` -> counts and discards the body
- ``GET /v1/sandboxes/{id}/files?path=/bench/<bytes>`` -> that many bytes
- ``POST /v1/sandboxes/{id}/exec`` with body args ``["hold"]`` -> the same buffered result, but
  only once ``POST /bench/release`` is called (at most 300 s later); ``GET /bench/held?n=N``
  answers (with the count) once N such calls are being held, so a client can look at its own
  memory with all of them in flight. One server process (the default) for these two routes.

Use it from another script::

    from _fakeserver import FakeServer, stream_frames   # benchmarks/ on sys.path
    with FakeServer() as server:
        server.base_url, server.api_key, server.stats()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

API_KEY = "bench-key"
SANDBOX_ID = "sb_01BENCHBENCHBENCHBENCHBENC"
PIECE = 64 * 1024

# Counter slots, one row of these per server process in the shared file.
COUNTERS = (
    "exec",
    "stream",
    "stream_bytes",
    "idle_open",
    "idle_closed",
    "create",
    "get",
    "delete",
    "upload",
    "upload_bytes",
    "download",
    "download_bytes",
    "hold",
    "other",
)
_SLOT = {name: i for i, name in enumerate(COUNTERS)}
_MAX_PROCS = 8
_ROW = len(COUNTERS) * 8

EXEC_STDOUT = "2\n"
_EXEC_BODY = (
    b'{"status":"success","data":{"result":{"stdout":"2\\n","stderr":"","exit_code":0},'
    b'"exec_ms":1.25}}'
)


def _view(sandbox_id: str, status: str = "running") -> dict[str, Any]:
    return {
        "id": sandbox_id,
        "status": status,
        "ip": "10.0.0.7",
        "vcpu": 1,
        "mem_mib": 256,
        "disk_mib": 10240,
        "created_at": "2026-01-01T00:00:00Z",
        "running_at": "2026-01-01T00:00:01Z",
        "ingress_enabled": False,
        "name": "brave-otter",
        "spawn_ms": 812.5,
        "shape": "s-1vcpu-256mb",
        "rootfs": "devbox:1",
        "region": "local",
        "egress": [],
        "envs": [],
        "ssh_pubkeys": [],
        "created_by": "bench",
        "bandwidth_ingress_bytes": 0,
    }


def _jsend(data: object) -> bytes:
    return json.dumps({"status": "success", "data": data}, separators=(",", ":")).encode()


_GET_BODY = _jsend(_view(SANDBOX_ID))
# The create body is split around the id so each create returns a distinct one cheaply.
_CREATE_SPLIT = _jsend(
    {
        "id": "\x00",
        "status": "running",
        "name": "brave-otter",
        "ip": "10.0.0.7",
        "shape": "s-1vcpu-256mb",
        "rootfs": "devbox:1",
        "vcpu": 1,
        "mem_mib": 256,
        "disk_mib": 10240,
        "spawn_ms": 812.5,
        "ssh_pubkeys": [],
    }
).split(b"\\u0000")


@dataclass(frozen=True)
class StreamExpect:
    """What a client must see after parsing a whole stream: counts, not timings.

    ``frames`` counts every wire frame (output, heartbeats, the exit frame): what a client
    consumes. ``switches`` counts the changes between stdout and stderr along the output frames,
    a figure that coalescing consecutive frames of one stream into one event leaves unchanged.
    """

    stdout_events: int
    stderr_events: int
    stdout_chars: int
    stderr_chars: int
    heartbeats: int
    exit_code: int
    wire_bytes: int
    frames: int = 0
    switches: int = 0

    @property
    def events(self) -> int:
        """Events a frame-per-event client yields: output frames plus the exit (no heartbeats)."""
        return self.stdout_events + self.stderr_events + 1

    @property
    def output_chars(self) -> int:
        return self.stdout_chars + self.stderr_chars


#: Stream recipes: ``uniform`` (the original: ~100-byte lines, every 20th on stderr, every 200th
#: frame a heartbeat) and ``real`` (log lines of 40-120 characters, stdout and stderr in runs,
#: some escapes and non-ASCII text, a heartbeat about every 400 frames).
RECIPES = ("uniform", "real")


@lru_cache(maxsize=16)
def stream_frames(size: int, recipe: str = "uniform") -> tuple[bytes, StreamExpect]:
    """Deterministic NDJSON exec frames totalling about ``size`` bytes, ending ``{"exit_code":0}``.

    See :data:`RECIPES`. Clients must skip the heartbeats and deliver every character.
    """
    if recipe == "real":
        return _real_frames(size)
    if recipe != "uniform":
        raise ValueError(f"unknown stream recipe {recipe!r}")
    parts: list[bytes] = []
    total = n_out = n_err = c_out = c_err = n_hb = switches = 0
    last = "stdout"
    i = 0
    pad = "abcdefghijklmnopqrstuvwxyz0123456789" * 3
    while total < size:
        i += 1
        if i % 200 == 0:
            frame = b'{"hb":true}\n'
            n_hb += 1
        else:
            text = f"line {i:08d} {pad[: 60 + i % 23]}\n"
            kind = "stderr" if i % 20 == 0 else "stdout"
            switches += kind != last and (n_out + n_err) > 0
            last = kind
            frame = b'{"' + kind.encode() + b'":' + json.dumps(text).encode() + b"}\n"
            if kind == "stderr":
                n_err += 1
                c_err += len(text)
            else:
                n_out += 1
                c_out += len(text)
        parts.append(frame)
        total += len(frame)
    parts.append(b'{"exit_code":0}\n')
    body = b"".join(parts)
    frames = n_out + n_err + n_hb + 1
    return body, StreamExpect(n_out, n_err, c_out, c_err, n_hb, 0, len(body), frames, switches)


_LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN")
_WORDS = (
    "GET /api/v1/items 200",
    "cache miss key=user:1234",
    "compiling src/main.rs",
    "test_parse_header ... ok",
    "retrying in 250ms",
    "wrote 4096 bytes",
    "connection from 10.0.0.7:51234",
    'config "release"',
    "temps\u00e9rature 21\u00b0C",
    "done \u2713",
    "\tat module.fn (file.py:42)",
)


def _real_frames(size: int) -> tuple[bytes, StreamExpect]:
    """Log-like output: 40-120 characters a line, runs of stdout (1-40 frames) and stderr (1-6)."""
    import random

    rnd = random.Random(14)
    parts: list[bytes] = []
    total = n_out = n_err = c_out = c_err = n_hb = switches = 0
    kind = "stdout"
    run = 0
    i = 0
    while total < size:
        i += 1
        if rnd.random() < 1 / 400:
            parts.append(b'{"hb":true}\n')
            n_hb += 1
            total += 12
            continue
        if run == 0:
            if n_out + n_err:
                kind = "stderr" if kind == "stdout" else "stdout"
                switches += 1
            run = rnd.randint(1, 40) if kind == "stdout" else rnd.randint(1, 6)
        run -= 1
        want = rnd.randint(40, 120)
        head = f"2026-12-04T15:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z "
        head += f"{rnd.choice(_LEVELS)} {rnd.choice(_WORDS)} "
        text = (head + "x" * want)[: want - 1] + "\n"  # 40-120 characters
        # Raw UTF-8 for non-ASCII text, as Go's encoder (the service's agent) writes it.
        frame = b'{"' + kind.encode() + b'":' + json.dumps(text, ensure_ascii=False).encode()
        frame += b"}\n"
        if kind == "stdout":
            n_out += 1
            c_out += len(text)
        else:
            n_err += 1
            c_err += len(text)
        parts.append(frame)
        total += len(frame)
    parts.append(b'{"exit_code":0}\n')
    body = b"".join(parts)
    frames = n_out + n_err + n_hb + 1
    return body, StreamExpect(n_out, n_err, c_out, c_err, n_hb, 0, len(body), frames, switches)


def _pieces(body: bytes) -> list[bytes]:
    return [body[i : i + PIECE] for i in range(0, len(body), PIECE)]


@lru_cache(maxsize=16)
def _stream_pieces(size: int, recipe: str = "uniform", chunk: int = 0) -> list[bytes]:
    """The response body in 64 KiB writes. ``chunk`` > 0: pre-encoded HTTP chunks of that many
    bytes (the handler then writes the chunked framing itself, so tiny chunks cost the server
    nothing per chunk and the client's parser is what gets measured)."""
    body = stream_frames(size, recipe)[0]
    if chunk <= 0:
        return _pieces(body)
    enc = b"".join(
        b"%x\r\n" % len(body[i : i + chunk]) + body[i : i + chunk] + b"\r\n"
        for i in range(0, len(body), chunk)
    )
    return _pieces(enc + b"0\r\n\r\n")


@lru_cache(maxsize=8)
def _download_body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


# ---------------------------------------------------------------- server process


class _Counters:
    """This process's row in the shared counter file."""

    def __init__(self, path: str, row: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self._mm = mmap.mmap(fd, _ROW * _MAX_PROCS)
        finally:
            os.close(fd)
        self._view = memoryview(self._mm).cast("q")
        self._base = row * len(COUNTERS)

    def add(self, name: str, n: int = 1) -> None:
        self._view[self._base + _SLOT[name]] += n


def _serve(fd: int, counters_path: str, row: int) -> None:
    """Serve on an inherited listening socket until SIGTERM."""
    import logging

    from aiohttp import web, web_server

    # Clients that vanish mid-request (idle streams, killed drivers) are expected here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    counters = _Counters(counters_path, row)
    json_headers = {"Content-Type": "application/json"}
    ndjson_headers = {"Content-Type": "application/x-ndjson"}
    octet_headers = {"Content-Type": "application/octet-stream"}
    upload_ok = b'{"status":"success","data":{"path":"/bench","bytes":'
    seq = 0
    # Held buffered execs: each waits on the gate that was current when it arrived.
    held = 0
    gate = asyncio.Event()
    held_changed = asyncio.Condition()

    async def exec_hold() -> web.Response:
        nonlocal held
        counters.add("hold")
        my_gate = gate
        async with held_changed:
            held += 1
            held_changed.notify_all()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(my_gate.wait(), 300)
        finally:
            held -= 1
        return web.Response(body=_EXEC_BODY, headers=json_headers)

    async def bench_control(request: web.BaseRequest) -> web.Response:
        """``GET /bench/held?n=N`` waits (<= 120 s) for N held execs; ``POST /bench/release``."""
        nonlocal gate
        if request.path == "/bench/release" and request.method == "POST":
            released, old = held, gate
            gate = asyncio.Event()  # calls arriving from now on wait for the next release
            old.set()
            return web.json_response({"released": released})
        want = int(request.query.get("n", "1"))
        async with held_changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held_changed.wait_for(lambda: held >= want), 120)
        return web.json_response({"held": held}, status=200 if held >= want else 504)

    async def exec_stream(request: web.BaseRequest) -> web.StreamResponse:
        spec = json.loads(await request.read())
        args = spec.get("args") or []
        resp = web.StreamResponse(headers=ndjson_headers)
        if len(args) > 3 and int(args[3]) > 0:  # the body carries its own chunked framing
            resp.headers["Transfer-Encoding"] = "chunked"
            resp._length_check = False  # as aiohttp's websockets do: no framing of its own
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        if args and args[0] == "idle":
            counters.add("idle_open")
            try:
                await resp.write(b'{"hb":true}\n')
                await asyncio.sleep(600)  # until the client disconnects (handler cancelled)
            finally:
                counters.add("idle_closed")
            return resp
        size = int(args[1]) if len(args) > 1 else 1 << 20
        recipe = args[2] if len(args) > 2 else "uniform"
        chunk = int(args[3]) if len(args) > 3 else 0
        counters.add("stream")
        sent = 0
        for piece in _stream_pieces(size, recipe, chunk):
            await resp.write(piece)
            sent += len(piece)
        await resp.write_eof()
        counters.add("stream_bytes", sent)
        return resp

    async def upload(request: web.BaseRequest) -> web.Response:
        n = 0
        content = request.content
        while True:
            chunk = await content.readany()
            if not chunk:
                break
            n += len(chunk)
        counters.add("upload")
        counters.add("upload_bytes", n)
        return web.Response(body=upload_ok + str(n).encode() + b"}}", headers=json_headers)

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        nonlocal seq
        method = request.method
        path = request.path
        if path.startswith("/bench/"):
            return await bench_control(request)
        if path.startswith("/v1/sandboxes"):
            rest = path[14:]  # after "/v1/sandboxes/"
            if rest.endswith("/exec") and method == "POST":
                if request.query_string:  # only ?stream=true is ever sent
                    return await exec_stream(request)
                body = await request.read()
                if b'"hold"' in body:  # a bytes search, not a parse: exec_c16 stays cheap
                    return await exec_hold()
                counters.add("exec")
                return web.Response(body=_EXEC_BODY, headers=json_headers)
            if rest.endswith("/files"):
                if method == "PUT":
                    return await upload(request)
                if method == "GET":
                    size = int(request.query.get("path", "/bench/1048576").rsplit("/", 1)[1])
                    body = _download_body(size)
                    counters.add("download")
                    counters.add("download_bytes", len(body))
                    return web.Response(body=body, headers=octet_headers)
            if not rest:
                if method == "POST":
                    await request.read()
                    seq += 1
                    counters.add("create")
                    body = _CREATE_SPLIT[0] + b"sb_bench%018d" % (row * 10**15 + seq)
                    return web.Response(body=body + _CREATE_SPLIT[1], headers=json_headers)
            elif "/" not in rest:
                if method == "GET":
                    counters.add("get")
                    return web.Response(body=_GET_BODY, headers=json_headers)
                if method == "DELETE":
                    counters.add("delete")
                    body = _jsend({"id": rest, "status": "destroyed"})
                    return web.Response(body=body, headers=json_headers)
        counters.add("other")
        body = b'{"status":"fail","data":{"path":"not served by the benchmark server"}}'
        return web.Response(status=404, body=body, headers=json_headers)

    async def main() -> None:
        server = web_server.Server(
            handler, handler_cancellation=True, access_log=None, read_bufsize=1 << 22
        )
        runner = web.ServerRunner(server, handle_signals=True)
        await runner.setup()
        sock = socket.socket(fileno=fd)
        site = web.SockSite(runner, sock, backlog=4096)  # aiohttp would re-listen() at 128
        await site.start()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await runner.cleanup()

    # Warm the caches most runs need before accepting traffic.
    _stream_pieces(1 << 20)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with (
        contextlib.suppress(KeyboardInterrupt, SystemExit),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(main())


# ---------------------------------------------------------------- harness side


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): the last CPU serves, the others run the client."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


class FakeServer:
    """Start the fake API in ``processes`` child processes on 127.0.0.1 (a sync context manager).

    ``server_cpus`` pins the children (default: the last CPU, see :func:`cpu_plan`);
    ``warm_sizes`` precomputes stream bodies of those byte sizes before the first request.
    """

    def __init__(
        self,
        *,
        processes: int = 1,
        server_cpus: set[int] | None = None,
        warm_sizes: tuple[int | str, ...] = (),
    ) -> None:
        if not 1 <= processes <= _MAX_PROCS:
            raise ValueError(f"processes must be 1..{_MAX_PROCS}, got {processes}")
        self.processes = processes
        self.server_cpus = server_cpus if server_cpus is not None else cpu_plan()[0]
        self.warm_sizes = warm_sizes
        self.api_key = API_KEY
        self.sandbox_id = SANDBOX_ID
        self.base_url = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._sock: socket.socket | None = None
        self._counters_path = ""
        self._mm: mmap.mmap | None = None

    def __enter__(self) -> FakeServer:
        fd, self._counters_path = tempfile.mkstemp(prefix="bench-counters-", dir=_shm_dir())
        os.write(fd, bytes(_ROW * _MAX_PROCS))
        self._mm = mmap.mmap(fd, _ROW * _MAX_PROCS)
        os.close(fd)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4096)
        self._sock.set_inheritable(True)
        port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            for row in range(self.processes):
                self._procs.append(self._spawn(row))
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _spawn(self, row: int) -> subprocess.Popen[bytes]:
        assert self._sock is not None
        cmd = [sys.executable, os.path.abspath(__file__), "--fd", str(self._sock.fileno())]
        cmd += ["--counters", self._counters_path, "--row", str(row)]
        for size in self.warm_sizes:
            cmd += ["--warm", str(size)]  # SIZE or "SIZE:RECIPE:CHUNK"
        cpus = self.server_cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        return subprocess.Popen(cmd, pass_fds=(self._sock.fileno(),), preexec_fn=pin)

    def _wait_ready(self) -> None:
        """Poll until every process has answered once (bounded)."""
        import http.client

        deadline = time.monotonic() + 30
        port = int(self.base_url.rsplit(":", 1)[1])
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"fake server exited with {p.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
            except OSError:
                time.sleep(0.05)
                continue
            if self.stats()["other"] >= 1:
                # Give the remaining processes a moment to reach their accept loop.
                time.sleep(0.2 * (self.processes - 1))
                return
        raise RuntimeError("fake server did not start within 30 s")

    def stats(self) -> dict[str, int]:
        """Counters summed over all server processes."""
        assert self._mm is not None
        view = memoryview(self._mm).cast("q")
        try:
            n = len(COUNTERS)
            return {
                name: sum(view[r * n + i] for r in range(_MAX_PROCS))
                for i, name in enumerate(COUNTERS)
            }
        finally:
            view.release()

    def open_connections(self) -> int:
        """Server-side TCP connections not yet fully closed (from /proc; -1 if unreadable)."""
        port = int(self.base_url.rsplit(":", 1)[1])
        try:
            with open("/proc/net/tcp") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            return -1
        n = 0
        for row in rows:
            fields = row.split()
            local, state = fields[1], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state != "0A":  # 0A = LISTEN
                n += 1
        return n

    def wait_quiet(self, timeout: float = 15.0) -> bool:
        """Wait until the server holds no connection, so a client reusing a port of a socket
        the server has not closed yet (CLOSE_WAIT) cannot be reset. True when quiet."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.open_connections()
            if n <= 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def cpu_seconds(self) -> float:
        """User+system CPU the server processes used so far (from /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / tick

    def __exit__(self, *exc: object) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._counters_path:
            with contextlib.suppress(OSError):
                os.unlink(self._counters_path)


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


@contextlib.contextmanager
def fake_server(**kw: Any) -> Iterator[FakeServer]:
    """Functional spelling of :class:`FakeServer`."""
    with FakeServer(**kw) as server:
        yield server


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--fd", type=int, help="inherited listening socket (set by FakeServer)")
    ap.add_argument("--counters", help="shared counter file (set by FakeServer)")
    ap.add_argument("--row", type=int, default=0)
    ap.add_argument("--warm", action="append", default=[], help="SIZE[:RECIPE[:CHUNK]]")
    ap.add_argument("--serve", action="store_true", help="start standalone and print the URL")
    ns = ap.parse_args()
    if ns.fd is not None:
        for w in ns.warm:
            size, _, rest = w.partition(":")
            recipe, _, chunk = rest.partition(":")
            _stream_pieces(int(size), recipe or "uniform", int(chunk or 0))
        _serve(ns.fd, ns.counters, ns.row)
    else:
        with FakeServer() as srv:
            print(srv.base_url, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
