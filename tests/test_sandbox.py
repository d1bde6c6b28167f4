"""The Sandbox handle and session.sandboxes against a small fake control plane (WIRE §9, §10)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import attrs
import pytest
from _servers import Attempts, Served, error, fail, ok, serve
from aiohttp import web

from createos_sandbox_async import (
    APITimeoutError,
    CreateSandboxRequest,
    DiskAttachment,
    NetworkEntry,
    NotFoundError,
    PermissionDeniedError,
    Sandbox,
    SandboxStateError,
    SandboxStatus,
)

pytestmark = pytest.mark.anyio


class FakeAPI:
    """Just enough control plane: sandboxes in a dict, scripted statuses for polling."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.script: dict[str, list[str]] = {}  # id -> statuses returned by successive GETs
        self.deletes: dict[str, int] = {}
        self.counter = 0
        self.delete_started = anyio.Event()

    def add(self, **row: Any) -> dict[str, Any]:
        self.counter += 1
        row.setdefault("id", f"sb_{self.counter:02d}")
        row.setdefault("status", "running")
        row.setdefault("ingress_enabled", False)
        row.setdefault("ip", f"10.0.0.{self.counter}")
        row.setdefault("disk_mib", 10240)
        self.rows[row["id"]] = row
        return row

    def _row(self, request: web.Request) -> dict[str, Any]:
        row = self.rows.get(request.match_info["id"])
        if row is None:
            raise web.HTTPNotFound(
                text=json.dumps({"status": "fail", "data": {"id": "unknown sandbox"}}),
                content_type="application/json",
            )
        return row

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post("/v1/sandboxes", self.create)
        r.add_get("/v1/sandboxes/by-ip/{ip}", self.by_ip)
        r.add_get("/v1/sandboxes/{id}", self.get)
        r.add_patch("/v1/sandboxes/{id}", self.patch)
        r.add_delete("/v1/sandboxes/{id}", self.delete)
        r.add_post("/v1/sandboxes/{id}/pause", self.transition("pausing"))
        r.add_post("/v1/sandboxes/{id}/resume", self.transition("resuming"))
        r.add_post("/v1/sandboxes/{id}/fork", self.fork)
        r.add_post("/v1/sandboxes/{id}/resize", self.resize)
        r.add_route("*", "/v1/sandboxes/{id}/egress", self.egress)
        r.add_get("/v1/sandboxes/{id}/bandwidth", self.bandwidth)
        r.add_post("/v1/sandboxes/{id}/bandwidth/recharge", self.bandwidth)
        r.add_post("/v1/sandboxes/{id}/ssh-pubkeys", self.ssh)
        r.add_post("/v1/sandboxes/{id}/networks", self.ok_true)
        r.add_delete("/v1/sandboxes/{id}/networks/{net}", self.ok_true)
        r.add_get("/v1/sandboxes/{id}/disks", self.disks)
        r.add_post("/v1/sandboxes/{id}/disks", self.attach_disk)
        r.add_delete("/v1/sandboxes/{id}/disks/{disk}", self.detach_disk)
        return app

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        row = self.add(shape=body["shape"], ingress_enabled=body.get("ingress_enabled", False))
        # the audited server: no status, no created_at, no ingress_enabled
        created = {k: row[k] for k in ("id", "ip", "disk_mib")}
        created.update(shape=row["shape"], vcpu=1, mem_mib=256, spawn_ms=12.5)
        if row["ingress_enabled"]:
            created["ingress_url_template"] = f"https://<port>-{row['id']}.box.test"
        return ok(created)

    async def get(self, request: web.Request) -> web.Response:
        row = self._row(request)
        script = self.script.get(row["id"])
        if script:
            row["status"] = script.pop(0) if len(script) > 1 else script[0]
        return ok(row)

    async def by_ip(self, request: web.Request) -> web.Response:
        for row in self.rows.values():
            if row["ip"] == request.match_info["ip"]:
                return ok(row)
        return fail(404, {"ip": "no sandbox"})

    async def patch(self, request: web.Request) -> web.Response:
        row = self._row(request)
        body = await request.json()
        if "ingress_enabled" in body:
            row["ingress_enabled"] = body["ingress_enabled"]
            if body["ingress_enabled"]:
                row["ingress_url_template"] = f"https://<port>-{row['id']}.box.test"
            else:
                row.pop("ingress_url_template", None)
        if body.get("disable_auto_pause"):
            row.pop("auto_pause_after_seconds", None)
        elif "auto_pause_after_seconds" in body:
            row["auto_pause_after_seconds"] = body["auto_pause_after_seconds"]
        return ok(row)

    async def delete(self, request: web.Request) -> web.Response:
        self.delete_started.set()
        row = self._row(request)
        n = self.deletes[row["id"]] = self.deletes.get(row["id"], 0) + 1
        row["status"] = "destroying" if n == 1 else "destroyed"
        return ok({"id": row["id"], "status": row["status"]})

    def transition(self, status: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            row = self._row(request)
            row["status"] = status
            return ok(row)

        return handler

    async def fork(self, request: web.Request) -> web.Response:
        self._row(request)
        body = await request.json()
        child = self.add(
            status="forking", forked_from=request.match_info["id"], shape="s-1vcpu-256mb"
        )
        child["ingress_enabled"] = body.get("ingress_enabled", False)
        return ok(child)

    async def resize(self, request: web.Request) -> web.Response:
        row = self._row(request)
        body = await request.json()
        if body["disk_mib"] <= row["disk_mib"]:
            return fail(400, {"disk_mib": "must grow"})
        row["disk_mib"] = body["disk_mib"]
        return ok({"id": row["id"], "disk_mib": row["disk_mib"]})

    async def egress(self, request: web.Request) -> web.Response:
        row = self._row(request)
        if request.method == "PUT":
            row["egress"] = (await request.json())["egress"]
        return ok({"id": row["id"], "egress": row.get("egress")})

    async def bandwidth(self, request: web.Request) -> web.Response:
        row = self._row(request)
        add = (await request.json())["add_bytes"] if request.method == "POST" else 0
        row["quota"] = row.get("quota", 100) + add
        return ok(
            {
                "id": row["id"],
                "quota_bytes": row["quota"],
                "used_bytes": 10,
                "ingress_bytes": 3,
                "remaining_bytes": row["quota"] - 10,
                "capped": False,
            }
        )

    async def ssh(self, request: web.Request) -> web.Response:
        row = self._row(request)
        keys = set(row.get("ssh_pubkeys", [])) | set((await request.json())["keys"])
        row["ssh_pubkeys"] = sorted(keys)
        return ok({"count": len(keys)})

    async def ok_true(self, request: web.Request) -> web.Response:
        self._row(request)
        return ok({"ok": True})

    async def disks(self, request: web.Request) -> web.Response:
        self._row(request)
        return ok(
            {"disks": [{"disk_id": "disk_1", "mount_path": "/mnt", "mount_status": "pending"}]}
        )

    async def attach_disk(self, request: web.Request) -> web.Response:
        row = self._row(request)
        return ok({"id": row["id"]})

    async def detach_disk(self, request: web.Request) -> web.Response:
        self._row(request)
        return ok({"detached": True})


def _bodies(srv: Served, method: str, path: str) -> list[Any]:
    return srv.json_bodies(method, path)


# -- create -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": ""}, "shape"),
        ({"shape": 3}, "shape"),
        ({"envs": {"1BAD": "v"}}, "envs: invalid key '1BAD'"),
        ({"envs": {"A-B": "v"}}, "envs: invalid key"),
        ({"envs": {f"K{i}": "v" for i in range(65)}}, "at most 64"),
        ({"envs": {"BIG": "x" * 4097}}, r"envs\['BIG'\]: value is 4097 bytes"),
        ({"envs": {f"K{i}": "x" * 4096 for i in range(17)}}, "values total"),
        ({"envs": {"A": 1}}, r"envs\['A'\] must be a str"),
        ({"envs": ["A=1"]}, "envs must be a mapping"),
        ({"auto_pause_after_seconds": 59}, "auto_pause_after_seconds must be between 60"),
        ({"auto_pause_after_seconds": 86401}, "auto_pause_after_seconds"),
        ({"auto_pause_after_seconds": True}, "auto_pause_after_seconds must be an int"),
        ({"disk_mib": -1}, "disk_mib"),
        ({"ingress_enabled": "yes"}, "ingress_enabled must be a bool"),
        ({"egress": "pypi.org"}, "egress must be a list"),
        ({"ssh_pubkeys": [1]}, r"ssh_pubkeys\[0\]"),
        ({"networks": [""]}, r"networks\[0\]"),
        ({"disks": [{"disk_id": "d", "mount_path": "mnt"}]}, r"disks\[0\].mount_path"),
        ({"disks": [{"disk_id": "d", "mount_path": "/m/../etc"}]}, r"disks\[0\].mount_path"),
        ({"disks": [{"disk_id": "d", "mount_path": "/m", "sub_path": "../x"}]}, "sub_path"),
        ({"node_selector": {"a": 1}}, "node_selector"),
    ],
)
async def test_create_validation_before_any_request(kwargs: dict[str, Any], match: str) -> None:
    api = FakeAPI()
    args = {"shape": "s-1vcpu-256mb", **kwargs}
    async with serve(api.app()) as srv, srv.session() as session:
        with pytest.raises((ValueError, TypeError), match=match) as info:
            await session.sandboxes.create(**args)
    assert srv.count() == 0
    assert "x" * 100 not in str(info.value)  # values are never echoed


