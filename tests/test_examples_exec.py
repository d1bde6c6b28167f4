"""The exec examples, run for real against the emulator: the FastAPI SSE relay (served by uvicorn on
127.0.0.1) and the agent "run code" tool."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import anyio
import pytest

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

# Exit 0 when the pid in {pidfile} is a live process (zombies count as gone).
RUNNING = (
    "pid=$(cat {pidfile}) && state=$(grep '^State:' /proc/$pid/status) && "
    'case "$state" in *Z*) exit 1;; esac'
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def alive(sb: Any, pidfile: str) -> bool:
    """Is the process whose pid the command wrote to ``pidfile`` still running in the sandbox?

    A killed process stays a zombie until its parent reaps it (``kill -0`` still succeeds), so
    the state in /proc decides.
    """
    res = await sb.sh(RUNNING.format(pidfile=pidfile))
    return bool(res.exit_code == 0)


async def wait_dead(sb: Any, pidfile: str) -> None:
    with anyio.fail_after(10):  # the API promises ~5 s; the emulator kills at once
        while await alive(sb, pidfile):
            await anyio.sleep(0.02)


# ---------------------------------------------------------------- FastAPI SSE relay


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1, a free port; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        with anyio.fail_after(20):
            while not server.started:
                if task.done():
                    task.result()
                    raise AssertionError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with anyio.fail_after(20):
            await task


async def sse_messages(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event, decoded data) per SSE message; comments come out as ("comment", text)."""
    event = "message"
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def test_fastapi_sse_relays_the_output(emulator: LocalServer) -> None:
    mod = load_example("fastapi_sse")
    app = mod.create_app(emulator.session)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        script = "echo one; echo 'a \"quoted\" line'; echo two >&2; exit 3"
        async with http.get(f"{url}/run", params={"script": script}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            messages = [m async for m in sse_messages(resp) if m[0] != "comment"]
        sandbox = app.state.sandbox
    assert messages[-1] == ("exit", 3)
    out = "".join(data for kind, data in messages if kind == "stdout")
    err = "".join(data for kind, data in messages if kind == "stderr")
    assert (out, err) == ('one\na "quoted" line\n', "two\n")
    assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 1  # the lifespan destroyed it
    assert sandbox.id


async def test_fastapi_sse_sends_keepalives_while_the_command_is_silent(
    emulator: LocalServer,
) -> None:
    mod = load_example("fastapi_sse")
    app = mod.create_app(emulator.session, keepalive=0.05)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        # The command finishes only after the client has seen a keepalive.
        script = "while [ ! -e /tmp/go ]; do sleep 0.01; done; echo done"
        async with http.get(f"{url}/run", params={"script": script}) as resp:
            kinds = []
            async for kind, data in sse_messages(resp):
                kinds.append(kind)
                if kind == "comment" and kinds.count("comment") == 1:
                    assert data == "keepalive"
                    await app.state.sandbox.exec("touch", ["/tmp/go"])
    assert kinds[-2:] == ["stdout", "exit"]
    assert "comment" in kinds[:-2]


async def test_fastapi_client_going_away_kills_the_command(emulator: LocalServer) -> None:
    mod = load_example("fastapi_sse")
    app = mod.create_app(emulator.session)
    script = "sleep 300 & echo $! > /tmp/child.pid; echo started; wait"
    async with serve(app) as url, aiohttp.ClientSession() as http:
        sandbox = app.state.sandbox
        resp = await http.get(f"{url}/run", params={"script": script})
        async for kind, data in sse_messages(resp):
            assert (kind, data) == ("stdout", "started\n")
            break
        assert await alive(sandbox, "/tmp/child.pid")  # running while the client listens
        resp.close()  # the browser tab goes away
        await wait_dead(sandbox, "/tmp/child.pid")
        assert not await alive(sandbox, "/tmp/child.pid")


# ---------------------------------------------------------------- agent tool


@pytest.fixture
async def sandbox(emulator: LocalServer) -> AsyncIterator[Any]:
    async with emulator.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sb:
            yield sb


async def test_agent_tool_plain_runs(sandbox: Any) -> None:
    tool = load_example("agent_tool")
    ok = await tool.run_code(sandbox, "print(sum(range(10)))")
    assert (ok.exit_code, ok.output, ok.truncated, ok.timed_out) == (0, "45\n", False, False)
    bad = await tool.run_code(sandbox, "import sys; print('x'); sys.exit('bad input')")
    assert bad.exit_code == 1 and "bad input" in bad.output and "x\n" in bad.output
    sh = await tool.run_code(sandbox, "echo $((6*7)); exit 2", language="bash")
    assert (sh.exit_code, sh.output) == (2, "42\n")
    assert json.loads(ok.to_json()) == {
        "exit_code": 0,
        "output": "45\n",
        "truncated": False,
        "timed_out": False,
    }
    with pytest.raises(ValueError, match="language"):
        await tool.run_code(sandbox, "x", language="cobol")


async def test_agent_tool_cuts_runaway_output_and_kills_it(sandbox: Any) -> None:
    tool = load_example("agent_tool")
    code = (
        "import os\n"
        "open('/tmp/spam.pid', 'w').write(str(os.getpid()))\n"
        "print('FIRST LINE')\n"
        "while True: print('spam ' * 20)\n"
    )
    res = await tool.run_code(sandbox, code, max_output=300, read_limit=50_000)
    assert res.exit_code is None and res.truncated and not res.timed_out
    assert res.output.startswith("FIRST LINE\n")
    assert "bytes cut" in res.output and "printed more than 50000" in res.output
    assert len(res.output) < 300 + 200  # the budget plus the two markers
    await wait_dead(sandbox, "/tmp/spam.pid")


async def test_agent_tool_deadline_stops_and_kills(sandbox: Any) -> None:
    tool = load_example("agent_tool")
    code = (
        "import os, time\n"
        "open('/tmp/slow.pid', 'w').write(str(os.getpid()))\n"
        "print('working', flush=True)\n"
        "time.sleep(300)\n"
    )
    res = await tool.run_code(sandbox, code, deadline=1.5)
    assert res.timed_out and res.exit_code is None and not res.truncated
    assert res.output.startswith("working\n") and "still running after 1.5 s" in res.output
    await wait_dead(sandbox, "/tmp/slow.pid")


def test_budget_keeps_head_and_tail() -> None:
    tool = load_example("agent_tool")
    b = tool._Budget(5, 5)
    for piece in ["abc", "defgh", "ijklmnop", "qrstuvwxyz"]:
        b.add(piece)
    text, cut = b.render()
    assert cut and text.startswith("abcde\n") and text.endswith("\nvwxyz") and "[16 " in text
    small = tool._Budget(5, 5)
    small.add("0123456789")
    assert small.render() == ("0123456789", False)
