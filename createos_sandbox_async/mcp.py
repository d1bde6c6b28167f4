"""An MCP server whose tools run in CreateOS sandboxes (extra ``[mcp]``, ``mcp>=2,<3``).

``create_server(session)`` returns an ``mcp.server.mcpserver.MCPServer`` with these tools, each
taking an optional sandbox ``id``:

- ``create_sandbox``: create a sandbox and return its id (the default when there is none);
- ``exec_command``: run a shell command (``bash -c``) with a timeout; bounded output, head + tail;
- ``run_code``: run ``code`` in ``language`` (python, bash, sh, node);
- ``read_file`` / ``write_file``: a text file (reads bounded, head + tail; writes make parents);
- ``list_files``: a directory's entries;
- ``destroy_sandbox``: destroy a sandbox now.

State carries across calls: without ``id`` a tool uses the connection's default sandbox, created
on first use. Every sandbox the connection created is destroyed when it ends (the MCP client
disconnects, however it disconnects) and after ``idle_timeout`` seconds without a tool call;
nothing outlives its connection. Over streamable HTTP the server's lifetime is the connection:
its sandboxes are shared by its clients and destroyed when it stops (or when idle).

A command's output is sent as progress notifications while it runs (when the client asked for
progress). Failures come back as tool errors the model can read: never a traceback, never a
secret; a rate limit (429) or another transient failure says to try again.

``python -m createos_sandbox_async.mcp`` (and ``createos-sandbox mcp``) runs it over stdio, or
with ``--transport http`` over streamable HTTP on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import posixpath
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.abc
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from createos_sandbox_async import AsyncSession, Sandbox
from createos_sandbox_async.integrations import core

__all__ = ["LANGUAGES", "Conversation", "create_server", "main"]

T = TypeVar("T")

#: How ``run_code`` runs each language: the interpreter takes the code as its last argument.
LANGUAGES: dict[str, list[str]] = {
    "python": ["python3", "-u", "-c"],
    "bash": ["bash", "-c"],
    "sh": ["sh", "-c"],
    "node": ["node", "-e"],
}
_PROGRESS_CHUNK = 2000  # characters of output per progress notification


class Conversation:
    """The sandboxes of one MCP connection: the default one, and those ``create_sandbox`` made."""

    def __init__(
        self,
        session: AsyncSession,
        tg: anyio.abc.TaskGroup,
        *,
        create_options: Mapping[str, Any] | None,
        idle_timeout: float | None,
        working_dir: str,
    ) -> None:
        self.session = session
        self._tg = tg
        self._options = create_options
        self._idle = idle_timeout
        self.working_dir = working_dir
        self._holders: list[core.SandboxHolder] = []
        self._watched: set[int] = set()
        self.default = self._new_holder()

    def _new_holder(self) -> core.SandboxHolder:
        holder = core.SandboxHolder(
            self.session,
            create_options=self._options,
            setup=self._setup,
            idle_timeout=self._idle,
        )
        self._holders.append(holder)
        return holder

    async def _setup(self, sandbox: Sandbox) -> None:
        await sandbox.exec("mkdir", ["-p", self.working_dir], timeout=60)

    def _watch(self, holder: core.SandboxHolder) -> None:
        """Start the idle bound of a holder that has a sandbox (once)."""
        if id(holder) not in self._watched and holder.id is not None:
            self._watched.add(id(holder))
            self._tg.start_soon(holder.reap_idle)

    @asynccontextmanager
    async def use(self, sandbox_id: str | None) -> AsyncIterator[Sandbox]:
        """The sandbox ``sandbox_id`` names (default: the connection's), marked in use."""
        holder = self.holder(sandbox_id)
        try:
            async with holder.use() as sandbox:
                self._watch(holder)
                yield sandbox
        except core.SandboxGoneError as exc:
            holder.mark_gone(str(exc))
            raise
        finally:
            self._watch(holder)  # a create cancelled mid-way still gets its idle bound

    async def create(self) -> core.SandboxHolder:
        """A new sandbox; it becomes the default when the default has none (yet, or any more)."""
        if self.default.id is None and not self.default.gone:
            holder = self.default
        else:
            holder = self._new_holder()
            if self.default.gone:
                self.default = holder
        try:
            await holder.sandbox()
        finally:
            self._watch(holder)
        return holder

    def holder(self, sandbox_id: str | None) -> core.SandboxHolder:
        if sandbox_id is None:
            return self.default
        for holder in self._holders:
            if holder.id == sandbox_id:
                return holder
        raise ValueError(
            f"id: no sandbox {sandbox_id!r} in this session (ids come from create_sandbox; "
            "omit id to use the session's sandbox)"
        )

    async def close(self) -> None:
        """Destroy every sandbox this connection created (shielded, bounded)."""
        for holder in self._holders:
            if holder.created and not holder.gone:
                try:
                    await holder.destroy()
                except Exception:  # one failure must not leave the others running
                    continue


def _check_timeout(timeout: float, limit: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError("timeout must be a number of seconds")
    if not math.isfinite(timeout) or not 0 < timeout <= limit:
        raise ValueError(f"timeout must be > 0 and at most {limit:g} seconds, got {timeout!r}")
    return float(timeout)


def create_server(
    session: AsyncSession,
    *,
    name: str = "createos-sandbox",
    create_options: Mapping[str, Any] | None = None,
    idle_timeout: float | None = 600.0,
    working_dir: str = "/workspace",
    output_limit: int = 16_000,
    max_timeout: float = 600.0,
) -> MCPServer[Conversation]:
    """The MCP server; ``session`` (closed by its owner) makes every call.

    ``create_options`` go to ``session.sandboxes.create``; ``idle_timeout`` seconds without a
    tool call destroy a sandbox (None: only the end of the connection does); relative paths and
    commands start in ``working_dir``; a tool returns at most ``output_limit`` bytes of output
    (head and tail); a command's ``timeout`` may be at most ``max_timeout`` seconds.
    """
    if not isinstance(working_dir, str) or not posixpath.isabs(working_dir):
        raise ValueError(f"working_dir must be an absolute path, got {working_dir!r}")
    core.OutputBudget.of(output_limit)  # checks it
    if idle_timeout is not None:
        core.SandboxHolder(session, idle_timeout=idle_timeout)  # checks it, no I/O

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Conversation]) -> AsyncIterator[Conversation]:
        async with anyio.create_task_group() as tg:
            conversation = Conversation(
                session,
                tg,
                create_options=create_options,
                idle_timeout=idle_timeout,
                working_dir=working_dir,
            )
            try:
                yield conversation
            finally:
                with anyio.CancelScope(shield=True):
                    await conversation.close()
                tg.cancel_scope.cancel()

    server: MCPServer[Conversation] = MCPServer(
        name,
        instructions=(
            "Tools that run commands and edit files in an isolated CreateOS sandbox (a Linux "
            "micro-VM). One sandbox is created on first use and kept across calls, so files and "
            f"installed packages persist; relative paths start in {working_dir}. Every sandbox "
            "is destroyed when this session ends."
        ),
        lifespan=lifespan,
    )

    async def call(ctx: Context, body: Callable[[], Awaitable[T]]) -> T:
        """Run a tool body; any failure becomes a tool error the model can read."""
        try:
            return await body()
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(str(core.tool_error(exc))) from None

    def conversation(ctx: Context) -> Conversation:
        state: Any = ctx.request_context.lifespan_context
        if not isinstance(state, Conversation):  # pragma: no cover - a server built elsewhere
            raise TypeError("this server was not built by create_server")
        return state

    def absolute(path: str) -> str:
        if not isinstance(path, str) or not path:
            raise ValueError("path must be a non-empty string")
        return posixpath.normpath(posixpath.join(working_dir, path))

    async def run(
        ctx: Context, argv: list[str], sandbox_id: str | None, timeout: float, cwd: str | None
    ) -> dict[str, Any]:
        timeout = _check_timeout(timeout, max_timeout)
        directory = absolute(cwd) if cwd is not None else working_dir
        budget = core.OutputBudget.of(output_limit)

        async def relay(kind: str, text: str) -> None:
            budget.add(text)
            for start in range(0, len(text), _PROGRESS_CHUNK):
                piece = text[start : start + _PROGRESS_CHUNK]
                await ctx.report_progress(budget.seen, message=piece)

        async with conversation(ctx).use(sandbox_id) as sandbox:
            outcome = await core.run_command(
                sandbox,
                argv,
                relay,
                cwd=directory,
                timeout=timeout,
                read_limit=max(output_limit * 64, 1_000_000),
                merge_output=True,
            )
        output, truncated = budget.render()
        if outcome.timed_out:
            output += f"\n[killed: still running after {timeout:g} s]"
        elif outcome.over_limit:
            output += "\n[killed: too much output]"
        return {
            "id": sandbox.id,
            "exit_code": outcome.exit_code,
            "output": output,
            "truncated": truncated or outcome.over_limit,
            "timed_out": outcome.timed_out,
        }

    @server.tool()
    async def create_sandbox(ctx: Context) -> dict[str, Any]:
        """Create a new sandbox and return its id (pass it as `id` to the other tools).

        Not needed for one sandbox: the other tools create one on first use.
        """

        async def body() -> dict[str, Any]:
            holder = await conversation(ctx).create()
            return {"id": holder.id, "working_dir": working_dir}

        return await call(ctx, body)

    @server.tool()
    async def exec_command(
        ctx: Context,
        command: str,
        id: str | None = None,
        timeout: float = 60,
        cwd: str | None = None,
    ) -> dict[str, Any]:
        """Run a shell command (bash -c) and return its exit code and combined output.

        A non-zero exit code is a normal result. The command is killed after `timeout`
        seconds. Long output keeps its head and tail (`truncated` is then true).
        """

        async def body() -> dict[str, Any]:
            if not isinstance(command, str) or not command.strip():
                raise ValueError("command must be a non-empty shell command")
            return await run(ctx, ["bash", "-c", command], id, timeout, cwd)

        return await call(ctx, body)

    @server.tool()
    async def run_code(
        ctx: Context,
        language: str,
        code: str,
        id: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Run a program: `language` is python, bash, sh or node; `code` is its source."""

        async def body() -> dict[str, Any]:
            if language not in LANGUAGES:
                raise ValueError(f"language must be one of {sorted(LANGUAGES)}, got {language!r}")
            return await run(ctx, [*LANGUAGES[language], code], id, timeout, None)

        return await call(ctx, body)

    @server.tool()
    async def read_file(ctx: Context, path: str, id: str | None = None) -> dict[str, Any]:
        """Read a text file (a long one keeps its head and tail; `truncated` is then true)."""

        async def body() -> dict[str, Any]:
            target = absolute(path)
            async with conversation(ctx).use(id) as sandbox:
                data = await core.read_file(sandbox, target)
            budget = core.OutputBudget.of(output_limit)
            budget.add(data.decode("utf-8", "replace"))
            text, truncated = budget.render()
            return {"path": target, "content": text, "size": len(data), "truncated": truncated}

        return await call(ctx, body)

    @server.tool()
    async def write_file(
        ctx: Context, path: str, content: str, id: str | None = None
    ) -> dict[str, Any]:
        """Write a text file, replacing it; missing parent directories are created."""

        async def body() -> dict[str, Any]:
            target = absolute(path)
            data = content.encode("utf-8")
            async with conversation(ctx).use(id) as sandbox:
                await core.write_file(sandbox, target, data)
            return {"path": target, "bytes": len(data)}

        return await call(ctx, body)

    @server.tool()
    async def list_files(ctx: Context, path: str = ".", id: str | None = None) -> dict[str, Any]:
        """List a directory: each entry's name, whether it is a directory, and its size."""

        async def body() -> dict[str, Any]:
            target = absolute(path)
            async with conversation(ctx).use(id) as sandbox:
                entries = await core.list_dir(sandbox, target)
            shown = entries[:1000]
            return {
                "path": target,
                "entries": [{"name": e.name, "is_dir": e.is_dir, "size": e.size} for e in shown],
                "truncated": len(entries) > len(shown),
            }

        return await call(ctx, body)

    @server.tool()
    async def destroy_sandbox(ctx: Context, id: str | None = None) -> dict[str, Any]:
        """Destroy a sandbox now (default: the session's); its files are lost."""

        async def body() -> dict[str, Any]:
            holder = conversation(ctx).holder(id)
            sandbox_id = holder.id
            destroyed = await holder.destroy()
            return {"id": sandbox_id, "destroyed": destroyed}

        return await call(ctx, body)

    return server


# -- command line ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="createos-sandbox mcp",
        description="Serve CreateOS sandbox tools over MCP (key: CREATEOS_SANDBOX_API_KEY).",
    )
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP: port (default 8000)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="HTTP: allow a non-loopback --host (the tools run code with your API key)",
    )
    parser.add_argument("--shape", default="s-1vcpu-256mb", help="sandbox shape")
    parser.add_argument("--rootfs", default=None, help="sandbox rootfs (default: the service's)")
    parser.add_argument(
        "--idle-timeout", type=float, default=600.0, help="seconds unused before a sandbox goes"
    )
    return parser


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``createos-sandbox mcp``: serve over stdio (default) or streamable HTTP; exit status."""
    args = _parser().parse_args(argv)
    if args.transport == "http" and not _loopback(args.host) and not args.allow_remote:
        print(
            f"refusing to serve on {args.host}: not a loopback address (pass --allow-remote)",
            file=sys.stderr,
        )
        return 2
    options: dict[str, Any] = {"shape": args.shape}
    if args.rootfs:
        options["rootfs"] = args.rootfs

    async def serve() -> None:
        async with AsyncSession() as session:
            server = create_server(session, create_options=options, idle_timeout=args.idle_timeout)
            if args.transport == "stdio":
                await server.run_stdio_async()
            else:
                await server.run_streamable_http_async(host=args.host, port=args.port)

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
