"""A purpose-built ``aiohttp.web`` exec API that misbehaves on demand (for the exec tests).

It serves ``GET /v1/sandboxes/{id}`` and ``POST /v1/sandboxes/{id}/exec`` (buffered and
``?stream=true``) on 127.0.0.1 with handler cancellation on, so a client that goes away cancels
the handler and is counted in ``disconnects``. Each test scripts the answers:

- ``api.buffered`` : a list of ``(status, body_bytes)`` answers consumed in order (the last one
  repeats); ``None`` resets the connection without answering; ``HANG`` never answers.
- ``api.stream`` : an async function ``(request, response) -> None`` that writes the body of a
  stream (the response is already prepared); the server ends the body when it returns.
- ``api.stream_status`` : answer ``?stream=true`` with this status and JSend error instead.
- ``api.stream_headers_hang`` : never send the stream's headers.

Every request is recorded (``requests``: method, path, query, parsed JSON body, client port).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from createos_sandbox_async import AsyncSession

API_KEY = "test-key-not-a-secret"
SANDBOX_ID = "sb_01TESTTESTTESTTESTTESTTEST"

HANG = "hang"

StreamScript = Callable[[web.Request, web.StreamResponse], Awaitable[None]]

OK_RESULT = (
    b'{"status":"success","data":{"result":{"stdout":"2\\n","stderr":"","exit_code":0},'
    b'"exec_ms":12.5}}'
)


def jsend(data: Any) -> bytes:
    return json.dumps({"status": "success", "data": data}).encode()


def result_body(stdout: str = "", stderr: str = "", exit_code: int = 0, **extra: Any) -> bytes:
    return jsend({"result": {"stdout": stdout, "stderr": stderr, "exit_code": exit_code, **extra}})


def fail_body(message: str) -> bytes:
    return json.dumps({"status": "error", "message": message}).encode()


@attrs.define
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    port: int


async def frames(resp: web.StreamResponse, *lines: bytes) -> None:
    """Write whole NDJSON lines, one network write each."""
    for line in lines:
        await resp.write(line + b"\n")


async def hang() -> None:
    """Stay open until the client goes away (the handler is then cancelled)."""
    await asyncio.Event().wait()


class FakeExecAPI:
    """``async with FakeExecAPI() as api:``, then ``api.session()``, ``await api.sandbox(s)``."""

    def __init__(self) -> None:
        self.buffered: list[tuple[int, bytes] | str | None] = [(200, OK_RESULT)]
        self.stream: StreamScript | None = None
        self.stream_status: int | None = None
        self.stream_headers_hang = False
        self.requests: list[Seen] = []
        self.disconnects = 0
        self.completed_streams = 0
        self.disconnected = asyncio.Event()
        self.stream_started = asyncio.Event()
        self.exec_received = asyncio.Event()  # an exec request reached its handler
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeExecAPI:
        app = web.Application()
        app.router.add_get("/v1/sandboxes/{id}", self._get)
        app.router.add_post("/v1/sandboxes/{id}/exec", self._exec)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def session(self, **kw: Any) -> AsyncSession:
        return AsyncSession(API_KEY, base_url=self.base_url, **kw)

    async def sandbox(self, session: AsyncSession) -> Any:
        return await session.sandboxes.get(SANDBOX_ID)

    def exec_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/exec")]

    async def wait_disconnect(self, timeout: float = 10.0) -> None:
        """Bounded wait until a stream handler saw its client go away."""
        async with asyncio.timeout(timeout):
            await self.disconnected.wait()

    def _record(self, request: web.Request, body: Any) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), body, peer[1] if peer else 0)
        )

    async def _get(self, request: web.Request) -> web.Response:
        self._record(request, None)
        sid = request.match_info["id"]
        body = jsend({"id": sid, "status": "running"})
        return web.Response(body=body, content_type="application/json")

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self._record(request, body)
        self.exec_received.set()
        if request.query.get("stream") == "true":
            return await self._stream(request)
        i = len(self.exec_requests()) - 1
        answer = self.buffered[min(i, len(self.buffered) - 1)]
        if answer is None:
            assert request.transport is not None
            request.transport.abort()
            await hang()  # the handler is cancelled: the connection is gone
        if answer == HANG:
            await hang()
        assert isinstance(answer, tuple)
        status, payload = answer
        return web.Response(status=status, body=payload, content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if self.stream_headers_hang:
            await hang()
        if self.stream_status is not None:
            return web.Response(
                status=self.stream_status,
                body=fail_body("no stream here"),
                content_type="application/json",
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.stream_started.set()
        try:
            if self.stream is not None:
                await self.stream(request, resp)
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        self.completed_streams += 1
        return resp


def pool_state(session: AsyncSession) -> tuple[int, int]:
    """(connections in use, idle connections in the pool) of the session's aiohttp connector."""
    connector: Any = session._transport.connector
    if connector is None:
        return 0, 0
    idle = sum(len(conns) for conns in connector._conns.values())
    return len(connector._acquired), idle
