"""The lean body reader (``_reader``): aiohttp's StreamReader state kept exactly, fewer calls.

Two levels: the reader's state machine driven directly (aiohttp's own ``feed_data`` and flow
control, a stand-in for the connection's protocol), and whole exec streams over real sockets
whose server writes one tiny HTTP chunk per write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _fake_exec_api import FakeExecAPI, pool_state
from aiohttp import web
from aiohttp.streams import StreamReader

from createos_sandbox_async import AsyncSession, StreamInterruptedError
from createos_sandbox_async._reader import LEAN, _checked_version, lean

pytestmark = pytest.mark.anyio

needs_lean = pytest.mark.skipif(not LEAN, reason="this aiohttp's reader is left as it is")


class _Protocol:
    """What StreamReader asks of its connection: flow control and whether it is connected."""

    def __init__(self) -> None:
        self._reading_paused = False
        self.connected = True
        self.pauses = 0
        self.resumes = 0

    def pause_reading(self) -> None:
        self._reading_paused = True
        self.pauses += 1

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False
        self.resumes += 1


def _reader(limit: int = 16) -> tuple[StreamReader, _Protocol]:
    protocol = _Protocol()
    reader = StreamReader(protocol, limit, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    lean(reader)
    return reader, protocol


def test_only_checked_aiohttp_releases_get_the_lean_reader() -> None:
    assert [_checked_version(v) for v in ("3.9.1", "3.10.11", "3.14.5", "3.14.0a1")] == [True] * 4
    assert not any(_checked_version(v) for v in ("3.8.6", "3.15.0", "4.0.0", "3", "x.y", ""))


@needs_lean
async def test_readany_takes_everything_buffered_in_order_and_keeps_the_counters() -> None:
    reader, _ = _reader(limit=1 << 20)
    assert type(reader).__name__ == "_LeanReader"
    reader.begin_http_chunk_receiving()
    for piece in (b"ab", b"cd", b"ef"):
        reader.feed_data(piece)
        reader.end_http_chunk_receiving()
    assert await reader.read(3) == b"abc"  # aiohttp's own read(n): leaves an offset into "cd"
    assert await reader.readany() == b"def"
    reader.feed_data(b"gh")
    reader.feed_eof()
    assert await reader.readany() == b"gh"
    assert await reader.readany() == b""
    assert reader.at_eof()
    assert reader.total_bytes == 8
    assert reader._size == 0 and reader._cursor == 8 and not reader._buffer
    assert not reader._http_chunk_splits  # no chunk boundaries kept: nothing reads them


@needs_lean
async def test_flow_control_pauses_at_high_water_and_resumes_after_a_read() -> None:
    reader, protocol = _reader(limit=16)  # high water: 32 bytes
    for _ in range(10):
        reader.feed_data(b"0123456789")
    assert protocol._reading_paused and protocol.pauses >= 1
    assert await reader.readany() == b"0123456789" * 10
    assert not protocol._reading_paused and protocol.resumes == 1
    reader.feed_data(b"x")
    assert await reader.readany() == b"x"
    assert protocol.resumes == 1  # not paused: nothing to resume


@needs_lean
async def test_a_reader_relabelled_mid_body_drops_the_boundaries_it_had() -> None:
    protocol = _Protocol()
    reader = StreamReader(protocol, 16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    reader.begin_http_chunk_receiving()
    reader.feed_data(b"abc")
    reader.end_http_chunk_receiving()
    assert reader._http_chunk_splits
    lean(reader)
    reader.feed_data(b"def")
    reader.end_http_chunk_receiving()
    assert await reader.readany() == b"abcdef"
    assert not reader._http_chunk_splits


@needs_lean
async def test_an_error_set_on_the_reader_is_raised_by_readany() -> None:
    reader, _ = _reader()
    waiting = asyncio.ensure_future(reader.readany())
    await asyncio.sleep(0)  # let it block in _wait
    reader.set_exception(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await waiting
    with pytest.raises(ConnectionResetError):
        await reader.readany()


def test_other_readers_are_left_alone() -> None:
    class Custom(StreamReader):
        pass

    protocol = _Protocol()
    loop = asyncio.new_event_loop()
    try:
        custom = Custom(protocol, 16, loop=loop)  # type: ignore[arg-type]
        lean(custom)
        assert type(custom) is Custom
    finally:
        loop.close()


# ---------------------------------------------------------------- whole streams, real sockets


def _frames(n: int) -> tuple[bytes, str, str]:
    """n output frames (stdout runs, stderr, escapes, UTF-8), heartbeats, an exit frame."""
    out: list[str] = []
    err: list[str] = []
    lines: list[bytes] = []
    for i in range(n):
        text = f'line {i} \t"q" é {"x" * (i % 37)}\n'
        kind = "stderr" if i % 7 == 3 else "stdout"
        (err if kind == "stderr" else out).append(text)
        lines.append(json.dumps({kind: text}).encode())
        if i % 50 == 0:
            lines.append(b'{"hb":true}')
    lines.append(b'{"exit_code":3}')
    return b"\n".join(lines) + b"\n", "".join(out), "".join(err)


@pytest.fixture
async def api() -> AsyncIterator[FakeExecAPI]:
    async with FakeExecAPI() as server:
        yield server


@pytest.mark.parametrize("chunk", [1, 7, 128])
async def test_tiny_http_chunks_deliver_every_byte_in_order(api: FakeExecAPI, chunk: int) -> None:
    body, want_out, want_err = _frames(1500)

    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        for i in range(0, len(body), chunk):
            await resp.write(body[i : i + chunk])  # one HTTP chunk per write

    api.stream = script
    async with api.session() as session:
        sb = await api.sandbox(session)
        out: list[str] = []
        err: list[str] = []
        async with sb.exec_stream("gen") as stream:
            if LEAN:
                assert type(stream._resp.content).__name__ == "_LeanReader"
            async for ev in stream:
                if ev.kind == "stdout":
                    out.append(ev.data)
                elif ev.kind == "stderr":
                    err.append(ev.data)
        assert ("".join(out), "".join(err)) == (want_out, want_err)
        assert stream.exit_code == 3 and stream.heartbeats == 30
        assert pool_state(session) == (0, 1)  # read to EOF: the connection went back


async def test_a_reset_in_the_middle_of_tiny_chunks_is_an_interrupted_stream(
    api: FakeExecAPI,
) -> None:
    body, _, _ = _frames(200)

    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        for i in range(0, len(body) // 2, 16):
            await resp.write(body[i : i + 16])
        assert request.transport is not None
        request.transport.abort()

    api.stream = script
    session: AsyncSession
    async with api.session() as session:
        sb = await api.sandbox(session)
        seen: list[Any] = []
        with pytest.raises(StreamInterruptedError):
            async with sb.exec_stream("gen") as stream:
                async for ev in stream:
                    seen.append(ev)
        assert seen and all(ev.kind in ("stdout", "stderr") for ev in seen)
        assert pool_state(session) == (0, 0)  # closed, not reused
