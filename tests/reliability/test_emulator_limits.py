"""Emulator attacks (issue 10, standing suite): a fork bomb and a memory hog in one sandbox, while
a prober times `/healthz` and a second tenant keeps running commands. Each attack must be capped
by the sandbox's limits, the emulator must keep answering, and nothing may be left afterwards.
Figures (attack outcome, /healthz p50/p99 during the attack) are printed for RELIABILITY.md."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from _emulator import require_bwrap
from _leakcheck import describe, sandbox_processes

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

MAX_PROCESSES = 128
SHAPE = "s-1vcpu-256mb"
_BOMB = """
import os, time
forked, failed, deadline = 0, 0, time.monotonic() + 10
for _ in range(2000):
    if failed >= 50 or time.monotonic() > deadline:
        break
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        time.sleep(0.005)
        continue
    if pid == 0:
        os.close(1)  # let the exec end without waiting for the children
        os.close(2)
        time.sleep(60)
        os._exit(0)
    forked += 1
print(forked, failed, flush=True)
"""
_HOG = "chunks = []\nfor _ in range(64):\n    chunks.append(b'x' * (16 << 20))\nprint('survived')"


class Api:
    """JSON calls with one tenant's key (raw aiohttp: the emulator is attacked over the wire)."""

    def __init__(self, http: aiohttp.ClientSession, key: str) -> None:
        self.http, self.key = http, key

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        async with self.http.request(method, path, headers={"X-Api-Key": self.key}, **kw) as r:
            body = await r.json(content_type=None)
            assert r.status == 200, (r.status, body)
            return body["data"]

    async def exec(self, sid: str, *argv: str) -> dict[str, Any]:
        data = await self.call(
            "POST", f"/v1/sandboxes/{sid}/exec", json={"cmd": argv[0], "args": list(argv[1:])}
        )
        result: dict[str, Any] = data["result"]
        return result


@pytest.fixture
async def attacked() -> AsyncIterator[tuple[LocalServer, Api, Api]]:
    """An emulator with a small process cap; the attacker's and a bystander tenant's clients."""
    require_bwrap()
    if shutil.which("python3") is None:
        pytest.skip("python3 is needed inside the sandbox")
    async with (
        LocalServer(heartbeat_interval=0.2, max_processes=MAX_PROCESSES) as server,
        aiohttp.ClientSession(server.base_url) as http,
    ):
        yield server, Api(http, server.api_key), Api(http, server.add_tenant())


async def _under_attack(
    server: LocalServer, bystander: Api, attack: Callable[[], Awaitable[None]]
) -> dict[str, float]:
    """Run `attack` while timing /healthz and the bystander's execs; the figures."""
    sid = (await bystander.call("POST", "/v1/sandboxes", json={"shape": SHAPE}))["id"]
    health: list[float] = []
    execs: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        for _ in range(20_000):  # bounded; stops when the attack is over
            if done.is_set():
                return
            t = time.perf_counter()
            async with bystander.http.get("/healthz") as resp:
                assert resp.status == 200
            health.append(time.perf_counter() - t)
            await asyncio.sleep(0.01)

    async def work() -> None:
        for _ in range(2_000):
            if done.is_set():
                return
            t = time.perf_counter()
            assert (await bystander.exec(sid, "echo", "ok"))["stdout"] == "ok\n"
            execs.append(time.perf_counter() - t)
            await asyncio.sleep(0.02)

    async def run() -> None:
        try:
            await attack()
        finally:
            done.set()

    await asyncio.gather(probe(), work(), run())
    assert health and execs
    return {
        "healthz_p50_ms": round(statistics.median(health) * 1000, 2),
        "healthz_p99_ms": round(_p99(health) * 1000, 2),
        "bystander_exec_p50_ms": round(statistics.median(execs) * 1000, 2),
        "bystander_exec_p99_ms": round(_p99(execs) * 1000, 2),
    }


def _readable(figures: dict[str, Any]) -> dict[str, Any]:
    """``healthz_p50_ms`` -> ``healthz p50 ms``, ``bystander`` -> ``other tenant's exec``."""
    return {
        k.replace("bystander_", "other tenant's ").replace("_", " "): v for k, v in figures.items()
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _left(where: str) -> list[str]:
    for _ in range(500):  # bounded, 10 s
        if not sandbox_processes(where):
            return []
        await asyncio.sleep(0.02)
    return [describe(p) for p in sandbox_processes(where)]


async def test_fork_bomb_is_capped_and_the_emulator_keeps_answering(
    attacked: tuple[LocalServer, Api, Api], reliability_figures: Any
) -> None:
    server, attacker, bystander = attacked
    if "processes" not in server.enforced_limits:
        pytest.skip("processes are not limited on this machine (no cgroup)")
    sid = (await attacker.call("POST", "/v1/sandboxes", json={"shape": SHAPE}))["id"]
    outcome: dict[str, int] = {}

    root = os.path.join(server.state_dir, "sandboxes", sid)

    async def attack() -> None:
        result = await attacker.exec(sid, "python3", "-c", _BOMB)
        outcome["forked"], outcome["refused"] = map(int, result["stdout"].split())
        outcome["running_after"] = len(sandbox_processes(root))

    figures = await _under_attack(server, bystander, attack)
    await attacker.call("DELETE", f"/v1/sandboxes/{sid}")
    left = await _left(root)
    print(f"figures fork bomb: max_processes={MAX_PROCESSES} {outcome} {figures}")
    reliability_figures.row(
        {
            "attack": "fork bomb",
            "cap": MAX_PROCESSES,
            **_readable(outcome),
            "left after destroy": len(left),
        }
        | _readable(figures)
    )
    assert 0 < outcome["forked"] < MAX_PROCESSES  # capped: the rest failed with EAGAIN
    assert outcome["refused"] == 50
    assert outcome["forked"] <= outcome["running_after"] <= MAX_PROCESSES
    assert left == []
    assert figures["healthz_p99_ms"] < 1000  # generous: a 2-core machine under load stalls


async def test_memory_hog_is_killed_and_the_emulator_keeps_answering(
    attacked: tuple[LocalServer, Api, Api], reliability_figures: Any
) -> None:
    server, attacker, bystander = attacked
    if "memory" not in server.enforced_limits:
        pytest.skip("memory is not limited on this machine (no cgroup)")
    sid = (await attacker.call("POST", "/v1/sandboxes", json={"shape": SHAPE}))["id"]
    outcome: dict[str, Any] = {}

    async def attack() -> None:
        result = await attacker.exec(sid, "python3", "-c", _HOG)  # 1 GiB into 256 MiB
        outcome["exit_code"] = result["exit_code"]
        outcome["survived"] = "survived" in result["stdout"]
        outcome["after"] = (await attacker.exec(sid, "echo", "alive"))["stdout"]

    figures = await _under_attack(server, bystander, attack)
    root = os.path.join(server.state_dir, "sandboxes", sid)
    await attacker.call("DELETE", f"/v1/sandboxes/{sid}")
    left = await _left(root)
    print(f"figures memory hog: {outcome} {figures}")
    row = {"attack": "memory hog (1 GiB into 256 MiB)", "exit code": outcome["exit_code"]}
    reliability_figures.row(row | {"left after destroy": len(left)} | _readable(figures))
    assert outcome["survived"] is False and outcome["exit_code"] == 137  # OOM-killed
    assert outcome["after"] == "alive\n"  # the sandbox itself lives on
    assert left == []
    assert figures["healthz_p99_ms"] < 1000
