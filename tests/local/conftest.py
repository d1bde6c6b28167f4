"""Fixtures for the emulator's own tests: a server per test and a raw aiohttp client (the emulator
is tested over the wire, independently of the SDK)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from conftest import require_bwrap

from createos_sandbox_async.local import LocalServer

SHAPE = "s-1vcpu-256mb"


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    require_bwrap()
    async with LocalServer(heartbeat_interval=0.05) as srv:
        yield srv


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


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(server.base_url) as session:
        yield Client(session, server.api_key)


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
