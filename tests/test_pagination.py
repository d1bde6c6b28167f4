"""Lazy offset pagination (WIRE §8): clamping, legacy shapes, empty pages, unknown shapes."""

from __future__ import annotations

from typing import Any

import pytest
from _servers import always, ok, page, serve
from aiohttp import web

from createos_sandbox_async import ProtocolError, Sandbox
from createos_sandbox_async._pagination import parse_page

pytestmark = pytest.mark.anyio


def _sandboxes_app(total: int, *, clamp: int = 500) -> web.Application:
    rows = [{"id": f"sb_{i:04d}", "status": "running" if i % 2 else "paused"} for i in range(total)]

    async def list_(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "50")) or 50
        limit = min(limit, clamp)
        offset = int(request.query.get("offset", "0"))
        status = request.query.get("status")
        matching = [r for r in rows if status is None or r["status"] == status]
        items = matching[offset : offset + limit]
        return ok(page(items, total=len(matching), offset=offset, limit=limit))

    app = web.Application()
    app.router.add_get("/v1/sandboxes", list_)
    return app


async def test_walks_every_page_with_server_default() -> None:
    async with serve(_sandboxes_app(120)) as srv, srv.session() as session:
        ids = [sb.id async for sb in session.sandboxes.list()]
    assert ids == [f"sb_{i:04d}" for i in range(120)]
    assert [r.query.get("offset", "0") for r in srv.requests] == ["0", "50", "100"]
    assert all("limit" not in r.query for r in srv.requests)


async def test_clamped_limit_advances_by_items_returned() -> None:
    async with serve(_sandboxes_app(1100)) as srv, srv.session() as session:
        items = await session.sandboxes.list(page_size=1000).to_list()
    assert len(items) == 1100 and len({s.id for s in items}) == 1100
    assert all(isinstance(s, Sandbox) for s in items)
    assert [(r.query["limit"], r.query.get("offset", "0")) for r in srv.requests] == [
        ("1000", "0"),
        ("1000", "500"),
        ("1000", "1000"),
    ]


async def test_status_filter_and_limit_are_lazy() -> None:
    async with serve(_sandboxes_app(300)) as srv, srv.session() as session:
        pager = session.sandboxes.list(status="paused", limit=7, page_size=5)
        assert srv.count() == 0  # nothing sent until iteration starts
        first = await pager.__anext__()
        assert srv.count() == 1
        rest = [sb async for sb in pager]
    assert first.status == "paused"
    assert len(rest) == 6
    assert all(s.status == "paused" for s in rest)
    assert [r.query["limit"] for r in srv.requests] == ["5", "2"]  # never more than needed
    assert all(r.query["status"] == "paused" for r in srv.requests)


async def test_empty_page_stops_even_if_total_says_more() -> None:
    app = web.Application()
    app.router.add_get("/v1/sandboxes", always(lambda: ok(page([], total=99, offset=0, limit=50))))
    async with serve(app) as srv, srv.session() as session:
        assert await session.sandboxes.list().to_list() == []
    assert srv.count() == 1


async def test_empty_list() -> None:
    async with serve(_sandboxes_app(0)) as srv, srv.session() as session:
        assert [s async for s in session.sandboxes.list()] == []
    assert srv.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        [{"id": "s-1", "vcpu": 1}, {"id": "s-2", "vcpu": 2}],
        {"shapes": [{"id": "s-1", "vcpu": 1}, {"id": "s-2", "vcpu": 2}]},
        {"data": [{"id": "s-1", "vcpu": 1}, {"id": "s-2", "vcpu": 2}],
         "pagination": {"total": 2, "limit": 50, "offset": 0, "count": 2}},
    ],
)  # fmt: skip
async def test_shapes_current_and_legacy_shapes(body: Any) -> None:
    app = web.Application()
    app.router.add_get("/v1/shapes", always(lambda: ok(body)))
    async with serve(app) as srv, srv.session() as session:
        shapes = await session.shapes()
    assert [s.id for s in shapes] == ["s-1", "s-2"]
    assert srv.count() == 1  # legacy shapes are complete in one response
    assert "X-Api-Key" not in srv.requests[0].headers  # open route: no credential sent


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"sandboxes": [{"id": "sb_1"}]},
        "nope",
        7,
        None,
        {"data": {"id": 1}, "pagination": {"total": 1}},
        {"data": [], "pagination": {"count": 0}},
    ],
)
async def test_unknown_shapes_fail_loudly(body: Any) -> None:
    app = web.Application()
    app.router.add_get("/v1/sandboxes", always(lambda: ok(body)))
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ProtocolError, match="/v1/sandboxes"):
            await session.sandboxes.list().to_list()


def test_parse_page_legacy_keys_only_where_allowed() -> None:
    assert parse_page({"disks": [1]}, ("disks",), "/v1/disks") == ([1], None)
    with pytest.raises(ProtocolError):
        parse_page({"disks": [1]}, ("shapes",), "/v1/shapes")
    assert parse_page({"data": None, "pagination": {"total": 0}}, (), "/x") == ([], 0)


@pytest.mark.parametrize(
    ("kw", "name"), [({"limit": 0}, "limit"), ({"page_size": -1}, "page_size")]
)
async def test_bad_paging_arguments(kw: dict[str, int], name: str) -> None:
    async with serve(_sandboxes_app(1)) as srv, srv.session() as session:
        with pytest.raises(ValueError, match=name):
            session.sandboxes.list(**kw)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="status"):
            session.sandboxes.list(status="sleeping")
    assert srv.count() == 0