async def test_create_sends_only_given_fields_and_normalizes_response() -> None:
    api = FakeAPI()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.create(
            shape="s-1vcpu-256mb",
            envs={"TOKEN": "t"},
            ingress_enabled=True,
            networks=["net_1", NetworkEntry(id="net_2"), {"id": "backend"}],
            disks=[DiskAttachment(disk_id="disk_1", mount_path="/data", sub_path="a/b")],
            auto_pause_after_seconds=600,
        )
        plain = await session.sandboxes.create(shape="s-1vcpu-256mb", ingress_enabled=False)
    first, second = _bodies(srv, "POST", "/v1/sandboxes")
    assert first == {
        "shape": "s-1vcpu-256mb",
        "envs": {"TOKEN": "t"},
        "ingress_enabled": True,
        "networks": [{"id": "net_1"}, {"id": "net_2"}, {"id": "backend"}],
        "disks": [{"disk_id": "disk_1", "mount_path": "/data", "sub_path": "a/b"}],
        "auto_pause_after_seconds": 600,
    }
    assert second == {"shape": "s-1vcpu-256mb", "ingress_enabled": False}
    assert sb.status is SandboxStatus.RUNNING  # absent on the wire: defaulted
    assert sb.data.ingress_enabled is True  # seeded from the request
    assert sb.preview_url(8080) == f"https://8080-{sb.id}.box.test"
    assert plain.data.ingress_enabled is False
    assert srv.count("GET") == 0  # create is synchronous: no follow-up poll


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": ""}, "shape"),
        ({"envs": {"1BAD": "v"}}, "envs: invalid key '1BAD'"),
        ({"disk_mib": -1}, "disk_mib"),
        ({"networks": "net_1"}, "networks must be a list"),
        ({"disks": [{"disk_id": "d", "mount_path": "mnt"}]}, r"disks\[0\].mount_path"),
        ({"node_selector": {"a": 1}}, "node_selector"),
    ],
)
def test_create_request_checks_on_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        CreateSandboxRequest(**{"shape": "s-1vcpu-256mb", **kwargs})


