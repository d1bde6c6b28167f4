"""The desktop API against an aiohttp.web server that records every request."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from _servers import Served, ok, serve
from aiohttp import web

from createos_sandbox_async import NotFoundError, RetryPolicy
from createos_sandbox_async._convert import unstructure
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

SID = "sb_01DESKDESKDESKDESKDESKDESK"
C = f"/v1/sandboxes/{SID}/computer"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1000
VNC_TOKEN = "vnc-token-never-printed-7b1c"
SCREEN = {
    "screen_id": "screen-1",
    "display": ":1",
    "width": 1280,
    "height": 800,
    "vnc_port": 5901,
    "novnc_port": 6081,
}


def desktop_app(screen_ready: list[bool]) -> web.Application:
    app = web.Application()

    async def screenshot(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        for i in range(0, len(PNG), 10_000):
            await resp.write(PNG[i : i + 10_000])
        await resp.write_eof()
        return resp

    async def screen(request: web.Request) -> web.Response:
        ready = screen_ready.pop(0) if len(screen_ready) > 1 else screen_ready[0]
        if not ready:
            return web.json_response({"status": "error", "message": "starting"}, status=503)
        return ok({"width": 1024, "height": 768})

    async def ack(request: web.Request) -> web.Response:
        await request.read()
        return ok({"ok": True})

    routes: dict[tuple[str, str], Any] = {
        ("GET", "/screenshot"): screenshot,
        ("GET", "/screen"): screen,
        ("GET", "/cursor"): _const({"x": 0, "y": 7}),
        ("GET", "/clipboard"): _const({"text": "copied"}),
        ("GET", "/windows"): _const([{"id": "w1", "title": "Term"}, {"id": "w2"}]),
        ("GET", "/windows/current"): _const({"id": "w1", "title": "Term"}),
        ("GET", "/windows/w1"): _const({"id": "w1"}),
        ("GET", "/windows/w1/geometry"): _const(
            {"id": "w1", "x": 0, "y": 0, "width": 640, "height": 480, "screen": 0}
        ),
        ("GET", "/screens"): _const({"data": [SCREEN]}),  # the wrapped form is accepted too
        ("POST", "/screens"): _const(SCREEN),
        ("GET", "/screens/screen-1"): _const(SCREEN),
        ("POST", "/screens/screen-1/resize"): _const({**SCREEN, "width": 800}),
        ("GET", "/screens/screen-1/connect"): _const(
            {
                "screen_id": "screen-1",
                "port": 443,
                "path": "/vnc",
                "token": VNC_TOKEN,
                "expires_at": "2026-03-01T10:00:00Z",
                "url": f"https://vnc.example/?token={VNC_TOKEN}",
            }
        ),
    }
    for (method, suffix), handler in routes.items():
        app.router.add_route(method, C + suffix, handler)
    for suffix in (
        "/clipboard",
        "/open",
        "/launch",
        "/mouse/move",
        "/mouse/click",
        "/mouse/scroll",
        "/mouse/drag",
        "/mouse/down",
        "/mouse/up",
        "/keyboard/type",
        "/keyboard/press",
        "/keyboard/down",
        "/keyboard/up",
        "/windows/w1/focus",
        "/windows/w1/move",
        "/windows/w1/resize",
        "/windows/w1/maximize",
        "/windows/w1/minimize",
        "/windows/w1/restore",
    ):
        app.router.add_route("PUT" if suffix == "/clipboard" else "POST", C + suffix, ack)
    app.router.add_delete(C + "/windows/w1", ack)
    app.router.add_delete(C + "/screens/screen-1", ack)
    return app


def _const(data: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return ok(data)

    return handler


def calls(srv: Served) -> list[tuple[str, str, dict[str, str], Any]]:
    return [
        (r.method, r.path.removeprefix(C), r.query, json.loads(r.body) if r.body else None)
        for r in srv.requests
    ]


async def test_reads_and_screenshot() -> None:
    async with serve(desktop_app([True])) as srv, srv.session() as session:
        pc = Sandbox(session, SandboxView(id=SID)).computer
        assert await pc.screenshot() == PNG
        assert await pc.screenshot(x=0, y=0, width=10, height=5, screen_id="screen-2") == PNG
        assert await pc.screenshot(window_id="w1") == PNG
        size = await pc.screen()
        assert (size.width, size.height) == (1024, 768)
        assert (await pc.cursor()).y == 7
        assert await pc.clipboard() == "copied"
        wins = await pc.windows.list(application="xterm")
        assert [w.title for w in wins] == ["Term", None]
        assert (await pc.windows.current()).id == "w1"
        assert (await pc.windows.get("w1")).title is None
        assert (await pc.windows.geometry("w1")).width == 640
    got = calls(srv)
    assert got[:3] == [
        ("GET", "/screenshot", {}, None),
        (
            "GET",
            "/screenshot",
            {"screen_id": "screen-2", "x": "0", "y": "0", "width": "10", "height": "5"},
            None,
        ),
        ("GET", "/screenshot", {"window_id": "w1"}, None),
    ]
    assert ("GET", "/windows", {"application": "xterm"}, None) in got


async def test_actions_send_the_documented_bodies() -> None:
    async with serve(desktop_app([True])) as srv, srv.session() as session:
        pc = Sandbox(session, SandboxView(id=SID)).computer
        await pc.set_clipboard("hello", screen_id="screen-3")
        await pc.open("https://example.com")
        await pc.launch("firefox", uri="https://example.com")
        await pc.mouse.move(0, 0)
        await pc.mouse.click()
        await pc.mouse.click(0, 5, button="right", count=2)
        await pc.mouse.scroll("down", 3)
        await pc.mouse.drag((1, 2), (3, 4))
        await pc.mouse.down()
        await pc.mouse.up("middle")
        await pc.keyboard.type("hi", delay_ms=0)
        await pc.keyboard.press("ctrl", "c")
        await pc.keyboard.down("shift")
        await pc.keyboard.up("shift")
        await pc.windows.focus("w1")
        await pc.windows.move("w1", 0, 10)
        await pc.windows.resize("w1", 300, 200)
        await pc.windows.maximize("w1")
        await pc.windows.minimize("w1")
        await pc.windows.restore("w1")
        await pc.windows.close("w1")
    assert calls(srv) == [
        ("PUT", "/clipboard", {"screen_id": "screen-3"}, {"text": "hello"}),
        ("POST", "/open", {}, {"target": "https://example.com"}),
        ("POST", "/launch", {}, {"application": "firefox", "uri": "https://example.com"}),
        ("POST", "/mouse/move", {}, {"x": 0, "y": 0}),
        ("POST", "/mouse/click", {}, {}),
        ("POST", "/mouse/click", {}, {"button": "right", "x": 0, "y": 5, "count": 2}),
        ("POST", "/mouse/scroll", {}, {"direction": "down", "amount": 3}),
        ("POST", "/mouse/drag", {}, {"from": {"x": 1, "y": 2}, "to": {"x": 3, "y": 4}}),
        ("POST", "/mouse/down", {}, {}),
        ("POST", "/mouse/up", {}, {"button": "middle"}),
        ("POST", "/keyboard/type", {}, {"text": "hi", "delay_in_ms": 0}),
        ("POST", "/keyboard/press", {}, {"keys": ["ctrl", "c"]}),
        ("POST", "/keyboard/down", {}, {"keys": ["shift"]}),
        ("POST", "/keyboard/up", {}, {"keys": ["shift"]}),
        ("POST", "/windows/w1/focus", {}, None),
        ("POST", "/windows/w1/move", {}, {"x": 0, "y": 10}),
        ("POST", "/windows/w1/resize", {}, {"width": 300, "height": 200}),
        ("POST", "/windows/w1/maximize", {}, None),
        ("POST", "/windows/w1/minimize", {}, None),
        ("POST", "/windows/w1/restore", {}, None),
        ("DELETE", "/windows/w1", {}, None),
    ]


async def test_screens_and_secret_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    async with serve(desktop_app([True])) as srv, srv.session() as session:
        pc = Sandbox(session, SandboxView(id=SID)).computer
        assert [s.screen_id for s in await pc.screens.list()] == ["screen-1"]
        made = await pc.screens.create(width=1280, height=800)
        assert made.vnc_port == 5901
        assert (await pc.screens.get("screen-1")).display == ":1"
        assert (await pc.screens.resize("screen-1", width=800)).width == 800
        conn = await pc.screens.connect("screen-1")
        await pc.screens.delete("screen-1")
    assert conn.token.get_secret_value() == VNC_TOKEN
    assert conn.url is not None and VNC_TOKEN in conn.url.get_secret_value()
    for text in (repr(conn), str(conn), json.dumps(unstructure(conn)), caplog.text):
        assert VNC_TOKEN not in text
    assert ("POST", "/screens", {}, {"width": 1280, "height": 800}) in calls(srv)
    assert ("POST", "/screens/screen-1/resize", {}, {"width": 800}) in calls(srv)


async def test_bad_arguments_fail_before_any_request() -> None:
    async with serve(desktop_app([True])) as srv, srv.session() as session:
        pc = Sandbox(session, SandboxView(id=SID)).computer
        bad = [
            lambda: pc.screen(screen_id="screen-8"),
            lambda: pc.screenshot(x=-1),
            lambda: pc.screenshot(width=0),
            lambda: pc.mouse.click(5),
            lambda: pc.mouse.click(button="side"),  # type: ignore[arg-type]
            lambda: pc.mouse.scroll("left"),  # type: ignore[arg-type]
            lambda: pc.mouse.move(1, True),
            lambda: pc.keyboard.press(),
            lambda: pc.keyboard.type(5),  # type: ignore[arg-type]
            lambda: pc.windows.move("", 1, 1),
            lambda: pc.screens.get("0"),
            lambda: pc.open(""),
        ]
        for call in bad:
            with pytest.raises((ValueError, TypeError)):
                await call()
        assert srv.count() == 0


async def test_wait_ready_polls_through_503_and_errors_surface() -> None:
    no_retry = RetryPolicy(max_retries=0)
    async with serve(desktop_app([False, False, True])) as srv, srv.session(retry=no_retry) as s:
        pc = Sandbox(s, SandboxView(id=SID)).computer
        size = await pc.wait_ready(poll_interval=0.01)
        assert size.width == 1024
        assert srv.count("GET", C + "/screen") == 3  # two 503s, then the answer
        with pytest.raises(NotFoundError):
            await pc.windows.get("nope")
