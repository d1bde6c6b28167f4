"""A "run code" tool for an LLM agent loop: a deadline, bounded output, and nothing left running.

An agent that can run code will, sooner or later, run an infinite loop or print a gigabyte. The
tool below gives the model what it needs to continue (exit status, the head and the tail of the
combined output, whether anything was cut or timed out) and guarantees the rest:

- the command is streamed, so a deadline or an output budget stops it at once: leaving
  ``async with sb.exec_stream(...)`` early closes the connection and CreateOS kills the command;
- at most ``max_output`` characters reach the model (head and tail, with a marker in between), and
  at most ``read_limit`` characters are ever read, so a runaway printer costs bounded memory;
- code goes in through stdin, so no quoting or temporary files are involved.

Run it against the local emulator (no account needed; needs bubblewrap)::

    python examples/agent_tool.py
"""

from __future__ import annotations

import collections
import json
from typing import Any

import anyio
import attrs

from createos_sandbox_async import Sandbox

#: How to run each language: the program reads the code from stdin.
INTERPRETERS: dict[str, tuple[str, list[str]]] = {
    "python": ("python3", ["-u", "-"]),
    "bash": ("bash", ["-s"]),
}


@attrs.frozen
class ToolResult:
    """What the model sees (``to_json()`` is the tool message)."""

    exit_code: int | None  # None when the command was stopped (deadline or output budget)
    output: str  # stdout and stderr, interleaved as produced, head + tail when truncated
    truncated: bool
    timed_out: bool

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))


class _Budget:
    """Keeps the first ``head`` and the last ``tail`` characters of everything added."""

    def __init__(self, head: int, tail: int) -> None:
        self.head: list[str] = []
        self.head_left = head
        self.tail: collections.deque[str] = collections.deque()
        self.tail_size = 0
        self.tail_max = tail
        self.seen = 0

    def add(self, text: str) -> None:
        self.seen += len(text)
        if self.head_left > 0:
            part, text = text[: self.head_left], text[self.head_left :]
            self.head.append(part)
            self.head_left -= len(part)
        if not text:
            return
        self.tail.append(text)
        self.tail_size += len(text)
        while self.tail and self.tail_size - len(self.tail[0]) >= self.tail_max:
            self.tail_size -= len(self.tail.popleft())

    def render(self) -> tuple[str, bool]:
        head = "".join(self.head)
        tail = "".join(self.tail)[-self.tail_max :] if self.tail_max else ""
        kept = len(head) + len(tail)
        if kept >= self.seen:
            return head + tail, False
        return f"{head}\n... [{self.seen - kept} characters cut] ...\n{tail}", True


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
    ``read_limit`` characters of output have been read; the model sees at most ``max_output``.
    """
    if language not in INTERPRETERS:
        raise ValueError(f"language must be one of {sorted(INTERPRETERS)}, got {language!r}")
    if max_output < 2:
        raise ValueError(f"max_output must be >= 2, got {max_output!r}")
    cmd, args = INTERPRETERS[language]
    budget = _Budget(max_output // 2, max_output - max_output // 2)
    exit_code: int | None = None
    timed_out = over_limit = False
    with anyio.move_on_after(deadline) as scope:
        async with sandbox.exec_stream(cmd, args, stdin=code) as stream:
            async for event in stream:
                if event.kind == "exit":
                    exit_code = event.exit_code
                elif event.kind == "error":  # the interpreter could not even start
                    budget.add(f"[could not start {cmd}: {event.data}]\n")
                else:
                    budget.add(event.data)
                    if budget.seen >= read_limit:
                        over_limit = True
                        break  # leaving the block kills the command
    timed_out = scope.cancelled_caught
    output, truncated = budget.render()
    if timed_out:
        output += f"\n[stopped: still running after {deadline} s]"
    elif over_limit:
        output += f"\n[stopped: printed more than {read_limit} characters]"
    return ToolResult(exit_code, output, truncated or over_limit, timed_out)


async def _demo() -> None:
    from createos_sandbox_async.local import LocalServer

    async with LocalServer() as server, server.session() as session:
        sandbox = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sandbox:
            for code, kw in [
                ("print(sum(range(10)))", {}),
                ("import sys; sys.exit('bad input')", {}),
                ("while True: print('spam ' * 20)", {"max_output": 300}),
                ("import time; print('sleeping', flush=True); time.sleep(60)", {"deadline": 2}),
            ]:
                result: Any = await run_code(sandbox, code, **kw)
                print(f">>> {code}\n{result.to_json()}\n")


if __name__ == "__main__":
    anyio.run(_demo)
