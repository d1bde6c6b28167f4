"""Wire conventions of the emulator: JSend, request ids, auth and tenants, pagination, CRUD."""

from __future__ import annotations

import aiohttp
import pytest
from _emulator import Client

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


async def test_open_routes_need_no_key_and_carry_request_ids(server: LocalServer) -> None:
    async with aiohttp.ClientSession(server.base_url) as http:
        seen = set()
        for path in ("/healthz", "/readyz", "/v1/shapes", "/v1/rootfs"):
            async with http.get(path) as resp:
                assert resp.status == 200, path
                assert resp.content_type == "application/json"
                assert (await resp.json())["status"] == "success"
                seen.add(resp.headers["X-Request-Id"])
        assert len(seen) == 4  # a fresh id per response
        async with http.get("/v1/whoami") as resp:
            assert resp.status == 401
            assert resp.headers["X-Request-Id"]
            body = await resp.json()
            assert body["status"] == "fail" and body["data"]["code"] == "unauthorized"


async def test_catalog_contents(client: Client) -> None:
    shapes = await client.ok("GET", "/v1/shapes")
    assert "s-1vcpu-256mb" in [s["id"] for s in shapes["data"]]
    assert shapes["pagination"]["total"] == len(shapes["data"])
    rootfs = await client.ok("GET", "/v1/rootfs")
    assert "devbox:1" in rootfs["rootfs"] and rootfs["default"] == "devbox:1"
    hosts = await client.ok("GET", "/v1/hosts")
    assert hosts["data"][0]["status"] == "active"
    me = await client.ok("GET", "/v1/whoami")
    assert me["stats"] == {"running": 0, "paused": 0, "other": 0, "total": 0}


async def test_unknown_route_and_method_are_jsend(client: Client) -> None:
    status, body = await client.call("GET", "/v1/nope")
    assert status == 404 and body["status"] == "fail"
    status, body = await client.call("PUT", "/v1/sandboxes")
    assert status == 405 and body["status"] == "fail"


async def test_create_response_shape_and_view(client: Client) -> None:
    created = await client.create(envs={"A": "1"}, ingress_enabled=True)
    assert created["status"] == "running"
    assert created["id"].startswith("sb_") and len(created["id"]) == 3 + 26
    assert "created_at" not in created and "ingress_enabled" not in created
    assert created["bandwidth_quota_bytes"] == 5 * 1024**3
    view = await client.ok("GET", f"/v1/sandboxes/{created['id']}")
    assert view["status"] == "running" and view["ingress_enabled"] is True
    assert view["envs"] == ["A"]  # names only, never values
    assert "<port>" in view["ingress_url_template"]
    assert "paused_at" not in view  # empty optional fields are omitted
    by_ip = await client.ok("GET", f"/v1/sandboxes/by-ip/{created['ip']}")
    assert by_ip["id"] == created["id"]
    patched = await client.ok(
        "PATCH", f"/v1/sandboxes/{created['id']}", json={"ingress_enabled": False}
    )
    assert patched["ingress_enabled"] is False and "ingress_url_template" not in patched


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "shape"),
        ({"shape": "s-huge"}, "shape"),
        ({"shape": "s-1vcpu-256mb", "envs": {"1BAD": "x"}}, "envs"),
        ({"shape": "s-1vcpu-256mb", "envs": {"A": "x" * 4097}}, "envs"),
        ({"shape": "s-1vcpu-256mb", "bandwidth_quota_bytes": 10}, "bandwidth_quota_bytes"),
        ({"shape": "s-1vcpu-256mb", "auto_pause_after_seconds": 59}, "auto_pause_after_seconds"),
        ({"shape": "s-1vcpu-256mb", "region": "mars-1"}, "region"),
        ({"shape": "s-1vcpu-256mb", "rootfs": "nope:1"}, "rootfs"),
    ],
)
async def test_create_validation(client: Client, body: dict[str, object], field: str) -> None:
    status, resp = await client.call("POST", "/v1/sandboxes", json=body)
    assert status == 400
    assert field in resp["data"]["message"]


