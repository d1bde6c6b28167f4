"""The emulator in a child process (its memory measurable on its own) and a `/healthz` poller that
records what other clients see while one tenant misbehaves."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs


@attrs.define
class EmulatorProcess:
    """A running `python -m createos_sandbox_async.local`."""

    proc: asyncio.subprocess.Process
    base_url: str
    api_key: str
    admin_token: str  # of the fault-control routes (/__createos/)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _status_mib(self, field: str) -> float:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} line")

    def rss_mib(self) -> float:
        """The emulator's resident set size now (VmRSS), in MiB."""
        return self._status_mib("VmRSS")

    def peak_mib(self) -> float:
        """The emulator's peak resident set size so far (VmHWM), in MiB."""
        return self._status_mib("VmHWM")


@contextlib.asynccontextmanager
async def emulator_process(*args: str) -> AsyncIterator[EmulatorProcess]:
    """Start the emulator's CLI on a free port; stop it (SIGINT, then SIGKILL) whatever happens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "createos_sandbox_async.local",
        "--port",
        "0",
        "--heartbeat-interval",
        "0.1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        env: dict[str, str] = {}
        for _ in range(20):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "the emulator exited before printing its address"
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                env[name] = value
            if {"CREATEOS_SANDBOX_BASE_URL", "CREATEOS_LOCAL_ADMIN_TOKEN"} <= env.keys():
                break
        yield EmulatorProcess(
            proc,
            env["CREATEOS_SANDBOX_BASE_URL"],
            env["CREATEOS_SANDBOX_API_KEY"],
            env["CREATEOS_LOCAL_ADMIN_TOKEN"],
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.communicate(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@attrs.define
class HealthPoller:
    """Polls `/healthz` from its own connection until stopped; every answer's status and latency
    are kept. `answered_between(t0, t1)` counts polls wholly inside a window (monotonic time)."""

    base_url: str
    pace: float = 0.01
    samples: list[tuple[float, float, int]] = attrs.field(factory=list)  # start, end, status
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(self.base_url, timeout=timeout) as http:
            while True:  # at least one poll, however short the attack
                t0 = time.monotonic()
                async with http.get("/healthz") as resp:
                    await resp.read()
                    self.samples.append((t0, time.monotonic(), resp.status))
                if self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pace)

    async def __aenter__(self) -> HealthPoller:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task  # a failed poll (refused, reset, timeout) fails the test here

    def answered_between(self, start: float, end: float) -> int:
        return sum(1 for t0, t1, status in self.samples if start <= t0 and t1 <= end)

    @property
    def latencies(self) -> list[float]:
        return sorted(t1 - t0 for t0, t1, _ in self.samples)

    def percentile(self, q: float) -> float:
        lat = self.latencies
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0

    @property
    def statuses(self) -> set[int]:
        return {status for _, _, status in self.samples}


# A guest program: swaps /root/x between a directory (holding probe = "inside") and a symlink to
# argv[1] as fast as it can (RENAME_EXCHANGE, so /root/x is never missing), for argv[2] seconds
# or until /root/stop exists. /root/swapping appears once it runs.
SWAPPER = r"""
import ctypes, os, random, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir("/root")
os.mkdir("x")
with open("x/probe", "w") as fh:
    fh.write("inside")
os.symlink(sys.argv[1], "y")
deadline = time.monotonic() + float(sys.argv[2])
open("/root/swapping", "w").close()
while time.monotonic() < deadline and not os.path.exists("/root/stop"):
    # RENAME_EXCHANGE: /root/x is a directory or a symlink, never missing; each for 0-300 us
    if libc.renameat2(-100, b"x", -100, b"y", 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
    time.sleep(random.random() * 0.0003)
"""
