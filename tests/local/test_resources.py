"""Account resources and sandbox policies: access tokens (token-scoped auth), egress, bandwidth,
SSH keys, networks, disks, templates with logs, and the routes answered 'not supported here'."""

from __future__ import annotations

import json

import pytest
from _emulator import Client

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdummykeydummykeydummykey user@host"


async def test_access_token_drives_only_its_own_sandbox(client: Client) -> None:
    sid = (await client.create())["id"]
    other = (await client.create())["id"]
    assert await client.ok("GET", f"/v1/sandboxes/{sid}/access-token") == {"enabled": False}
    made = await client.ok("POST", f"/v1/sandboxes/{sid}/access-token")
    token = made["token"]
    assert token.startswith("skp_sb_") and made["enabled"] is True
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/access-token")
    assert status == 409
    meta = await client.ok("GET", f"/v1/sandboxes/{sid}/access-token")
    assert meta["enabled"] is True and token not in json.dumps(meta)
    # the token works on its own sandbox's runtime routes...
    status, body = await client.call(
        "POST", f"/v1/sandboxes/{sid}/exec", key=token, json={"cmd": "echo", "args": ["via-token"]}
    )
    assert status == 200 and body["data"]["result"]["stdout"] == "via-token\n"
    assert (await client.call("GET", f"/v1/sandboxes/{sid}", key=token))[0] == 200
    # ...not on another sandbox (404) nor on account or management routes (403)
    assert (await client.call("GET", f"/v1/sandboxes/{other}", key=token))[0] == 404
    assert (await client.call("GET", "/v1/sandboxes", key=token))[0] == 403
    assert (await client.call("GET", "/v1/whoami", key=token))[0] == 403
    assert (await client.call("POST", f"/v1/sandboxes/{sid}/access-token/rotate", key=token))[
        0
    ] == 403
    assert (await client.call("POST", f"/v1/sandboxes/{sid}/fork", key=token))[0] == 403
    rotated = await client.ok("POST", f"/v1/sandboxes/{sid}/access-token/rotate")
    assert rotated["token"] != token and "rotated_at" in rotated
    assert (await client.call("GET", f"/v1/sandboxes/{sid}", key=token))[0] == 401
    new = rotated["token"]
    assert (await client.call("GET", f"/v1/sandboxes/{sid}", key=new))[0] == 200
    assert await client.ok("DELETE", f"/v1/sandboxes/{sid}/access-token") == {"enabled": False}
    assert (await client.call("GET", f"/v1/sandboxes/{sid}", key=new))[0] == 401
    assert await client.ok("DELETE", f"/v1/sandboxes/{sid}/access-token") == {"enabled": False}
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/access-token/rotate")
    assert status == 404


async def test_egress_bandwidth_and_keys(client: Client) -> None:
    sid = (await client.create(egress=["pypi.org", "1.1.1.1:53"]))["id"]
    assert (await client.ok("GET", f"/v1/sandboxes/{sid}/egress"))["egress"] == [
        "pypi.org",
        "1.1.1.1:53",
    ]
    put = await client.ok("PUT", f"/v1/sandboxes/{sid}/egress", json={"egress": None})
    assert put == {"id": sid, "egress": []}
    status, _ = await client.call(
        "PUT", f"/v1/sandboxes/{sid}/egress", json={"egress": ["bad rule!"]}
    )
    assert status == 400
    bw = await client.ok("GET", f"/v1/sandboxes/{sid}/bandwidth")
    assert bw["quota_bytes"] == bw["remaining_bytes"] == 5 * 1024**3 and bw["capped"] is False
    bw = await client.ok(
        "POST", f"/v1/sandboxes/{sid}/bandwidth/recharge", json={"add_bytes": 1024}
    )
    assert bw["quota_bytes"] == 5 * 1024**3 + 1024
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/bandwidth/recharge", json={"add_bytes": 0}
    )
    assert status == 400
    assert await client.ok(
        "POST", f"/v1/sandboxes/{sid}/ssh-pubkeys", json={"keys": [KEY, KEY]}
    ) == {"count": 1}
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/ssh-pubkeys", json={"keys": ["not a key"]}
    )
    assert status == 400
    resized = await client.ok("POST", f"/v1/sandboxes/{sid}/resize", json={"disk_mib": 20480})
    assert resized == {"id": sid, "disk_mib": 20480}
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/resize", json={"disk_mib": 100})
    assert status == 400


async def test_networks(client: Client) -> None:
    net = await client.ok("POST", "/v1/networks", json={"name": "backend"})
    assert net["id"].startswith("net_")
    assert (await client.call("POST", "/v1/networks", json={"name": "backend"}))[0] == 409
    sid = (await client.create())["id"]
    assert await client.ok("POST", f"/v1/sandboxes/{sid}/networks", json={"id": net["id"]}) == {
        "ok": True
    }
    listed = await client.ok("GET", "/v1/networks")
    assert listed["data"][0]["member_count"] == 1
    detail = await client.ok("GET", f"/v1/networks/{net['id']}")
    assert detail["members"][0]["sandbox_id"] == sid
    assert (await client.call("DELETE", f"/v1/networks/{net['id']}"))[0] == 409
    await client.ok("DELETE", f"/v1/sandboxes/{sid}/networks/{net['id']}")
    assert await client.ok("DELETE", f"/v1/networks/{net['id']}") == {"ok": True}
    assert (await client.call("GET", f"/v1/networks/{net['id']}"))[0] == 404


