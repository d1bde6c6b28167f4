"""Files over real sockets: a purpose-built aiohttp.web files API that can also misbehave.

The server streams request bodies into memory (no client_max_size limit), serves them back in
1 MiB writes with a Content-Length, counts every request, and can be told to stall or cut a
download half-way. Directory transfers need real ``tar`` in a guest: see the emulator tests at
the end (skipped until ``createos_sandbox_async.local`` offers ``LocalServer``).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import itertools
import os
import random
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from _servers import run_app
from aiohttp import web

import createos_sandbox_async.files as files_mod
from createos_sandbox_async import (
    APITimeoutError,
    AsyncSession,
    CommandError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    StreamInterruptedError,
    StreamStalledError,
    Timeouts,
    ValidationError,
)
from createos_sandbox_async.files import MAX_FILE_SIZE
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

API_KEY = "sk_files_test_key_123"
SID = "sb_01FILESFILESFILESFILESFILE"
FILES = f"/v1/sandboxes/{SID}/files"


class FakeFiles:
    """State and misbehaviour switches of the files server."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.put_status: list[int] = []  # statuses to answer PUTs with first (then 200)
        self.cut_after: int | None = None  # GET: send this many bytes, then drop the connection
        self.stall_after: int | None = None  # GET: send this many bytes, then go silent
        self.half_sent = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.release = asyncio.Event()

    def count(self, method: str | None = None) -> int:
        return sum(1 for m, *_ in self.requests if method is None or m == method)

    async def put(self, request: web.Request) -> web.StreamResponse:
        path = request.query.get("path", "")
        if self.put_status:
            status = self.put_status.pop(0)
            await request.read()
            return web.json_response({"status": "error", "message": "busy"}, status=status)
        digest = bytearray()
        async for chunk in request.content.iter_chunked(1 << 20):
            digest += chunk
        self.store[path] = bytes(digest)
        return web.json_response(
            {"status": "success", "data": {"path": path, "bytes": len(digest)}}
        )

    async def get(self, request: web.Request) -> web.StreamResponse:
        path = request.query.get("path", "")
        if path not in self.store:
            return web.json_response({"status": "fail", "data": {"path": "not found"}}, status=404)
        data = self.store[path]
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = len(data)
        await resp.prepare(request)
        limit = self.cut_after if self.cut_after is not None else self.stall_after
        try:
            view = memoryview(data)
            sent = 0
            while sent < len(data):
                if limit is not None and sent >= limit:
                    self.half_sent.set()
                    if self.cut_after is not None:
                        assert request.transport is not None
                        request.transport.close()
                        return resp
                    await self.release.wait()  # stall: keep the connection open, send nothing
                step = 1 << 20 if limit is None else min(1 << 20, limit - sent) or 1 << 20
                await resp.write(view[sent : sent + step])
                sent += step
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected.set()
            raise
        return resp


@asynccontextmanager
async def files_server(**session_kw: Any) -> AsyncIterator[tuple[FakeFiles, Sandbox]]:
    """Start the fake files API; yield it and a Sandbox handle bound to it."""
    fake = FakeFiles()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        fake.requests.append(
            (request.method, request.path, dict(request.query), dict(request.headers))
        )
        return await handler(request)

    app = web.Application(middlewares=[count], client_max_size=MAX_FILE_SIZE + (1 << 20))
    app.router.add_put(FILES, fake.put)
    app.router.add_get(FILES, fake.get)
    session_kw.setdefault("retry", RetryPolicy(base=0.0, cap=0.0, jitter=False))
    async with run_app(app) as base_url:
        session = AsyncSession(api_key=API_KEY, base_url=base_url, **session_kw)
        try:
            async with session:
                yield fake, Sandbox(session, SandboxView(id=SID))
        finally:
            fake.release.set()


def _names(directory: Path) -> list[str]:
    """Sorted entry names (sync on purpose: a tiny listing, no need for a thread)."""
    return sorted(p.name for p in directory.iterdir())


def _random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("size", [0, 1, 65_535, (1 << 20) + 7, 64 << 20])
async def test_round_trip_bytes(size: int) -> None:
    data = _random(size, size)
    async with files_server() as (fake, sb):
        await sb.files.upload("/work/blob.bin", data)
        assert fake.store["/work/blob.bin"] == data
        back = await sb.files.download("/work/blob.bin")
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    assert len(back) == size


