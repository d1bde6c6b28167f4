"""No untyped escapes from bad numbers or unencodable strings, on every public method.

A ``timeout=`` (or another bound in seconds) of NaN, 0, a negative, a bool or a str fails with
ValueError/TypeError naming the argument before anything is sent; ``inf`` means "no bound" and is
accepted (never an OverflowError from aiohttp or asyncio). Env values with NUL bytes and strings
that UTF-8 cannot carry (lone surrogates) fail with ValueError naming the argument, unsent.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from _servers import Served, fail, ok, serve
from aiohttp import web

from createos_sandbox_async import (
    APIError,
    APITimeoutError,
    AsyncSession,
    CreateosError,
    CreateSandboxRequest,
    RetryPolicy,
    SandboxPool,
    Timeouts,
)

pytestmark = pytest.mark.anyio

SID = "sb_01BADNUMBERSBADNUMBERSBADN"
LOG = b'{"line":"done","final":true,"status":"ready"}\n'


async def _anything(request: web.Request) -> web.StreamResponse:
    """The sandbox exists and is running; other routes answer plausibly or 404."""
    path = request.path
    if path == f"/v1/sandboxes/{SID}":
        return ok({"id": SID, "status": "running"})
    if path.endswith("/files") and request.method == "GET":
        return web.Response(body=b"data", content_type="application/octet-stream")
    if path.endswith("/exec") and request.query.get("stream") == "true":
        return web.Response(body=b'{"exit_code":0}\n', content_type="application/x-ndjson")
    if path.endswith("/logs"):
        return web.Response(body=LOG, content_type="application/x-ndjson")
    return fail(404, {"message": "nothing here"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Served, AsyncSession, Any]]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _anything)
    async with serve(app) as srv, srv.session() as session:
        sb = await session.sandboxes.get(SID)
        yield srv, session, sb


async def _drive(result: Any) -> None:
    """Run whatever a method returned: await it, or enter and read one item of a stream."""
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aenter__"):
        async with result as it:
            if hasattr(it, "__anext__"):
                async for _ in it:
                    break
    elif hasattr(result, "__anext__"):
        async for _ in result:
            break


Call = Callable[[AsyncSession, Any, Any], Any]

#: Every public method with a bound in seconds: (argument name, call with that bound).
CALLS: dict[str, tuple[str, Call]] = {
    "session.whoami": ("timeout", lambda s, sb, t: s.whoami(timeout=t)),
    "session.shapes": ("timeout", lambda s, sb, t: s.shapes(timeout=t)),
    "session.rootfs": ("timeout", lambda s, sb, t: s.rootfs(timeout=t)),
    "session.hosts": ("timeout", lambda s, sb, t: s.hosts(timeout=t)),
    "session.health": ("timeout", lambda s, sb, t: s.health(timeout=t)),
    "session.ready": ("timeout", lambda s, sb, t: s.ready(timeout=t)),
    "session.request": ("timeout", lambda s, sb, t: s.request("GET", "/v1/x", timeout=t)),
    "session.stream": ("timeout", lambda s, sb, t: s.stream("GET", "/v1/x", timeout=t)),
    "sandboxes.create": (
        "timeout",
        lambda s, sb, t: s.sandboxes.create(shape="s-1vcpu-256mb", timeout=t),
    ),
    "sandboxes.get": ("timeout", lambda s, sb, t: s.sandboxes.get(SID, timeout=t)),
    "sandboxes.by_ip": ("timeout", lambda s, sb, t: s.sandboxes.by_ip("10.0.0.1", timeout=t)),
    "sandboxes.list": ("timeout", lambda s, sb, t: s.sandboxes.list(timeout=t)),
    "sb.refresh": ("timeout", lambda s, sb, t: sb.refresh(timeout=t)),
    "sb.pause": ("timeout", lambda s, sb, t: sb.pause(timeout=t)),
    "sb.pause.wait_timeout": (
        "wait_timeout",
        lambda s, sb, t: sb.pause(wait=True, wait_timeout=t),
    ),
    "sb.resume": ("timeout", lambda s, sb, t: sb.resume(timeout=t)),
    "sb.resume.wait_timeout": ("wait_timeout", lambda s, sb, t: sb.resume(wait_timeout=t)),
    "sb.fork": ("timeout", lambda s, sb, t: sb.fork(timeout=t)),
    "sb.fork.wait_timeout": ("wait_timeout", lambda s, sb, t: sb.fork(wait_timeout=t)),
    "sb.destroy": ("timeout", lambda s, sb, t: sb.destroy(timeout=t)),
    "sb.destroy.wait_timeout": ("wait_timeout", lambda s, sb, t: sb.destroy(wait_timeout=t)),
    "sb.resize": ("timeout", lambda s, sb, t: sb.resize(1024, timeout=t)),
    "sb.update": ("timeout", lambda s, sb, t: sb.update(ingress_enabled=True, timeout=t)),
    "sb.wait_until": ("timeout", lambda s, sb, t: sb.wait_until("running", timeout=t)),
    "sb.wait_until.interval": (
        "interval",
        lambda s, sb, t: sb.wait_until("running", interval=t),
    ),
    "sb.exec": ("timeout", lambda s, sb, t: sb.exec("true", timeout=t)),
    "sb.sh": ("timeout", lambda s, sb, t: sb.sh("true", timeout=t, check=True)),
    "sb.exec_stream": ("timeout", lambda s, sb, t: sb.exec_stream("true", timeout=t)),
    "sb.exec_stream.idle": ("idle_timeout", lambda s, sb, t: sb.exec_stream("x", idle_timeout=t)),
    "sb.get_egress": ("timeout", lambda s, sb, t: sb.get_egress(timeout=t)),
    "sb.set_egress": ("timeout", lambda s, sb, t: sb.set_egress(None, timeout=t)),
    "sb.bandwidth": ("timeout", lambda s, sb, t: sb.bandwidth(timeout=t)),
    "sb.recharge_bandwidth": ("timeout", lambda s, sb, t: sb.recharge_bandwidth(1, timeout=t)),
    "sb.add_ssh_pubkeys": (
        "timeout",
        lambda s, sb, t: sb.add_ssh_pubkeys(["ssh-ed25519 AAAA x"], timeout=t),
    ),
    "sb.attach_network": ("timeout", lambda s, sb, t: sb.attach_network("net_1", timeout=t)),
    "sb.detach_network": ("timeout", lambda s, sb, t: sb.detach_network("net_1", timeout=t)),
    "sb.list_disks": ("timeout", lambda s, sb, t: sb.list_disks(timeout=t)),
    "sb.attach_disk": ("timeout", lambda s, sb, t: sb.attach_disk("disk_1", "/mnt", timeout=t)),
    "sb.detach_disk": ("timeout", lambda s, sb, t: sb.detach_disk("disk_1", "/mnt", timeout=t)),
    "files.upload": ("timeout", lambda s, sb, t: sb.files.upload("/f", b"x", timeout=t)),
    "files.download": ("timeout", lambda s, sb, t: sb.files.download("/f", timeout=t)),
    "files.download_iter": ("timeout", lambda s, sb, t: sb.files.download_iter("/f", timeout=t)),
    "processes.connect": (
        "idle_timeout",
        lambda s, sb, t: sb.processes.connect("proc_1", idle_timeout=t),
    ),
    "computer.screenshot": ("timeout", lambda s, sb, t: sb.computer.screenshot(timeout=t)),
    "sandboxes.create_from": (
        "timeout",
        lambda s, sb, t: s.sandboxes.create_from(CreateSandboxRequest(shape="s"), timeout=t),
    ),
    "sb.access_token.create": ("timeout", lambda s, sb, t: sb.access_token.create(timeout=t)),
    "sb.access_token.get": ("timeout", lambda s, sb, t: sb.access_token.get(timeout=t)),
    "sb.access_token.rotate": ("timeout", lambda s, sb, t: sb.access_token.rotate(timeout=t)),
    "sb.access_token.revoke": ("timeout", lambda s, sb, t: sb.access_token.revoke(timeout=t)),
    "processes.create": ("timeout", lambda s, sb, t: sb.processes.create("true", timeout=t)),
    "processes.list": ("timeout", lambda s, sb, t: sb.processes.list(timeout=t)),
    "processes.get": ("timeout", lambda s, sb, t: sb.processes.get("proc_1", timeout=t)),
    "processes.kill": ("timeout", lambda s, sb, t: sb.processes.kill("proc_1", timeout=t)),
    "processes.input": ("timeout", lambda s, sb, t: sb.processes.input("proc_1", "x", timeout=t)),
    "processes.close_stdin": (
        "timeout",
        lambda s, sb, t: sb.processes.close_stdin("proc_1", timeout=t),
    ),
    "processes.resize": (
        "timeout",
        lambda s, sb, t: sb.processes.resize("proc_1", 2, 2, timeout=t),
    ),
    "processes.signal": (
        "timeout",
        lambda s, sb, t: sb.processes.signal("proc_1", "TERM", timeout=t),
    ),
    "processes.wait": ("timeout", lambda s, sb, t: sb.processes.wait("proc_1", timeout=t)),
    "computer.screen": ("timeout", lambda s, sb, t: sb.computer.screen(timeout=t)),
    "computer.cursor": ("timeout", lambda s, sb, t: sb.computer.cursor(timeout=t)),
    "computer.clipboard": ("timeout", lambda s, sb, t: sb.computer.clipboard(timeout=t)),
    "computer.set_clipboard": (
        "timeout",
        lambda s, sb, t: sb.computer.set_clipboard("x", timeout=t),
    ),
    "computer.open": ("timeout", lambda s, sb, t: sb.computer.open("https://x.test", timeout=t)),
    "computer.launch": ("timeout", lambda s, sb, t: sb.computer.launch("xterm", timeout=t)),
    "computer.mouse.move": ("timeout", lambda s, sb, t: sb.computer.mouse.move(1, 1, timeout=t)),
    "computer.mouse.click": ("timeout", lambda s, sb, t: sb.computer.mouse.click(timeout=t)),
    "computer.mouse.scroll": (
        "timeout",
        lambda s, sb, t: sb.computer.mouse.scroll("down", timeout=t),
    ),
    "computer.mouse.drag": (
        "timeout",
        lambda s, sb, t: sb.computer.mouse.drag((0, 0), (1, 1), timeout=t),
    ),
    "computer.mouse.down": ("timeout", lambda s, sb, t: sb.computer.mouse.down(timeout=t)),
    "computer.mouse.up": ("timeout", lambda s, sb, t: sb.computer.mouse.up(timeout=t)),
    "computer.keyboard.type": (
        "timeout",
        lambda s, sb, t: sb.computer.keyboard.type("x", timeout=t),
    ),
    "computer.keyboard.press": (
        "timeout",
        lambda s, sb, t: sb.computer.keyboard.press("a", timeout=t),
    ),
    "computer.keyboard.down": (
        "timeout",
        lambda s, sb, t: sb.computer.keyboard.down("a", timeout=t),
    ),
    "computer.keyboard.up": ("timeout", lambda s, sb, t: sb.computer.keyboard.up("a", timeout=t)),
    "computer.windows.list": ("timeout", lambda s, sb, t: sb.computer.windows.list(timeout=t)),
    "computer.windows.current": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.current(timeout=t),
    ),
    "computer.windows.get": ("timeout", lambda s, sb, t: sb.computer.windows.get("w", timeout=t)),
    "computer.windows.geometry": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.geometry("w", timeout=t),
    ),
    "computer.windows.focus": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.focus("w", timeout=t),
    ),
    "computer.windows.move": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.move("w", 1, 1, timeout=t),
    ),
    "computer.windows.resize": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.resize("w", 1, 1, timeout=t),
    ),
    "computer.windows.maximize": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.maximize("w", timeout=t),
    ),
    "computer.windows.minimize": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.minimize("w", timeout=t),
    ),
    "computer.windows.restore": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.restore("w", timeout=t),
    ),
    "computer.windows.close": (
        "timeout",
        lambda s, sb, t: sb.computer.windows.close("w", timeout=t),
    ),
    "computer.screens.list": ("timeout", lambda s, sb, t: sb.computer.screens.list(timeout=t)),
    "computer.screens.create": ("timeout", lambda s, sb, t: sb.computer.screens.create(timeout=t)),
    "computer.screens.get": (
        "timeout",
        lambda s, sb, t: sb.computer.screens.get("screen-1", timeout=t),
    ),
    "computer.screens.resize": (
        "timeout",
        lambda s, sb, t: sb.computer.screens.resize("screen-1", width=9, timeout=t),
    ),
    "computer.screens.delete": (
        "timeout",
        lambda s, sb, t: sb.computer.screens.delete("screen-1", timeout=t),
    ),
    "computer.screens.connect": (
        "timeout",
        lambda s, sb, t: sb.computer.screens.connect("screen-1", timeout=t),
    ),
    "networks.create": ("timeout", lambda s, sb, t: s.networks.create("n", timeout=t)),
    "networks.list": ("timeout", lambda s, sb, t: s.networks.list(timeout=t)),
    "networks.get": ("timeout", lambda s, sb, t: s.networks.get("net_1", timeout=t)),
    "networks.delete": ("timeout", lambda s, sb, t: s.networks.delete("net_1", timeout=t)),
    "disks.create": (
        "timeout",
        lambda s, sb, t: s.disks.create(
            "d", bucket="b", endpoint="https://s3.test", access_key="a", secret_key="k", timeout=t
        ),
    ),
    "disks.list": ("timeout", lambda s, sb, t: s.disks.list(timeout=t)),
    "disks.get": ("timeout", lambda s, sb, t: s.disks.get("disk_1", timeout=t)),
    "disks.rotate_credentials": (
        "timeout",
        lambda s, sb, t: s.disks.rotate_credentials(
            "disk_1", access_key="a", secret_key="k", timeout=t
        ),
    ),
    "disks.delete": ("timeout", lambda s, sb, t: s.disks.delete("disk_1", timeout=t)),
    "templates.create": (
        "timeout",
        lambda s, sb, t: s.templates.create("t", "FROM devbox:1\n", timeout=t),
    ),
    "templates.list": ("timeout", lambda s, sb, t: s.templates.list(timeout=t)),
    "templates.get": ("timeout", lambda s, sb, t: s.templates.get("tpl_1", timeout=t)),
    "templates.delete": ("timeout", lambda s, sb, t: s.templates.delete("tpl_1", timeout=t)),
    "templates.wait": ("timeout", lambda s, sb, t: s.templates.wait("tpl_1", timeout=t)),
    "templates.logs": ("timeout", lambda s, sb, t: s.templates.logs("tpl_1", timeout=t)),
    "templates.follow_logs": (
        "timeout",
        lambda s, sb, t: s.templates.follow_logs("tpl_1", timeout=t),
    ),
    "templates.follow_logs.idle": (
        "idle_timeout",
        lambda s, sb, t: s.templates.follow_logs("tpl_1", idle_timeout=t),
    ),
}

BAD: list[tuple[object, type[Exception]]] = [
    (float("nan"), ValueError),
    (0, ValueError),
    (-1, ValueError),
    (float("-inf"), ValueError),
    (True, TypeError),
    ("5", TypeError),
]


@pytest.mark.parametrize(("value", "kind"), BAD, ids=[repr(v) for v, _ in BAD])
@pytest.mark.parametrize("case", CALLS.values(), ids=CALLS.keys())
async def test_bad_seconds_fail_by_name_before_anything_is_sent(
    served: tuple[Served, AsyncSession, Any],
    case: tuple[str, Call],
    value: object,
    kind: type[Exception],
) -> None:
    srv, session, sb = served
    name, call = case
    before = srv.count()
    with pytest.raises(kind, match=name):
        await _drive(call(session, sb, value))
    assert srv.count() == before


@pytest.mark.parametrize("case", CALLS.values(), ids=CALLS.keys())
async def test_infinite_seconds_mean_no_bound(
    served: tuple[Served, AsyncSession, Any], case: tuple[str, Call]
) -> None:
    """inf is accepted everywhere: the call runs (the server's typed answer is fine)."""
    _, session, sb = served
    _, call = case
    try:
        await _drive(call(session, sb, float("inf")))
    except (APIError, CreateosError):
        pass  # a typed answer from the server: the number itself was fine


BAD_CONFIG: list[tuple[Callable[[Any], object], str]] = [
    (lambda v: Timeouts(connect=v), "connect"),
    (lambda v: Timeouts(request=v), "request"),
    (lambda v: Timeouts(stream_idle=v), "stream_idle"),
    (lambda v: Timeouts(pool=v), "pool"),
    (lambda v: Timeouts(total=v), "total"),
    (lambda v: AsyncSession("k", base_url="http://127.0.0.1:1", timeout=v), "timeout"),
    (lambda v: RetryPolicy(base=v), "base"),
    (lambda v: RetryPolicy(cap=v), "cap"),
    (lambda v: RetryPolicy(max_retry_after=v), "max_retry_after"),
]


@pytest.mark.parametrize(("value", "kind"), BAD, ids=[repr(v) for v, _ in BAD])
@pytest.mark.parametrize(("build", "name"), BAD_CONFIG, ids=[n for _, n in BAD_CONFIG])
def test_bad_seconds_in_configuration(
    build: Callable[[Any], object], name: str, value: object, kind: type[Exception]
) -> None:
    if name in ("base", "cap", "max_retry_after") and value == 0:
        build(value)  # no wait at all is a fine backoff
        return
    with pytest.raises(kind, match=name):
        build(value)


def test_infinite_session_bounds_mean_no_bound() -> None:
    assert Timeouts(connect=float("inf"), request=float("inf")) == Timeouts(
        connect=None, request=None
    )
    with pytest.raises(ValueError, match="base"):
        RetryPolicy(base=float("inf"))  # an infinite backoff would sleep forever


async def test_pool_bounds(served: tuple[Served, AsyncSession, Any]) -> None:
    _, session, _ = served
    for name in ("create_timeout", "cleanup_timeout", "backoff", "backoff_cap"):
        for value, kind in [*BAD, (float("inf"), ValueError)]:
            with pytest.raises(kind, match=name):
                SandboxPool(session, shape="s-1vcpu-256mb", **{name: value})


# ---------------------------------------------------------------- strings

SURROGATE = "a\ud800b"

STRING_CASES: dict[str, tuple[str, Call]] = {
    "exec.cmd": ("cmd", lambda s, sb, v: sb.exec(v)),
    "exec.args": (r"args\[1\]", lambda s, sb, v: sb.exec("echo", ["ok", v])),
    "exec.env": (r"env\['K'\]", lambda s, sb, v: sb.exec("true", env={"K": v})),
    "exec.stdin": ("stdin", lambda s, sb, v: sb.exec("cat", stdin=v)),
    "sh.script": ("script", lambda s, sb, v: sb.sh(v)),
    "exec_stream.env": (r"env\['K'\]", lambda s, sb, v: sb.exec_stream("true", env={"K": v})),
    "create.envs": (
        r"envs\['K'\]",
        lambda s, sb, v: s.sandboxes.create(shape="s-1vcpu-256mb", envs={"K": v}),
    ),
    "create.name": ("name", lambda s, sb, v: s.sandboxes.create(shape="s-1vcpu-256mb", name=v)),
    "fork.envs": (r"envs\['K'\]", lambda s, sb, v: sb.fork(envs={"K": v})),
    "processes.create.env": (
        r"env\['K'\]",
        lambda s, sb, v: sb.processes.create("true", env={"K": v}),
    ),
    "files.upload.path": ("path", lambda s, sb, v: sb.files.upload("/" + v, b"x")),
    "files.download.path": ("path", lambda s, sb, v: sb.files.download("/" + v)),
}


@pytest.mark.parametrize("case", STRING_CASES.values(), ids=STRING_CASES.keys())
@pytest.mark.parametrize("value", [SURROGATE, "nul\x00byte"], ids=["surrogate", "nul"])
async def test_unencodable_or_nul_strings_fail_by_name_before_anything_is_sent(
    served: tuple[Served, AsyncSession, Any], case: tuple[str, Call], value: str
) -> None:
    srv, session, sb = served
    name, call = case
    if "\x00" in value and name in ("stdin", "script", "name"):
        return  # NUL is legal there (stdin is data; a script or name with NUL is the server's)
    before = srv.count()
    with pytest.raises(ValueError, match=name) as info:
        await _drive(call(session, sb, value))
    assert srv.count() == before
    assert value not in str(info.value)  # values (maybe secrets) never echoed


async def test_a_wait_bounded_by_timeout_ends_with_api_timeout_error(
    served: tuple[Served, AsyncSession, Any],
) -> None:
    """wait_ready's 404s mean "not there yet": only ``timeout=`` ends it, as one deadline."""
    _, _, sb = served
    with anyio.fail_after(8):
        with pytest.raises(APITimeoutError, match="desktop"):
            await sb.computer.wait_ready(poll_interval=0.05, timeout=0.5)
