"""The OpenAI Agents SDK adapter (createos_sandbox_async.integrations.openai_agents) on the
emulator: a SandboxAgent driven by agents.testing.ScriptedModel whose tool calls really run in a
sandbox, and the client's create / delete / resume / serialised state. openai-agents is an
optional extra: without it these tests skip (fail in CI, where CREATEOS_REQUIRE_EXTRAS=1)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _extras import need

need("agents.sandbox", "openai-agents")

from agents import RunConfig, Runner  # noqa: E402
from agents.sandbox import Manifest, SandboxAgent, SandboxRunConfig  # noqa: E402
from agents.sandbox.errors import ExecTimeoutError, WorkspaceReadNotFoundError  # noqa: E402
from agents.sandbox.session.sandbox_client import BaseSandboxClientOptions  # noqa: E402
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call  # noqa: E402

from createos_sandbox_async import AsyncSession  # noqa: E402
from createos_sandbox_async.integrations.openai_agents import (  # noqa: E402
    CreateosSandboxClient,
    CreateosSandboxClientOptions,
    CreateosSandboxSession,
)
from createos_sandbox_async.local import LocalServer  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
async def session(emulator: LocalServer) -> AsyncIterator[AsyncSession]:
    async with emulator.session() as session:
        yield session


def outputs(result: Any) -> list[str]:
    return [str(item.output) for item in result.new_items if hasattr(item, "output")]


async def test_a_scripted_agent_runs_its_tools_in_a_sandbox(
    emulator: LocalServer, session: AsyncSession
) -> None:
    def write_stdin(call: Any) -> list[Any]:
        seen = json.dumps(call.input, default=str)
        session_id = int(re.findall(r"session ID (\d+)", seen)[-1])
        args = {"session_id": session_id, "chars": "ping\n", "yield_time_ms": 2000}
        return [function_call("write_stdin", args, call_id="c4")]

    model = ScriptedModel(
        [
            [function_call("exec_command", {"cmd": "pwd; echo $GREETING; exit 3"}, call_id="c1")],
            [function_call("exec_command", {"cmd": ""}, call_id="c2")],  # bad input
            [
                function_call(
                    "exec_command", {"cmd": "cat", "tty": True, "yield_time_ms": 300}, call_id="c3"
                )
            ],
            ModelStep.respond(write_stdin),
            [assistant_message("done")],
        ]
    )
    manifest = Manifest(environment={"value": {"GREETING": "hello-env"}})
    agent = SandboxAgent(name="dev", model=model, instructions="Work.", default_manifest=manifest)
    client = CreateosSandboxClient(session)
    config = RunConfig(
        sandbox=SandboxRunConfig(client=client, options=CreateosSandboxClientOptions())
    )
    result = await Runner.run(agent, "go", run_config=config)
    assert result.final_output == "done"
    ran, bad, started, echoed = outputs(result)
    assert "exited with code 3" in ran and "/workspace\nhello-env\n" in ran
    assert "cmd" in bad and "Traceback" not in bad  # the model reads what was wrong
    assert "session ID" in started
    assert "ping" in echoed  # typed into the terminal, echoed by cat
    assert emulator.request_count("POST", "/v1/sandboxes") == 1
    statuses = [str(sb.status) async for sb in session.sandboxes.list()]
    assert statuses == ["destroyed"]  # the run's sandbox is deleted when it ends


async def test_state_serialises_and_resume_reattaches_after_an_unclean_shutdown(
    emulator: LocalServer, session: AsyncSession
) -> None:
    client = CreateosSandboxClient(session)
    live = await client.create(options=CreateosSandboxClientOptions())
    await live.start()
    await live.exec("echo kept > /workspace/state.txt")
    await live.write(Path("notes/a.bin"), io.BytesIO(b"\x00\xffdata"))
    assert (await live.read(Path("/workspace/notes/a.bin"))).read() == b"\x00\xffdata"
    with pytest.raises(WorkspaceReadNotFoundError):
        await live.read(Path("missing.txt"))
    payload = json.loads(json.dumps(client.serialize_session_state(live.state)))
    assert payload["type"] == "createos" and payload["sandbox_id"].startswith("sb_")
    assert emulator.api_key not in json.dumps(payload)
    # the process dies here: no delete(). A new process resumes from the payload.
    other = CreateosSandboxClient(session)
    resumed = await other.resume(other.deserialize_session_state(payload))
    await resumed.start()
    assert resumed.state.sandbox_id == payload["sandbox_id"]
    assert (await resumed.exec("cat /workspace/state.txt")).stdout == b"kept\n"
    await other.delete(resumed)
    assert emulator.request_count("DELETE", f"/v1/sandboxes/{payload['sandbox_id']}") == 1
    # resuming a state whose sandbox is gone makes a replacement (the snapshot restores it)
    replaced = await other.resume(other.deserialize_session_state(payload))
    assert replaced.state.sandbox_id != payload["sandbox_id"]
    await replaced.start()
    await other.delete(replaced)
    assert emulator.request_count("POST", "/v1/sandboxes") == 2


async def test_options_parse_through_the_frameworks_registry() -> None:
    parsed = BaseSandboxClientOptions.parse({"type": "createos", "shape": "s-2vcpu-1gb"})
    assert isinstance(parsed, CreateosSandboxClientOptions) and parsed.shape == "s-2vcpu-1gb"


async def test_timeout_and_cancel_kill_the_command_and_leave_the_sandbox(
    session: AsyncSession,
) -> None:
    client = CreateosSandboxClient(session)
    live = await client.create(options=CreateosSandboxClientOptions())
    try:
        await live.start()
        with pytest.raises(ExecTimeoutError):
            await live.exec("sleep 300", timeout=1.0)
        script = "echo $$ > /workspace/run.pid; exec sleep 300"
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(live.exec, script)
                with anyio.fail_after(30):
                    while b"\n" not in (await live.exec("cat /workspace/run.pid || true")).stdout:
                        await anyio.sleep(0.02)
                scope.cancel()
        pid = (await live.exec("cat /workspace/run.pid")).stdout.decode().strip()
        with anyio.fail_after(10):
            while (await live.exec(f"kill -0 {pid}")).exit_code == 0:
                await anyio.sleep(0.02)
        assert isinstance(live._inner, CreateosSandboxSession)
        assert await live._inner.running()
    finally:
        await client.delete(live)