def test_create_request_is_frozen_normalised_and_hides_env_values() -> None:
    request = CreateSandboxRequest(
        shape="s-1vcpu-256mb",
        envs={"TOKEN": "hunter2-secret"},
        egress=["pypi.org"],
        networks=[NetworkEntry(id="net_2"), {"id": "backend"}],
        disks=[{"disk_id": "disk_1", "mount_path": "/data"}],
    )
    assert request.egress == ("pypi.org",) and request.networks == ("net_2", "backend")
    assert request.disks == (DiskAttachment(disk_id="disk_1", mount_path="/data"),)
    assert "hunter2" not in repr(request) and "TOKEN" in repr(request)
    assert hash(request) == hash(attrs.evolve(request))  # usable as a dict key
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.shape = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="name"):
        attrs.evolve(request, name=" ")  # a copy is checked too
    assert request.to_wire() == {
        "shape": "s-1vcpu-256mb",
        "envs": {"TOKEN": "hunter2-secret"},
        "egress": ["pypi.org"],
        "networks": [{"id": "net_2"}, {"id": "backend"}],
        "disks": [{"disk_id": "disk_1", "mount_path": "/data"}],
    }


async def test_create_from_sends_the_request_body_create_would() -> None:
    api = FakeAPI()
    fields: dict[str, Any] = {
        "shape": "s-1vcpu-256mb",
        "envs": {"A": "1"},
        "ingress_enabled": True,
        "networks": ["net_1"],
        "auto_pause_after_seconds": 600,
    }
    async with serve(api.app()) as srv, srv.session() as session:
        by_fields = await session.sandboxes.create(**fields)
        by_request = await session.sandboxes.create_from(CreateSandboxRequest(**fields))
        with pytest.raises(TypeError, match="request must be a CreateSandboxRequest"):
            await session.sandboxes.create_from(fields)  # type: ignore[arg-type]
    first, second = _bodies(srv, "POST", "/v1/sandboxes")
    assert first == second == CreateSandboxRequest(**fields).to_wire()
    assert by_request.data.ingress_enabled is by_fields.data.ingress_enabled is True
    assert srv.count() == 2


