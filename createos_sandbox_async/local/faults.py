"""Fault injection: make the next N matching requests misbehave like real networks and servers.

    async with LocalServer() as server:
        server.faults.status(429, route="/v1/sandboxes", method="POST", retry_after=1)
        server.faults.status(502, html=True, times=2)
        server.faults.reset(route="/v1/sandboxes/*", method="GET")
        server.faults.stall(route="/v1/sandboxes/*/exec", after_frames=1)
        server.faults.truncate(route="/v1/sandboxes/*/exec")
        server.faults.slow(route="/v1/sandboxes/*/files", delay=0.05, chunk_size=1024)

`route` is an fnmatch pattern on the request path (no query); `*` also matches `/`. `method=None`
matches any method. Each call returns a handle whose `.hits` counts the requests it hit; a rule is
spent after `times` hits (`times=None` = forever). Rules are tried in the order they were added and
at most one applies to a request. Faults apply before authentication, to every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import socket
import struct
from typing import Any

from aiohttp import web

from . import _ids
from ._http import JSON_TYPE, dumps, request_key

_KNOWN_SPENT = 1024  # rules remembered by id (for their hit counts) before old spent ones go
_HTML_502 = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class FaultHandle:
    """One injected fault rule. `hits` counts the requests it has been applied to."""

    __slots__ = ("_times", "hits", "id", "kind", "method", "params", "route")

    def __init__(
        self, kind: str, route: str, method: str | None, times: int | None, params: dict[str, Any]
    ) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times!r}")
        if not route:
            raise ValueError("route must be a non-empty fnmatch pattern such as '*'")
        self.id = _ids.new_id("flt")  # how the admin routes name it (admin.py)
        self.kind = kind
        self.route = route
        self.method = method.upper() if method else None
        self._times = times
        self.params = params
        self.hits = 0

    @property
    def times(self) -> int | None:
        """How many requests it applies to (None: until cleared)."""
        return self._times

    @property
    def active(self) -> bool:
        """False once the rule has been applied `times` times."""
        return self._times is None or self.hits < self._times

    def matches(self, method: str, path: str) -> bool:
        """Does this rule apply to a request?"""
        if not self.active:
            return False
        if self.method is not None and self.method != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.route)

    def __repr__(self) -> str:
        return (
            f"FaultHandle({self.kind}, route={self.route!r}, method={self.method!r}, "
            f"times={self._times!r}, hits={self.hits})"
        )


# The fault a request carries past the middleware (stall, truncate, slow act on its body).
FAULT = request_key("fault", FaultHandle)


class Faults:
    """The `server.faults` API (see the module docstring)."""

    def __init__(self) -> None:
        self._rules: list[FaultHandle] = []
        self._known: dict[str, FaultHandle] = {}  # by id, spent ones too, until clear()

    def _add(
        self, kind: str, route: str, method: str | None, times: int | None, **params: Any
    ) -> FaultHandle:
        handle = FaultHandle(kind, route, method, times, params)
        self._rules.append(handle)
        self._known[handle.id] = handle
        if len(self._known) > _KNOWN_SPENT:  # a long run that never clears: forget old spent ones
            for old in [h for h in self._known.values() if not h.active][: len(self._known) // 2]:
                del self._known[old.id]
        return handle

    def status(
        self,
        status: int,
        *,
        route: str = "*",
        method: str | None = None,
        times: int | None = 1,
        retry_after: float | str | None = None,
        html: bool = False,
        body: str | bytes | dict[str, Any] | None = None,
    ) -> FaultHandle:
        """Answer `status` without running the handler: a JSend error body by default, an nginx
        style HTML page with `html=True`, or exactly `body`. `retry_after` sets Retry-After
        (seconds, or a string such as an HTTP-date)."""
        if not 100 <= int(status) <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status!r}")
        return self._add(
            "status",
            route,
            method,
            times,
            status=int(status),
            retry_after=retry_after,
            html=html,
            body=body,
        )

    def reset(
        self,
        *,
        route: str = "*",
        method: str | None = None,
        times: int | None = 1,
        after_headers: bool = False,
    ) -> FaultHandle:
        """Reset the TCP connection (RST) before any byte of the response, or right after a 200
        status line and headers (`after_headers=True`). The handler does not run."""
        return self._add("reset", route, method, times, after_headers=after_headers)

    def stall(
        self,
        *,
        route: str = "*",
        method: str | None = None,
        times: int | None = 1,
        after_frames: int = 0,
    ) -> FaultHandle:
        """Streams: after `after_frames` frames send nothing more, not even heartbeats, and keep the
        connection open. Other responses: send the headers, never the body."""
        return self._add("stall", route, method, times, after_frames=_frames(after_frames))

    def truncate(
        self,
        *,
        route: str = "*",
        method: str | None = None,
        times: int | None = 1,
        after_frames: int = 0,
    ) -> FaultHandle:
        """Streams: end the stream cleanly after `after_frames` frames, never sending the exit /
        final frame. Other responses: send half the body, then drop the connection."""
        return self._add("truncate", route, method, times, after_frames=_frames(after_frames))

    def slow(
        self,
        *,
        route: str = "*",
        method: str | None = None,
        times: int | None = 1,
        delay: float = 0.05,
        chunk_size: int = 1024,
    ) -> FaultHandle:
        """Dribble the response body out `chunk_size` bytes at a time, `delay` seconds apart."""
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        return self._add("slow", route, method, times, delay=float(delay), chunk_size=chunk_size)

    def clear(self) -> None:
        """Remove every rule (handles keep their hit counts)."""
        self._rules.clear()
        self._known.clear()

    def get(self, fault_id: str) -> FaultHandle | None:
        """A rule added since the last clear(), active or spent, by its id."""
        return self._known.get(fault_id)

    def remove(self, fault_id: str) -> FaultHandle | None:
        """Remove one rule (its handle keeps its hit count); None if no such rule."""
        handle = self._known.pop(fault_id, None)
        if handle is not None and handle in self._rules:
            self._rules.remove(handle)
        return handle

    def known(self) -> list[FaultHandle]:
        """Every rule added since the last clear(), in the order added, spent ones included."""
        return list(self._known.values())

    def take(self, method: str, path: str) -> FaultHandle | None:
        """The first active rule matching a request, counted as a hit."""
        for rule in self._rules:
            if rule.matches(method, path):
                rule.hits += 1
                if not rule.active:
                    self._rules.remove(rule)
                return rule
        return None


def _frames(value: int) -> int:
    if value < 0:
        raise ValueError(f"after_frames must be >= 0, got {value!r}")
    return value


def abort_connection(request: web.Request) -> None:
    """Drop the client's connection with a TCP RST (SO_LINGER 0), as a crashed proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class ConnectionDropped(Exception):
    """Raised after a fault dropped the connection: nothing more can be sent."""


