"""Exec through a sandbox's long-lived helper (local/_helper.py): the same isolation, limits,
cgroup and kill-on-disconnect as a command entered with nsenter, and the ordinary path whenever
the helper is not there (not started yet, killed by the tenant, being replaced after a resize)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import anyio
import pytest
from _emulator import Client, require_bwrap

from createos_sandbox_async.local import LocalServer
from createos_sandbox_async.local._helper import PYTHON

pytestmark = pytest.mark.anyio

HELPER_TAG = "createos-local exec helper"
# What a command sees of itself: caps, no_new_privs, cgroups, file-size cap, open fds, session.
PROBE = (
    "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Sig(Ign|Blk))' /proc/self/status; "
    "cat /proc/self/cgroup; "
    "ulimit -f; ls /proc/self/fd | tr '\\n' ' '; echo"
)


def _box(server: LocalServer, sid: str) -> Any:
    return server._emu.sandboxes[sid].runtime  # type: ignore[union-attr]


async def _helper_ready(server: LocalServer, client: Client, sid: str) -> Any:
    """Run execs until the sandbox's helper is up (it starts on the second exec); bounded."""
    for _ in range(400):  # 400 x 25 ms = 10 s
        await client.exec(sid, "true")
        helper = _box(server, sid).helper
        if helper is not None and helper.ready:
            return helper
        await asyncio.sleep(0.025)
    raise AssertionError("the helper did not start in 10 s")


async def _parent_is_helper(client: Client, sid: str) -> bool:
    res = await client.sh(sid, "tr '\\0' ' ' < /proc/$PPID/cmdline")
    return HELPER_TAG in res["stdout"]


def _skip_without_python() -> None:
    if not os.path.exists(PYTHON):
        pytest.skip(f"no {PYTHON} on this machine: execs always take the ordinary path")


async def test_exec_through_the_helper_sees_what_an_entered_command_sees(
    server: LocalServer, client: Client
) -> None:
    _skip_without_python()
    sid = (await client.create(disk_mib=3))["id"]
    first = await client.sh(sid, PROBE)  # the first exec: entered with nsenter
    assert not await _parent_is_helper(client, sid)
    await _helper_ready(server, client, sid)
    assert await _parent_is_helper(client, sid)
    through = await client.sh(sid, PROBE)
    assert through == first, (first, through)
    lines = through["stdout"].splitlines()
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines
    assert "0 1 2 3 " in lines  # 3: the listing's own; nothing else inherited
    # Output, stderr, status, stdin and env go through as before.
    res = await client.exec(
        sid, "bash", "-c", 'read x; echo "$x $HOME"; echo err >&2; exit 7', stdin="in"
    )
    assert (res["stdout"], res["stderr"], res["exit_code"]) == ("in /root\n", "err\n", 7)
    missing = await client.exec(sid, "no-such-command")
    assert missing["exit_code"] == 127 and "not found" in missing["error"]


async def test_a_resize_replaces_the_helper_so_the_new_file_cap_holds(
    server: LocalServer, client: Client
) -> None:
    _skip_without_python()
    sid = (await client.create(disk_mib=2))["id"]
    old = await _helper_ready(server, client, sid)
    write = "head -c 3145728 /dev/zero > /root/f; echo status=$?; wc -c < /root/f"
    assert (await client.sh(sid, write))["stdout"].split()[1] == str(2 << 20)
    await client.ok("POST", f"/v1/sandboxes/{sid}/resize", json={"disk_mib": 4})
    assert (await client.sh(sid, write))["stdout"].split() == ["status=0", "3145728"]
    new = await _helper_ready(server, client, sid)
    assert new is not old and old.dead
    assert (await client.sh(sid, write))["stdout"].split() == ["status=0", "3145728"]
    assert (await client.sh(sid, "ulimit -f"))["stdout"].strip() != "unlimited"


async def test_leaving_a_stream_kills_a_helper_started_command_tree(
    server: LocalServer, client: Client
) -> None:
    _skip_without_python()
    sid = (await client.create())["id"]
    await _helper_ready(server, client, sid)
    script = "sleep 301 & (sleep 302 &); echo started; wait"
    async with aiohttp.ClientSession(server.base_url) as http:
        resp = await http.post(
            f"/v1/sandboxes/{sid}/exec?stream=true",
            headers=client.headers(),
            json={"cmd": "bash", "args": ["-c", script]},
        )
        line = await asyncio.wait_for(resp.content.readline(), 30)
        assert b"started" in line
        resp.close()  # the client leaves mid-stream
    gone = "for i in $(seq 400); do pgrep -f 'sleep 30[12]' >/dev/null || exit 0; sleep 0.025; done"
    assert (await client.sh(sid, gone + "; exit 1"))["exit_code"] == 0
    assert not _box(server, sid).groups - {_box(server, sid).helper._proc.pid}


