"""A purpose-built server that plays one fault on one route, for the fault matrix.

Every route an operation of the matrix uses is served here with a normal answer; the route under
test answers with the fault instead, on every request (a persistent fault: the retry matrix then
decides how many requests the client sends). Faults after the headers are written as raw bytes on
the transport, so a body can be cut, stalled or dripped exactly where the fault says.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from aiohttp import web

SANDBOX_ID = "sb_01FAULTFAULTFAULTFAULTFAUL"
PROCESS_ID = "proc_01FAULT"
SANDBOX_VIEW: dict[str, Any] = {"id": SANDBOX_ID, "status": "running", "shape": "s-1vcpu-256mb"}

#: A server never plays a stall or a drip for longer than this (the client must leave first).
MAX_FAULT_SECONDS = 30.0
#: Bytes a gzip bomb expands to (it is about 500 KiB on the wire).
BOMB_BYTES = 512 * 1024 * 1024
#: The single long line of the ``line_50mb`` fault.
LINE_BYTES = 50 * 1000 * 1000

_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
#: Retry-After values of the status faults: small, huge, and an HTTP-date decades ahead.
RETRY_AFTER = {"ra": "1", "ra_huge": "100000", "ra_date": "Fri, 31 Dec 2077 23:59:59 GMT"}

FAULTS = (
    "refused",
    "reset_before_headers",
    "reset_after_headers",
    "truncated_body",
    "truncated_mid_frame",
    "stalled_before_first_frame",
    "stalled_after_first_frame",
    "429",
    "429_ra",
    "429_ra_huge",
    "429_ra_date",
    "503",
    "503_ra",
    "503_ra_huge",
    "503_ra_date",
    "html_502",
    "malformed_json",
    "slow_body",
    "drip",
    "gzip_bomb",
    "line_50mb",
)


def _jsend(data: Any) -> bytes:
    return json.dumps({"status": "success", "data": data}, separators=(",", ":")).encode()


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


@cache
def _bomb_spaces() -> bytes:
    """One gzip member of BOMB_BYTES spaces (compressed once per process, ~1 s)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    parts = [c.compress(block) for _ in range(BOMB_BYTES >> 20)]
    parts.append(c.flush())
    return b"".join(parts)


@cache
def _long_line() -> bytes:
    return b"x" * LINE_BYTES


# -- routes ----------------------------------------------------------------------------------------

_SB = re.escape(SANDBOX_ID)
ROUTES: dict[str, tuple[str, re.Pattern[str]]] = {
    "get": ("GET", re.compile(rf"^/v1/sandboxes/{_SB}$")),
    "exec": ("POST", re.compile(rf"^/v1/sandboxes/{_SB}/exec$")),
    "upload": ("PUT", re.compile(rf"^/v1/sandboxes/{_SB}/files$")),
    "download": ("GET", re.compile(rf"^/v1/sandboxes/{_SB}/files$")),
    "process": ("GET", re.compile(rf"^/v1/sandboxes/{_SB}/processes/[^/]+/connect$")),
    "create": ("POST", re.compile(r"^/v1/sandboxes$")),
    "list": ("GET", re.compile(r"^/v1/sandboxes$")),
    "delete": ("DELETE", re.compile(r"^/v1/sandboxes/[^/]+$")),
}
#: How each route frames its body: one JSON document, NDJSON frames, or raw bytes.
BODY_KIND = {
    "get": "json",
    "exec": "json",
    "exec_stream": "ndjson",
    "upload": "json",
    "download": "bytes",
    "process": "ndjson",
    "create": "json",
    "list": "json",
    "delete": "json",
}


def route_of(request: web.Request) -> str | None:
    for name, (method, pattern) in ROUTES.items():
        if request.method == method and pattern.match(request.path):
            if name == "exec" and request.query.get("stream") == "true":
                return "exec_stream"
            return name
    return None


