"""Shared fixtures. Tests run on asyncio (aiohttp needs it) through anyio's pytest plugin."""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ["_leakcheck"]  # fails the run if it leaves a process behind


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def require_bwrap() -> None:
    """Skip without bubblewrap on a laptop; fail in CI, where CREATEOS_REQUIRE_BWRAP=1."""
    if bwrap_available():
        return
    if os.environ.get("CREATEOS_REQUIRE_BWRAP") == "1":
        pytest.fail("bubblewrap (bwrap) is required here: apt-get install bubblewrap")
    pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")


@pytest.fixture
async def local_server():  # type: ignore[no-untyped-def]
    """A fresh emulator per test: fast heartbeats, short visible transitional states."""
    require_bwrap()
    from createos_sandbox_async.local import LocalServer

    async with LocalServer(heartbeat_interval=0.05, transition_delay=0.02) as server:
        yield server