async def test_disks(client: Client) -> None:
    body = {
        "name": "datasets",
        "kind": "s3",
        "config": {"bucket": "b", "endpoint": "http://127.0.0.1:9000", "use_path_style": True},
        "credentials": {"access_key": "AKIAEXAMPLE", "secret_key": "very-secret"},
    }
    disk = await client.ok("POST", "/v1/disks", json=body)
    assert "credentials" not in disk and "very-secret" not in json.dumps(disk)
    assert (await client.call("POST", "/v1/disks", json={**body, "name": "Bad_Name"}))[0] == 400
    assert (await client.ok("GET", "/v1/disks/datasets"))["id"] == disk["id"]
    sid = (await client.create())["id"]
    attached = await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/disks",
        json={"disk_id": "datasets", "mount_path": "/mnt/data"},
    )
    assert attached == {"id": sid}
    mounts = await client.ok("GET", f"/v1/sandboxes/{sid}/disks")
    assert mounts["data"][0]["mount_status"] == "mounted"
    assert (await client.call("DELETE", f"/v1/disks/{disk['id']}"))[0] == 409
    status, _ = await client.call("DELETE", f"/v1/sandboxes/{sid}/disks/{disk['id']}")
    assert status == 400  # mount_path is required
    detached = await client.ok(
        "DELETE", f"/v1/sandboxes/{sid}/disks/{disk['id']}", params={"mount_path": "/mnt/data"}
    )
    assert detached == {"detached": True}
    rotated = await client.ok(
        "PATCH",
        f"/v1/disks/{disk['id']}",
        json={"credentials": {"access_key": "A2", "secret_key": "S2"}},
    )
    assert rotated["id"] == disk["id"]
    status, _ = await client.call(
        "PATCH",
        f"/v1/disks/{disk['id']}",
        json={"credentials": {"access_key": "", "secret_key": "x"}},
    )
    assert status == 400
    assert await client.ok("DELETE", f"/v1/disks/{disk['id']}") == {"deleted": True}


async def test_templates_build_and_logs(client: Client) -> None:
    status, _ = await client.call(
        "POST", "/v1/templates", json={"name": "t", "dockerfile": "FROM a\nCOPY x y\n"}
    )
    assert status == 400
    tpl = await client.ok(
        "POST",
        "/v1/templates",
        json={"name": "py", "dockerfile": "FROM python:3.12\nRUN echo hi\n"},
    )
    assert tpl["status"] == "pending" and tpl["id"].startswith("tpl_")
    frames = []
    async with client.http.get(
        f"/v1/templates/{tpl['id']}/logs", params={"follow": "true"}, headers=client.headers()
    ) as resp:
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        frames = [json.loads(line) for line in (await resp.read()).splitlines()]
    assert frames[-1] == {"final": True, "status": "ready"}
    assert any("RUN echo hi" in f.get("line", "") for f in frames)
    async with client.http.get(f"/v1/templates/{tpl['id']}/logs", headers=client.headers()) as resp:
        assert resp.content_type == "text/plain"
        assert "Step 2/2 : RUN echo hi" in await resp.text()
    view = await client.ok("GET", f"/v1/templates/{tpl['id']}", params={"include": "dockerfile"})
    assert view["status"] == "ready" and view["dockerfile"].startswith("FROM")
    made = await client.create(rootfs="py")
    assert made["rootfs"] == "py"
    bad = await client.ok(
        "POST", "/v1/templates", json={"name": "broken", "dockerfile": "FROM debian\nRUN false\n"}
    )
    async with client.http.get(
        f"/v1/templates/{bad['id']}/logs?follow=true", headers=client.headers()
    ) as resp:
        last = json.loads((await resp.read()).splitlines()[-1])
    assert last == {"final": True, "status": "failed"}
    assert await client.ok("DELETE", f"/v1/templates/{tpl['id']}") == {"ok": True}
    assert (await client.call("GET", f"/v1/templates/{tpl['id']}"))[0] == 404


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "/computer/screenshot"),
        ("POST", "/computer/mouse/click"),
        ("GET", "/computer/screens"),
        ("POST", "/tunnel/8080"),
        ("POST", "/shell"),
    ],
)
async def test_unsupported_routes_say_so(client: Client, method: str, suffix: str) -> None:
    sid = (await client.create())["id"]
    status, body = await client.call(method, f"/v1/sandboxes/{sid}{suffix}", json={})
    assert status == 501
    assert body["status"] == "error" and "not supported by the local emulator" in body["message"]
    status, _ = await client.call(method, f"/v1/sandboxes/sb_unknown{suffix}", json={})
    assert status == 404  # ownership is still checked first


async def test_metrics_are_opaque_objects(server: LocalServer, client: Client) -> None:
    sid = (await client.create())["id"]
    assert isinstance(await client.ok("GET", "/v1/metrics"), dict)
    assert isinstance(await client.ok("GET", "/v1/metrics/timeseries"), dict)
    data = await client.ok("GET", f"/v1/sandboxes/{sid}/metrics")
    assert data["id"] == sid and data["processes"] >= 1
