"""Purpose-built ``aiohttp.web`` servers for tests: real sockets, misbehaving on demand.

Usage::

    app = web.Application()
    app.router.add_get("/v1/whoami", lambda r: ok({"user_id": "u"}))
    async with serve(app) as srv:
        async with srv.session() as session:
            ...
        assert srv.count("GET", "/v1/whoami") == 1

``serve`` records every request it receives (method, path, query, headers, body) before the
handler runs, so tests can count exactly how many times the client sent something.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiohttp import web

API_KEY = "sk_test_SECRET_4f9a1c77e2"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def ok(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSend success envelope."""
    return web.json_response({"status": "success", "data": data}, status=status, headers=headers)


def fail(status: int, data: Any, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSend ``fail`` envelope."""
    return web.json_response({"status": "fail", "data": data}, status=status, headers=headers)


def error(
    status: int,
    message: str,
    *,
    code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSend ``error`` envelope."""
    body: dict[str, Any] = {"status": "error", "message": message}
    if code is not None:
        body["code"] = code
    return web.json_response(body, status=status, headers=headers)


def raw(
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "text/plain",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Any body at all (HTML from a proxy, an empty body, broken JSON)."""
    data = body.encode() if isinstance(body, str) else body
    return web.Response(status=status, body=data, content_type=content_type, headers=headers)


def page(items: list[Any], *, total: int, offset: int, limit: int) -> dict[str, Any]:
    """The paginated ``data`` of WIRE §8."""
    return {
        "data": items,
        "pagination": {"total": total, "limit": limit, "offset": offset, "count": len(items)},
    }


def always(factory: Callable[[], web.StreamResponse]) -> Handler:
    """An async handler answering every request with ``factory()``."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return factory()

    return handler


def sequence(responses: Iterable[Callable[[], web.StreamResponse]]) -> Handler:
    """A handler answering with each factory in turn; the last one repeats."""
    items = list(responses)
    state = {"i": 0}

    async def handler(_request: web.Request) -> web.StreamResponse:
        index = min(state["i"], len(items) - 1)
        state["i"] += 1
        return items[index]()

    return handler


class Served:
    """A running test server: its URL and what it received."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.requests: list[Recorded] = []

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally filtered by method and exact path."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        )

    def session(self, **kw: Any) -> Any:
        """An ``AsyncSession`` pointed at this server (fast retries unless overridden)."""
        from createos_sandbox_async import AsyncSession, RetryPolicy

        kw.setdefault("api_key", API_KEY)
        kw.setdefault("base_url", self.base_url)
        kw.setdefault("retry", RetryPolicy(base=0.0, cap=0.0, jitter=False))
        return AsyncSession(**kw)

    def json_bodies(self, method: str, path: str) -> list[Any]:
        """Decoded JSON bodies of the matching requests."""
        return [
            json.loads(r.body)
            for r in self.requests
            if r.method == method and r.path == path and r.body
        ]


@asynccontextmanager
async def serve(app: web.Application, *, host: str = "127.0.0.1") -> AsyncIterator[Served]:
    """Run ``app`` on a free port of ``host``; record every request; clean up on exit."""
    served = Served("")

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else b""
        served.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
            )
        )
        return await handler(request)

    app.middlewares.insert(0, record)
    async with run_app(app, host=host) as base_url:
        served.base_url = base_url
        yield served


@asynccontextmanager
async def run_app(app: web.Application, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run ``app`` on a free port of ``host`` and yield its base URL; records nothing.

    For handlers that must stream the request body themselves (``serve`` reads it first).
    """
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class Attempts:
    """Counts the HTTP attempts a client sends, on the client's side (an ``on_request`` hook).

    Exact even when the client gives up before the server has seen the request: a count the
    server takes after a short client timeout races the server. ``session(hooks=attempts.hooks)``.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def _seen(self, event: Any) -> None:
        self.sent.append((event.method, event.path))

    @property
    def count(self) -> int:
        return len(self.sent)

    def of(self, method: str, path_suffix: str) -> int:
        """Attempts of ``method`` on a path ending with ``path_suffix``."""
        return sum(1 for m, p in self.sent if m == method and p.endswith(path_suffix))

    @property
    def hooks(self) -> dict[str, Callable[[Any], None]]:
        return {"on_request": self._seen}
