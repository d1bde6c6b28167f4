"""A pydantic-ai agent whose tools work in a CreateOS sandbox, run offline.

The model is a ``FunctionModel`` that plays a scripted conversation (write a script, run it, read
its output), so no LLM account is needed; every tool call it makes really runs in a sandbox.
``CreateosWorkspaceCapability`` gives the agent its workspace: a sandbox is created on the first
tool call, and the run's result carries its ref (``result.workspace.ref``). A second run started
with that ref continues in the same sandbox; nothing is destroyed when a run ends, so the program
destroys the sandbox itself at the end.

Run it against the local emulator (no account needed; needs bubblewrap)::

    python examples/pydantic_ai_workspace.py

or against CreateOS with ``CREATEOS_SANDBOX_API_KEY`` set: ``main(AsyncSession())``.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from createos_sandbox_async import AsyncSession
from createos_sandbox_async.integrations.core import OutputBudget, tool_error
from createos_sandbox_async.integrations.pydantic_ai import (
    CreateosWorkspace,
    CreateosWorkspaceCapability,
)

#: The calls the scripted "model" makes, in order, then its final answer.
FIB = "a, b = 0, 1\nfor _ in range(10):\n    a, b = b, a + b\nprint(a)\n"
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("write_file", {"path": "fib.py", "content": FIB}),
    ("run", {"command": ["python3", "fib.py"]}),
    ("run", {"command": ["sh", "-c", "echo oops >&2; exit 3"]}),
]


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call the next tool of SCRIPT, then answer with what the tools returned."""
    returns = [
        part.content
        for message in messages
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart)
    ]
    if len(returns) < len(SCRIPT):
        name, args = SCRIPT[len(returns)]
        return ModelResponse(parts=[ToolCallPart(name, args)])
    return ModelResponse(parts=[TextPart(json.dumps(returns))])


def build_agent(session: AsyncSession) -> Agent[None, str]:
    agent = Agent(FunctionModel(scripted), capabilities=[CreateosWorkspaceCapability(session)])

    @agent.tool
    async def run(ctx: RunContext[None], command: list[str]) -> dict[str, object]:
        """Run a command in the workspace; a non-zero exit status is a result."""
        try:
            result = await ctx.workspace.run(command, timeout=60)
        except (ValueError, TypeError, TimeoutError) as exc:  # bad input, or too slow
            return tool_error(exc).to_dict()  # a message the model can read and act on
        budget = OutputBudget.of(4000)  # the model sees a bounded head and tail
        budget.add(result.stdout + result.stderr)
        output, truncated = budget.render()
        return {"exit_code": result.exit_code, "output": output, "truncated": truncated}

    @agent.tool
    async def write_file(ctx: RunContext[None], path: str, content: str) -> str:
        """Write a text file (relative paths start in the working directory)."""
        try:
            await ctx.workspace.write_text(path, content)
        except (OSError, ValueError) as exc:  # a directory in the way, a bad path, ...
            return str(tool_error(exc))
        return f"wrote {len(content)} characters to {path}"

    return agent


async def main(session: AsyncSession) -> list[object]:
    agent = build_agent(session)
    result = await agent.run("Compute the 10th Fibonacci number with a script.")
    ref = result.workspace.ref
    assert ref is not None  # the sandbox exists: created by the first tool call
    print("sandbox:", ref.id)
    try:
        again = await agent.run("What is in fib.py?", workspace=ref)  # the same sandbox
        assert again.workspace.ref == ref
        assert await again.workspace.read_text("fib.py") == FIB
        answers: list[object] = json.loads(result.output)
        print(answers)
        return answers
    finally:
        backend = result.workspace.backend
        assert isinstance(backend, CreateosWorkspace)
        await backend.destroy()  # runs never destroy their sandbox: we do


async def _demo() -> None:
    from createos_sandbox_async.local import LocalServer

    async with LocalServer() as server, server.session() as session:
        await main(session)


if __name__ == "__main__":
    anyio.run(_demo)
