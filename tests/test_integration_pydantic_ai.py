"""pydantic-ai's own conformance suite for workspace backends, against CreateosWorkspace on the
emulator: every rule, the fresh, destructive and attach variants included.

pydantic-ai is an optional extra: without it these tests skip (fail in CI, where
CREATEOS_REQUIRE_EXTRAS=1).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from _extras import need

need("pydantic_ai.workspaces.conformance", "pydantic-ai")

from pydantic_ai.workspaces import WorkspaceBackend, WorkspaceRef  # noqa: E402
from pydantic_ai.workspaces.conformance import WorkspaceBackendSuite  # noqa: E402

from createos_sandbox_async import AsyncSession  # noqa: E402
from createos_sandbox_async.integrations.pydantic_ai import CreateosWorkspace  # noqa: E402
from createos_sandbox_async.local import LocalServer  # noqa: E402


@pytest.fixture
async def session(emulator: LocalServer) -> AsyncIterator[AsyncSession]:
    async with emulator.session() as session:
        yield session


@pytest.fixture
async def made(session: AsyncSession) -> AsyncIterator[list[CreateosWorkspace]]:
    """Every backend a test built: their sandboxes are destroyed after it (backends never do)."""
    backends: list[CreateosWorkspace] = []
    yield backends
    for backend in backends:
        await backend.destroy()


class TestCreateosWorkspaceConformance(WorkspaceBackendSuite):
    @pytest.fixture
    async def backend(
        self, session: AsyncSession, made: list[CreateosWorkspace]
    ) -> AsyncIterator[WorkspaceBackend]:
        backend = CreateosWorkspace(session)
        made.append(backend)
        yield backend

    @pytest.fixture
    def fresh_backend(
        self, session: AsyncSession, made: list[CreateosWorkspace]
    ) -> Callable[[], WorkspaceBackend]:
        def build() -> WorkspaceBackend:
            backend = CreateosWorkspace(session)
            made.append(backend)
            return backend

        return build

    @pytest.fixture
    def attach_backend(self, session: AsyncSession) -> Callable[[WorkspaceRef], WorkspaceBackend]:
        return lambda ref: CreateosWorkspace(session, ref)

    @pytest.fixture
    def destroy_environment(self) -> Callable[[WorkspaceBackend], Awaitable[Any]]:
        async def destroy(backend: WorkspaceBackend) -> None:
            assert isinstance(backend, CreateosWorkspace)
            await backend.destroy()

        return destroy


# ---------------------------------------------------------------- an agent, offline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_the_example_agent_runs_its_tools_in_one_sandbox(
    emulator: LocalServer, session: AsyncSession
) -> None:
    example = load_example("pydantic_ai_workspace")
    answers = await example.main(session)
    assert answers == [
        f"wrote {len(example.FIB)} characters to fib.py",
        {"exit_code": 0, "output": "55\n", "truncated": False},
        {"exit_code": 3, "output": "oops\n", "truncated": False},
    ]
    # two runs, one sandbox: the second attached by ref; destroyed once, by the program
    assert emulator.request_count("POST", "/v1/sandboxes") == 1
    assert emulator.request_count("DELETE", "/v1/sandboxes/*") == 1


def scripted_agent(session: AsyncSession, calls: list[tuple[str, dict[str, Any]]]) -> Any:
    """The example's agent, playing ``calls`` instead of the example's script."""
    example = load_example("pydantic_ai_workspace")
    example.SCRIPT[:] = calls
    return example.build_agent(session)


@pytest.mark.anyio
async def test_bad_tool_input_is_a_tool_result_the_model_reads(session: AsyncSession) -> None:
    agent = scripted_agent(
        session,
        [
            ("run", {"command": []}),  # an empty argv
            ("write_file", {"path": "/workspace", "content": "x"}),  # a directory
            ("run", {"command": ["true"]}),
        ],
    )
    backend = CreateosWorkspace(session)
    try:
        result = await agent.run("go", workspace=backend)
        answers = json.loads(result.output)
    finally:
        await backend.destroy()
    assert answers[0] == {
        "error": "invalid input: command must not be empty",
        "retryable": False,
        "retry_after": None,
    }
    assert answers[1].startswith("IsADirectoryError: Is a directory: /workspace")
    assert answers[2]["exit_code"] == 0  # the run went on after both


@pytest.mark.anyio
async def test_a_cancelled_run_kills_its_command_and_the_sandbox_is_reattachable(
    session: AsyncSession,
) -> None:
    script = "echo $$ > /workspace/run.pid; exec sleep 300"
    agent = scripted_agent(session, [("run", {"command": ["sh", "-c", script]})])
    backend = CreateosWorkspace(session)

    async def pid_written() -> str:
        with anyio.fail_after(30):
            while backend.ref is None:
                await anyio.sleep(0.02)
            probe = CreateosWorkspace(session, backend.ref)
            pid = ""
            while not pid.endswith("\n"):  # written whole, not just created
                await anyio.sleep(0.02)
                if await probe.exists("/workspace/run.pid"):
                    pid = (await probe.read_bytes("/workspace/run.pid")).decode()
            return pid.strip()

    pid = ""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(agent.run, "go", workspace=backend))
            pid = await pid_written()
            scope.cancel()
    assert scope.cancelled_caught and pid.isdigit()
    ref = backend.ref
    assert ref is not None
    again = CreateosWorkspace(session, ref)  # what a later run gets from the ref
    try:
        with anyio.fail_after(10):
            while (await again.run(["kill", "-0", pid])).exit_code == 0:
                await anyio.sleep(0.02)
        assert (await again.run(["echo", "still here"])).stdout == "still here\n"
    finally:
        await again.destroy()
