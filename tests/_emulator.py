"""Helpers for tests that run the emulator or a Python child process.

Import them by module name (``from _emulator import Client``), like ``_servers``,
``_pool_support`` and ``_fake_exec_api``: pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.abc import Process

from createos_sandbox_async.local import LocalServer

SHAPE = "s-1vcpu-256mb"

#: The emulator the tests get unless a test asks otherwise: fast exec/process heartbeats.
EMULATOR_DEFAULTS: dict[str, Any] = {"heartbeat_interval": 0.05}


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def require_bwrap() -> None:
    """Skip without bubblewrap on a laptop; fail in CI, where CREATEOS_REQUIRE_BWRAP=1."""
    if bwrap_available():
        return
    if os.environ.get("CREATEOS_REQUIRE_BWRAP") == "1":
        pytest.fail("bubblewrap (bwrap) is required here: apt-get install bubblewrap")
    pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")


@asynccontextmanager
async def start_emulator(**overrides: Any) -> AsyncIterator[LocalServer]:
    """The one way tests start an emulator: bubblewrap required, test defaults applied.

    Used by the ``emulator`` fixture (tests/conftest.py) and by module-scoped fixtures.
    """
    require_bwrap()
    async with LocalServer(**{**EMULATOR_DEFAULTS, **overrides}) as server:
        yield server


#: Runs ``python <prelude> <script|-m module> args...`` with Ctrl-C live in the child. A test run
#: started in the background of a non-interactive shell (``pytest &`` in a CI script) has SIGINT
#: ignored, and an ignored signal stays ignored across exec: without this a child under test
#: would never see the SIGINT the test sends it.
_SIGINT_PRELUDE = (
    "import runpy, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "del sys.argv[0]\n"
    "if sys.argv[0] == '-m':\n"
    "    del sys.argv[0]\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "else:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def python_argv(*args: str) -> list[str]:
    """argv for a Python child that a test will interrupt: ``python_argv("-m", "pkg", ...)``."""
    return [sys.executable, "-c", _SIGINT_PRELUDE, *args]


@asynccontextmanager
async def child_process(argv: list[str], **kwargs: Any) -> AsyncIterator[Process]:
    """``anyio.open_process`` whose child is killed on the way out, whatever happened.

    anyio's own exit waits for the child to exit: a child that ignores the test hangs the run.
    """
    proc = await anyio.open_process(argv, **kwargs)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await proc.aclose()


class Client:
    """A tiny raw client: JSON in, (status, decoded body) out."""

    def __init__(self, session: aiohttp.ClientSession, key: str) -> None:
        self.http = session
        self.key = key

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-Api-Key": self.key if key is None else key}

    async def call(
        self, method: str, path: str, *, key: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        async with self.http.request(method, path, headers=self.headers(key), **kw) as resp:
            raw = await resp.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return resp.status, body

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        status, body = await self.call(method, path, **kw)
        assert status == 200, (status, body)
        assert body["status"] == "success"
        return body["data"]

    async def create(self, base: str = "", **fields: Any) -> dict[str, Any]:
        fields.setdefault("shape", SHAPE)
        data: dict[str, Any] = await self.ok("POST", base + "/v1/sandboxes", json=fields)
        return data

    async def exec(self, sid: str, cmd: str, *args: str, **kw: Any) -> dict[str, Any]:
        data = await self.ok(
            "POST", f"/v1/sandboxes/{sid}/exec", json={"cmd": cmd, "args": list(args), **kw}
        )
        result: dict[str, Any] = data["result"]
        return result

    async def sh(self, sid: str, script: str) -> dict[str, Any]:
        return await self.exec(sid, "bash", "-c", script)


def pids_with_argv(*argv: str) -> list[int]:
    """Host pids running exactly `argv` (to check a process is really gone; zombies excluded)."""
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if fh.read() == want:
                    out.append(int(name))
        except OSError:
            continue
    return out


def host_exists(path: str) -> bool:
    """os.path.exists, kept out of async test bodies."""
    return os.path.exists(path)


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` (walking /proc parent links)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        frontier += kids
    return found
