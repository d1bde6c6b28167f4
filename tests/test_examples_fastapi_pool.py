"""examples/fastapi_pool.py against the emulator, through httpx's ASGI transport: one pooled
sandbox per request as a FastAPI dependency, JSON answers from ``to_dict``, nothing left after."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from _extras import need
from _pool_support import live_ids

from createos_sandbox_async import AsyncSession

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_pool.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fastapi_pool", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_each_request_gets_a_pooled_sandbox_and_json_back(createos_server: Any) -> None:
    httpx = need("httpx", "bench")
    key = createos_server.add_tenant()

    def session() -> AsyncSession:
        return AsyncSession(api_key=key, base_url=createos_server.base_url)

    app = load_example().create_app(session, max_concurrency=4, warm=1)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        answers: list[Any] = []

        async def run(n: int) -> None:
            code = f"import time; time.sleep(0.3); print({n} * 7)"
            resp = await client.post("/run", json={"code": code})
            answers.append((n, resp.status_code, resp.json()))

        async with anyio.create_task_group() as tg:  # at the same time: a sandbox each
            for n in range(3):
                tg.start_soon(run, n)
        assert sorted((n, status, body["stdout"]) for n, status, body in answers) == [
            (0, 200, "0\n"),
            (1, 200, "7\n"),
            (2, 200, "14\n"),
        ]
        assert all(body["exit_code"] == 0 and body["error"] is None for _, _, body in answers)
        assert len({body["sandbox"] for _, _, body in answers}) == 3

        resp = await client.get("/sandbox")
        assert resp.status_code == 200
        view = resp.json()
        assert view["status"] == "running" and view["name"].startswith("pool-")
        assert dt.datetime.fromisoformat(view["created_at"]).tzinfo is not None

        bad = await client.post("/run", json={"code": ""})
        assert bad.status_code == 422
    # the lifespan closed the pool: every sandbox it created is gone
    async with session() as check:
        assert await live_ids(check) == []
