"""A buffered 2xx answer is read whole, but never past ``MAX_BODY`` (64 MiB) once decoded.

A hostile server's gzip bomb (a few hundred KiB on the wire, gigabytes expanded) or an endless
body must end in ProtocolError naming the limit, not in the client holding all of it. The
collected exec (``exec(timeout=...)``, over the stream route) reads its body the same way.
The fault matrix (tests/reliability) measures the client's memory against a 512 MiB bomb.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from _servers import API_KEY, serve
from aiohttp import web

from createos_sandbox_async import AsyncSession, ProtocolError, RetryPolicy
from createos_sandbox_async._response import MAX_BODY

pytestmark = pytest.mark.anyio

SANDBOX_ID = "sb_01BODYLIMITBODYLIMITBODYL"
OVER = MAX_BODY + (8 << 20)  # decoded size of the bombs: just past the limit


def _gzip_member(*parts: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [c.compress(p) for p in parts]
    out.append(c.flush())
    return b"".join(out)


def _json_bomb() -> bytes:
    """Valid JSON (a JSend success) padded with OVER bytes of whitespace, gzipped."""
    block = b" " * (1 << 20)
    head = b'{"status":"success","data":'
    tail = b'{"id":"%s","status":"running"}}' % SANDBOX_ID.encode()
    # one gzip member: aiohttp before 3.10 decodes only the first member of a multi-member body
    return _gzip_member(head, *[block] * (OVER >> 20), tail)


def _output_flood() -> bytes:
    """A well-formed exec stream whose stdout frames add up to OVER bytes, gzipped."""
    line = b'{"stdout":"' + b"a" * ((1 << 20) - 16) + b'"}\n'
    return _gzip_member(*[line] * (OVER >> 20), b'{"exit_code":0}\n')


def _gzipped(body: bytes, ctype: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": ctype, "Content-Encoding": "gzip"})


async def _session(base_url: str) -> AsyncSession:
    return AsyncSession(API_KEY, base_url=base_url, retry=RetryPolicy(base=0.0, jitter=False))


async def test_a_gzip_bomb_on_a_buffered_get_is_a_protocol_error() -> None:
    bomb = _json_bomb()
    assert len(bomb) < MAX_BODY // 100  # small on the wire

    async def handler(_r: web.Request) -> web.StreamResponse:
        return _gzipped(bomb, "application/json")

    async def fine(_r: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "success", "data": 1})

    app = web.Application()
    app.router.add_get(f"/v1/sandboxes/{SANDBOX_ID}", handler)
    app.router.add_get("/v1/ok", fine)
    async with serve(app) as srv, await _session(srv.base_url) as session:
        with pytest.raises(ProtocolError, match="over 64 MiB") as info:
            await session.sandboxes.get(SANDBOX_ID)
        assert str(MAX_BODY) in str(info.value)
        assert srv.count("GET", f"/v1/sandboxes/{SANDBOX_ID}") == 1  # not retried
        connector: Any = session._transport.connector
        assert len(connector._acquired) == 0  # the half-read connection was dropped
        assert await session.request("GET", "/v1/ok") == 1  # and the session still works


async def test_a_flood_of_output_on_a_collected_exec_is_a_protocol_error() -> None:
    flood = _output_flood()

    async def get(_r: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"status": "success", "data": {"id": SANDBOX_ID, "status": "running"}}
        )

    async def exec_(request: web.Request) -> web.StreamResponse:
        assert request.query.get("stream") == "true"  # timeout= runs over the stream route
        return _gzipped(flood, "application/x-ndjson")

    app = web.Application()
    app.router.add_get(f"/v1/sandboxes/{SANDBOX_ID}", get)
    app.router.add_post(f"/v1/sandboxes/{SANDBOX_ID}/exec", exec_)
    async with serve(app) as srv, await _session(srv.base_url) as session:
        sb = await session.sandboxes.get(SANDBOX_ID)
        with pytest.raises(ProtocolError, match="over 64 MiB"):
            await sb.exec("yes", timeout=30)
        assert srv.count("POST", f"/v1/sandboxes/{SANDBOX_ID}/exec") == 1


async def test_a_collected_exec_answered_with_garbage_json_is_a_protocol_error() -> None:
    """A server that ignores ?stream=true and sends broken JSON: typed, not a decoder error."""

    async def get(_r: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"status": "success", "data": {"id": SANDBOX_ID, "status": "running"}}
        )

    async def exec_(_r: web.Request) -> web.StreamResponse:
        return web.Response(body=b'{"status":"succ', content_type="application/json")

    app = web.Application()
    app.router.add_get(f"/v1/sandboxes/{SANDBOX_ID}", get)
    app.router.add_post(f"/v1/sandboxes/{SANDBOX_ID}/exec", exec_)
    async with serve(app) as srv, await _session(srv.base_url) as session:
        sb = await session.sandboxes.get(SANDBOX_ID)
        with pytest.raises(ProtocolError, match="neither NDJSON nor a JSend result") as info:
            await sb.exec("true", timeout=30)
        assert info.value.__context__ is None  # the decoder's error does not ride along
