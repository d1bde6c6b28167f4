"""Lifecycle on real processes: pause freezes, resume thaws, fork copies the tree, destroy and
shutdown leave nothing running; transitional states and auto-pause are observable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid

import aiohttp
import pytest
from _emulator import Client, descendants, host_exists, pids_with_argv
from _leakcheck import describe, sandbox_processes

from createos_sandbox_async.local import LocalServer
from createos_sandbox_async.local.runtime import Runtime

pytestmark = pytest.mark.anyio


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    return data[data.rfind(b")") + 2 :].split()[0].decode()


async def _state_becomes(pid: int, want: str) -> str:
    """Signals land asynchronously: poll (bounded) for the scheduler state."""
    state = _state(pid)
    for _ in range(500):
        if state == want:
            break
        await asyncio.sleep(0.005)
        state = _state(pid)
    return state


async def _poll_status(client: Client, sid: str, want: str, limit: int = 500) -> list[str]:
    """Statuses seen (deduplicated, in order) until `want` shows up."""
    seen: list[str] = []
    for _ in range(limit):
        status = (await client.ok("GET", f"/v1/sandboxes/{sid}"))["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == want:
            return seen
        await asyncio.sleep(0.005)
    raise AssertionError(f"{sid} never reached {want}: {seen}")


async def test_pause_freezes_and_resume_thaws_processes(client: Client) -> None:
    sid = (await client.create())["id"]
    secs = f"4{uuid.uuid4().int % 10**9}"  # unique: another run on this machine has its own
    await client.sh(sid, f"nohup setsid sleep {secs} >/dev/null 2>&1 &")
    for _ in range(500):
        pids = pids_with_argv("sleep", secs)
        if pids:
            break
        await asyncio.sleep(0.01)
    assert len(pids) == 1
    paused = await client.ok("POST", f"/v1/sandboxes/{sid}/pause")
    assert paused["status"] == "paused"  # transition_delay=0: frozen before the answer
    assert _state(pids[0]) == "T"  # stopped
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/pause")
    assert status == 409
    status, _ = await client.call("GET", f"/v1/sandboxes/{sid}/files", params={"path": "/x"})
    assert status == 404
    await client.ok("POST", f"/v1/sandboxes/{sid}/resume")
    assert await _state_becomes(pids[0], "S") == "S"
    view = await client.ok("GET", f"/v1/sandboxes/{sid}")
    assert view["status"] == "running" and "last_resumed_at" in view
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/resume")
    assert status == 409


async def test_transitional_states_are_visible(client: Client) -> None:
    async with (
        LocalServer(heartbeat_interval=0.05, transition_delay=0.1) as srv,
        aiohttp.ClientSession(srv.base_url) as http,
    ):
        # Each answer shows the transitional state; polls then see it (unless this machine was
        # slower than the delay between two requests) and only ever move forward.
        slow = Client(http, srv.api_key)
        sid = (await slow.create())["id"]
        assert (await slow.ok("POST", f"/v1/sandboxes/{sid}/pause"))["status"] == "pausing"
        assert _in_order(await _poll_status(slow, sid, "paused"), "pausing", "paused")
        child = await slow.ok("POST", f"/v1/sandboxes/{sid}/fork", json={})
        assert child["status"] == "forking" and child["forked_from"] == sid
        seen = await _poll_status(slow, child["id"], "running")
        assert _in_order(seen, "forking", "resuming", "running")
        assert (await slow.ok("POST", f"/v1/sandboxes/{sid}/resume"))["status"] == "resuming"
        assert _in_order(await _poll_status(slow, sid, "running"), "resuming", "running")
        gone = await slow.ok("DELETE", f"/v1/sandboxes/{sid}")
        assert gone["status"] == "destroying"
        assert _in_order(await _poll_status(slow, sid, "destroyed"), "destroying", "destroyed")


def _in_order(seen: list[str], *states: str) -> bool:
    """`seen` walks forward through `states` (skipping any) and ends on the last one."""
    if not seen or seen[-1] != states[-1] or not set(seen) <= set(states):
        return False
    return seen == sorted(seen, key=states.index)


async def test_fork_copies_the_tree_and_is_independent(client: Client) -> None:
    src = (await client.create(envs={"K": "v"}))["id"]
    await client.sh(src, "echo original > /workspace/note")
    status, _ = await client.call("POST", f"/v1/sandboxes/{src}/fork", json={})
    assert status == 409  # must be paused first
    await client.ok("POST", f"/v1/sandboxes/{src}/pause")
    child = await client.ok("POST", f"/v1/sandboxes/{src}/fork")
    assert child["id"] != src and child["status"] == "running"
    assert (await client.ok("GET", f"/v1/sandboxes/{src}"))["status"] == "paused"
    assert (await client.exec(child["id"], "cat", "/workspace/note"))["stdout"] == "original\n"
    assert (await client.exec(child["id"], "printenv", "K"))["stdout"] == "v\n"
    await client.sh(child["id"], "echo changed > /workspace/note")
    await client.ok("POST", f"/v1/sandboxes/{src}/resume")
    assert (await client.exec(src, "cat", "/workspace/note"))["stdout"] == "original\n"
    paused_child = await client.ok("POST", f"/v1/sandboxes/{child['id']}/pause")
    assert paused_child["status"] in ("pausing", "paused")
    kid = await client.ok("POST", f"/v1/sandboxes/{child['id']}/fork", json={"start_paused": True})
    assert kid["status"] == "paused"


async def test_destroy_kills_everything_inside(client: Client) -> None:
    sid = (await client.create())["id"]
    secs = f"5{uuid.uuid4().int % 10**9}"  # unique: another run on this machine has its own
    await client.sh(sid, f"nohup setsid sleep {secs} >/dev/null 2>&1 &")
    for _ in range(500):
        if pids_with_argv("sleep", secs):
            break
        await asyncio.sleep(0.01)
    assert pids_with_argv("sleep", secs)
    await client.ok("DELETE", f"/v1/sandboxes/{sid}")
    for _ in range(500):
        if not pids_with_argv("sleep", secs):
            break
        await asyncio.sleep(0.01)
    assert not pids_with_argv("sleep", secs)


async def test_auto_pause_after_idle() -> None:
    async with (
        LocalServer(heartbeat_interval=0.05, auto_pause_scale=0.002) as srv,
        aiohttp.ClientSession(srv.base_url) as http,
    ):
        c = Client(http, srv.api_key)
        sid = (await c.create(auto_pause_after_seconds=60))["id"]  # 60 s * 0.002 = 120 ms
        view = await c.ok("GET", f"/v1/sandboxes/{sid}")
        assert view["auto_pause_after_seconds"] == 60
        assert await _poll_status(c, sid, "paused", limit=2000)
        # disabled before the resume: a slow gap between two requests cannot let it fire again
        patched = await c.ok(
            "PATCH",
            f"/v1/sandboxes/{sid}",
            json={"disable_auto_pause": True, "auto_pause_after_seconds": 60},
        )
        assert "auto_pause_after_seconds" not in patched
        await c.ok("POST", f"/v1/sandboxes/{sid}/resume")
        # with auto-pause off, a command that outlives several former timeouts still runs
        res = await c.sh(sid, "sleep 0.5; echo still-running")
        assert res["stdout"] == "still-running\n"
        assert (await c.ok("GET", f"/v1/sandboxes/{sid}"))["status"] == "running"


async def test_nothing_is_left_running_after_shutdown() -> None:
    me = os.getpid()
    before = set(descendants(me))
    srv = LocalServer(heartbeat_interval=0.05)
    http = aiohttp.ClientSession()
    try:
        async with srv:
            c = Client(http, srv.api_key)
            base = srv.base_url
            ids = [(await c.create(base))["id"] for _ in range(3)]
            for sid in ids:
                await c.ok(
                    "POST",
                    f"{base}/v1/sandboxes/{sid}/exec",
                    json={
                        "cmd": "bash",
                        "args": ["-c", "nohup setsid sleep 600 >/dev/null 2>&1 &"],
                    },
                )
            await c.ok("POST", f"{base}/v1/sandboxes/{ids[0]}/pause")
            procs = await c.ok(
                "POST",
                f"{base}/v1/sandboxes/{ids[1]}/processes",
                json={"cmd": "sleep", "args": ["601"]},
            )
            assert procs["state"] == "running"
            # a stream still open when the server goes down
            stream = await http.post(
                f"{base}/v1/sandboxes/{ids[2]}/exec?stream=true",
                headers=c.headers(),
                json={"cmd": "sleep", "args": ["602"]},
            )
            assert stream.status == 200
            during = set(descendants(me)) - before
            assert len(during) >= 6  # three VMs with their processes, at least
            state_dir = srv.state_dir
        assert set(descendants(me)) - before == set()
        assert not host_exists(state_dir)
        stream.close()
    finally:
        await http.close()


async def test_a_vm_that_dies_on_its_own_marks_the_sandbox_failed(
    server: LocalServer, client: Client
) -> None:
    sid = (await client.create())["id"]
    vm = [
        pid
        for pid in pids_with_prefix("setpriv") + pids_with_prefix("bwrap")
        if f"/sandboxes/{sid}" in _cmdline(pid)
    ]
    assert vm
    for pid in vm:
        os.kill(pid, signal.SIGKILL)
    assert await _poll_status(client, sid, "failed")
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/exec", json={"cmd": "true"})
    assert status == 404
    assert (await client.ok("DELETE", f"/v1/sandboxes/{sid}"))["status"] == "destroyed"


@pytest.mark.parametrize("cgroups", [False, True], ids=["no-cgroups", "cgroups"])
async def test_a_boot_cancelled_midway_leaves_no_vm(server: LocalServer, cgroups: bool) -> None:
    # What LocalServer.stop() does to a create still booting: cancel it. Nothing the VM started
    # may stay: not bwrap, not the sandbox's pid 1 (which ignores TERM and, early in a boot, has
    # no parent-death signal yet), nothing in its pid namespace. Looked for by where a process's
    # root is (every process of the sandbox has the tree as `/`), not by name. Cancelled at
    # several points of the boot, since the moment decides which processes exist; with and
    # without cgroups (a machine may not offer them).
    runtime = Runtime("bubblewrap", server.state_dir)
    if cgroups:
        await asyncio.to_thread(runtime.setup_cgroups)
        if runtime.cgroups is None:
            pytest.skip("no cgroup can be made on this machine")
    leaked: list[str] = []
    cancelled = 0
    try:
        for step in range(12):
            sid = f"sb_cancelled_boot_{step}"
            root = os.path.join(server.state_dir, "sandboxes", sid)
            runtime.prepare_tree(root, "cancelled")
            boot = asyncio.ensure_future(runtime.start(sid, root, "cancelled"))
            try:
                for _ in range(5000):  # until the VM process exists (bounded)
                    if _started_under(root) or boot.done():
                        break
                    await asyncio.sleep(0.001)
                if boot.done():  # booted (or failed) between two looks: nothing to cancel
                    await (await boot).stop()  # a failed boot raises here, and says why
                    continue
                # (not seen yet, on a loaded machine: cancelled earlier still; it must leave
                # nothing behind all the same)
                await asyncio.sleep(step * 0.0005)  # then a little further into the boot
                boot.cancel()
                try:
                    await (await boot).stop()  # booted before the cancel landed: stop it
                except asyncio.CancelledError:
                    cancelled += 1
                for _ in range(500):  # SIGKILLed processes vanish in milliseconds (bounded)
                    if not sandbox_processes(root) and not _started_under(root):
                        break
                    await asyncio.sleep(0.01)
                leaked += [describe(p) for p in sandbox_processes(root) + _started_under(root)]
            finally:
                for pid in sandbox_processes(root) + _started_under(root):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    finally:
        if cgroups:
            await asyncio.to_thread(runtime.close)
    print(f"{cancelled} of 12 boots cancelled")
    assert cancelled >= 2  # the loop really cancelled boots midway
    assert leaked == []


def _started_under(root: str) -> list[int]:
    """Host processes whose command line names the tree (the launcher, setpriv, bwrap)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and root in _cmdline(int(p))]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_with_prefix(program: str) -> list[int]:
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and os.path.basename(_cmdline(int(p)).split(" ", 1)[0]) == program
    ]
