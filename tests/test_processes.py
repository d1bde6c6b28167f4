"""Managed processes over real sockets: a scripted aiohttp.web server that drops connections.

The connect route replays ``seq > after`` from a fixed frame list, and each connection can be
told to send only some frames and then cut the TCP connection (mid chunked body), end the body
cleanly without the exit frame, or ignore ``after`` and replay too much. The client must deliver
every data frame exactly once, in order, then the exit event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _servers import run_app
from aiohttp import web

from createos_sandbox_async import (
    AsyncSession,
    NotFoundError,
    ProtocolError,
    RetryPolicy,
    StreamInterruptedError,
    StreamStalledError,
    Timeouts,
)
from createos_sandbox_async.models import ProcessView, SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

API_KEY = "sk_proc_test_key_456"
SID = "sb_01PROCPROCPROCPROCPROCPROC"
BASE = f"/v1/sandboxes/{SID}/processes"
PID = "proc_1"


def view(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "process_id": PID,
        "kind": "process",
        "pid": 42,
        "state": "running",
        "leader_exited": False,
        "tree_exited": False,
        "created_at": "2026-01-02T03:04:05.123456789Z",
        "output": {"oldest_seq": 1, "newest_seq": 0, "bytes": 0},
        "cmd": "bash",
        "args": ["-c", "x"],
    }
    data.update(over)
    return data


def ok(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def data_frame(seq: int, payload: bytes, stream: str = "stdout") -> dict[str, Any]:
    return {
        "type": "data",
        "seq": seq,
        "stream": stream,
        "data_base64": base64.b64encode(payload).decode(),
    }


class Script:
    """What each connect call does: (max data frames to send, how to end) per connection."""

    def __init__(self, frames: list[dict[str, Any]], plan: list[tuple[int | None, str]]) -> None:
        self.frames = frames  # data frames (seq 1..n) followed by the exit frame
        self.plan = (
            plan  # per connection: (data frames to send or None=all, how it ends: "cut", "eof",
            # "full", "stall" before the exit frame, "hold" the body open after it)
        )
        self.afters: list[int] = []
        self.replay_extra = 0  # resend this many already-seen frames on reconnects (dedup test)
        self.heartbeat_every = 0


class FakeProcesses:
    def __init__(self) -> None:
        self.script = Script([], [])
        self.bodies: list[tuple[str, str, dict[str, str], Any]] = []
        self.waits: list[dict[str, Any]] = []  # views answered by /wait in order
        self.stall_release = asyncio.Event()

    def record(self, request: web.Request, body: Any) -> None:
        self.bodies.append((request.method, request.path, dict(request.query), body))

    async def create(self, request: web.Request) -> web.Response:
        self.record(request, await request.json())
        return ok(view())

    async def listing(self, request: web.Request) -> web.Response:
        self.record(request, None)
        return ok({"processes": [view(), view(process_id="proc_2", kind="pty")]})

    async def get(self, request: web.Request) -> web.Response:
        self.record(request, None)
        if request.match_info["pid"] != PID:
            return web.json_response(
                {"status": "fail", "data": {"process": "not found"}}, status=404
            )
        return ok(view())

    async def delete(self, request: web.Request) -> web.Response:
        self.record(request, None)
        return ok(view(state="exited", leader_exited=True, tree_exited=True, signal="SIGTERM"))

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.record(request, body)
        if request.path.endswith("/input"):
            return ok({"input_seq": 7})
        return ok({"ok": True})

    async def wait(self, request: web.Request) -> web.Response:
        self.record(request, None)
        return ok(self.waits.pop(0) if len(self.waits) > 1 else self.waits[0])

    async def connect(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["pid"] != PID:
            return web.json_response(
                {"status": "fail", "data": {"process": "not found"}}, status=404
            )
        script = self.script
        after = int(request.query.get("after", "0"))
        n = len(script.afters)
        script.afters.append(after)
        limit, ending = script.plan[min(n, len(script.plan) - 1)]
        start = after - script.replay_extra if n else after
        data = [f for f in script.frames if f["type"] == "data" and f["seq"] > start]
        exit_frames = [f for f in script.frames if f["type"] != "data"]
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        sent = data if limit is None else data[:limit]
        for i, frame in enumerate(sent):
            if script.heartbeat_every and i % script.heartbeat_every == 0:
                await resp.write(b'{"type":"heartbeat"}\n')
            await resp.write(json.dumps(frame).encode() + b"\n")
        if ending == "cut":
            assert request.transport is not None
            request.transport.close()  # mid chunked body: the client sees a broken payload
            return resp
        if ending == "stall":
            await self.stall_release.wait()
        if ending in ("full", "hold") and len(sent) == len(data):
            for frame in exit_frames:
                await resp.write(json.dumps(frame).encode() + b"\n")
        if ending == "hold":
            await self.stall_release.wait()
        await resp.write_eof()
        return resp


@asynccontextmanager
async def proc_server(**session_kw: Any) -> AsyncIterator[tuple[FakeProcesses, Sandbox]]:
    fake = FakeProcesses()
    app = web.Application()
    app.router.add_post(BASE, fake.create)
    app.router.add_get(BASE, fake.listing)
    app.router.add_get(BASE + "/{pid}", fake.get)
    app.router.add_delete(BASE + "/{pid}", fake.delete)
    app.router.add_get(BASE + "/{pid}/connect", fake.connect)
    app.router.add_get(BASE + "/{pid}/wait", fake.wait)
    for action in ("input", "stdin/close", "resize", "signal"):
        app.router.add_post(BASE + "/{pid}/" + action, fake.control)
    session_kw.setdefault("retry", RetryPolicy(base=0.0, cap=0.0, jitter=False))
    async with run_app(app) as base_url:
        session = AsyncSession(api_key=API_KEY, base_url=base_url, **session_kw)
        try:
            async with session:
                yield fake, Sandbox(session, SandboxView(id=SID))
        finally:
            fake.stall_release.set()


def frames(n: int) -> list[dict[str, Any]]:
    out = [
        data_frame(
            i, f"line {i}\n".encode() + bytes([i % 256]), "stderr" if i % 3 == 0 else "stdout"
        )
        for i in range(1, n + 1)
    ]
    out.append({"type": "exit", "exit_code": 3})
    return out


async def drain(output: Any) -> list[Any]:
    async with output:
        return [event async for event in output]


def check_exactly_once(events: list[Any], n: int) -> None:
    data = [e for e in events if e.kind == "data"]
    assert [e.seq for e in data] == list(range(1, n + 1))
    assert [e.data for e in data] == [
        f"line {i}\n".encode() + bytes([i % 256]) for i in range(1, n + 1)
    ]
    assert events[-1].kind == "exit" and events[-1].exit_code == 3
    assert sum(1 for e in events if e.kind == "exit") == 1


async def test_output_resumes_after_dropped_connections_without_gaps_or_duplicates() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(20), [(5, "cut"), (0, "cut"), (7, "eof"), (None, "full")])
        fake.script.heartbeat_every = 2
        out = sb.processes.connect(PID)
        events = await drain(out)
    check_exactly_once(events, 20)
    assert fake.script.afters == [0, 5, 5, 12]
    assert out.reconnects == 3 and out.last_seq == 20 and out.exit_code == 3


async def test_an_error_frame_is_an_event_and_the_exit_still_ends_the_stream() -> None:
    async with proc_server() as (fake, sb):
        script = [data_frame(1, b"partial\n")]
        script.append({"type": "error", "seq": 2, "error": "output buffer lost: disk full"})
        script.append({"type": "exit", "exit_code": 1})
        fake.script = Script(script, [(None, "full")])
        out = sb.processes.connect(PID)
        events = await drain(out)
    assert [e.kind for e in events] == ["data", "error", "exit"]
    assert events[1].error == "output buffer lost: disk full"
    assert out.exit_code == 1 and out.reconnects == 0


async def test_replayed_frames_after_reconnect_are_dropped() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(10), [(4, "cut"), (None, "full")])
        fake.script.replay_extra = 3  # server resends seq 2..4 after the reconnect
        events = await drain(sb.processes.connect(PID))
    check_exactly_once(events, 10)
    assert fake.script.afters == [0, 4]


async def test_connect_after_replays_only_newer_frames() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(6), [(None, "full")])
        events = await drain(
            sb.processes.connect(
                ProcessView(
                    process_id=PID,
                    kind="process",
                    pid=1,
                    state="running",
                    leader_exited=False,
                    tree_exited=False,
                ),
                after=4,
            )
        )
    assert [e.seq for e in events if e.kind == "data"] == [5, 6]
    assert fake.script.afters == [4]


async def test_cancel_while_draining_after_the_exit_frame_closes_the_connection() -> None:
    """After the exit frame the output drains the body briefly so the connection can be reused;
    a cancel in that window must still close the connection, not leave it checked out."""
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(3), [(None, "hold")])
        out = sb.processes.connect(PID)
        with anyio.move_on_after(0.2) as scope:
            await drain(out)
        assert scope.cancelled_caught
        connector: Any = sb._transport.connector
        assert len(connector._acquired) == 0


async def test_reconnects_are_bounded() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(3), [(0, "cut")])  # never sends anything
        out = sb.processes.connect(PID, max_reconnects=2)
        with pytest.raises(StreamInterruptedError):
            await drain(out)
    assert fake.script.afters == [0, 0, 0]  # first connection + 2 reconnects


async def test_progress_resets_the_reconnect_budget() -> None:
    async with proc_server() as (fake, sb):
        # every connection delivers one new frame and drops: 8 drops with max_reconnects=1
        fake.script = Script(frames(8), [(1, "cut")] * 8 + [(None, "full")])
        events = await drain(sb.processes.connect(PID, max_reconnects=1))
    check_exactly_once(events, 8)
    assert fake.script.afters == list(range(9))


async def test_stalled_output_reconnects_then_gives_up() -> None:
    async with proc_server(timeout=Timeouts(stream_idle=0.1)) as (fake, sb):
        fake.script = Script(frames(4), [(2, "stall"), (None, "full")])
        events = await drain(sb.processes.connect(PID))
        check_exactly_once(events, 4)
        assert fake.script.afters == [0, 2]
        fake.script = Script(frames(4), [(0, "stall")])
        with pytest.raises(StreamStalledError):
            await drain(sb.processes.connect(PID, max_reconnects=1))
        assert fake.script.afters == [0, 0]


async def test_breaking_out_closes_and_a_first_connect_error_is_raised() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(50), [(None, "full")])
        async with sb.processes.connect(PID) as out:
            async for event in out:
                assert event.kind == "data"
                break
        assert out.last_seq == 1
        with pytest.raises(NotFoundError):
            await drain(sb.processes.connect("nope/../x"))  # quoted into one segment -> 404
        assert fake.script.afters == [0]


async def test_bad_base64_is_a_protocol_error() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script([{"type": "data", "seq": 1, "data_base64": "!!!"}], [(None, "full")])
        with pytest.raises(ProtocolError, match="data_base64"):
            await drain(sb.processes.connect(PID))


async def test_collect_splits_streams() -> None:
    async with proc_server() as (fake, sb):
        fake.script = Script(frames(6), [(None, "full")])
        out, err, code = await sb.processes.connect(PID).collect()
    assert code == 3
    assert err == b"".join(f"line {i}\n".encode() + bytes([i]) for i in (3, 6))
    assert out == b"".join(f"line {i}\n".encode() + bytes([i]) for i in (1, 2, 4, 5))


async def test_create_and_control_bodies() -> None:
    async with proc_server() as (fake, sb):
        proc = await sb.processes.create("bash", ["-c", "cat"], env={"A": "1"}, cwd="/tmp")
        assert proc.process_id == PID and proc.args == ("-c", "x")
        assert proc.created_at is not None and proc.created_at.microsecond == 123456
        await sb.processes.create(pty=(30, 100))
        await sb.processes.create(pty=True)
        assert await sb.processes.input(proc, b"\x00\xffhi") == 7
        await sb.processes.input(PID, "é")
        await sb.processes.close_stdin(proc)
        await sb.processes.resize(proc, 40, 120)
        await sb.processes.signal(proc, "term")
        await sb.processes.signal(proc, signal.SIGWINCH)
        final = await sb.processes.kill(proc, grace_ms=250)
        assert final.tree_exited and final.signal == "SIGTERM"
        procs = await sb.processes.list()
        assert [p.kind for p in procs] == ["process", "pty"]
        got = [(m, p.removeprefix(BASE), q, b) for m, p, q, b in fake.bodies]
    assert got == [
        ("POST", "", {}, {"cmd": "bash", "args": ["-c", "cat"], "env": {"A": "1"}, "cwd": "/tmp"}),
        ("POST", "", {}, {"pty": {"rows": 30, "cols": 100}}),
        ("POST", "", {}, {"pty": {"rows": 24, "cols": 80}}),
        ("POST", f"/{PID}/input", {}, {"data_base64": base64.b64encode(b"\x00\xffhi").decode()}),
        ("POST", f"/{PID}/input", {}, {"data_base64": base64.b64encode("é".encode()).decode()}),
        ("POST", f"/{PID}/stdin/close", {}, None),
        ("POST", f"/{PID}/resize", {}, {"rows": 40, "cols": 120}),
        ("POST", f"/{PID}/signal", {}, {"signal": "SIGTERM"}),
        ("POST", f"/{PID}/signal", {}, {"signal": "SIGWINCH"}),
        ("DELETE", f"/{PID}", {"grace_ms": "250"}, None),
        ("GET", "", {}, None),
    ]


async def test_bad_arguments_fail_before_any_request() -> None:
    async with proc_server() as (fake, sb):
        bad = [
            lambda: sb.processes.signal(PID, "SIGSTOP"),
            lambda: sb.processes.signal(PID, 9),
            lambda: sb.processes.create(),
            lambda: sb.processes.create("ls", "-l"),
            lambda: sb.processes.create("ls", env={"A": 1}),
            lambda: sb.processes.create("ls", cwd="rel"),
            lambda: sb.processes.create("ls", cwd="/tmp/../etc"),
            lambda: sb.processes.create(pty=(0, 80)),
            lambda: sb.processes.resize(PID, 0, 1),
            lambda: sb.processes.kill(PID, grace_ms=-1),
            lambda: sb.processes.wait(PID, scope="all"),  # type: ignore[arg-type]
            lambda: sb.processes.wait(PID, timeout_ms=0),
            lambda: sb.processes.input(PID, 5),
            lambda: sb.processes.get(""),
        ]
        for call in bad:
            with pytest.raises((ValueError, TypeError)):
                await call()
        with pytest.raises(ValueError, match="after"):
            sb.processes.connect(PID, after=-1)
        with pytest.raises(ValueError, match="SIGSTOP"):
            await sb.processes.signal(PID, "SIGSTOP")
        assert fake.bodies == []


async def test_env_values_never_appear_in_errors() -> None:
    async with proc_server() as (_fake, sb):
        with pytest.raises(TypeError) as info:
            await sb.processes.create("ls", env={"TOKEN": b"s3cr3t-value"})  # type: ignore[dict-item]
    assert "s3cr3t" not in str(info.value) and "TOKEN" in str(info.value)


async def test_wait_long_polls_until_exit() -> None:
    async with proc_server() as (fake, sb):
        running = view()
        done = view(state="exited", leader_exited=True, tree_exited=False, exit_code=0)
        fake.waits = [running, running, done]
        result = await sb.processes.wait(PID)
        assert result.leader_exited and result.exit_code == 0
        waits = [q for m, p, q, _ in fake.bodies if p.endswith("/wait")]
        assert waits == [{"scope": "leader", "timeout_ms": "30000"}] * 3
        # scope=tree keeps waiting while only the leader exited
        fake.bodies.clear()
        tree = view(state="exited", leader_exited=True, tree_exited=True, exit_code=0)
        fake.waits = [done, tree]
        assert (await sb.processes.wait(PID, scope="tree")).tree_exited
        assert len(fake.bodies) == 2
        # a bounded wait returns the still-running view once its budget is spent
        fake.bodies.clear()
        fake.waits = [running]
        with anyio.fail_after(30):
            still = await sb.processes.wait(PID, timeout_ms=1)
        assert not still.leader_exited
        budgets = [q["timeout_ms"] for _, _, q, _ in fake.bodies]
        assert budgets and set(budgets) == {"1"}  # never asks for more than what is left


# -- against the emulator --------------------------------------------------------------


async def test_real_process_output_survives_a_dropped_connection(emulator: Any) -> None:
    server = emulator
    async with server.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb", rootfs="devbox:1")
        async with sb:
            script = "for i in $(seq 1 200); do echo line-$i; done; exit 4"
            proc = await sb.processes.create("bash", ["-c", script])
            server.faults.truncate(
                route="/v1/sandboxes/*/processes/*/connect", times=2, after_frames=30
            )
            out = sb.processes.connect(proc)
            events = await drain(out)
    text = b"".join(e.data for e in events if e.kind == "data").decode()
    assert text.splitlines() == [f"line-{i}" for i in range(1, 201)]
    seqs = [e.seq for e in events if e.kind == "data"]
    assert seqs == sorted(set(seqs))
    assert events[-1].kind == "exit" and events[-1].exit_code == 4
    assert out.reconnects == 2


async def test_real_process_stdin_wait_kill_and_pty(emulator: Any) -> None:
    server = emulator
    async with server.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb", rootfs="devbox:1")
        async with sb:
            cat = await sb.processes.create("cat")
            await sb.processes.input(cat, b"\x00\x01binary\xff\n")
            await sb.processes.input(cat, "text\n")
            await sb.processes.close_stdin(cat)
            with anyio.fail_after(30):
                done = await sb.processes.wait(cat)
            assert done.leader_exited and done.exit_code == 0
            out, err, code = await sb.processes.connect(cat).collect()
            assert (out, err, code) == (b"\x00\x01binary\xff\ntext\n", b"", 0)
            assert cat.process_id in [p.process_id for p in await sb.processes.list()]

            sleeper = await sb.processes.create("sleep", ["300"])
            killed = await sb.processes.kill(sleeper, grace_ms=100)
            assert killed.tree_exited

            tty = await sb.processes.create("bash", ["-c", "stty size; exit 5"], pty=(33, 101))
            out, _err, code = await sb.processes.connect(tty).collect()
            assert code == 5 and b"33 101" in out