class FaultServer:
    """Serves the matrix's routes; ``target`` answers with ``fault`` on every request."""

    def __init__(self, target: str, fault: str) -> None:
        self.target = target
        self.fault = fault
        self.counts: Counter[str] = Counter()
        self.live: dict[str, dict[str, Any]] = {}  # sandboxes created (for the pool)
        self._seq = 0
        self.base_url = ""
        # Built now, before a test measures the client's memory (the server shares the process).
        self.payload = _heavy_payload(target, fault) if fault in ("gzip_bomb", "line_50mb") else b""

    # -- normal answers ----------------------------------------------------------------------------

    def frames(self, route: str, after: int = 0) -> list[bytes]:
        """The NDJSON lines of a normal stream, terminal frame last."""
        if route == "exec_stream":
            return [b'{"stdout":"a\\n"}', b'{"hb":true}', b'{"stdout":"b\\n"}', b'{"exit_code":0}']
        lines = [
            b'{"type":"data","seq":%d,"stream":"stdout","data_base64":"aGkK"}' % seq
            for seq in (1, 2)
            if seq > after
        ]
        return [*lines, b'{"type":"heartbeat"}', b'{"type":"exit","exit_code":0}']

    def normal_data(self, route: str, request: web.Request, body: bytes) -> Any:
        if route == "get":
            return SANDBOX_VIEW
        if route == "exec":
            return {"result": {"stdout": "hi\n", "stderr": "", "exit_code": 0}, "exec_ms": 1.0}
        if route == "upload":
            return {"path": request.query.get("path"), "bytes": len(body)}
        if route == "create":
            self._seq += 1
            name = json.loads(body or b"{}").get("name") or f"sb-{self._seq}"
            view = {"id": f"sb_create_{self._seq:06d}", "status": "running", "name": name}
            if self.fault != "none" and route == self.target:
                return view  # a faulted create leaves nothing behind on this server
            self.live[view["id"]] = view
            return view
        if route == "list":
            items = list(self.live.values())
            pagination = {"total": len(items), "limit": 500, "offset": 0, "count": len(items)}
            return {"data": items, "pagination": pagination}
        if route == "delete":
            sid = request.path.rsplit("/", 1)[1]
            self.live.pop(sid, None)
            return {"id": sid, "status": "destroyed"}
        raise AssertionError(route)

    def normal_body(self, route: str, request: web.Request, body: bytes) -> bytes:
        kind = BODY_KIND[route]
        if kind == "ndjson":
            after = int(request.query.get("after", "0") or 0)
            return b"".join(line + b"\n" for line in self.frames(route, after))
        if kind == "bytes":
            return bytes(range(256)) * 256  # 64 KiB
        return _jsend(self.normal_data(route, request, body))

    # -- the app -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = route_of(request)
        if route is None:
            return web.json_response({"status": "fail", "data": "no route"}, status=404)
        self.counts[route] += 1
        body = await request.read() if route in ("exec", "exec_stream", "upload", "create") else b""
        if route == self.target:
            return await self.play(route, request, body)
        kind = BODY_KIND[route]
        ctype = {"json": "application/json", "ndjson": "application/x-ndjson"}.get(
            kind, "application/octet-stream"
        )
        return web.Response(body=self.normal_body(route, request, body), content_type=ctype)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultServer]:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.base_url = f"http://127.0.0.1:{port}"
            yield self
        finally:
            await runner.cleanup()

    # -- faults ------------------------------------------------------------------------------------

    async def play(self, route: str, request: web.Request, body: bytes) -> web.StreamResponse:
        fault = self.fault
        kind = BODY_KIND[route]
        if fault[:3] in ("429", "503"):
            status = int(fault[:3])
            headers = {}
            if "_" in fault:
                headers["Retry-After"] = RETRY_AFTER[fault[4:]]
            message = "rate limited" if status == 429 else "no capacity"
            return web.json_response(
                {"status": "error", "message": message}, status=status, headers=headers
            )
        if fault == "html_502":
            return web.Response(status=502, body=_HTML_502, content_type="text/html")
        transport = request.transport
        assert transport is not None
        if fault == "reset_before_headers":
            transport.abort()
            return await _hang()
        normal = self.normal_body(route, request, body)
        ctype = {"json": b"application/json", "ndjson": b"application/x-ndjson"}.get(
            kind, b"application/octet-stream"
        )
        chunked = kind == "ndjson"
        writer = _Raw(transport, chunked)
        if fault in ("gzip_bomb", "line_50mb"):
            return await self._play_heavy(route, request)
        if fault == "malformed_json":
            if kind == "json":
                bad = normal[: len(normal) // 2]  # a complete response, cut JSON
            elif kind == "ndjson":
                bad = b'{"stdout":"a"}\n{oops\n' if route == "exec_stream" else b"{oops\n"
            else:
                bad = normal  # a download does not parse its body: any bytes are content
            writer.headers(ctype, len(bad))
            writer.body(bad)
            writer.end()
            return await _hang()
        size = len(normal)
        if fault == "drip":
            size = 10_000_000
        writer.headers(ctype, size)
        if fault == "reset_after_headers":
            await asyncio.sleep(0.05)  # let the headers reach the client first
            transport.abort()
            return await _hang()
        if chunked:
            lines = [line + b"\n" for line in normal.split(b"\n") if line]
            first, rest = lines[0], b"".join(lines[1:])
            no_terminal = b"".join(lines[:-1])
        else:
            first, rest = normal[: size // 2], normal[size // 2 :]
            no_terminal = first
        if fault == "truncated_body":
            writer.body(no_terminal)
            if chunked:
                writer.end()  # a clean end of the body, without its terminal frame
            else:
                await asyncio.sleep(0.05)
                transport.close()  # FIN after half the declared Content-Length
            return await _hang()
        if fault == "truncated_mid_frame":
            cut = no_terminal + lines[-1][:5] if chunked else first
            writer.body(cut)
            await asyncio.sleep(0.05)
            transport.abort()
            return await _hang()
        if fault == "stalled_before_first_frame":
            return await _hang()
        if fault == "stalled_after_first_frame":
            writer.body(first)
            return await _hang()
        if fault == "slow_body":
            pieces = [first, rest[: len(rest) // 2], rest[len(rest) // 2 :]]
            for piece in pieces:
                await asyncio.sleep(0.2)
                writer.body(piece)
            writer.end()
            return await _hang()
        if fault == "drip":
            source = {
                "ndjson": b'{"hb":true}\n' if route == "exec_stream" else b'{"type":"heartbeat"}\n',
                "json": b" " * 64,
                "bytes": b"z" * 64,
            }[kind]
            loop = asyncio.get_running_loop()
            end = loop.time() + MAX_FAULT_SECONDS
            i = 0
            while loop.time() < end and not transport.is_closing():
                writer.body(source[i % len(source) : i % len(source) + 1])
                i += 1
                await asyncio.sleep(0.5)
            transport.abort()
            return await _hang()
        raise AssertionError(f"unknown fault {fault!r}")

    async def _play_heavy(self, route: str, request: web.Request) -> web.StreamResponse:
        """The prebuilt big body, written 1 MiB at a time with flow control (no server copy)."""
        kind = BODY_KIND[route]
        resp = web.StreamResponse(headers={"Connection": "close"})
        resp.content_type = {"json": "application/json", "ndjson": "application/x-ndjson"}.get(
            kind, "application/octet-stream"
        )
        if self.fault == "gzip_bomb":
            resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = len(self.payload)
        await resp.prepare(request)
        view = memoryview(self.payload)
        for start in range(0, len(view), 1 << 20):
            await resp.write(view[start : start + (1 << 20)])
        await resp.write_eof()
        return resp


def _heavy_payload(route: str, fault: str) -> bytes:
    """The body of a gzip bomb or of a single 50 MB line, for a route (request-independent)."""
    kind = BODY_KIND[route]
    if kind == "json":
        data = {
            "get": SANDBOX_VIEW,
            "exec": {"result": {"stdout": "hi\n", "stderr": "", "exit_code": 0}},
            "upload": {"path": "/tmp/f", "bytes": 4096},
            "create": {"id": "sb_create_heavy", "status": "running"},
        }[route]
        head = b'{"status":"success","data":'
        tail = _jsend(data)[len(head) :]
        if fault == "gzip_bomb":  # valid JSON: whitespace before the data payload
            return _gzip(head) + _bomb_spaces() + _gzip(tail)
        return head + tail[:-2] + b',"pad":"' + _long_line() + b'"}}'
    if fault == "gzip_bomb":
        return _bomb_spaces()  # one line of spaces: longer than any frame may be
    if kind == "ndjson":
        return b'{"stdout":"' + _long_line() + b'"}\n'
    return _long_line()


class _Raw:
    """Writes an HTTP/1.1 response by hand: headers, body pieces, the end of a chunked body."""

    def __init__(self, transport: asyncio.Transport | Any, chunked: bool) -> None:
        self.transport = transport
        self.chunked = chunked

    def headers(self, ctype: bytes, size: int, extra: bytes = b"") -> None:
        framing = (
            b"Transfer-Encoding: chunked\r\n" if self.chunked else b"Content-Length: %d\r\n" % size
        )
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + ctype
            + b"\r\n"
            + framing
            + extra
            + b"Connection: close\r\n\r\n"
        )

    def body(self, data: bytes) -> None:
        if not data or self.transport.is_closing():
            return
        if self.chunked:
            self.transport.write(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self.transport.write(data)

    def end(self) -> None:
        if self.chunked and not self.transport.is_closing():
            self.transport.write(b"0\r\n\r\n")


async def _hang() -> web.StreamResponse:
    """Stay until the client leaves (the handler is cancelled), never longer than the cap."""
    await asyncio.sleep(MAX_FAULT_SECONDS)
    raise web.HTTPRequestTimeout()
