"""The command line and the README demo, run as real subprocesses against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import anyio
import pytest

#: The emulator these tests drove from the start: short visible transitional states.
pytestmark = [pytest.mark.anyio, pytest.mark.emulator(transition_delay=0.02)]


async def _cli(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m createos_sandbox_async`` with the server's key in the environment only."""
    env = dict(os.environ)
    env.update(CREATEOS_SANDBOX_API_KEY=server.api_key, CREATEOS_SANDBOX_BASE_URL=server.base_url)
    cmd = [sys.executable, "-m", "createos_sandbox_async", *args]
    with anyio.fail_after(60):  # run_process kills the child when this deadline cancels it
        return await anyio.run_process(cmd, env=env, check=False)  # type: ignore[return-value]


def _text(proc: Any) -> tuple[str, str]:
    return proc.stdout.decode(), proc.stderr.decode()


async def test_cli_create_exec_ls_rm_never_prints_the_key(emulator: Any) -> None:
    created = await _cli(emulator, "create", "--env", "GREETING=hello")
    out, err = _text(created)
    assert created.returncode == 0, err
    sid = out.strip()
    assert sid.startswith("sb_")

    ran = await _cli(emulator, "exec", sid, "--", "bash", "-c", 'echo "$GREETING"; exit 3')
    out, err = _text(ran)
    assert (ran.returncode, out) == (3, "hello\n")

    not_started = await _cli(emulator, "exec", sid, "--", "/no/such/binary")
    assert not_started.returncode == 127

    listed = await _cli(emulator, "ls", "--status", "running")
    assert sid in _text(listed)[0]

    removed = await _cli(emulator, "rm", sid)
    assert removed.returncode == 0 and f"{sid}\tdestroyed" in _text(removed)[0]

    missing = await _cli(emulator, "exec", "sb_doesnotexist", "--", "true")
    out, err = _text(missing)
    assert missing.returncode == 1 and err.startswith("error:")
    for proc in (created, ran, not_started, listed, removed, missing):
        assert emulator.api_key not in "".join(_text(proc))


async def test_cli_bad_env_names_the_argument(emulator: Any) -> None:
    proc = await _cli(emulator, "create", "--env", "NOEQUALS")
    assert proc.returncode != 0
    assert "--env" in _text(proc)[1]
    assert emulator.request_count("POST", "/v1/sandboxes") == 0


async def test_demo_runs_a_batch_and_leaves_nothing() -> None:
    from createos_sandbox_async._demo import run_demo

    isolation = "bubblewrap" if os.environ.get("CREATEOS_REQUIRE_BWRAP") == "1" else "auto"
    assert await run_demo(n_items=6, isolation=isolation) == 0
