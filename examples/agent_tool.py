"""A "run code" tool for an LLM agent loop: a deadline, bounded output, and nothing left running.

An agent that can run code will, sooner or later, run an infinite loop or print a gigabyte. The
tool below gives the model what it needs to continue (exit status, the head and the tail of the
combined output, whether anything was cut or timed out) and guarantees the rest. It is built on
the shared core of the framework adapters (``createos_sandbox_async.integrations.core``), so it
truncates and stops commands exactly like the pydantic-ai workspace and the MCP server do:

- the command is streamed, so a deadline or an output budget stops it at once: leaving the
  stream early closes the connection and CreateOS kills the command;
- at most ``max_output`` bytes reach the model (head and tail, with a marker in between), and
  at most ``read_limit`` characters are ever read, so a runaway printer costs bounded memory;
- the code is one argument of the interpreter (``python3 -c``), so no quoting or temporary files
  are involved.

Run it against the local emulator (no account needed; needs bubblewrap)::

    python examples/agent_tool.py
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import attrs

from createos_sandbox_async import Sandbox
from createos_sandbox_async.integrations.core import OutputBudget, run_command

#: How to run each language: the interpreter takes the code as its last argument.
INTERPRETERS: dict[str, list[str]] = {
    "python": ["python3", "-u", "-c"],
    "bash": ["bash", "-c"],
}

_Budget = OutputBudget  # the one truncation policy (head + tail within a byte bound)


@attrs.frozen
class ToolResult:
    """What the model sees (``to_json()`` is the tool message)."""

    exit_code: int | None  # None when the command was stopped (deadline or output budget)
    output: str  # stdout and stderr, interleaved as produced, head + tail when truncated
    truncated: bool
    timed_out: bool

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))


async def run_code(
    sandbox: Sandbox,
    code: str,
    *,
    language: str = "python",
    deadline: float = 30.0,
    max_output: int = 4000,
    read_limit: int = 1_000_000,
) -> ToolResult:
    """Run ``code`` in ``sandbox`` and summarise the outcome for a model.

    The command is stopped (and killed server-side) after ``deadline`` seconds or once
    ``read_limit`` characters of output have been read; the model sees at most ``max_output``
    bytes of it.
    """
    if language not in INTERPRETERS:
        raise ValueError(f"language must be one of {sorted(INTERPRETERS)}, got {language!r}")
    budget = OutputBudget.of(max_output)  # ValueError unless max_output >= 2
    outcome = await run_command(
        sandbox,
        [*INTERPRETERS[language], code],
        lambda _kind, text: budget.add(text),
        cwd="/workspace",
        timeout=deadline,
        read_limit=read_limit,
        merge_output=True,  # stdout and stderr in the order the code wrote them
    )
    output, truncated = budget.render()
    if outcome.timed_out:
        output += f"\n[stopped: still running after {deadline} s]"
    elif outcome.over_limit:
        output += f"\n[stopped: printed more than {read_limit} characters]"
    return ToolResult(outcome.exit_code, output, truncated or outcome.over_limit, outcome.timed_out)


async def _demo() -> None:
    from createos_sandbox_async.local import LocalServer

    async with LocalServer() as server, server.session() as session:
        sandbox = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sandbox:
            cases: list[tuple[str, dict[str, Any]]] = [
                ("print(sum(range(10)))", {}),
                ("import sys; sys.exit('bad input')", {}),
                ("while True: print('spam ' * 20)", {"max_output": 300}),
                ("import time; print('sleeping', flush=True); time.sleep(60)", {"deadline": 2}),
            ]
            for code, kw in cases:
                result = await run_code(sandbox, code, **kw)
                print(f">>> {code}\n{result.to_json()}\n")


if __name__ == "__main__":
    anyio.run(_demo)
