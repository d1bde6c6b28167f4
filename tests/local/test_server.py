"""Starting and stopping: isolation probing with clear advice, isolation="none", loopback-only
binding, the CLI entry point, and the lazy SDK session."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
import tempfile
import uuid
from asyncio.subprocess import PIPE
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from _emulator import Client, pids_with_argv, python_argv

from createos_sandbox_async.local import IsolationUnavailableError, LocalServer

pytestmark = pytest.mark.anyio


def _fake_bwrap(directory: Path, script: str) -> None:
    directory.chmod(0o755)
    path = directory / "bwrap"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


async def test_missing_bwrap_says_how_to_install_or_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(IsolationUnavailableError) as info:
        async with LocalServer(state_dir=str(state)):
            pass
    message = str(info.value)
    assert "apt-get install bubblewrap" in message and 'isolation="none"' in message
    assert list(state.iterdir()) == []  # nothing left behind


async def test_bwrap_without_namespaces_fails_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # world-readable: as root, bwrap runs as the unprivileged sandbox user
    with tempfile.TemporaryDirectory() as where:
        fake = Path(where)
        _fake_bwrap(fake, 'echo "bwrap: No permissions to creating new namespace" >&2; exit 1')
        monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
        with pytest.raises(IsolationUnavailableError) as info:
            async with LocalServer(state_dir=str(tmp_path)):
                pass
    assert "No permissions to creating new namespace" in str(info.value)
    assert 'isolation="none"' in str(info.value)


async def test_isolation_none_warns_on_every_start_and_still_runs_commands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="createos_sandbox_async.local")
    for _ in range(2):
        async with (
            LocalServer(isolation="none", heartbeat_interval=0.05) as srv,
            aiohttp.ClientSession(srv.base_url) as http,
        ):
            c = Client(http, srv.api_key)
            sid = (await c.create())["id"]
            assert (await c.exec(sid, "echo", "unsandboxed"))["stdout"] == "unsandboxed\n"
            await c.ok("PUT", f"/v1/sandboxes/{sid}/files", params={"path": "/w/f"}, data=b"1")
            res = await c.exec(sid, "cat", "../w/f")  # commands start in the sandbox's /root
            assert res["stdout"] == "1"
    warnings = [r for r in caplog.records if "isolation='none'" in r.getMessage()]
    assert len(warnings) == 2


async def test_isolation_none_pauses_and_stops_detached_daemons_too() -> None:
    # Without namespaces, `setsid` takes a daemon out of every group and session the emulator
    # knows; it must still be frozen by pause and killed by destroy / shutdown.
    marker = f"{uuid.uuid4().int % 10**9}"
    async with (
        LocalServer(isolation="none", heartbeat_interval=0.05) as srv,
        aiohttp.ClientSession(srv.base_url) as http,
    ):
        c = Client(http, srv.api_key)
        sid = (await c.create())["id"]
        await c.exec(sid, "bash", "-c", f"nohup setsid sleep 8{marker} >/dev/null 2>&1 &")
        assert await _eventually(lambda: len(pids_with_argv("sleep", f"8{marker}")) == 1)
        daemon = pids_with_argv("sleep", f"8{marker}")[0]
        await c.ok("POST", f"/v1/sandboxes/{sid}/pause")
        assert _proc_state(daemon) == "T"
        await c.ok("POST", f"/v1/sandboxes/{sid}/resume")
    assert await _eventually(lambda: pids_with_argv("sleep", f"8{marker}") == [])


async def _eventually(predicate: Callable[[], bool]) -> bool:
    """Poll (bounded: ~5 s) instead of sleeping for a fixed time."""
    for _ in range(500):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def kill_unless_exited(proc: asyncio.subprocess.Process) -> None:
    """A test's child never outlives the test (its pipes are closed when the loop reaps it)."""
    if proc.returncode is None:
        proc.kill()


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    return chr(data[data.rfind(b")") + 2])


async def test_state_dirs_left_by_killed_emulators_are_swept(tmp_path: Path) -> None:
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    stale = tmp_path / "createos-local-killed"  # an emulator that was SIGKILLed
    (stale / "sandboxes" / "sb_x").mkdir(parents=True)
    (stale / "owner.pid").write_text(str(gone.pid))
    running = tmp_path / "createos-local-running"  # one still alive
    running.mkdir()
    (running / "owner.pid").write_text(str(os.getpid()))
    unknown = tmp_path / "createos-local-unknown"  # no owner recorded: not ours to judge
    unknown.mkdir()
    async with LocalServer(isolation="none", state_dir=str(tmp_path)) as srv:
        assert not stale.exists() and running.exists() and unknown.exists()
        assert (Path(srv.state_dir) / "owner.pid").read_text() == str(os.getpid())


def test_refuses_non_loopback_without_allow_remote() -> None:
    with pytest.raises(ValueError, match="allow_remote"):
        LocalServer(host="0.0.0.0")
    LocalServer(host="0.0.0.0", allow_remote=True)  # accepted (not started here)
    LocalServer(host="::1")
    with pytest.raises(ValueError, match="isolation"):
        LocalServer(isolation="docker")


async def test_cli_prints_url_and_key_and_stops_cleanly() -> None:
    # python_argv: Ctrl-C live in the child even when this run has SIGINT ignored (`pytest &`).
    argv = python_argv("-m", "createos_sandbox_async.local", "--port", "0")
    proc = await asyncio.create_subprocess_exec(
        *argv, "--heartbeat-interval", "0.1", stdout=PIPE, stderr=PIPE
    )
    assert proc.stdout is not None
    lines = []
    try:
        while len(lines) < 4:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "the CLI exited early"
            lines.append(line.strip())
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        base, key = env["CREATEOS_SANDBOX_BASE_URL"], env["CREATEOS_SANDBOX_API_KEY"]
        assert env["CREATEOS_API_KEY"] == key and base.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession(base) as http:
            c = Client(http, key)
            sid = (await c.create())["id"]
            assert (await c.exec(sid, "true"))["exit_code"] == 0
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        kill_unless_exited(proc)
    assert proc.returncode == 0 and b"stopped" in out


async def test_cli_refuses_remote_bind() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "createos_sandbox_async.local",
        "--host",
        "0.0.0.0",
        stdout=PIPE,
        stderr=PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        kill_unless_exited(proc)
    assert proc.returncode == 2 and b"--allow-remote" in err


async def test_session_is_an_sdk_session_for_this_server(server: LocalServer) -> None:
    async with server.session() as session:
        me = await session.whoami()
    assert me.user_id == "usr_local_1"
    assert server.api_key not in repr(server)