async def test_a_killed_helper_is_worked_around_and_replaced(
    server: LocalServer, client: Client
) -> None:
    _skip_without_python()
    sid = (await client.create())["id"]
    first = await _helper_ready(server, client, sid)
    kill = f"pkill -KILL -f '[{HELPER_TAG[0]}]{HELPER_TAG[1:]}'; echo killed"
    assert (await client.sh(sid, kill))["stdout"] == "killed\n"
    for _ in range(5):  # whatever the emulator noticed yet, every exec answers right
        assert (await client.exec(sid, "echo", "still"))["stdout"] == "still\n"
    second = await _helper_ready(server, client, sid)
    assert second is not first and first.dead
    assert (await client.exec(sid, "echo", "again"))["stdout"] == "again\n"


async def test_a_stopped_helper_is_replaced_and_no_exec_hangs(
    server: LocalServer, client: Client
) -> None:
    """A tenant may SIGSTOP its helper: an exec waiting for its start or for its status gets an
    answer within the helper's 5 s, the helper is replaced, and nothing runs twice."""
    _skip_without_python()
    sid = (await client.create())["id"]
    first = await _helper_ready(server, client, sid)
    stop = f"pkill -STOP -f '[{HELPER_TAG[0]}]{HELPER_TAG[1:]}'; echo stopped"
    with anyio.fail_after(30):  # this exec's own status can no longer come from its helper
        stopped = await client.sh(sid, stop)
    assert (stopped["stdout"], stopped["exit_code"]) == ("stopped\n", 137)
    assert first.dead
    assert (await client.exec(sid, "echo", "after"))["stdout"] == "after\n"
    second = await _helper_ready(server, client, sid)
    # Stopped by a managed process (never through the helper), it cannot confirm a start.
    proc = await client.ok(
        "POST", f"/v1/sandboxes/{sid}/processes", json={"cmd": "sh", "args": ["-c", stop]}
    )
    waited = await client.ok(
        "GET", f"/v1/sandboxes/{sid}/processes/{proc['process_id']}/wait?timeout_ms=20000"
    )
    assert waited["exit_code"] == 0, waited
    with anyio.fail_after(30):
        lost = await client.exec(sid, "touch", "/root/once")
    assert lost["exit_code"] == 137 and "exec helper" in lost["error"], lost
    assert second.dead
    # Not started again another way: the (stopped) helper never ran it.
    assert (await client.exec(sid, "ls", "/root/once"))["exit_code"] != 0


async def test_pause_resume_and_fork_with_a_helper(server: LocalServer, client: Client) -> None:
    _skip_without_python()
    sid = (await client.create())["id"]
    helper = await _helper_ready(server, client, sid)
    await client.sh(sid, "echo kept > /root/file")
    assert (await client.ok("POST", f"/v1/sandboxes/{sid}/pause"))["status"] == "paused"
    child = await client.ok("POST", f"/v1/sandboxes/{sid}/fork")
    assert (await client.ok("POST", f"/v1/sandboxes/{sid}/resume"))["status"] == "running"
    assert _box(server, sid).helper is helper and helper.ready
    assert (await client.exec(sid, "cat", "/root/file"))["stdout"] == "kept\n"
    assert await _parent_is_helper(client, sid)
    assert (await client.exec(child["id"], "cat", "/root/file"))["stdout"] == "kept\n"
    assert _box(server, child["id"]).helper is None  # processes are not copied by a fork
    await client.ok("DELETE", f"/v1/sandboxes/{sid}")
    assert helper.dead


async def test_stop_with_a_helper_starting_or_running_leaves_nothing() -> None:
    _skip_without_python()
    require_bwrap()
    async with (
        LocalServer(heartbeat_interval=0.05) as server,
        aiohttp.ClientSession(server.base_url) as http,
    ):
        client = Client(http, server.api_key)
        ready = (await client.create())["id"]
        helper = await _helper_ready(server, client, ready)
        box = _box(server, ready)
        inside = [p for p in box.namespace_pids() if HELPER_TAG.encode() in _cmdline(p)]
        pids = [helper._proc.pid, *inside]  # nsenter (on the host side), the helper
        assert len(pids) == 2
        starting = (await client.create())["id"]
        await client.exec(starting, "true")
        await client.exec(starting, "true")  # its helper is starting now
        boxes = [_box(server, ready), _box(server, starting)]
    assert helper.dead
    for box in boxes:
        assert box.helper is None or box.helper.dead
        assert box._helper_task is None
    left = {p: _state(p) for p in pids}
    assert set(left.values()) == {"dead"}, left


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _state(pid: int) -> str:
    """ "dead" for a process that is gone or a zombie (its reaper may be the host's init)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return "dead"
    state = chr(data[data.rfind(b")") + 2])
    return "dead" if state in "ZX" else data.decode(errors="replace")
