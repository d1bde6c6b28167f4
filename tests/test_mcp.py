"""The MCP server (createos_sandbox_async.mcp) driven by mcp's own client against the emulator:
in-process, and once over stdio as a subprocess. mcp is an optional extra: without it these tests
skip (fail in CI, where CREATEOS_REQUIRE_EXTRAS=1)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _emulator import child_process, python_argv
from _extras import need

mcp = need("mcp", "mcp")

from mcp.client.stdio import stdio_client  # noqa: E402

from createos_sandbox_async import AsyncSession, RetryPolicy  # noqa: E402
from createos_sandbox_async.local import LocalServer  # noqa: E402
from createos_sandbox_async.mcp import create_server, main  # noqa: E402

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def session(emulator: LocalServer) -> AsyncIterator[AsyncSession]:
    async with emulator.session(retry=RetryPolicy(base=0.01, cap=0.05)) as session:
        yield session


def text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def call(client: Any, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text(result)
    data: dict[str, Any] = result.structured_content
    return data


async def test_state_carries_across_calls_and_nothing_outlives_the_session(
    emulator: LocalServer, session: AsyncSession
) -> None:
    async with mcp.Client(create_server(session)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {
            "create_sandbox",
            "exec_command",
            "run_code",
            "read_file",
            "write_file",
            "list_files",
            "destroy_sandbox",
        }
        assert emulator.request_count("POST", "/v1/sandboxes") == 0  # created on first use
        wrote = await call(client, "write_file", path="src/app.py", content="print('héllo')\n")
        assert wrote == {"path": "/workspace/src/app.py", "bytes": 16}
        ran = await call(client, "exec_command", command="python3 src/app.py; exit 4")
        assert (ran["exit_code"], ran["output"], ran["truncated"]) == (4, "héllo\n", False)
        code = await call(client, "run_code", language="python", code="print(6 * 7)")
        assert code["output"] == "42\n" and code["id"] == ran["id"]  # the same sandbox
        listing = await call(client, "list_files", path="src")
        assert listing["entries"] == [{"name": "app.py", "is_dir": False, "size": 16}]
        read = await call(client, "read_file", path="/workspace/src/app.py")
        assert read["content"] == "print('héllo')\n" and not read["truncated"]
        other = (await call(client, "create_sandbox"))["id"]
        assert other != ran["id"]
        there = await call(client, "exec_command", command="ls /workspace", id=other)
        assert there["output"] == "" and there["id"] == other  # a separate sandbox
        assert emulator.request_count("POST", "/v1/sandboxes") == 2
        assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 0
    assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 2  # the session ended
    statuses = {str(sb.status) async for sb in session.sandboxes.list()}
    assert statuses <= {"destroyed"}


async def test_output_streams_as_progress_while_the_command_runs(
    session: AsyncSession,
) -> None:
    async with mcp.Client(create_server(session, output_limit=200)) as client:
        sandbox_id = (await call(client, "create_sandbox"))["id"]
        handle = await session.sandboxes.get(sandbox_id)
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))
            if message == "waiting\n":  # the command is still running: release it
                await handle.exec("touch", ["/tmp/go"])

        script = "echo waiting; while [ ! -e /tmp/go ]; do sleep 0.01; done; seq 1 2000"
        with anyio.fail_after(30):
            result = await client.call_tool(
                "exec_command", {"command": script}, progress_callback=on_progress
            )
        data = result.structured_content
    assert progress[0] == (8, "waiting\n")
    assert "".join(m or "" for _, m in progress).endswith("1999\n2000\n")
    assert data["exit_code"] == 0 and data["truncated"]
    assert data["output"].startswith("waiting\n1\n2\n") and data["output"].endswith("2000\n")
    assert len(data["output"].encode()) < 200 + 40  # the budget plus its marker


async def test_bad_input_and_failures_are_tool_errors_a_model_can_read(
    emulator: LocalServer, session: AsyncSession
) -> None:
    async with mcp.Client(create_server(session)) as client:
        cases = [
            ("exec_command", {"command": "true", "timeout": -1}, "timeout must be > 0"),
            ("exec_command", {"command": 5}, "command"),
            ("run_code", {"language": "cobol", "code": "x"}, "language must be one of"),
            ("read_file", {"path": "missing.txt"}, "FileNotFoundError"),
            ("list_files", {"path": "/", "id": "sb_other"}, "no sandbox 'sb_other'"),
        ]
        for tool, args, expected in cases:
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, args)
            message = text(result)
            assert expected in message and "Traceback" not in message
            assert emulator.api_key not in message
        emulator.faults.status(429, route="/v1/sandboxes/*/exec", times=None, retry_after=0)
        limited = await client.call_tool("exec_command", {"command": "true"})
        assert limited.is_error and "429" in text(limited) and "try again" in text(limited)


async def test_a_cancelled_call_kills_its_command_and_the_sandbox_stays(
    session: AsyncSession,
) -> None:
    async with mcp.Client(create_server(session)) as client:
        first = await call(client, "exec_command", command="echo $$ > /tmp/pid0")
        with anyio.CancelScope() as scope:

            async def on_progress(value: float, total: float | None, msg: str | None) -> None:
                scope.cancel()  # the command has started and printed

            script = "echo $$ > /tmp/run.pid; echo started; exec sleep 300"
            with anyio.fail_after(30):
                await client.call_tool(
                    "exec_command", {"command": script}, progress_callback=on_progress
                )
        assert scope.cancelled_caught
        handle = await session.sandboxes.get(first["id"])
        with anyio.fail_after(10):
            while (await handle.sh('kill -0 "$(cat /tmp/run.pid)"')).exit_code == 0:
                await anyio.sleep(0.02)
        again = await call(client, "exec_command", command="cat /tmp/pid0 > /dev/null; echo ok")
        assert again["id"] == first["id"] and again["output"] == "ok\n"


async def test_an_idle_sandbox_is_destroyed_and_then_reported_gone(
    emulator: LocalServer, session: AsyncSession
) -> None:
    async with mcp.Client(create_server(session, idle_timeout=0.3)) as client:
        await call(client, "exec_command", command="true")
        with anyio.fail_after(10):
            while emulator.request_count("DELETE", "/v1/sandboxes/*") == 0:
                await anyio.sleep(0.02)
        result = await client.call_tool("exec_command", {"command": "true"})
        assert result.is_error and "without use" in text(result)
        assert "create a new sandbox" in text(result)
        fresh = (await call(client, "create_sandbox"))["id"]
        again = await call(client, "exec_command", command="echo new")  # the new default
        assert (again["id"], again["output"]) == (fresh, "new\n")
    assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 2


async def test_over_stdio_as_a_subprocess(emulator: LocalServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREATEOS_")}
    env.update(
        CREATEOS_SANDBOX_BASE_URL=emulator.base_url,
        CREATEOS_SANDBOX_API_KEY=emulator.api_key,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    params = mcp.StdioServerParameters(
        command=sys.executable, args=["-m", "createos_sandbox_async.mcp"], env=env
    )
    with anyio.fail_after(60):
        async with mcp.Client(stdio_client(params)) as client:  # mcp 2.0 takes no params
            ran = await call(client, "run_code", language="bash", code="echo $((6 * 7))")
            assert (ran["exit_code"], ran["output"]) == (0, "42\n")
        with anyio.fail_after(30):  # the child destroys its sandbox on its way out
            while emulator.request_count("DELETE", "/v1/sandboxes/*") == 0:
                await anyio.sleep(0.05)
    assert emulator.request_count("POST", "/v1/sandboxes") == 1


def test_http_serves_loopback_only_unless_told(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--transport", "http", "--host", "0.0.0.0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


async def test_over_streamable_http_on_loopback(emulator: LocalServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREATEOS_")}
    env.update(
        CREATEOS_SANDBOX_BASE_URL=emulator.base_url,
        CREATEOS_SANDBOX_API_KEY=emulator.api_key,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    argv = python_argv(
        "-m", "createos_sandbox_async.mcp", "--transport", "http", "--port", str(port)
    )
    async with child_process(argv, env=env) as proc:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(60):
            while True:  # until the server listens
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    assert proc.returncode is None, "the server exited"
                    await anyio.sleep(0.05)
            async with mcp.Client(url) as client:
                ran = await call(client, "exec_command", command="echo over http")
                assert ran["output"] == "over http\n"
            assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 0  # server-lived
            proc.send_signal(signal.SIGINT)  # stopping the server destroys its sandboxes
            await proc.wait()
    assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 1
