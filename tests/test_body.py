"""What the streamed-body wrappers share (``_body.BodyStream``): a download, a process's output
and a template build log each drop their connection at once when leaving early, and also when
the wrapper is simply dropped after ``break`` without ``async with``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _servers import API_KEY, run_app
from aiohttp import web

from createos_sandbox_async import AsyncSession, RetryPolicy
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

SID = "sb_body"
ROUTES = {
    "download": (f"/v1/sandboxes/{SID}/files", b"first chunk"),
    "process": (
        f"/v1/sandboxes/{SID}/processes/proc_1/connect",
        b'{"type":"data","seq":1,"stream":"stdout","data_base64":"YQ=="}\n',
    ),
    "template": ("/v1/templates/tpl_1/logs", b'{"line":"step 1"}\n'),
}


def opener(kind: str) -> Callable[[Sandbox, AsyncSession], Any]:
    return {
        "download": lambda sb, s: sb.files.download_iter("/f"),
        "process": lambda sb, s: sb.processes.connect("proc_1"),
        "template": lambda sb, s: s.templates.follow_logs("tpl_1"),
    }[kind]


@asynccontextmanager
async def endless(kind: str) -> AsyncIterator[tuple[anyio.Event, Sandbox, AsyncSession]]:
    """A server that sends one chunk, then holds the body open until the client goes away."""
    path, first = ROUTES[kind]
    disconnected = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(first)
        try:
            await asyncio.Event().wait()  # never set: only a disconnect ends this
        finally:
            disconnected.set()
        return resp

    app = web.Application()
    app.router.add_get(path, handler)
    async with run_app(app) as base_url:
        session = AsyncSession(
            api_key=API_KEY,
            base_url=base_url,
            retry=RetryPolicy(base=0.0, cap=0.0, jitter=False),
        )
        async with session:
            yield disconnected, Sandbox(session, SandboxView(id=SID)), session


@pytest.mark.parametrize("kind", sorted(ROUTES))
async def test_leaving_the_block_early_closes_the_connection(kind: str) -> None:
    async with endless(kind) as (disconnected, sb, session):
        seen = 0
        async with opener(kind)(sb, session) as stream:
            async for _ in stream:
                seen += 1
                break
        with anyio.fail_after(10):
            await disconnected.wait()
    assert seen == 1


@pytest.mark.parametrize("kind", sorted(ROUTES))
async def test_dropped_after_break_without_async_with_closes_the_connection(kind: str) -> None:
    async with endless(kind) as (disconnected, sb, session):
        stream = opener(kind)(sb, session)
        seen = 0
        async for _ in stream:
            seen += 1
            break
        del stream
        gc.collect()
        with anyio.fail_after(10):
            await disconnected.wait()
    assert seen == 1


# -- one lifecycle: after the terminal frame, drain and reuse -------------------------------------

TERMINAL = {
    "exec": (f"/v1/sandboxes/{SID}/exec", b'{"stdout":"a"}\n{"exit_code":0}\n'),
    "process": (
        f"/v1/sandboxes/{SID}/processes/proc_1/connect",
        b'{"type":"data","seq":1,"stream":"stdout","data_base64":"YQ=="}\n'
        b'{"type":"exit","seq":2,"exit_code":0}\n',
    ),
    "template": (
        "/v1/templates/tpl_1/logs",
        b'{"line":"step 1"}\n{"final":true,"status":"ready"}\n',
    ),
}


async def _read_to_the_end(kind: str, sb: Sandbox, session: AsyncSession) -> int:
    if kind == "exec":
        async with sb.exec_stream("true") as stream:
            return len([ev async for ev in stream])
    stream = opener(kind)(sb, session)
    async with stream:
        return len([ev async for ev in stream])


@pytest.mark.parametrize("kind", sorted(TERMINAL))
async def test_after_the_terminal_frame_the_body_is_drained_and_the_connection_reused(
    kind: str,
) -> None:
    """Exec streams, process output and build logs end the same way (``_body.end_body``): the
    end of the body that follows the terminal frame a moment later is read, so the connection
    goes back to the pool; the next request arrives on the same connection."""
    path, body = TERMINAL[kind]
    peers: list[object] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        await request.read()
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(body)
        await asyncio.sleep(0.1)  # the end of the body comes after the terminal frame
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", path, stream)
    async with run_app(app) as base_url:
        session = AsyncSession(api_key=API_KEY, base_url=base_url)
        async with session:
            sb = Sandbox(session, SandboxView(id=SID))
            with anyio.fail_after(20):
                first = await _read_to_the_end(kind, sb, session)
                second = await _read_to_the_end(kind, sb, session)
    assert first == second >= 2
    assert len(peers) == 2 and peers[0] is not None
    assert peers[0] == peers[1]  # one connection: released after the drain, not closed
