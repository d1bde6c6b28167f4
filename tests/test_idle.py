"""The shared idle bound of streamed bodies (``_idle.IdleTimer``), seen through downloads.

Only time spent waiting inside a read counts: a consumer that is slow between reads is not a
stalled server, and a real stall names what stalled and the bound.
"""

from __future__ import annotations

import anyio
import pytest
from _servers import serve
from aiohttp import web

from createos_sandbox_async import StreamStalledError, Timeouts
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

SID = "sb_idle"
#: Long enough that a loaded machine (100 ms stalls) never takes a busy server for a stall.
IDLE = 0.5


def files_app(release: anyio.Event) -> web.Application:
    """``/ok`` sends three chunks and ends; ``/stall`` sends one, then nothing until released."""

    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        if request.query["path"] == "/stall":
            await resp.write(b"a")
            await release.wait()
        else:
            for part in (b"a", b"b", b"c"):
                await resp.write(part)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get(f"/v1/sandboxes/{SID}/files", download)
    return app


async def test_slow_consumer_between_reads_is_not_a_stall() -> None:
    release = anyio.Event()
    async with (
        serve(files_app(release)) as srv,
        srv.session(timeout=Timeouts(stream_idle=IDLE)) as session,
    ):
        sb = Sandbox(session, SandboxView(id=SID))
        got: list[bytes] = []
        async with sb.files.download_iter("/ok", chunk_size=1) as chunks:
            async for chunk in chunks:
                if not got:
                    await anyio.sleep(2 * IDLE)  # the consumer, not the server, is slow here
                got.append(chunk)
        release.set()
    assert got == [b"a", b"b", b"c"]


async def test_stall_names_what_stalled_and_the_bound() -> None:
    release = anyio.Event()
    async with (
        serve(files_app(release)) as srv,
        srv.session(timeout=Timeouts(stream_idle=IDLE)) as session,
    ):
        sb = Sandbox(session, SandboxView(id=SID))
        got: list[bytes] = []
        with pytest.raises(StreamStalledError, match=r"download of /stall stalled.* 0\.5 s"):
            async with sb.files.download_iter("/stall") as chunks:
                async for chunk in chunks:
                    got.append(chunk)
        release.set()
    assert got == [b"a"]
