"""Managed processes: seq-numbered replayable output, reconnect without gaps or duplicates,
input, signals, waits, PTYs, and processes that outlive their clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import pytest
from _emulator import Client, pids_with_argv

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


async def _connect(
    client: Client, sid: str, pid: str, after: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """Frames of one connect, non-heartbeat; stops after `limit` data frames (disconnecting)."""
    frames: list[dict[str, Any]] = []
    async with client.http.get(
        f"/v1/sandboxes/{sid}/processes/{pid}/connect",
        params={"after": str(after)},
        headers=client.headers(),
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        buf = b""
        async for chunk in resp.content.iter_any():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                frame = json.loads(line)
                if frame["type"] == "heartbeat":
                    continue
                frames.append(frame)
                data = [f for f in frames if f["type"] == "data"]
                if frame["type"] == "exit" or (limit is not None and len(data) >= limit):
                    return frames
    return frames


async def _wait_until(predicate: Callable[[], bool], step: float = 0.01) -> bool:
    """Poll (bounded: 500 steps) instead of sleeping for a fixed time."""
    for _ in range(500):
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def _arrived(server: LocalServer, route: str, count: int) -> bool:
    return server.request_count("POST", route) >= count


def _text(frames: list[dict[str, Any]]) -> str:
    return "".join(
        base64.b64decode(f["data_base64"]).decode() for f in frames if f["type"] == "data"
    )


async def test_output_replays_and_resumes_without_gaps(client: Client) -> None:
    sid = (await client.create())["id"]
    proc = await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/processes",
        json={"cmd": "bash", "args": ["-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.02; done"]},
    )
    pid = proc["process_id"]
    assert proc["kind"] == "process" and proc["pid"] > 0
    first = await _connect(client, sid, pid, limit=2)  # disconnect after two frames
    seqs = [f["seq"] for f in first]
    assert seqs == [1, 2]
    rest = await _connect(client, sid, pid, after=seqs[-1])
    assert rest[-1] == {"type": "exit", "exit_code": 0}
    assert [f["seq"] for f in rest[:-1]] == list(range(3, 3 + len(rest) - 1))
    assert _text(first) + _text(rest) == "1\n2\n3\n4\n5\n"
    # connecting after exit replays everything retained, then the exit frame
    again = await _connect(client, sid, pid, after=0)
    assert _text(again) == "1\n2\n3\n4\n5\n" and again[-1]["type"] == "exit"
    view = await client.ok("GET", f"/v1/sandboxes/{sid}/processes/{pid}")
    assert view["state"] == "exited" and view["leader_exited"] and view["exit_code"] == 0
    assert view["output"]["newest_seq"] == again[-2]["seq"]
    listed = await client.ok("GET", f"/v1/sandboxes/{sid}/processes")
    assert [p["process_id"] for p in listed["processes"]] == [pid]


async def test_input_stdin_close_and_disconnect_does_not_kill(client: Client) -> None:
    sid = (await client.create())["id"]
    proc = await client.ok("POST", f"/v1/sandboxes/{sid}/processes", json={"cmd": "cat"})
    pid = proc["process_id"]
    sent = await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/processes/{pid}/input",
        json={"data_base64": base64.b64encode(b"ping\n").decode()},
    )
    assert sent == {"input_seq": 1}
    frames = await _connect(client, sid, pid, limit=1)  # then drop the connection
    assert _text(frames) == "ping\n"
    view = await client.ok("GET", f"/v1/sandboxes/{sid}/processes/{pid}")
    assert view["state"] == "running"  # the disconnect did not kill it
    await client.ok("POST", f"/v1/sandboxes/{sid}/processes/{pid}/stdin/close")
    done = await client.ok(
        "GET", f"/v1/sandboxes/{sid}/processes/{pid}/wait", params={"timeout_ms": "10000"}
    )
    assert done["leader_exited"] and done["exit_code"] == 0
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/processes/{pid}/input", json={"data_base64": "eA=="}
    )
    assert status == 409
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/processes/{pid}/input", json={"data_base64": "not base64!"}
    )
    assert status == 400


async def test_leader_exit_is_seen_while_an_orphan_holds_the_pipes(client: Client) -> None:
    sid = (await client.create())["id"]
    proc = await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/processes",
        json={"cmd": "bash", "args": ["-c", "sleep 30 & exit 0"]},
    )
    assert proc["pid"] > 0
    pid = proc["process_id"]
    leader = await client.ok(
        "GET",
        f"/v1/sandboxes/{sid}/processes/{pid}/wait",
        params={"scope": "leader", "timeout_ms": "10000"},
    )
    assert leader["leader_exited"] is True and leader["exit_code"] == 0
    assert leader["tree_exited"] is False  # the orphaned sleep still runs
    await client.ok(
        "POST", f"/v1/sandboxes/{sid}/processes/{pid}/signal", json={"signal": "SIGKILL"}
    )
    tree = await client.ok(
        "GET",
        f"/v1/sandboxes/{sid}/processes/{pid}/wait",
        params={"scope": "tree", "timeout_ms": "10000"},
    )
    assert tree["tree_exited"] is True


async def test_leader_exit_is_seen_even_when_reaped_before_it_is_watched(client: Client) -> None:
    # Leaders that exit at once are often reaped by asyncio's child watcher before the emulator
    # starts watching them; their orphans still hold the pipes. Each must still report its exit.
    sid = (await client.create())["id"]

    async def leader_exited() -> bool:
        proc = await client.ok(
            "POST",
            f"/v1/sandboxes/{sid}/processes",
            json={"cmd": "bash", "args": ["-c", "sleep 30 & exit 0"]},
        )
        view = await client.ok(
            "GET",
            f"/v1/sandboxes/{sid}/processes/{proc['process_id']}/wait",
            params={"timeout_ms": "10000"},
        )
        return bool(view["leader_exited"])

    for _ in range(3):
        seen = await asyncio.gather(*(leader_exited() for _ in range(8)))
        assert seen == [True] * 8


@pytest.mark.parametrize("pty", [False, True])
async def test_a_create_whose_client_left_midway_leaves_nothing_behind(
    server: LocalServer, client: Client, pty: bool
) -> None:
    sid = (await client.create())["id"]
    marker = f"{uuid.uuid4().int % 10**9}"
    route = "/v1/sandboxes/*/processes"
    body: dict[str, Any] = {"cmd": "sleep", "args": [f"7{marker}"]}
    if pty:
        body["pty"] = {"rows": 24, "cols": 80}
    for attempt in range(1, 6):
        task = asyncio.ensure_future(
            client.call("POST", f"/v1/sandboxes/{sid}/processes", json=body)
        )
        # leave while the server is starting the command (spawn + reading its pid)
        assert await _wait_until(partial(_arrived, server, route, attempt), 0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    listed = (await client.ok("GET", f"/v1/sandboxes/{sid}/processes"))["processes"]
    running = [p for p in listed if p["state"] == "running"]
    # a create that completed is listed; any other command was killed with its request
    assert await _wait_until(lambda: len(pids_with_argv("sleep", f"7{marker}")) == len(running))
    # and the server's loop still serves new pipes (no reader left on a recycled descriptor)
    with anyio.fail_after(30):
        for _ in range(5):
            assert (await client.exec(sid, "echo", "alive"))["stdout"] == "alive\n"


async def test_signal_and_delete_terminate_the_tree(client: Client) -> None:
    sid = (await client.create())["id"]
    proc = await client.ok(
        "POST", f"/v1/sandboxes/{sid}/processes", json={"cmd": "sleep", "args": ["300"]}
    )
    pid = proc["process_id"]
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/processes/{pid}/signal", json={"signal": "SIGBOGUS"}
    )
    assert status == 400
    await client.ok(
        "POST", f"/v1/sandboxes/{sid}/processes/{pid}/signal", json={"signal": "SIGTERM"}
    )
    view = await client.ok(
        "GET", f"/v1/sandboxes/{sid}/processes/{pid}/wait", params={"timeout_ms": "10000"}
    )
    assert view["signal"] == "SIGTERM" and view["state"] == "exited"
    tree = await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/processes",
        json={"cmd": "bash", "args": ["-c", "trap '' TERM; sleep 300 & sleep 301 & wait"]},
    )
    final = await client.ok(
        "DELETE", f"/v1/sandboxes/{sid}/processes/{tree['process_id']}", params={"grace_ms": "50"}
    )
    assert final["leader_exited"] and final["tree_exited"]
    res = await client.sh(sid, "pgrep -xf 'sleep 30[01]' || echo none")
    assert res["stdout"] == "none\n"


async def test_pty_process_with_resize_and_cwd(client: Client) -> None:
    sid = (await client.create(envs={"WHO": "emulator"}))["id"]
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/processes", json={"pty": {"rows": 0, "cols": 40}}
    )
    assert status == 400
    proc = await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/processes",
        json={
            "cmd": "bash",
            "args": ["-c", "pwd; echo $WHO; stty size; read x; stty size"],
            "pty": {"rows": 30, "cols": 100},
            "cwd": "/tmp",
            "env": {"WHO": "pty"},
        },
    )
    pid = proc["process_id"]
    assert proc["kind"] == "pty" and proc["pid"] > 0
    first: list[dict[str, Any]] = []
    while "30 100" not in _text(first):  # bounded by the 60 s test timeout
        first = await _connect(client, sid, pid, limit=len(first) + 1)
    await client.ok(
        "POST", f"/v1/sandboxes/{sid}/processes/{pid}/resize", json={"rows": 40, "cols": 120}
    )
    await client.ok(
        "POST",
        f"/v1/sandboxes/{sid}/processes/{pid}/input",
        json={"data_base64": base64.b64encode(b"go\r").decode()},
    )
    rest = await _connect(client, sid, pid, after=first[-1]["seq"])
    frames = first + rest
    assert all(f.get("stream") == "pty" for f in frames if f["type"] == "data")
    text = _text(frames).replace("\r", "")
    assert text.startswith("/tmp\npty\n30 100\n")
    assert text.endswith("40 120\n")
    assert frames[-1] == {"type": "exit", "exit_code": 0}
    pipe = await client.ok("POST", f"/v1/sandboxes/{sid}/processes", json={"cmd": "true"})
    status, _ = await client.call(
        "POST",
        f"/v1/sandboxes/{sid}/processes/{pipe['process_id']}/resize",
        json={"rows": 10, "cols": 10},
    )
    assert status == 409


async def test_processes_need_a_running_sandbox(client: Client) -> None:
    sid = (await client.create())["id"]
    await client.ok("POST", f"/v1/sandboxes/{sid}/pause")
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/processes", json={"cmd": "true"})
    assert status == 404
    await client.ok("POST", f"/v1/sandboxes/{sid}/resume")
    status, _ = await client.call("GET", f"/v1/sandboxes/{sid}/processes/proc_nope")
    assert status == 404
    await asyncio.sleep(0)