@pytest.mark.parametrize("size", [(256 << 10) - 1, 256 << 10, 1 << 20])
async def test_bytes_uploads_around_the_slicing_size(size: int) -> None:
    """From 256 KiB a bytes body goes out as slices led by an empty one (the head is sent alone,
    not copied together with the body): same bytes, a Content-Length, resent whole on a 503."""
    data = _random(size, size)
    async with files_server() as (fake, sb):
        fake.put_status = [503]
        await sb.files.upload("/s.bin", data)
        assert fake.store["/s.bin"] == data
        puts = [h for m, _, _, h in fake.requests if m == "PUT"]
    assert len(puts) == 2
    for headers in puts:
        assert headers["Content-Length"] == str(size)
        assert "Transfer-Encoding" not in headers
        assert headers["Content-Type"] == "application/octet-stream"


async def test_upload_from_path_streams_with_content_length(tmp_path: Path) -> None:
    data = _random(3 * (1 << 20) + 123, 1)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    async with files_server() as (fake, sb):
        await sb.files.upload("/a/b/src.bin", src)  # os.PathLike
        await sb.files.upload("/a/b/src2.bin", str(src))  # str path
        puts = [r for r in fake.requests if r[0] == "PUT"]
        assert fake.store["/a/b/src.bin"] == data
        assert fake.store["/a/b/src2.bin"] == data
    for _, _, _query, headers in puts:
        assert headers["Content-Length"] == str(len(data))
        assert "Transfer-Encoding" not in headers
        assert headers["Content-Type"] == "application/octet-stream"
    assert [q["path"] for _, _, q, _ in puts] == ["/a/b/src.bin", "/a/b/src2.bin"]


async def test_upload_file_object_sends_from_current_position(tmp_path: Path) -> None:
    data = _random(2_000_001, 2)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    async with files_server() as (fake, sb):
        with src.open("rb") as fh:
            fh.seek(1000)
            await sb.files.upload("/f.bin", fh)
        await sb.files.upload("/mem.bin", io.BytesIO(data))
        assert fake.store["/f.bin"] == data[1000:]
        assert fake.store["/mem.bin"] == data
        lengths = [h.get("Content-Length") for m, _, _, h in fake.requests if m == "PUT"]
    assert lengths == [str(len(data) - 1000), str(len(data))]


async def test_upload_async_iterable_is_chunked() -> None:
    parts = [_random(100_000, i) for i in range(7)] + [b"", bytearray(b"tail")]

    async def gen() -> AsyncIterator[bytes]:
        for p in parts:
            yield p  # type: ignore[misc]

    async with files_server() as (fake, sb):
        await sb.files.upload("/gen.bin", gen())
        headers = next(h for m, _, _, h in fake.requests if m == "PUT")
        assert fake.store["/gen.bin"] == b"".join(bytes(p) for p in parts)
    assert headers.get("Transfer-Encoding") == "chunked"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("relative/x", "path must be an absolute guest path"),
        ("", "path must be an absolute guest path"),
        ("/a/../etc/passwd", "'..' segment"),
        ("/a/..", "'..' segment"),
        ("/a\x00b", "NUL"),
    ],
)
async def test_bad_remote_paths_fail_before_any_request(
    path: str, message: str, tmp_path: Path
) -> None:
    async with files_server() as (fake, sb):
        with pytest.raises(ValueError, match=message):
            await sb.files.upload(path, b"x")
        with pytest.raises(ValueError, match=message):
            await sb.files.download(path)
        with pytest.raises(ValueError, match=message):
            await sb.files.download_to(path, tmp_path / "out")
        with pytest.raises(ValueError, match=message):
            sb.files.download_iter(path)
        with pytest.raises(ValueError, match=message.replace("path must", "remote_dir must")):
            await sb.files.upload_dir(tmp_path, path)
        with pytest.raises(ValueError, match=message.replace("path must", "remote_dir must")):
            await sb.files.download_dir(path, tmp_path / "d")
        assert fake.count() == 0
    assert not (tmp_path / "out").exists()
    assert _names(tmp_path) == []


