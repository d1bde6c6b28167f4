"""Containment and limits: nothing a sandbox starts outlives it or the emulator (even one killed
with SIGKILL, even mid-boot), and one tenant cannot exhaust the machine (processes, memory, file
size). Processes are looked for by where their root is (tests/_leakcheck.py), never by name."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from _emulator import Client, host_exists, require_bwrap
from _leakcheck import describe, sandbox_processes

from createos_sandbox_async.local import LocalServer, _cgroups
from createos_sandbox_async.local.runtime import SandboxRuntime

pytestmark = pytest.mark.anyio

MAX_PROCESSES = 64
_BOMB = """
import os, time
forked, failed, deadline = 0, 0, time.monotonic() + 15
for _ in range(1000):
    if time.monotonic() > deadline:
        break
    try:
        pid = os.fork()
    except OSError:
        if not failed:
            print(forked, flush=True)
        failed += 1
        time.sleep(0.01)
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
time.sleep(60)
"""


@pytest.fixture
async def limited() -> AsyncIterator[tuple[LocalServer, Client]]:
    """An emulator with a small per-sandbox process limit, and a raw client for it."""
    require_bwrap()
    async with (
        LocalServer(heartbeat_interval=0.05, max_processes=MAX_PROCESSES) as srv,
        aiohttp.ClientSession(srv.base_url) as http,
    ):
        yield srv, Client(http, srv.api_key)


def _box(server: LocalServer, sid: str) -> SandboxRuntime:
    runtime = server._require().sandboxes[sid].runtime
    assert runtime is not None
    return runtime


def _read_text(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


async def _gone(where: str, limit: float = 10.0) -> list[str]:
    """Wait (bounded) until no process of `where` is alive; what is left, described."""
    for _ in range(int(limit / 0.02)):
        if not sandbox_processes(where):
            return []
        await asyncio.sleep(0.02)
    return [describe(p) for p in sandbox_processes(where)]


async def test_destroy_kills_daemons_and_removes_the_cgroups(server: LocalServer) -> None:
    async with aiohttp.ClientSession(server.base_url) as http:
        client = Client(http, server.api_key)
        sid = (await client.create())["id"]
        box = _box(server, sid)
        await client.sh(sid, "nohup setsid sh -c 'sleep 600 & sleep 600' >/dev/null 2>&1 &")
        assert len(sandbox_processes(box.root)) >= 3  # pid 1, its reader, the daemons
        dirs = list(box.cgroup.dirs) if box.cgroup is not None else []
        if dirs:
            assert set(box.cgroup.pids()) >= set(box.namespace_pids())  # every one is in it
        await client.ok("DELETE", f"/v1/sandboxes/{sid}")
        assert await _gone(box.root) == []
        assert [d for d in dirs if host_exists(d)] == []


async def test_a_fork_bomb_hits_the_limit_and_harms_no_one_else(
    limited: tuple[LocalServer, Client],
) -> None:
    server, client = limited
    if "processes" not in server.enforced_limits:
        pytest.skip("no pids cgroup can be made here: processes are not limited")
    if shutil.which("python3") is None:
        pytest.skip("python3 is needed inside the sandbox")
    bomb = (await client.create())["id"]
    other = (await client.create())["id"]
    box = _box(server, bomb)
    # Bounded: at most 1000 forks in at most 15 s; each child sleeps (killed by the destroy
    # below). Run detached, it keeps the sandbox at its limit: a fork that fails is retried
    # a little later. It reports how many forks had succeeded at the first failure.
    await client.exec(bomb, "sh", "-c", f"setsid python3 -c '{_BOMB}' >/root/out 2>&1 </dev/null &")
    out = os.path.join(box.root, "root", "out")
    report = ""
    for _ in range(1500):  # until it reports (bounded, 30 s)
        report = _read_text(out)
        if report.endswith("\n"):
            break
        await asyncio.sleep(0.02)
    forked = int(report)
    assert 20 < forked < MAX_PROCESSES  # it really forked, up to the limit and no further
    assert box.cgroup is not None
    for _ in range(1500):  # until the bomb has filled every slot (bounded, 30 s)
        if len(box.cgroup.pids()) >= MAX_PROCESSES:
            break
        await asyncio.sleep(0.02)
    assert len(box.cgroup.pids()) == MAX_PROCESSES
    # Meanwhile the emulator answers and the other sandbox works normally.
    async with client.http.get("/healthz") as resp:
        assert resp.status == 200
    assert (await client.sh(other, "echo fine; ls / >/dev/null"))["stdout"] == "fine\n"
    # The sandbox at its limit gets a command-level failure, not a 500.
    status, body = await client.call(
        "POST", f"/v1/sandboxes/{bomb}/exec", json={"cmd": "true", "args": []}
    )
    assert status == 200 and body["data"]["result"]["exit_code"] != 0, body
    await client.ok("DELETE", f"/v1/sandboxes/{bomb}")
    assert await _gone(box.root) == []
    assert (await client.exec(other, "echo", "still"))["stdout"] == "still\n"


async def test_a_memory_hog_is_killed_and_the_sandbox_lives_on(
    limited: tuple[LocalServer, Client],
) -> None:
    server, client = limited
    if "memory" not in server.enforced_limits:
        pytest.skip("no memory cgroup can be made here: memory is not limited")
    if shutil.which("python3") is None:
        pytest.skip("python3 is needed inside the sandbox")
    sid = (await client.create(shape="s-1vcpu-256mb"))["id"]
    hog = "b = b'x' * (600 << 20); print('survived', len(b))"  # 600 MiB > 256 MiB
    result = await client.exec(sid, "python3", "-c", hog)
    assert "survived" not in result["stdout"]
    assert result["exit_code"] != 0
    assert (await client.exec(sid, "echo", "alive"))["stdout"] == "alive\n"
    async with client.http.get("/healthz") as resp:
        assert resp.status == 200


async def test_no_file_can_grow_past_disk_mib(client: Client) -> None:
    sid = (await client.create(disk_mib=2))["id"]
    write = "head -c 3145728 /dev/zero > /root/f; echo status=$?; wc -c < /root/f"
    result = await client.sh(sid, write)
    out = result["stdout"].split()
    assert out[0] != "status=0", result  # head was stopped (SIGXFSZ: 128 + 25)
    assert int(out[1]) == 2 * 1024 * 1024  # not one byte past 2 MiB
    await client.ok("POST", f"/v1/sandboxes/{sid}/resize", json={"disk_mib": 4})
    result = await client.sh(sid, write)
    assert result["stdout"].split() == ["status=0", "3145728"]  # the new size holds at once


async def test_stop_during_creates_leaves_nothing() -> None:
    # LocalServer.stop() cancels creates still booting: nothing they started may stay.
    require_bwrap()
    server = LocalServer(heartbeat_interval=0.05)
    await server.start()
    state = server.state_dir
    try:
        async with server.session() as session:
            creates = [
                asyncio.ensure_future(session.sandboxes.create(shape="s-1vcpu-256mb"))
                for _ in range(4)
            ]
            for _ in range(5000):  # until a VM of this server is launching (bounded)
                if _launched_under(state):
                    break
                await asyncio.sleep(0.001)
            await server.stop()
            await asyncio.gather(*creates, return_exceptions=True)
    finally:
        await server.stop()
    assert await _gone(state) == []


# --------------------------------------------------------------- the emulator killed outright

_CHILD = r"""
import asyncio, os, signal, sys, time
from createos_sandbox_async.local import LocalServer

