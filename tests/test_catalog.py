"""Catalog and identity calls: open routes send no key, /readyz maps 503 to ready=False."""

from __future__ import annotations

from typing import Any

import pytest
from _servers import always, error, fail, ok, page, raw, serve
from aiohttp import web

from createos_sandbox_async import AuthError, PermissionDeniedError, ProtocolError, ServerError

pytestmark = pytest.mark.anyio


def _app(routes: dict[str, Any]) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


async def test_whoami_rootfs_health_hosts() -> None:
    app = _app(
        {
            "/v1/whoami": always(lambda: ok({"user_id": "u_1", "stats": {"running": 3}})),
            "/v1/rootfs": always(lambda: ok({"rootfs": ["devbox:1"], "default": "devbox:1"})),
            "/healthz": always(lambda: ok({"up": True})),
            "/v1/hosts": always(
                lambda: ok(page([{"id": "h1", "status": "active"}], total=1, offset=0, limit=50))
            ),
        }
    )
    async with serve(app) as srv, srv.session() as session:
        who = await session.whoami()
        catalog = await session.rootfs()
        health = await session.health()
        hosts = await session.hosts()
    assert who.user_id == "u_1" and who.stats.running == 3
    assert catalog.default == "devbox:1" and catalog.rootfs == ("devbox:1",)
    assert health.up is True
    assert [h.id for h in hosts] == ["h1"]
    keyed = {r.path: "X-Api-Key" in r.headers for r in srv.requests}
    assert keyed == {"/v1/whoami": True, "/v1/rootfs": False, "/healthz": False, "/v1/hosts": True}


async def test_hosts_forbidden_and_whoami_unauthorized() -> None:
    app = _app(
        {
            "/v1/hosts": always(lambda: fail(403, {"message": "requires administrator"})),
            "/v1/whoami": always(lambda: error(401, "unknown key")),
        }
    )
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(PermissionDeniedError, match="administrator"):
            await session.hosts()
        with pytest.raises(AuthError):
            await session.whoami()
    assert srv.count() == 2  # neither is retried


@pytest.mark.parametrize(
    ("response", "ready", "reason"),
    [
        (lambda: ok({"ready": True}), True, None),
        (lambda: ok({"ready": False, "reason": "draining"}), False, "draining"),
        (lambda: raw(200, b"OK"), True, None),
        (
            lambda: fail(503, {"ready": False, "reason": "scheduler stale"}),
            False,
            "scheduler stale",
        ),
        (lambda: raw(503, b""), False, "service unavailable"),
        (lambda: raw(503, b"<html>down</html>", content_type="text/html"), False, None),
    ],
)
async def test_ready_maps_503_and_is_never_retried(response: Any, ready: bool, reason: Any) -> None:
    async with serve(_app({"/readyz": always(response)})) as srv, srv.session() as session:
        result = await session.ready()
    assert result.ready is ready
    if reason is not None:
        assert result.reason == reason
    assert srv.count("GET", "/readyz") == 1
    assert "X-Api-Key" not in srv.requests[0].headers


async def test_ready_other_errors_raise() -> None:
    app = _app({"/readyz": always(lambda: raw(500, b""))})
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ServerError, match="500"):
            await session.ready()


async def test_escape_hatch_quotes_paths_and_rejects_queries() -> None:
    app = web.Application()

    async def echo(request: web.Request) -> web.Response:
        return ok({"tail": request.match_info["tail"]})

    app.router.add_get("/v1/metrics/{tail}", echo)
    async with serve(app) as srv, srv.session() as session:
        assert await session.request("get", "/v1/metrics/a b") == {"tail": "a b"}
        assert await session.request("GET", "/v1/metrics/a%2Fb") == {"tail": "a/b"}
        with pytest.raises(ValueError, match="params"):
            await session.request("GET", "/v1/metrics?x=1")
        with pytest.raises(ValueError, match="path"):
            await session.request("GET", "v1/metrics")
        with pytest.raises(ValueError, match="method"):
            await session.request("GE T", "/v1/metrics/x")
    assert [r.path for r in srv.requests] == ["/v1/metrics/a b", "/v1/metrics/a/b"]


async def test_shape_page_with_wrong_item_is_protocol_error() -> None:
    body = page(["not-an-object"], total=1, offset=0, limit=50)
    app = _app({"/v1/shapes": always(lambda: ok(body))})
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(ProtocolError, match="Shape"):
            await session.shapes()
