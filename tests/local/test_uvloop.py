"""The emulator and the SDK under uvloop: LocalServer must not assume asyncio's own loop classes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _emulator import require_bwrap

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """This module's tests run on uvloop (skipped only where uvloop is not installed)."""
    pytest.importorskip("uvloop")
    return ("asyncio", {"use_uvloop": True})


async def test_local_server_and_session_run_on_uvloop() -> None:
    require_bwrap()
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    async with (
        LocalServer(heartbeat_interval=0.05) as server,
        server.session() as session,
    ):
        assert server.port > 0 and server.base_url.endswith(f":{server.port}")
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        result = await sb.exec("bash", ["-c", "echo out; echo err >&2; exit 3"])
        assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
        # uvloop spawns without close_fds: a daemon must not inherit a copy of the exec's output
        # pipes (the exec would then wait for the daemon to exit).
        await sb.sh("nohup setsid sleep 300 >/dev/null 2>&1 &", timeout=30, check=True)
        fds = await sb.sh("ls /proc/self/fd", timeout=30, check=True)
        assert fds.stdout.split() == ["0", "1", "2", "3"]  # 3: the listing ls itself opened
        async with sb.exec_stream("bash", ["-c", "echo one; sleep 0.2; echo two"]) as stream:
            out = "".join([ev.data async for ev in stream if ev.kind == "stdout"])
        assert out == "one\ntwo\n" and stream.exit_code == 0 and stream.heartbeats >= 1
        await sb.destroy(wait=True, wait_timeout=30)
        assert (await session.sandboxes.get(sb.id)).status == "destroyed"