async def main():
    mode = sys.argv[1]
    srv = LocalServer()
    await srv.start()
    print("state", srv.state_dir, flush=True)
    async with srv.session() as s:
        if mode == "booted":
            sb = await s.sandboxes.create(shape="s-1vcpu-256mb")
            await sb.exec("sh", ["-c", "nohup setsid sleep 600 >/dev/null 2>&1 &"])
            asyncio.ensure_future(sb.exec("sleep", ["600"]))  # one command still running
            await asyncio.sleep(0.3)
            os.kill(os.getpid(), signal.SIGKILL)
        # mid-boot: die as soon as a VM of ours exists, a little later each time
        delay = float(sys.argv[2])
        boots = [asyncio.ensure_future(s.sandboxes.create(shape="s-1vcpu-256mb"))
                 for _ in range(3)]
        for _ in range(5000):
            if any(srv.state_dir in _cmd(p) for p in os.listdir("/proc") if p.isdigit()):
                break
            await asyncio.sleep(0.001)
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGKILL)

def _cmd(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""

asyncio.run(main())
"""


def _sweep_dead_emulators() -> None:
    """What the next emulator's start does: remove the cgroups killed emulators left."""
    for _, own, _ in _cgroups._own_dirs():
        _cgroups.sweep_stale(own)


async def _run_and_kill(mode: str, delay: float = 0.0, *, sweep: bool = True) -> str:
    """Run an emulator in a child process that SIGKILLs itself; its state directory. Its
    cgroups are swept afterwards unless `sweep` is False (they would wait for the next start)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, mode, str(delay),
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
        assert line.startswith(b"state "), line
        await asyncio.wait_for(proc.wait(), 60)
        assert proc.returncode == -signal.SIGKILL
        return line.split()[1].decode()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if sweep:
            await asyncio.to_thread(_sweep_dead_emulators)


async def test_an_emulator_killed_outright_takes_its_sandboxes_along() -> None:
    require_bwrap()
    state = await _run_and_kill("booted")
    assert await _gone(state) == []


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.01])
async def test_an_emulator_killed_mid_boot_leaves_nothing(delay: float) -> None:
    # The window bwrap's parent-death signal does not cover: the sandbox's pid 1 exists but has
    # not armed its own yet. The lifeline (a pipe the dead emulator held) still ends it.
    require_bwrap()
    state = await _run_and_kill("boot", delay)
    assert await _gone(state) == []


async def test_the_next_emulator_removes_cgroups_a_killed_one_left() -> None:
    require_bwrap()
    await _run_and_kill("booted", sweep=False)
    owns = [own for _, own, _ in _cgroups._own_dirs()]
    left = [p for own in owns for p in _dead_emulator_groups(own)]
    async with LocalServer() as srv:
        runtime = srv._require().runtime
        if runtime.cgroups is None:
            pytest.skip("no cgroup can be made here")
        assert left  # the killed emulator did leave its groups behind
        parents = [os.path.dirname(base) for _, base, _ in runtime.cgroups.bases]
        stale = [p for parent in parents for p in _dead_emulator_groups(parent)]
        assert stale == []


def _dead_emulator_groups(parent: str) -> list[str]:
    """Emulator cgroup directories under `parent` whose emulator process is gone."""
    return [
        os.path.join(parent, name)
        for name in os.listdir(parent)
        if name.startswith("createos-local-")
        and not os.path.exists(f"/proc/{name.rsplit('-', 1)[-1]}")
    ]


def test_max_processes_is_checked() -> None:
    with pytest.raises(ValueError, match="max_processes"):
        LocalServer(max_processes=0)
    with pytest.raises(TypeError, match="max_processes"):
        LocalServer(max_processes=True)
    with pytest.raises(TypeError, match="max_processes"):
        LocalServer(max_processes=1.5)  # type: ignore[arg-type]


def _launched_under(where: str) -> bool:
    """Whether any process's command line names `where` (a VM being launched)."""
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if where.encode() in fh.read():
                    return True
        except OSError:
            continue
    return False