async def test_oversized_file_is_refused_before_any_request(tmp_path: Path) -> None:
    big = tmp_path / "sparse.bin"
    with big.open("wb") as fh:
        fh.truncate(MAX_FILE_SIZE + 1)  # sparse: no disk space used
    exact = tmp_path / "exact.bin"
    with exact.open("wb") as fh:
        fh.truncate(MAX_FILE_SIZE)
    async with files_server() as (fake, sb):
        with pytest.raises(ValueError, match=r"data is 524288001 bytes, over the 500 MiB"):
            await sb.files.upload("/big", big)
        with big.open("rb") as fh, pytest.raises(ValueError, match="data is 524288001 bytes"):
            await sb.files.upload("/big", fh)
        with exact.open("rb") as fh:
            fh.seek(MAX_FILE_SIZE - 10)  # only the remaining 10 bytes count, and are sent
            await sb.files.upload("/tail", fh)
        assert fake.count("PUT") == 1
    assert fake.store["/tail"] == b"\x00" * 10


async def test_bad_data_types_fail_before_any_request(tmp_path: Path) -> None:
    async with files_server() as (fake, sb):
        with pytest.raises(FileNotFoundError, match=r"pass bytes, e\.g\. text\.encode\(\)"):
            await sb.files.upload("/x", "print('hi')")
        with pytest.raises(TypeError, match="binary mode"):
            await sb.files.upload("/x", io.StringIO("text"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="data must be bytes"):
            await sb.files.upload("/x", 12)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunk_size"):
            sb.files.download_iter("/x", chunk_size=0)
        with pytest.raises(IsADirectoryError, match="local_path"):
            await sb.files.download_to("/x", tmp_path)
        assert fake.count() == 0


async def test_only_bytes_uploads_are_retried(tmp_path: Path) -> None:
    src = tmp_path / "s.bin"
    src.write_bytes(b"abc")
    async with files_server() as (fake, sb):
        fake.put_status = [503]
        await sb.files.upload("/bytes", b"abc")  # 503 then 200: resent
        assert fake.count("PUT") == 2
        assert fake.store["/bytes"] == b"abc"
        big = _random(3 << 20, 11)  # above 1 MiB: sent in slices, still replayable
        fake.put_status = [503, 502]
        await sb.files.upload("/big", big)
        assert fake.count("PUT") == 5
        assert fake.store["/big"] == big
        fake.put_status = [503]
        with pytest.raises(ServerError):
            await sb.files.upload("/path", src)  # a streamed body is never resent
        assert fake.count("PUT") == 6
        assert "/path" not in fake.store
        fake.put_status = [400]
        with pytest.raises(ValidationError):
            await sb.files.upload("/big", big)  # not transient: sent once
        assert fake.count("PUT") == 7


async def test_download_to_writes_atomically(tmp_path: Path) -> None:
    data = _random(5 * (1 << 20) + 3, 5)
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    async with files_server() as (fake, sb):
        fake.store["/big.bin"] = data
        n = await sb.files.download_to("/big.bin", target)
    assert n == len(data)
    assert target.read_bytes() == data
    assert _names(tmp_path) == ["out.bin"]


async def test_download_errors_leave_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.bin"
    target.write_bytes(b"previous")
    async with files_server() as (fake, sb):
        with pytest.raises(NotFoundError):
            await sb.files.download_to("/missing", target)
        fake.store["/cut"] = _random(3 << 20, 9)
        fake.cut_after = 1 << 20
        with pytest.raises(StreamInterruptedError):
            await sb.files.download_to("/cut", target)
        with pytest.raises(StreamInterruptedError):
            await sb.files.download("/cut")
    assert target.read_bytes() == b"previous"
    assert _names(tmp_path) == ["keep.bin"]


async def test_cancelled_download_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "c.bin"
    async with files_server() as (fake, sb):
        fake.store["/slow"] = _random(4 << 20, 3)
        fake.stall_after = 2 << 20
        async with anyio.create_task_group() as tg:

            async def fetch() -> None:
                await sb.files.download_to("/slow", target)

            tg.start_soon(fetch)
            with anyio.fail_after(20):
                await fake.half_sent.wait()
                parts = [n for n in _names(tmp_path) if n.endswith(".part")]
                assert len(parts) == 1  # the temp file exists while downloading
            tg.cancel_scope.cancel()
        with anyio.fail_after(20):
            await fake.disconnected.wait()  # the server saw the connection go away
    assert _names(tmp_path) == []


async def test_stalled_download_raises_and_cleans_up(tmp_path: Path) -> None:
    async with files_server(timeout=Timeouts(stream_idle=0.2)) as (fake, sb):
        fake.store["/stall"] = _random(2 << 20, 4)
        fake.stall_after = 1 << 20
        with pytest.raises(StreamStalledError):
            await sb.files.download_to("/stall", tmp_path / "s.bin")
        with anyio.fail_after(20):
            await fake.disconnected.wait()
    assert _names(tmp_path) == []


async def test_download_timeout_bounds_the_whole_transfer(tmp_path: Path) -> None:
    """timeout= of download/download_to covers the body too (issue 10 item 1), not only the
    headers: a body that goes silent (well within the 30 s idle bound) ends at the deadline."""
    target = tmp_path / "d.bin"
    target.write_bytes(b"previous")
    async with files_server() as (fake, sb):
        fake.store["/slow"] = _random(4 << 20, 7)
        fake.store["/fast"] = b"f" * 1000
        assert await sb.files.download("/fast", timeout=10) == b"f" * 1000
        fake.stall_after = 1 << 20  # the headers and a first part, then nothing
        with anyio.fail_after(20):  # before the fix: stalled until the idle bound (30 s)
            with pytest.raises(APITimeoutError, match=r"timeout=1 s"):
                await sb.files.download_to("/slow", target, timeout=1)
            with pytest.raises(APITimeoutError, match=r"timeout=1\.5 s"):
                await sb.files.download("/slow", timeout=1.5)
            await fake.disconnected.wait()  # the connection was dropped
        assert await sb.files.download("/fast", timeout=float("inf")) == b"f" * 1000
    assert target.read_bytes() == b"previous"  # no partial file, the old one untouched
    assert _names(tmp_path) == ["d.bin"]


async def test_download_iter_early_exit_closes_the_connection() -> None:
    async with files_server() as (fake, sb):
        fake.store["/s"] = _random(8 << 20, 6)
        fake.stall_after = 4 << 20  # never finishes on its own
        got = 0
        async with sb.files.download_iter("/s", chunk_size=65536) as chunks:
            async for chunk in chunks:
                got += len(chunk)
                if got >= 1 << 20:
                    break
        with anyio.fail_after(20):
            await fake.disconnected.wait()
        assert got >= 1 << 20
        # A full read afterwards works: the pool did not keep the half-read connection.
        fake.stall_after = None
        assert len(await sb.files.download("/s")) == 8 << 20
        connector = sb._transport.connector
        assert connector is not None
        assert sum(len(v) for v in connector._conns.values()) == 1  # the finished one, reusable


async def test_download_iter_read_to_the_end_releases_the_connection() -> None:
    async with files_server() as (fake, sb):
        fake.store["/r"] = b"x" * 300_000
        chunks = [c async for c in sb.files.download_iter("/r", chunk_size=100_000)]
        assert b"".join(chunks) == b"x" * 300_000
        assert all(len(c) <= 100_000 for c in chunks)
        connector = sb._transport.connector
        assert connector is not None
        assert sum(len(v) for v in connector._conns.values()) == 1
        assert not fake.disconnected.is_set()


# -- download_to's writes: on the loop while quick, in a worker thread after a slow one ----------


@pytest.fixture
def thread_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every download_to write counts as slow (the non-Linux rule, with no threshold), so all but
    the first chunk go through the worker thread; yields the thread ids of those batch writes."""
    threads: list[int] = []
    real = files_mod._write_batch

    def spy(file: Any, batch: list[bytes]) -> None:
        threads.append(threading.get_ident())
        real(file, batch)

    monkeypatch.setattr(files_mod, "_SLOW_WRITE", 0.0)
    monkeypatch.setattr(files_mod, "_voluntary_switches", itertools.count().__next__)
    monkeypatch.setattr(files_mod, "_write_batch", spy)
    return threads


async def test_a_slow_write_moves_the_rest_of_the_file_to_a_thread() -> None:
    """A write that waits in the kernel (here on a pipe nobody reads for 50 ms) tells the sink
    to leave the event loop; the rest arrives in order, written and closed by a worker thread."""
    r, w = os.pipe()
    received = bytearray()

    def reader() -> None:
        time.sleep(0.05)  # the slowness under test: the first write cannot finish before this
        while chunk := os.read(r, 1 << 16):
            received.extend(chunk)
        os.close(r)

    parts = [_random(256 * 1024, 11), _random(200_000, 12), _random(100_000, 13)]
    writers: list[int] = []
    real = files_mod._write_batch

    def spy(file: Any, batch: list[bytes]) -> None:
        writers.append(threading.get_ident())
        real(file, batch)

    drain = threading.Thread(target=reader)
    drain.start()
    try:
        sink = files_mod._FileSink(os.fdopen(w, "wb", buffering=0))
        files_mod._write_batch = spy
        try:
            assert sink.write(parts[0]) is True  # slept on the full pipe for >= 50 ms
            assert sink.threaded
            for part in parts[1:]:
                await sink.write_async(part)
            await sink.finish()  # the last batch and the close happen in the thread
        finally:
            files_mod._write_batch = real
    finally:
        await anyio.to_thread.run_sync(drain.join, 20)
    assert not drain.is_alive()  # the reader saw EOF: the file was closed
    assert bytes(received) == b"".join(parts)
    assert writers and threading.get_ident() not in writers


async def test_download_to_after_a_slow_write_finishes_in_a_thread(
    tmp_path: Path, thread_writes: list[int]
) -> None:
    data = _random(5 * (1 << 20) + 3, 21)
    target = tmp_path / "t.bin"
    async with files_server() as (fake, sb):
        fake.store["/t.bin"] = data
        assert await sb.files.download_to("/t.bin", target) == len(data)
    assert target.read_bytes() == data
    assert _names(tmp_path) == ["t.bin"]
    assert thread_writes and threading.get_ident() not in thread_writes


@pytest.mark.parametrize("mode", ["inline", "thread"])
async def test_a_write_error_mid_download_leaves_no_partial_file(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    """The local disk fails half-way (a real EFBIG from RLIMIT_FSIZE): the error surfaces as it
    is, the half-written temp file is gone, the old file is untouched, the connection dropped."""
    resource = pytest.importorskip("resource")
    if mode == "thread":
        request.getfixturevalue("thread_writes")
    target = tmp_path / "keep.bin"
    target.write_bytes(b"previous")
    async with files_server() as (fake, sb):
        fake.store["/big"] = _random(4 << 20, 22)
        fake.stall_after = 3 << 20  # the rest waits for the client: it must hang up itself
        fake.store["/small"] = b"s" * 1000
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
        try:
            with pytest.raises(OSError) as caught:
                await sb.files.download_to("/big", target)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)
        assert caught.value.errno == errno.EFBIG
        with anyio.fail_after(20):
            await fake.disconnected.wait()  # not left half-read in the pool
        fake.stall_after = None
        assert await sb.files.download_to("/small", tmp_path / "next.bin") == 1000
    assert target.read_bytes() == b"previous"
    assert _names(tmp_path) == ["keep.bin", "next.bin"]


async def test_cancelling_download_to_waits_for_its_thread_write(
    tmp_path: Path, thread_writes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a worker thread writes: the task ends only after that write returned (no
    thread left writing into a removed file), the temp file is gone, the connection dropped."""
    started, release = threading.Event(), threading.Event()
    log: list[str] = []
    real = files_mod._write_batch

    def blocking(file: Any, batch: list[bytes]) -> None:
        started.set()
        release.wait(20)
        real(file, batch)
        log.append("write returned")

    monkeypatch.setattr(files_mod, "_write_batch", blocking)
    target = tmp_path / "c.bin"
    async with files_server() as (fake, sb):
        fake.store["/c"] = _random(4 << 20, 23)
        fake.stall_after = 3 << 20
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:

            async def fetch() -> None:
                with scope:
                    try:
                        await sb.files.download_to("/c", target)
                    finally:
                        log.append("download_to left")

            tg.start_soon(fetch)
            with anyio.fail_after(20):
                await anyio.to_thread.run_sync(started.wait, 20)
            scope.cancel()
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert log == []  # still waiting for the write in the thread
            release.set()
        assert log == ["write returned", "download_to left"]
        with anyio.fail_after(20):
            await fake.disconnected.wait()
    assert _names(tmp_path) == []


# -- directories: need tar in a real guest (the emulator) ---------------------------------------


async def test_dir_round_trip_through_emulator(
    emulated: tuple[Any, Sandbox], tmp_path: Path
) -> None:
    _server, sb = emulated
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(_random(200_000, 8))
    (src / "sub" / "deeper" / "c").write_text("")
    (src / "link").symlink_to("a.txt")
    os.chmod(src / "a.txt", 0o750)
    await sb.files.upload_dir(src, "/tmp/up")
    res = await sb.exec("cat", ["/tmp/up/a.txt"])
    assert res.stdout == "alpha\n"
    dst = tmp_path / "dst"
    await sb.files.download_dir("/tmp/up", dst)
    with pytest.raises(CommandError):
        await sb.files.download_dir("/tmp/does-not-exist", tmp_path / "none")
    leftovers = await sb.exec("sh", ["-c", "ls -A /tmp | grep -c createos || true"])
    assert leftovers.stdout.strip() == "0"  # guest temp archives were removed
    assert (dst / "a.txt").read_text() == "alpha\n"
    assert (dst / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert (dst / "sub" / "deeper" / "c").read_bytes() == b""
    assert os.readlink(dst / "link") == "a.txt"
    assert (dst / "a.txt").stat().st_mode & 0o777 == 0o750


@pytest.fixture
async def emulated(emulator: Any, fs_resolution: str) -> AsyncIterator[tuple[Any, Sandbox]]:
    """A running sandbox on the emulator (real files in a bubblewrap guest), once with openat2
    and once with its fallback."""
    server = emulator
    async with server.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb", rootfs="devbox:1")
        async with sb:
            yield server, sb


async def test_round_trip_through_emulator(emulated: tuple[Any, Sandbox], tmp_path: Path) -> None:
    _server, sb = emulated
    for size in (0, 1, 65_537, (1 << 20) + 7, 64 << 20):
        data = _random(size, size + 1)
        remote = f"/tmp/rt/{size}/blob.bin"  # parents are created by the server
        await sb.files.upload(remote, data)
        res = await sb.exec("sha256sum", [remote])
        assert res.stdout.split()[0] == hashlib.sha256(data).hexdigest()
        assert await sb.files.download(remote) == data
        local = tmp_path / f"{size}.bin"
        assert await sb.files.download_to(remote, local) == size
        assert local.read_bytes() == data
    src = tmp_path / "src.bin"
    src.write_bytes(_random(3 << 20, 77))
    await sb.files.upload("/tmp/from-path.bin", src)
    with src.open("rb") as fh:
        await sb.files.upload("/tmp/from-file.bin", fh)

    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield _random(100_000, i)

    await sb.files.upload("/tmp/from-iter.bin", parts())
    assert await sb.files.download("/tmp/from-path.bin") == src.read_bytes()
    assert await sb.files.download("/tmp/from-file.bin") == src.read_bytes()
    assert await sb.files.download("/tmp/from-iter.bin") == b"".join(
        _random(100_000, i) for i in range(5)
    )
    with pytest.raises(NotFoundError):
        await sb.files.download_to("/tmp/nope", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


async def test_path_checks_send_nothing_to_the_emulator(emulated: tuple[Any, Sandbox]) -> None:
    server, sb = emulated
    before = server.request_count(path="*/files")
    for bad in ("rel/x", "/a/../b"):
        with pytest.raises(ValueError):
            await sb.files.upload(bad, b"x")
        with pytest.raises(ValueError):
            await sb.files.download(bad)
    assert server.request_count(path="*/files") == before == 0


def test_safe_extract_refuses_escaping_members(tmp_path: Path) -> None:
    import tarfile

    from createos_sandbox_async._tar import safe_extract

    def archive(name: str, add: Any) -> str:
        path = tmp_path / name
        with tarfile.open(path, "w") as tar:
            add(tar)
        return str(path)

    def member(
        tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, link: str = ""
    ) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)

    cases = {
        "dotdot.tar": lambda t: member(t, "../evil"),
        "abs.tar": lambda t: member(t, "/etc/evil"),
        "nested.tar": lambda t: member(t, "ok/../../evil"),
        "symlink.tar": lambda t: member(t, "l", tarfile.SYMTYPE, "../../etc/passwd"),
        "abslink.tar": lambda t: member(t, "l", tarfile.SYMTYPE, "/etc/passwd"),
        "hardlink.tar": lambda t: member(t, "h", tarfile.LNKTYPE, "../outside"),
        "device.tar": lambda t: member(t, "dev", tarfile.CHRTYPE),
    }
    for name, add in cases.items():
        target = tmp_path / ("out-" + name)
        with pytest.raises(ValueError, match="refusing to extract"):
            safe_extract(archive(name, add), str(target))
        assert list(target.iterdir()) == [], name  # nothing written before the check
    ok = archive(
        "ok.tar",
        lambda t: (member(t, "./a"), member(t, "d/b"), member(t, "d/l", tarfile.SYMTYPE, "b")),
    )
    safe_extract(ok, str(tmp_path / "fine"))
    assert sorted(
        str(p.relative_to(tmp_path / "fine")) for p in (tmp_path / "fine").rglob("*")
    ) == [
        "a",
        "d",
        "d/b",
        "d/l",
    ]


def _tar_bytes(entries: list[tuple[str, bytes, str]]) -> bytes:
    """An archive of (name, tar type, link target) entries; regular files hold b"pwned"."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, link in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            data = b"pwned" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _chains() -> dict[str, bytes]:
    """Archives whose every link looks inside on its own, while a chain of them leads out."""
    from tarfile import LNKTYPE, REGTYPE, SYMTYPE

    return {
        "dir-chain": _tar_bytes(
            [("a", SYMTYPE, "."), ("a/b", SYMTYPE, ".."), ("a/b/escaped", REGTYPE, "")]
        ),
        "file-through-chain": _tar_bytes(
            [
                ("ok", REGTYPE, ""),
                ("a", SYMTYPE, "."),
                ("a/up", SYMTYPE, "../x"),
                ("a/up", REGTYPE, ""),
            ]
        ),
        "link-via-link": _tar_bytes(
            [("d", SYMTYPE, "."), ("e", SYMTYPE, "d/.."), ("e/escaped", REGTYPE, "")]
        ),
        "hardlink-via-link": _tar_bytes(
            [("a", SYMTYPE, "."), ("a/b", SYMTYPE, ".."), ("h", LNKTYPE, "a/b/secret")]
        ),
        "loop": _tar_bytes([("l1", SYMTYPE, "l2"), ("l2", SYMTYPE, "l1"), ("l1/f", REGTYPE, "")]),
    }


@pytest.mark.parametrize("case", sorted(_chains()))
async def test_download_dir_refuses_a_symlink_chain_before_writing(
    case: str, tmp_path: Path
) -> None:
    """A hostile guest (or server) serves a tar whose symlinks chain out of local_dir:
    download_dir raises ValueError, as documented, and writes nothing at all."""
    archive = _chains()[case]

    async def exec_ok(request: web.Request) -> web.StreamResponse:
        await request.read()
        result = {"stdout": "", "stderr": "", "exit_code": 0}
        return web.json_response({"status": "success", "data": {"result": result}})

    async def serve_tar(request: web.Request) -> web.StreamResponse:
        return web.Response(body=archive, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_post(f"/v1/sandboxes/{SID}/exec", exec_ok)
    app.router.add_get(FILES, serve_tar)
    target = tmp_path / "box" / "dst"
    async with run_app(app) as base_url:
        retry = RetryPolicy(base=0.0, cap=0.0, jitter=False)
        async with AsyncSession(api_key=API_KEY, base_url=base_url, retry=retry) as session:
            sb = Sandbox(session, SandboxView(id=SID))
            with pytest.raises(ValueError, match="refusing to extract"):
                await sb.files.download_dir("/root/src", target)
    assert _names(tmp_path / "box") == ["dst"]
    assert _names(target) == []  # nothing written, not even the links that looked harmless
