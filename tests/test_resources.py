"""Templates, networks, disks and access tokens against purpose-built aiohttp.web servers."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import anyio
import attrs
import pytest
from _servers import always, ok, page, serve
from aiohttp import web

from createos_sandbox_async import (
    AuthError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    StreamInterruptedError,
    StreamStalledError,
    ValidationError,
)
from createos_sandbox_async._convert import unstructure
from createos_sandbox_async.models import (
    AccessTokenCreated,
    SandboxView,
    SecretStr,
    Template,
    TemplateLogEvent,
)
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

SID = "sb_01TOKENTOKENTOKENTOKENTOKE"
TOKEN = "skp_sb_FIRSTtokenVALUEnever_printed_0001"
TOKEN2 = "skp_sb_SECONDtokenVALUEnever_printed_002"
SECRET_KEY = "s3-secret-key-never-printed-9f8e"


def template(tid: str, status: str = "pending", **extra: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "name": f"name-{tid}",
        "base": "devbox:1",
        "status": status,
        "ext4_size_bytes": 0,
        "created_at": "2026-03-01T10:00:00Z",
        **extra,
    }


def ndjson(*frames: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(f).encode() + b"\n" for f in frames)


# -- templates ----------------------------------------------------------------------------------


async def test_template_crud_and_lazy_pagination() -> None:
    app = web.Application()
    all_items = [template(f"tpl_{i}") for i in range(7)]

    async def listing(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", "0"))
        # the server clamps the page to 3 items whatever the client asked
        return ok(page(all_items[offset : offset + 3], total=7, offset=offset, limit=3))

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        return ok(template("tpl_new", name=body["name"]))

    async def get(request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        extra = {"dockerfile": "FROM x"} if request.query.get("include") == "dockerfile" else {}
        return ok(template(tid, "ready", built_at="2026-03-01T10:05:00.5Z", **extra))

    app.router.add_get("/v1/templates", listing)
    app.router.add_post("/v1/templates", create)
    app.router.add_get("/v1/templates/{tid}", get)
    app.router.add_delete("/v1/templates/{tid}", always(lambda: ok({"ok": True})))
    async with serve(app) as srv, srv.session() as session:
        created = await session.templates.create("web", "FROM devbox:1\nRUN true", base="devbox:1")
        assert created.id == "tpl_new" and created.status == "pending"
        pager = session.templates.list()
        first = await pager.__anext__()
        assert first.id == "tpl_0"
        assert srv.count("GET", "/v1/templates") == 1  # lazy: one page so far
        rest = [t.id async for t in pager]
        assert rest == [f"tpl_{i}" for i in range(1, 7)]
        assert srv.count("GET", "/v1/templates") == 3
        limited = [t.id async for t in session.templates.list(limit=2)]
        assert limited == ["tpl_0", "tpl_1"]
        got = await session.templates.get("tpl/odd id", include_dockerfile=True)
        assert got.dockerfile == "FROM x" and got.built_at is not None
        await session.templates.delete("tpl_new")
    bodies = srv.json_bodies("POST", "/v1/templates")
    assert bodies == [{"name": "web", "dockerfile": "FROM devbox:1\nRUN true", "base": "devbox:1"}]
    offsets = [
        r.query.get("offset")
        for r in srv.requests
        if (r.method, r.path) == ("GET", "/v1/templates")
    ][:3]
    assert offsets == [None, "3", "6"]  # advanced by items received, not by the size asked
    assert (
        srv.count("GET", "/v1/templates/tpl%2Fodd%20id")
        + srv.count("GET", "/v1/templates/tpl/odd id")
        == 1
    )
    assert srv.count("DELETE", "/v1/templates/tpl_new") == 1


async def test_template_logs_text_and_follow_until_final() -> None:
    app = web.Application()
    seen: list[dict[str, str]] = []

    async def logs(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.query))
        if request.query.get("follow") != "true":
            return web.Response(text="step 1\nstep 2\n", content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        body = ndjson(
            {"ts": "2026-03-01T10:00:00Z", "level": "info", "line": "FROM devbox:1", "attempt": 1},
            {"line": "RUN make", "attempt": 1, "progress": 0.5},
            {"final": True, "status": "ready"},
        )
        for i in range(0, len(body), 7):  # frames split across writes
            await resp.write(body[i : i + 7])
        await resp.write_eof()
        return resp

    app.router.add_get("/v1/templates/{tid}/logs", logs)
    async with serve(app) as srv, srv.session() as session:
        assert await session.templates.logs("tpl_1", attempt=2) == "step 1\nstep 2\n"
        async with session.templates.follow_logs("tpl_1") as log:
            events = [e async for e in log]
        assert log.status == "ready"
    assert [e.line for e in events] == ["FROM devbox:1", "RUN make", None]
    assert events[0].level == "info" and events[0].attempt == 1
    assert events[1].extra == {"progress": 0.5}
    assert events[-1].final and events[-1].status == "ready"
    assert seen == [{"attempt": "2"}, {"follow": "true"}]
    assert srv.count() == 2


async def test_follow_that_ends_early_confirms_with_get() -> None:
    app = web.Application()
    state = {"status": "ready"}

    async def logs(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        await resp.write(ndjson({"line": "building"}))
        await resp.write_eof()  # no final frame
        return resp

    async def get(request: web.Request) -> web.Response:
        return ok(template(request.match_info["tid"], state["status"]))

    app.router.add_get("/v1/templates/{tid}/logs", logs)
    app.router.add_get("/v1/templates/{tid}", get)
    async with serve(app) as srv, srv.session() as session:
        events = [e async for e in session.templates.follow_logs("tpl_1")]
        assert [e.line for e in events] == ["building", None]
        assert events[-1] == TemplateLogEvent(
            final=True, status="ready", extra={"synthesized": True}
        )
        state["status"] = "building"
        with pytest.raises(StreamInterruptedError, match="building"):
            async with session.templates.follow_logs("tpl_1") as log:
                async for _ in log:
                    pass
    assert srv.count("GET", "/v1/templates/tpl_1") == 2


async def test_follow_idle_timeout_and_bad_frames() -> None:
    app = web.Application()
    release = anyio.Event()

    async def logs(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        if request.match_info["tid"] == "bad":
            await resp.write(b"[1,2]\n")
        else:
            await resp.write(ndjson({"line": "one"}))
            await release.wait()
        await resp.write_eof()
        return resp

    app.router.add_get("/v1/templates/{tid}/logs", logs)
    async with serve(app) as srv, srv.session() as session:
        with pytest.raises(StreamStalledError):
            async for _ in session.templates.follow_logs("slow", idle_timeout=0.1):
                pass
        with pytest.raises(ProtocolError, match="not a JSON object"):
            async for _ in session.templates.follow_logs("bad"):
                pass
        release.set()
        with pytest.raises(ValueError, match="attempt"):
            session.templates.follow_logs("x", attempt=0)
        with pytest.raises(ValueError, match="dockerfile"):
            await session.templates.create("n", "  ")
    assert srv.count() == 2


# -- networks and disks -------------------------------------------------------------------------


async def test_networks() -> None:
    app = web.Application()
    net = {"id": "net_1", "name": "backend", "created_at": "2026-03-01T10:00:00Z"}
    members = [{"sandbox_id": "sb_1", "status": "running", "ip": "10.0.0.2", "name": "a"}]
    app.router.add_post("/v1/networks", always(lambda: ok(net)))
    app.router.add_get("/v1/networks", always(lambda: ok([{**net, "member_count": 1}])))
    app.router.add_get("/v1/networks/net_1", always(lambda: ok({**net, "members": members})))
    app.router.add_delete("/v1/networks/net_1", always(lambda: ok({"ok": True})))
    async with serve(app) as srv, srv.session() as session:
        created = await session.networks.create("backend")
        assert created.id == "net_1" and created.members is None
        listed = await session.networks.list().to_list()  # legacy bare array: one request
        assert [n.member_count for n in listed] == [1]
        got = await session.networks.get("net_1")
        assert got.members is not None and got.members[0].ip == "10.0.0.2"
        await session.networks.delete("net_1")
        with pytest.raises(ValueError, match="name"):
            await session.networks.create("")
    assert srv.json_bodies("POST", "/v1/networks") == [{"name": "backend"}]
    assert srv.count() == 4


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda s: s.networks.get(" "), "network_id"),
        (lambda s: s.networks.delete(None), "network_id"),
        (lambda s: s.disks.get(""), "disk"),
        (lambda s: s.templates.get(" "), "template_id"),
        (lambda s: s.templates.delete(3), "template_id"),
    ],
)
async def test_blank_or_non_str_ids_fail_before_any_request(call: Any, name: str) -> None:
    async with serve(web.Application()) as srv, srv.session() as session:
        with pytest.raises((TypeError, ValueError), match=name):
            await call(session)
    assert srv.count() == 0


async def test_disks_credentials_never_leak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    app = web.Application()
    disk = {
        "id": "disk_1",
        "name": "data",
        "kind": "s3",
        "config": {"bucket": "b", "endpoint": "https://s3.example", "use_path_style": True},
        "created_at": "2026-03-01T10:00:00Z",
        "credentials": {"access_key": "AKIA", "secret_key": SECRET_KEY},  # a buggy server echo
    }

    async def rotate(request: web.Request) -> web.Response:
        body = await request.json()
        if not body["credentials"]["secret_key"].startswith("s3-"):
            return web.json_response({"status": "fail", "data": {"credentials": "bad"}}, status=400)
        return ok(disk)

    app.router.add_post("/v1/disks", always(lambda: ok(disk)))
    app.router.add_get("/v1/disks", always(lambda: ok({"disks": [disk]})))  # legacy shape
    app.router.add_get("/v1/disks/data", always(lambda: ok(disk)))
    app.router.add_patch("/v1/disks/data", rotate)
    app.router.add_delete("/v1/disks/disk_1", always(lambda: ok({"deleted": True})))
    async with serve(app) as srv, srv.session() as session:
        made = await session.disks.create(
            "data",
            bucket="b",
            endpoint="https://s3.example",
            access_key="AKIA",
            secret_key=SECRET_KEY,
            use_path_style=True,
        )
        assert made.config.use_path_style is True
        assert [d.id async for d in session.disks.list()] == ["disk_1"]
        got = await session.disks.get("data")
        rotated = await session.disks.rotate_credentials(
            "data", access_key="AKIA2", secret_key=SECRET_KEY
        )
        assert await session.disks.delete("disk_1") is True
        with pytest.raises(ValidationError):
            await session.disks.rotate_credentials("data", access_key="A", secret_key="x-wrong")
        before = srv.count()
        for bad in ("Data", "-x", "a" * 64, "a_b"):
            with pytest.raises(ValueError, match="name must match"):
                await session.disks.create(
                    bad, bucket="b", endpoint="https://e", access_key="a", secret_key=SECRET_KEY
                )
        with pytest.raises(ValueError, match="secret_key") as info:
            await session.disks.rotate_credentials("data", access_key="a", secret_key="")
        assert srv.count() == before
    text = " ".join(repr(x) + str(unstructure(x)) for x in (made, got, rotated))
    text += str(info.value) + caplog.text
    assert SECRET_KEY not in text and "AKIA2" not in text
    assert srv.json_bodies("POST", "/v1/disks")[0]["credentials"]["secret_key"] == SECRET_KEY
    assert srv.json_bodies("POST", "/v1/disks")[0]["kind"] == "s3"


# -- access tokens ------------------------------------------------------------------------------


def _token_app(state: dict[str, Any]) -> web.Application:
    app = web.Application()
    base = f"/v1/sandboxes/{SID}/access-token"

    async def create(request: web.Request) -> web.Response:
        if state.get("enabled"):
            return web.json_response({"status": "fail", "data": {"token": "exists"}}, status=409)
        state["enabled"] = True
        return ok({"token": TOKEN, "enabled": True, "created_at": "2026-03-01T10:00:00Z"})

    async def rotate(request: web.Request) -> web.Response:
        if not state.get("enabled"):
            return web.json_response({"status": "fail", "data": {"token": "none"}}, status=404)
        return ok(
            {
                "token": TOKEN2,
                "enabled": True,
                "created_at": "2026-03-01T10:00:00Z",
                "rotated_at": "2026-03-01T11:00:00Z",
            }
        )

    async def get(request: web.Request) -> web.Response:
        if not state.get("enabled"):
            return ok({"enabled": False})
        return ok({"enabled": True, "token_hint": "skp_sb_FI...0001"})

    async def delete(request: web.Request) -> web.Response:
        state["enabled"] = False
        return ok({"enabled": False})

    app.router.add_post(base, create)
    app.router.add_post(base + "/rotate", rotate)
    app.router.add_get(base, get)
    app.router.add_delete(base, delete)
    return app


async def test_access_token_lifecycle_and_repr_hides_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    state: dict[str, Any] = {}
    async with serve(_token_app(state)) as srv, srv.session() as session:
        sb = Sandbox(session, SandboxView(id=SID))
        with pytest.raises(NotFoundError):
            await sb.access_token.rotate()
        created = await sb.access_token.create()
        with pytest.raises(ValidationError):
            await sb.access_token.create()
        info = await sb.access_token.get()
        rotated = await sb.access_token.rotate()
        revoked = await sb.access_token.revoke()
        again = await sb.access_token.revoke()  # idempotent
    assert created.token.get_secret_value() == TOKEN
    assert rotated.token.get_secret_value() == TOKEN2 and rotated.rotated_at is not None
    assert info.enabled and info.token_hint == "skp_sb_FI...0001"
    assert not revoked.enabled and not again.enabled
    shown = [
        repr(created),
        str(created),
        f"{created.token}",
        repr(rotated),
        str(attrs.asdict(created)),
        json.dumps(unstructure(created)),
        caplog.text,
    ]
    for text in shown:
        assert TOKEN not in text and TOKEN2 not in text
    assert "SecretStr('**********')" in repr(created)
    assert srv.count("POST", f"/v1/sandboxes/{SID}/access-token") == 2


def test_secret_str_behaves_like_a_value_but_never_prints() -> None:
    a, b = SecretStr(TOKEN), SecretStr(TOKEN)
    assert a == b and hash(a) == hash(b) and a != SecretStr(TOKEN2) and bool(a)
    assert not SecretStr("")
    assert pickle.loads(pickle.dumps(a)) == a
    assert TOKEN not in repr(a) + str(a) + f"{a!r} {a!s} {a}"
    created = AccessTokenCreated(token=a, enabled=True)
    assert TOKEN not in repr(created)
    assert Template(id="t", name="n", status="ready").base is None


# -- against the emulator -----------------------------------------------------------------------


async def test_templates_networks_on_the_emulator(emulator: Any) -> None:
    async with emulator.session() as session:
        tpl = await session.templates.create("tools", "FROM devbox:1\nRUN echo hi")
        with anyio.fail_after(60):
            async with session.templates.follow_logs(tpl.id) as log:
                events = [e async for e in log]
        assert events[-1].final and events[-1].status in ("ready", "failed")
        assert sum(1 for e in events if e.final) == 1
        assert (await session.templates.get(tpl.id)).status == log.status
        assert tpl.id in [t.id async for t in session.templates.list()]
        assert isinstance(await session.templates.logs(tpl.id), str)
        await session.templates.delete(tpl.id)
        with pytest.raises(NotFoundError):
            await session.templates.get(tpl.id)

        net = await session.networks.create("backend")
        assert [n.id async for n in session.networks.list()] == [net.id]
        assert (await session.networks.get(net.id)).name == "backend"
        await session.networks.delete(net.id)
        assert [n.id async for n in session.networks.list()] == []


async def test_access_token_drives_only_its_sandbox(emulator: Any) -> None:
    async with emulator.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb", rootfs="devbox:1")
        async with sb:
            created = await sb.access_token.create()
            token = created.token.get_secret_value()
            assert token not in repr(created)
            info = await sb.access_token.get()
            assert info.enabled and (info.token_hint or "") != token
            async with emulator.session(api_key=token) as delegated:
                own = await delegated.sandboxes.get(sb.id)
                assert (await own.exec("echo", ["ok"])).stdout == "ok\n"
                with pytest.raises((PermissionDeniedError, NotFoundError, AuthError)):
                    await delegated.templates.list().to_list()
            rotated = await sb.access_token.rotate()
            assert rotated.token != created.token
            assert not (await sb.access_token.revoke()).enabled