async def test_fork_checks_shared_arguments_as_create_does() -> None:
    api = FakeAPI()
    row = api.add(status="paused")
    async with serve(api.app()) as srv, srv.session() as session:
        src = await session.sandboxes.get(row["id"])
        for kwargs, match in [
            ({"envs": {"1BAD": "v"}}, "envs: invalid key '1BAD'"),
            ({"egress": "pypi.org"}, "egress must be a list"),
            ({"ssh_pubkeys": [1]}, r"ssh_pubkeys\[0\]"),
            ({"ingress_enabled": "yes"}, "ingress_enabled must be a bool"),
            ({"start_paused": 1}, "start_paused must be a bool"),
            ({"bandwidth_quota_bytes": "1"}, "bandwidth_quota_bytes must be an int"),
        ]:
            with pytest.raises((ValueError, TypeError), match=match):
                await src.fork(**kwargs)
        await src.fork(egress=("a.org",), ssh_pubkeys=["ssh-ed25519 AAAA"])
    bodies = _bodies(srv, "POST", f"/v1/sandboxes/{row['id']}/fork")
    assert bodies == [{"egress": ["a.org"], "ssh_pubkeys": ["ssh-ed25519 AAAA"]}]


async def test_handle_contract() -> None:
    api = FakeAPI()
    api.add(id="sb/odd id")
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get("sb/odd id")
        assert sb._transport is session._transport
        assert sb._path("/exec") == "/v1/sandboxes/sb%2Fodd%20id/exec"
        assert sb._path() == "/v1/sandboxes/sb%2Fodd%20id"
        assert sb.session is session
        assert repr(sb) == "<Sandbox sb/odd id status='running'>"
        assert sb == await session.sandboxes.by_ip(sb.data.ip or "")
        with pytest.raises(NotFoundError):
            await session.sandboxes.get("sb_missing")


# -- lifecycle --------------------------------------------------------------------------------


async def test_pause_then_wait_polls_until_paused() -> None:
    api = FakeAPI()
    row = api.add()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        api.script[row["id"]] = ["pausing", "pausing", "paused"]
        await sb.pause()
        assert sb.status == "pausing"
        await sb.wait_until("paused", interval=0.001)
        assert sb.status == "paused"
    assert srv.count("GET") == 1 + 3


async def test_pause_wait_true_and_resume_wait_true() -> None:
    api = FakeAPI()
    row = api.add()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        api.script[row["id"]] = ["paused"]
        await sb.pause(wait=True)
        assert sb.status == "paused"
        api.script[row["id"]] = ["resuming", "running"]
        await sb.resume(wait=True)
        assert sb.status == "running"


@pytest.mark.parametrize(
    ("target", "script", "bad"),
    [
        ("running", ["creating", "failed"], "failed"),
        ("running", ["resuming", "error"], "error"),
        ("paused", ["pausing", "destroying"], "destroying"),
        ("running", ["destroyed"], "destroyed"),
        ("destroyed", ["destroying", "error"], "error"),
    ],
)
async def test_waiter_fails_fast(target: str, script: list[str], bad: str) -> None:
    api = FakeAPI()
    row = api.add()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = Sandbox(session, (await session.sandboxes.get(row["id"])).data)
        api.script[row["id"]] = list(script)
        with pytest.raises(SandboxStateError, match=bad) as info:
            await sb.wait_until(target, interval=0.001, timeout=60)
    assert info.value.status == bad
    assert info.value.sandbox_id == row["id"]
    assert srv.count("GET") == 1 + len(script)  # stopped at the first hopeless state


async def test_waiter_times_out() -> None:
    api = FakeAPI()
    row = api.add(status="pausing")
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        with pytest.raises(APITimeoutError, match=r"'paused'.*'pausing'"):
            await sb.wait_until("paused", timeout=1.0, interval=0.01)
    assert srv.count("GET") >= 2