def status_response(rule: FaultHandle) -> web.Response:
    """The canned response of a `status` fault."""
    status: int = rule.params["status"]
    headers: dict[str, str] = {}
    retry_after = rule.params["retry_after"]
    if retry_after is not None:
        if isinstance(retry_after, float) and retry_after.is_integer():
            retry_after = int(retry_after)
        headers["Retry-After"] = str(retry_after)
    body = rule.params["body"]
    if body is not None:
        if isinstance(body, dict):
            return web.Response(
                status=status, text=dumps(body), content_type=JSON_TYPE, headers=headers
            )
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=raw, headers=headers)
    if rule.params["html"]:
        return web.Response(
            status=status,
            text=_HTML_502.format(status=status),
            content_type="text/html",
            headers=headers,
        )
    message = f"injected fault: HTTP {status}"
    payload: dict[str, Any]
    if status >= 500:
        payload = {"status": "error", "message": message, "code": 0}
    else:
        payload = {"status": "fail", "data": {"code": "injected_fault", "message": message}}
    return web.Response(status=status, text=dumps(payload), content_type=JSON_TYPE, headers=headers)


async def reset_after_headers(request: web.Request) -> web.StreamResponse:
    """Send a 200 status line and headers promising a body, then reset the connection."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE})
    resp.content_length = 4096
    await resp.prepare(request)
    await asyncio.sleep(0)
    abort_connection(request)
    raise ConnectionDropped


async def body_fault(
    request: web.Request, rule: FaultHandle, response: web.Response
) -> web.StreamResponse:
    """Apply a stall / truncate / slow fault to an ordinary (non-stream) response."""
    body = response.body if isinstance(response.body, bytes) else b""
    resp = web.StreamResponse(status=response.status, headers=response.headers)
    resp.content_length = len(body)
    await resp.prepare(request)
    if rule.kind == "stall":
        await asyncio.Event().wait()  # until the client goes away (handler cancellation)
    if rule.kind == "truncate":
        await resp.write(body[: len(body) // 2])
        await asyncio.sleep(0.01)
        abort_connection(request)
        raise ConnectionDropped
    delay = rule.params["delay"]
    size = rule.params["chunk_size"]
    for start in range(0, len(body), size):
        if start:
            await asyncio.sleep(delay)
        await resp.write(body[start : start + size])
    await resp.write_eof()
    return resp


class StreamEnded(Exception):
    """A truncate fault ended the stream early; the handler just returns its response."""


class FrameWriter:
    """Writes NDJSON frames (or raw chunks) of a streaming response, applying any stream fault.

    Each data frame is written and flushed as soon as it is produced. Heartbeats do not count as
    frames for `after_frames`; a stalled stream sends no heartbeats either.
    """

    def __init__(self, response: web.StreamResponse, rule: FaultHandle | None) -> None:
        self.response = response
        self.rule = (
            rule if rule is not None and rule.kind in ("stall", "truncate", "slow") else None
        )
        self.frames = 0
        self.stalled = False

    async def _send(self, data: bytes) -> None:
        rule = self.rule
        if rule is not None and rule.kind == "slow":
            size = rule.params["chunk_size"]
            for start in range(0, len(data), size):
                await asyncio.sleep(rule.params["delay"])
                await self.response.write(data[start : start + size])
            return
        await self.response.write(data)

    async def _gate(self) -> None:
        rule = self.rule
        if rule is None or rule.kind == "slow" or self.frames < rule.params["after_frames"]:
            return
        if rule.kind == "stall":
            self.stalled = True
            await asyncio.Event().wait()  # until the client disconnects
        await self.response.write_eof()
        raise StreamEnded

    async def frame(self, data: bytes) -> None:
        """One data frame (a complete NDJSON line, or a raw body chunk)."""
        await self._gate()
        self.frames += 1
        await self._send(data)

    async def heartbeat(self, data: bytes) -> None:
        """A liveness frame; suppressed while a stall fault holds the stream."""
        rule = self.rule
        if self.stalled or (
            rule is not None and rule.kind == "stall" and self.frames >= rule.params["after_frames"]
        ):
            return
        await self._send(data)

    async def final(self, data: bytes) -> None:
        """The terminal frame (exit / final). A truncate or stall fault never lets it through."""
        rule = self.rule
        if rule is not None and rule.kind in ("stall", "truncate"):
            self.frames = max(self.frames, rule.params["after_frames"])
            await self._gate()
        await self._send(data)
