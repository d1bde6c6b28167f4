"""Relay a command's output to a browser as server-sent events, live, from a FastAPI app.

``GET /run?script=...`` runs ``bash -lc script`` in a sandbox and answers ``text/event-stream``::

    event: stdout
    data: "building...\\n"

    event: exit
    data: 0

Each ``data`` is JSON (a string for output, the status for ``exit``), so newlines survive. When
the client goes away (tab closed, ``curl`` interrupted), the server cancels the response, leaving
``async with sb.exec_stream(...)`` closes the connection, and CreateOS kills the command: nothing
keeps running for a reader who left. A ``: keepalive`` comment goes out while the command is silent,
so proxies keep the connection and servers that only notice a dead client on write still notice.

Run it against the local emulator (no account needed; needs bubblewrap)::

    pip install fastapi uvicorn
    python examples/fastapi_sse.py --local   # then: curl -N 'localhost:8000/run?script=ls+-la'

or against your account (``CREATEOS_API_KEY`` set) without ``--local``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse

from createos_sandbox_async import AsyncSession, ExecEvent, ExecStream, Sandbox

SHAPE = "s-1vcpu-256mb"


def sse(event: ExecEvent) -> str:
    """One SSE message per event; JSON data keeps newlines and odd characters intact."""
    payload: Any = event.exit_code if event.kind == "exit" else event.data
    return f"event: {event.kind}\ndata: {json.dumps(payload)}\n\n"


async def relay(stream: ExecStream, keepalive: float) -> AsyncIterator[str]:
    """SSE messages for a stream's events, plus a comment whenever it is silent for ``keepalive`` s.

    Waiting for the next event is cancelled by the keepalive timer and simply resumed: a pending
    read on an ``ExecStream`` can be interrupted without losing anything.
    """
    events = aiter(stream)
    while True:
        event: ExecEvent | None = None
        with anyio.move_on_after(keepalive):  # never yield inside a cancel scope
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
        yield ": keepalive\n\n" if event is None else sse(event)


def create_app(
    session_factory: Callable[[], AsyncSession] = AsyncSession,
    *,
    shape: str = SHAPE,
    keepalive: float = 15.0,
) -> FastAPI:
    """The app: one sandbox for its lifetime, destroyed when the server stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with session_factory() as session:
            sandbox = await session.sandboxes.create(shape=shape)
            async with sandbox:  # destroyed on shutdown, however it happens
                app.state.sandbox = sandbox
                yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/run")
    async def run(script: str = Query(min_length=1, max_length=10_000)) -> StreamingResponse:
        sandbox: Sandbox = app.state.sandbox

        async def body() -> AsyncIterator[str]:
            # The response is cancelled when the client disconnects; leaving this block then
            # closes the exec stream's connection and the server kills the command.
            async with sandbox.exec_stream("bash", ["-lc", script]) as stream:
                async for message in relay(stream, keepalive):
                    yield message

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--local", action="store_true", help="run against the local emulator")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()

    async def serve() -> None:
        emulator: AbstractAsyncContextManager[Any]
        if args.local:
            from createos_sandbox_async.local import LocalServer

            emulator = LocalServer()
        else:
            emulator = _Nothing()
        async with emulator as server:
            factory = server.session if args.local else AsyncSession
            app = create_app(factory)
            config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="info")
            await uvicorn.Server(config).serve()

    anyio.run(serve)


class _Nothing:
    """An empty async context manager (no emulator when talking to the real service)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