async def test_duplicate_name_conflicts_until_destroyed(client: Client) -> None:
    first = await client.create(name="twin")
    status, _ = await client.call(
        "POST", "/v1/sandboxes", json={"shape": "s-1vcpu-256mb", "name": "twin"}
    )
    assert status == 409
    await client.ok("DELETE", f"/v1/sandboxes/{first['id']}")
    second = await client.create(name="twin")
    assert second["id"] != first["id"]


async def test_other_tenants_resources_are_404_never_403(
    server: LocalServer, client: Client
) -> None:
    mine = await client.create()
    other = server.add_tenant()
    sid = mine["id"]
    for method, path, kw in [
        ("GET", f"/v1/sandboxes/{sid}", {}),
        ("POST", f"/v1/sandboxes/{sid}/exec", {"json": {"cmd": "true"}}),
        ("GET", f"/v1/sandboxes/{sid}/files?path=/etc/hostname", {}),
        ("POST", f"/v1/sandboxes/{sid}/pause", {}),
        ("POST", f"/v1/sandboxes/{sid}/bandwidth/recharge", {"json": {"add_bytes": 1}}),
        ("DELETE", f"/v1/sandboxes/{sid}", {}),
    ]:
        status, _ = await client.call(method, path, key=other, **kw)
        assert status == 404, (method, path)
    listed = await client.ok("GET", "/v1/sandboxes", headers=None) if False else None
    del listed
    status, body = await client.call("GET", "/v1/sandboxes", key=other)
    assert status == 200 and body["data"]["data"] == []
    # the owner still sees it running: the foreign delete did nothing
    assert (await client.ok("GET", f"/v1/sandboxes/{sid}"))["status"] == "running"


async def test_pagination_clamps_and_walks(client: Client) -> None:
    ids = [(await client.create())["id"] for _ in range(5)]
    page = await client.ok("GET", "/v1/sandboxes", params={"limit": "2", "offset": "1"})
    assert [s["id"] for s in page["data"]] == ids[1:3]  # creation order, stable
    assert page["pagination"] == {"total": 5, "limit": 2, "offset": 1, "count": 2}
    clamped = await client.ok("GET", "/v1/sandboxes", params={"limit": "100000"})
    assert clamped["pagination"]["limit"] == 500 and clamped["pagination"]["count"] == 5
    default = await client.ok("GET", "/v1/sandboxes", params={"limit": "0"})
    assert default["pagination"]["limit"] == 50
    walked: list[str] = []
    offset = 0
    while True:
        chunk = await client.ok("GET", "/v1/sandboxes", params={"limit": "2", "offset": offset})
        walked += [s["id"] for s in chunk["data"]]
        offset += len(chunk["data"])
        if not chunk["data"] or offset >= chunk["pagination"]["total"]:
            break
    assert walked == ids
    for bad in ({"limit": "-1"}, {"offset": "-3"}, {"limit": "ten"}):
        status, _ = await client.call("GET", "/v1/sandboxes", params=bad)
        assert status == 400, bad


async def test_destroy_is_idempotent_and_rows_stay_listable(client: Client) -> None:
    sid = (await client.create())["id"]
    first = await client.ok("DELETE", f"/v1/sandboxes/{sid}")
    assert first == {"id": sid, "status": "destroyed"}
    again = await client.ok("DELETE", f"/v1/sandboxes/{sid}")
    assert again["status"] == "destroyed"
    view = await client.ok("GET", f"/v1/sandboxes/{sid}")
    assert view["status"] == "destroyed" and "destroyed_at" in view
    listed = await client.ok("GET", "/v1/sandboxes", params={"status": "destroyed"})
    assert [s["id"] for s in listed["data"]] == [sid]
    assert (await client.ok("GET", "/v1/sandboxes", params={"status": "running"}))["data"] == []
    status, _ = await client.call("GET", "/v1/sandboxes", params={"status": "sleepy"})
    assert status == 400
    status, _ = await client.call("DELETE", "/v1/sandboxes/sb_00000000000000000000000000")
    assert status == 404


async def test_request_count_filters(server: LocalServer, client: Client) -> None:
    before = server.request_count()
    await client.call("GET", "/healthz")
    await client.call("GET", "/v1/sandboxes")
    await client.call("POST", "/v1/sandboxes", json={})
    assert server.request_count() == before + 3
    assert server.request_count("GET") >= 2
    assert server.request_count("POST", "/v1/sandboxes") == 1
    assert server.request_count(path="/v1/*") == 2
