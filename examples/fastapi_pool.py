"""One sandbox per request, from a SandboxPool, as a FastAPI dependency.

``POST /run`` with ``{"code": "print(6 * 7)"}`` runs the code in a sandbox of its own and answers
the ``ExecResult`` as JSON (``to_dict``); ``GET /sandbox`` shows the view of the sandbox the
request got. The pool is opened by the app's lifespan: it bounds how many sandboxes run at once
(``max_concurrency``; further requests wait), keeps ``warm`` ones ready so a request does not wait
for a create, and destroys every sandbox when the app stops. The dependency gives each request a
sandbox and takes it back when the request is done, or dropped: a client that goes away cancels
the request, and the sandbox is destroyed, not handed to the next request in an unknown state.

Run it against the local emulator (no account needed; needs bubblewrap)::

    pip install fastapi uvicorn
    python examples/fastapi_pool.py --local
    curl -s localhost:8000/run -H 'content-type: application/json' -d '{"code": "print(42)"}'

or against your account (``CREATEOS_API_KEY`` set) without ``--local``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field

from createos_sandbox_async import AsyncSession, Sandbox, SandboxPool, to_dict

SHAPE = "s-1vcpu-256mb"


class RunBody(BaseModel):
    code: str = Field(min_length=1, max_length=100_000)
    timeout: float = Field(default=30.0, gt=0, le=300)


async def sandbox(request: Request) -> AsyncIterator[Sandbox]:
    """The dependency: a sandbox of the app's pool for the duration of one request."""
    pool: SandboxPool = request.app.state.pool
    async with pool.acquire() as sb:
        yield sb


SandboxDep = Annotated[Sandbox, Depends(sandbox)]


def create_app(
    session_factory: Callable[[], AsyncSession] = AsyncSession,
    *,
    shape: str = SHAPE,
    max_concurrency: int = 8,
    warm: int = 1,
) -> FastAPI:
    """The app; ``session_factory`` lets tests point it at an emulator."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            session_factory() as session,
            SandboxPool(session, shape=shape, max_concurrency=max_concurrency, warm=warm) as pool,
        ):
            app.state.pool = pool
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/run")
    async def run(body: RunBody, sb: SandboxDep) -> dict[str, Any]:
        with anyio.fail_after(body.timeout):
            result = await sb.exec("python3", ["-c", body.code])
        return {"sandbox": sb.id, **to_dict(result)}

    @app.get("/sandbox")
    async def view(sb: SandboxDep) -> dict[str, Any]:
        await sb.refresh()
        return to_dict(sb)  # datetimes as ISO text; nothing secret in a view

    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--local", action="store_true", help="run against the local emulator")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()

    async def serve() -> None:
        config: dict[str, Any] = {"host": "127.0.0.1", "port": args.port, "log_level": "info"}
        if not args.local:
            await uvicorn.Server(uvicorn.Config(create_app(), **config)).serve()
            return
        from createos_sandbox_async.local import LocalServer

        async with LocalServer() as server:
            app = create_app(server.session)
            await uvicorn.Server(uvicorn.Config(app, **config)).serve()

    anyio.run(serve)


if __name__ == "__main__":
    main()