async def test_waiter_argument_checks() -> None:
    api = FakeAPI()
    row = api.add()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        with pytest.raises(ValueError, match="status"):
            await sb.wait_until("asleep")
        with pytest.raises(ValueError, match="timeout"):
            await sb.wait_until("running", timeout=0)
        assert (await sb.wait_until(SandboxStatus.RUNNING)).status == "running"
    assert srv.count("GET") == 2


async def test_fork_returns_child_and_sends_explicit_false() -> None:
    api = FakeAPI()
    row = api.add(status="paused")
    async with serve(api.app()) as srv, srv.session() as session:
        src = await session.sandboxes.get(row["id"])
        child = await src.fork(ingress_enabled=False, start_paused=False, envs={"A": "1"})
        bare = await src.fork()
    assert child.id != src.id and child.data.forked_from == src.id
    assert child.status == "forking"
    bodies = _bodies(srv, "POST", f"/v1/sandboxes/{row['id']}/fork")
    assert bodies == [{"ingress_enabled": False, "start_paused": False, "envs": {"A": "1"}}, {}]
    assert bare.id not in (src.id, child.id)


async def test_destroy_is_idempotent() -> None:
    api = FakeAPI()
    row = api.add()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        first = await sb.destroy()
        second = await sb.destroy()
        del api.rows[row["id"]]  # purged: the server now says 404
        third = await sb.destroy()
    assert [first.status, second.status, third.status] == ["destroying", "destroyed", "destroyed"]
    assert sb.status == "destroyed"
    assert srv.count("DELETE") == 3


async def test_destroy_wait() -> None:
    api = FakeAPI()
    row = api.add()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        api.script[row["id"]] = ["destroying", "destroyed"]
        await sb.destroy(wait=True)
        assert sb.status == "destroyed"


async def test_resize_and_update() -> None:
    api = FakeAPI()
    row = api.add()
    path = f"/v1/sandboxes/{row['id']}"
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        assert (await sb.resize(20480)).disk_mib == 20480
        assert sb.data.disk_mib == 20480
        with pytest.raises(ValueError, match="disk_mib"):
            await sb.resize(0)
        await sb.update(ingress_enabled=True, auto_pause_after_seconds=300)
        assert sb.preview_url(3000) == f"https://3000-{row['id']}.box.test"
        await sb.update(ingress_enabled=False, disable_auto_pause=True)
        assert sb.data.auto_pause_after_seconds is None
        with pytest.raises(SandboxStateError, match="ingress"):
            sb.preview_url(3000)
        with pytest.raises(ValueError, match="at least one"):
            await sb.update()
        with pytest.raises(ValueError, match="auto_pause_after_seconds"):
            await sb.update(auto_pause_after_seconds=10)
    assert _bodies(srv, "PATCH", path) == [
        {"ingress_enabled": True, "auto_pause_after_seconds": 300},
        {"ingress_enabled": False, "disable_auto_pause": True},
    ]


@pytest.mark.parametrize("port", [0, 65536, -1])
async def test_preview_url_port_range(port: int) -> None:
    api = FakeAPI()
    row = api.add(ingress_enabled=True, ingress_url_template="http://<port>.x.test")
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        with pytest.raises(ValueError, match="port"):
            sb.preview_url(port)
        assert sb.preview_url(1) == "http://1.x.test"


# -- async with sandbox ---------------------------------------------------------------------


async def test_async_with_destroys_on_normal_exit() -> None:
    api = FakeAPI()
    async with serve(api.app()) as srv, srv.session() as session:
        async with await session.sandboxes.create(shape="s") as sb:
            assert sb.status == "running"
        assert sb.status == "destroying"
    assert srv.count("DELETE") == 1


async def test_async_with_destroys_when_body_raises_and_keeps_the_error() -> None:
    api = FakeAPI()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.create(shape="s")
        with pytest.raises(KeyError, match="from the body"):
            async with sb:
                raise KeyError("from the body")
    assert srv.count("DELETE") == 1


async def test_async_with_destroys_when_cancelled() -> None:
    api = FakeAPI()
    inside = anyio.Event()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.create(shape="s")

        async def work() -> None:
            async with sb:
                inside.set()
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            await inside.wait()
            tg.cancel_scope.cancel()
        assert api.delete_started.is_set()
        assert sb.status == "destroying"  # the DELETE completed despite the cancellation
    assert srv.count("DELETE") == 1


async def test_async_with_exit_error_raised_when_body_succeeded() -> None:
    api = FakeAPI()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.create(shape="s")
        api.rows.clear()  # 404 on delete counts as already gone: no error
        async with sb:
            pass
    assert srv.count("DELETE") == 1


