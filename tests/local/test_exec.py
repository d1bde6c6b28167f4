"""Exec against real processes: buffered results, env rules, NDJSON streams, kill on disconnect."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import aiohttp
import anyio
import pytest
from _emulator import Client, pids_with_argv

from createos_sandbox_async.local import LocalServer
from createos_sandbox_async.local._helper import PYTHON

HAVE_HELPER = os.path.exists(PYTHON)  # else execs never go through a helper

pytestmark = pytest.mark.anyio


async def _wait_until(predicate, limit: int = 500) -> bool:  # type: ignore[no-untyped-def]
    """Poll (bounded) instead of sleeping for a fixed time."""
    for _ in range(limit):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


async def test_buffered_exec_results(client: Client) -> None:
    sid = (await client.create())["id"]
    res = await client.exec(sid, "python3", "-c", "print(1+1)")
    assert res == {"stdout": "2\n", "stderr": "", "exit_code": 0}
    res = await client.sh(sid, "echo out; echo err >&2; exit 7")
    assert res == {"stdout": "out\n", "stderr": "err\n", "exit_code": 7}
    res = await client.exec(sid, "cat", stdin="fed through stdin")
    assert res["stdout"] == "fed through stdin"
    res = await client.sh(sid, "kill -9 $$")
    assert res["exit_code"] == 137  # 128 + SIGKILL
    res = await client.exec(sid, "definitely-not-a-command")
    assert res["error"] and "not found" in res["error"]
    res = await client.exec(sid, "/no/such/binary")
    assert res["error"]


async def test_env_is_minimal_and_overrides_need_declared_keys(client: Client) -> None:
    sid = (await client.create(envs={"GREETING": "hi", "TOKEN": "s3cret"}))["id"]
    res = await client.exec(sid, "env")
    env = dict(line.split("=", 1) for line in res["stdout"].splitlines())
    assert env["GREETING"] == "hi" and env["TOKEN"] == "s3cret"
    assert env["HOME"] == "/root" and "/usr/bin" in env["PATH"]
    assert not {"X_API_KEY", "CREATEOS_SANDBOX_API_KEY", "PYTHONPATH", "VIRTUAL_ENV"} & set(env)
    res = await client.exec(sid, "printenv", "GREETING", env={"GREETING": "hello"})
    assert res["stdout"] == "hello\n"
    status, body = await client.call(
        "POST",
        f"/v1/sandboxes/{sid}/exec",
        json={"cmd": "true", "env": {"UNDECLARED": "x"}},
    )
    assert status == 400 and "UNDECLARED" in body["data"]["message"]


async def test_exec_on_a_paused_sandbox_is_404(client: Client) -> None:
    sid = (await client.create())["id"]
    await client.ok("POST", f"/v1/sandboxes/{sid}/pause")
    status, _ = await client.call("POST", f"/v1/sandboxes/{sid}/exec", json={"cmd": "true"})
    assert status == 404
    status, _ = await client.call(
        "POST", f"/v1/sandboxes/{sid}/exec?stream=true", json={"cmd": "true"}
    )
    assert status == 404


async def test_background_daemons_survive_between_execs(client: Client) -> None:
    sid = (await client.create())["id"]
    await client.sh(sid, "nohup setsid sleep 300 >/dev/null 2>&1 &")
    # poll inside the sandbox until the detached sleep has been exec'd, then check it stays
    res = await client.sh(
        sid, "for i in $(seq 200); do pgrep -xf 'sleep 300' && break; sleep 0.02; done"
    )
    assert res["stdout"].strip()
    res = await client.sh(sid, "pgrep -xf 'sleep 300'")
    assert res["exit_code"] == 0
    # and loopback networking works inside one sandbox across execs
    await client.sh(
        sid, "nohup setsid python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &"
    )
    res = await client.sh(
        sid,
        'for i in $(seq 100); do python3 -c "import urllib.request;'
        "urllib.request.urlopen('http://127.0.0.1:8000/', timeout=1)\" "
        "2>/dev/null && echo up && break; sleep 0.05; done",
    )
    assert res["stdout"] == "up\n"


async def _frames(resp: aiohttp.ClientResponse) -> list[bytes]:
    raw = b""
    async for chunk in resp.content.iter_any():
        raw += chunk
    return raw.splitlines(keepends=True)


async def test_stream_frames_heartbeats_and_exit_last(client: Client) -> None:
    sid = (await client.create())["id"]
    script = "echo one; sleep 0.3; echo two >&2; exit 3"
    async with client.http.post(
        f"/v1/sandboxes/{sid}/exec",
        params={"stream": "true"},
        headers=client.headers(),
        json={"cmd": "bash", "args": ["-c", script], "stream": True},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert resp.headers["X-Request-Id"]
        lines = await _frames(resp)
    assert b'{"hb":true}\n' in lines  # heartbeat frame is exactly this line
    frames = [json.loads(line) for line in lines if line != b'{"hb":true}\n']
    assert frames == [{"stdout": "one\n"}, {"stderr": "two\n"}, {"exit_code": 3}]
    assert all(len(f) == 1 for f in frames)


async def test_stream_keeps_utf8_characters_whole(client: Client) -> None:
    sid = (await client.create())["id"]
    # write a 4-byte character one byte at a time
    script = "printf '\\360'; sleep 0.05; printf '\\237'; sleep 0.05; printf '\\230\\200\\n'"
    async with client.http.post(
        f"/v1/sandboxes/{sid}/exec?stream=true",
        headers=client.headers(),
        json={"cmd": "bash", "args": ["-c", script]},
    ) as resp:
        lines = await _frames(resp)
    text = "".join(json.loads(line).get("stdout", "") for line in lines)
    assert text == "\U0001f600\n"


async def test_stream_error_frame_when_command_cannot_start(client: Client) -> None:
    sid = (await client.create())["id"]
    async with client.http.post(
        f"/v1/sandboxes/{sid}/exec?stream=true",
        headers=client.headers(),
        json={"cmd": "no-such-tool"},
    ) as resp:
        lines = await _frames(resp)
    assert len(lines) == 1 and "error" in json.loads(lines[0])


@pytest.mark.parametrize("buffered", [False, True])
async def test_disconnect_kills_the_whole_command_tree(
    server: LocalServer, client: Client, buffered: bool
) -> None:
    sid = (await client.create())["id"]
    marker = f"{uuid.uuid4().int % 10**9}"
    # a parent and a child, both long-lived, both carrying the marker
    script = f"sleep 1{marker} & sleep 2{marker} & echo started; wait"

    def alive() -> list[int]:
        return pids_with_argv("sleep", f"1{marker}") + pids_with_argv("sleep", f"2{marker}")

    http = aiohttp.ClientSession(server.base_url)
    url = f"/v1/sandboxes/{sid}/exec" + ("" if buffered else "?stream=true")
    body = {"cmd": "bash", "args": ["-c", script]}

    async def call() -> None:
        async with http.post(url, headers=client.headers(), json=body) as resp:
            first = await resp.content.readline()
            assert json.loads(first) == {"stdout": "started\n"}
            await resp.content.readline()  # blocks: the command never ends by itself

    try:
        task = asyncio.ensure_future(call())
        assert await _wait_until(lambda: len(alive()) == 2)
        task.cancel()  # the client goes away mid-command: its connection is dropped
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await http.close()
    assert await _wait_until(lambda: not alive())
    # the sandbox itself is fine afterwards
    assert (await client.exec(sid, "true"))["exit_code"] == 0


def _cmdlines_with(marker: str) -> list[bytes]:
    """Command lines (NUL-separated) of host processes that mention `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    line = fh.read()
            except OSError:
                continue
            if marker.encode() in line:
                found.append(line)
    return found


@pytest.mark.parametrize("buffered", [False, True])
async def test_disconnect_kills_what_an_exited_leader_left_holding_the_pipes(
    server: LocalServer, client: Client, buffered: bool
) -> None:
    sid = (await client.create())["id"]
    marker = f"{uuid.uuid4().int % 10**9}"
    sleeper = b"sleep\x003" + marker.encode() + b"\x00"
    http = aiohttp.ClientSession(server.base_url)
    url = f"/v1/sandboxes/{sid}/exec" + ("" if buffered else "?stream=true")
    body = {"cmd": "bash", "args": ["-c", f"sleep 3{marker} & exit 0"]}

    async def call() -> None:
        async with http.post(url, headers=client.headers(), json=body) as resp:
            await resp.read()  # never ends by itself: the orphaned sleep holds stdout

    try:
        task = asyncio.ensure_future(call())
        # the leader (and nsenter above it) are gone; only the sleep is left
        assert await _wait_until(lambda: _cmdlines_with(marker) == [sleeper])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await http.close()
    assert await _wait_until(lambda: not _cmdlines_with(marker))


@pytest.mark.parametrize("buffered", [False, True])
async def test_a_runaway_printer_left_by_its_client_is_collected(
    server: LocalServer, client: Client, buffered: bool
) -> None:
    # A command flooding stdout while its client reads nothing fills the emulator's pipe buffer,
    # which pauses reading from the pipe. Killed when the client leaves, it must still be
    # collected (pipes read to EOF and closed), not held open until the server's shutdown gives
    # up on it (a ResourceWarning in a later test).
    sid = (await client.create())["id"]
    await _steady(server, client, sid)
    baseline = _open_fds()
    http = aiohttp.ClientSession(server.base_url)
    url = f"/v1/sandboxes/{sid}/exec" + ("" if buffered else "?stream=true")
    body = {"cmd": "python3", "args": ["-c", "while True: print('spam ' * 200)"]}
    started = asyncio.Event()

    async def call() -> None:
        async with http.post(url, headers=client.headers(), json=body) as resp:
            await resp.content.readline()
            started.set()
            await asyncio.Event().wait()  # a client that stops reading

    try:
        task = asyncio.ensure_future(call())
        if buffered:  # no answer before the exit: the pipes are open once the fds are up
            assert await _wait_until(lambda: _open_fds() >= baseline + 2)
        else:
            with anyio.fail_after(30):
                await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await http.close()
    assert await _wait_until(lambda: _open_fds() <= baseline, limit=1000)


async def _steady(server: LocalServer, client: Client, sid: str) -> None:
    """Exec until the sandbox's exec helper (local/_helper.py) runs, if it will: it holds a few
    descriptors of its own for as long as the sandbox lives."""
    box = server._emu.sandboxes[sid].runtime  # type: ignore[union-attr]
    for _ in range(400):  # bounded: 400 x 25 ms
        assert (await client.exec(sid, "true"))["exit_code"] == 0
        if not HAVE_HELPER or (box.helper is not None and box.helper.ready):
            return
        await asyncio.sleep(0.025)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_exec_activity_is_counted(server: LocalServer, client: Client) -> None:
    sid = (await client.create())["id"]
    await asyncio.gather(*(client.exec(sid, "true") for _ in range(5)))
    assert server.request_count("POST", "/v1/sandboxes/*/exec") == 5