class RefusingDeleteAPI(FakeAPI):
    """Every DELETE is refused with a 403 (not retried): destroy-on-exit fails."""

    async def delete(self, request: web.Request) -> web.Response:
        self.delete_started.set()
        return error(403, "destroy forbidden for this key")


async def test_async_with_raises_the_failed_destroy_when_the_body_succeeded() -> None:
    api = RefusingDeleteAPI()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.create(shape="s")
        with pytest.raises(PermissionDeniedError, match="destroy forbidden"):
            async with sb:
                pass
    assert srv.count("DELETE") == 1


async def test_async_with_keeps_the_body_error_when_the_destroy_also_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = RefusingDeleteAPI()
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.create(shape="s")
        with pytest.raises(KeyError, match="from the body"):
            async with sb:
                raise KeyError("from the body")
    assert srv.count("DELETE") == 1
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(sb.id in m and "destroy forbidden" in m for m in logged), logged


# -- thin methods -----------------------------------------------------------------------------


async def test_egress_bandwidth_keys_networks_disks() -> None:
    api = FakeAPI()
    row = api.add()
    base = f"/v1/sandboxes/{row['id']}"
    async with serve(api.app()) as srv, srv.session() as session:
        sb = await session.sandboxes.get(row["id"])
        assert await sb.get_egress() == ()
        assert await sb.set_egress(["pypi.org", "10.0.0.0/8:443"]) == ("pypi.org", "10.0.0.0/8:443")
        assert await sb.set_egress(None) == ()
        assert (await sb.bandwidth()).remaining_bytes == 90
        assert (await sb.recharge_bandwidth(50)).quota_bytes == 150
        assert await sb.add_ssh_pubkeys(["ssh-ed25519 AAA a", "ssh-ed25519 AAA a"]) == 1
        await sb.attach_network("net_1")
        await sb.detach_network("net/1")
        disks = await sb.list_disks()
        assert disks[0].mount_status == "pending"
        await sb.attach_disk("disk_1", "/mnt/data", sub_path="x")
        await sb.detach_disk("disk_1", "/mnt/data")
        for bad in (
            lambda: sb.recharge_bandwidth(0),
            lambda: sb.add_ssh_pubkeys([]),
            lambda: sb.attach_network(""),
            lambda: sb.attach_disk("disk_1", "relative"),
            lambda: sb.detach_disk("disk_1", "relative"),
            lambda: sb.set_egress("pypi.org"),  # type: ignore[arg-type]
        ):
            with pytest.raises((ValueError, TypeError)):
                await bad()
    assert _bodies(srv, "PUT", base + "/egress") == [
        {"egress": ["pypi.org", "10.0.0.0/8:443"]},
        {"egress": None},
    ]
    assert _bodies(srv, "POST", base + "/networks") == [{"id": "net_1"}]
    assert srv.count("DELETE", base + "/networks/net/1") == 1  # sent as net%2F1: one segment
    assert _bodies(srv, "POST", base + "/disks") == [
        {"disk_id": "disk_1", "mount_path": "/mnt/data", "sub_path": "x"}
    ]
    detach = [r for r in srv.requests if r.method == "DELETE" and "/disks/" in r.path]
    assert detach[0].query == {"mount_path": "/mnt/data"}
    assert srv.count() == 12  # the bad calls sent nothing


async def test_per_call_timeout_on_lifecycle_methods() -> None:
    api = FakeAPI()
    row = api.add()
    never = anyio.Event()

    async def hang(_request: web.Request) -> web.Response:
        await never.wait()
        return ok(None)

    app = api.app()
    app.router.add_post("/v1/sandboxes/{id}/hang", hang)
    sent = Attempts()
    async with serve(app) as srv, srv.session(timeout=600, hooks=sent.hooks) as session:
        sb = await session.sandboxes.get(row["id"], timeout=5)
        with pytest.raises(APITimeoutError):
            await session.request("POST", sb._path("/hang"), json={}, timeout=0.05)
        assert sent.count == 2  # the get, then one attempt of the hanging POST
        await sb.pause(timeout=5, wait=False)
        with pytest.raises(ValueError, match="timeout"):
            await sb.refresh(timeout=0)
        with pytest.raises(ValueError, match="timeout"):
            await sb.destroy(timeout=-1)
    assert srv.count("POST", f"/v1/sandboxes/{row['id']}/hang") <= 1
    assert srv.count("DELETE") == 0
