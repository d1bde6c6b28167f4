"""A CreateOS sandbox as a pydantic-ai workspace (extra ``[pydantic-ai]``).

:class:`CreateosWorkspace` implements ``pydantic_ai.workspaces``' ``WorkspaceBackend``,
``SupportsCommands``, ``SupportsFilesystem`` and ``SupportsRealpath``, and follows that module's
lifecycle contract: no I/O when built; the first operation creates a sandbox (at most one, however
many operations race) or attaches to the one a ``WorkspaceRef`` names; the ref is recorded as soon
as the create returns, also when the caller is cancelled mid-create; a run ending never destroys
the sandbox (call :meth:`CreateosWorkspace.destroy`, or keep the ref for a later run); a sandbox
that is gone raises ``WorkspaceUnavailableError``, it is never silently replaced.

:class:`CreateosWorkspaceCapability` supplies the backend to an agent (and rebuilds it from a ref
found in message history or under durable execution)::

    agent = Agent(model, capabilities=[CreateosWorkspaceCapability(session)])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.workspaces import (
    CommandResult,
    FileEntry,
    SupportsCommands,
    SupportsFilesystem,
    SupportsRealpath,
    WorkspaceBackend,
    WorkspaceCommand,
    WorkspaceOutputLimitError,
    WorkspaceRef,
    WorkspaceTimeoutError,
    WorkspaceUnavailableError,
)

from createos_sandbox_async import AsyncSession, NotFoundError, Sandbox
from createos_sandbox_async.integrations import core

__all__ = ["PROVIDER", "CreateosWorkspace", "CreateosWorkspaceCapability"]

#: ``WorkspaceRef.provider`` of a CreateOS sandbox; ``WorkspaceRef.id`` is the sandbox id.
PROVIDER = "createos"
#: The most output (stdout and stderr together, in characters) one command may return.
DEFAULT_OUTPUT_LIMIT = 10 * 1024 * 1024
_PREVIEW = 64 * 1024  # what a WorkspaceOutputLimitError keeps of each stream


class CreateosWorkspace(WorkspaceBackend, SupportsCommands, SupportsFilesystem, SupportsRealpath):
    """A pydantic-ai workspace backend on a CreateOS sandbox.

    Args:
        session: the ``AsyncSession`` every call goes through (its owner closes it).
        ref: a ``WorkspaceRef(provider="createos", id=<sandbox id>)`` to attach to; without it
            the first operation creates a sandbox with ``create_options``.
        working_dir: where commands start and relative paths resolve; created if missing.
        env: variables for every command; a run's ``env=`` goes on top. They reach the command
            through the request body, never its command line.
        create_options: ``session.sandboxes.create(**create_options)``; default one
            ``s-1vcpu-256mb`` sandbox.
        output_limit: the most output one command may return (characters, both streams);
            more raises ``WorkspaceOutputLimitError`` and kills the command.
    """

    def __init__(
        self,
        session: AsyncSession,
        ref: WorkspaceRef | None = None,
        *,
        working_dir: str = "/workspace",
        env: Mapping[str, str] | None = None,
        create_options: Mapping[str, Any] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        if ref is not None:
            if not isinstance(ref, WorkspaceRef):
                raise TypeError(f"ref must be a WorkspaceRef, got {type(ref).__name__}")
            if ref.provider != PROVIDER:
                raise ValueError(f"ref belongs to provider {ref.provider!r}, not {PROVIDER!r}")
        if not isinstance(working_dir, str) or not working_dir.startswith("/"):
            raise ValueError(f"working_dir must be an absolute path, got {working_dir!r}")
        if not isinstance(output_limit, int) or isinstance(output_limit, bool) or output_limit < 1:
            raise ValueError(f"output_limit must be a positive int, got {output_limit!r}")
        core.command_request(["true"], cwd="/", env=env)  # checks env now, not on first use
        self._env = dict(env or {})
        self._wanted_dir = working_dir
        self._working_dir: str | None = None
        self._output_limit = output_limit
        self._holder = core.SandboxHolder(
            session,
            sandbox_id=ref.id if ref is not None else None,
            create_options=create_options,
            setup=self._setup,
        )

    def __repr__(self) -> str:
        return f"CreateosWorkspace(ref={self.ref!r})"

    @property
    def ref(self) -> WorkspaceRef | None:
        """``None`` until the sandbox is created; then its ref, for good."""
        sandbox_id = self._holder.id
        return None if sandbox_id is None else WorkspaceRef(provider=PROVIDER, id=sandbox_id)

    async def _setup(self, sandbox: Sandbox) -> None:
        script = 'mkdir -p -- "$1" && cd -- "$1" && pwd -P'
        res = await sandbox.exec("sh", ["-c", script, "sh", self._wanted_dir], timeout=120)
        if res.exit_code != 0:
            if not await core.is_alive(sandbox):
                raise core.SandboxGoneError(f"sandbox {sandbox.id} no longer exists")
            raise OSError(f"cannot use working directory {self._wanted_dir!r}: {res.stderr[:300]}")
        self._working_dir = res.stdout.rstrip("\n")

    async def _sandbox(self) -> Sandbox:
        try:
            return await self._holder.sandbox()
        except core.SandboxGoneError as exc:
            raise WorkspaceUnavailableError(str(exc)) from None

    def _gone(self, exc: core.SandboxGoneError) -> WorkspaceUnavailableError:
        self._holder.mark_gone(str(exc))
        return WorkspaceUnavailableError(str(exc))

    async def working_dir(self) -> str:
        await self._sandbox()
        assert self._working_dir is not None
        return self._working_dir

    async def destroy(self) -> bool:
        """Destroy the sandbox (the backend never does by itself); True if there was one.

        The workspace is unusable afterwards: operations raise ``WorkspaceUnavailableError``.
        """
        return await self._holder.destroy()

    # -- commands ---------------------------------------------------------------------------------

    async def run(
        self,
        command: WorkspaceCommand,
        *,
        shell: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run a command with stdin at EOF; a non-zero exit is a result, not an error."""
        argv = _argv(command, shell=shell)
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError("timeout must be a positive finite number or None")
        merged = {**self._env, **(env or {})}
        core.command_request(argv, cwd="/", env=merged)  # bad env fails before any I/O
        sandbox = await self._sandbox()
        assert self._working_dir is not None
        out: list[str] = []
        err: list[str] = []

        def take(kind: str, text: str) -> None:
            (out if kind == "stdout" else err).append(text)

        try:
            outcome = await core.run_command(
                sandbox,
                argv,
                take,
                cwd=self._working_dir,
                env=merged,
                timeout=timeout,
                read_limit=self._output_limit,
            )
        except core.SandboxGoneError as exc:
            raise self._gone(exc) from None
        stdout, stderr = "".join(out), "".join(err)
        if outcome.timed_out:
            raise WorkspaceTimeoutError(
                f"command timed out after {timeout:g}s and was killed", stdout=stdout, stderr=stderr
            )
        if outcome.over_limit:
            raise WorkspaceOutputLimitError(
                f"command output exceeded {self._output_limit} characters and the command was "
                "killed; redirect its output to a file and read part of it instead",
                limit=self._output_limit,
                stdout=stdout[:_PREVIEW],
                stderr=stderr[:_PREVIEW],
            )
        assert outcome.exit_code is not None
        return CommandResult(exit_code=outcome.exit_code, stdout=stdout, stderr=stderr)

    # -- files ------------------------------------------------------------------------------------

    async def _files(self, operation: Callable[[Sandbox], Any]) -> Any:
        sandbox = await self._sandbox()
        try:
            return await operation(sandbox)
        except core.SandboxGoneError as exc:
            raise self._gone(exc) from None
        except (
            NotFoundError
        ):  # the sandbox, not a file: the helpers turn missing files into OSError
            try:
                await core.ensure_alive(sandbox)
            except core.SandboxGoneError as exc:
                raise self._gone(exc) from None
            raise

    async def read_bytes(self, path: str) -> bytes:
        data: bytes = await self._files(lambda sb: core.read_file(sb, path))
        return data

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self._files(lambda sb: core.write_file(sb, path, data))

    async def stat(self, path: str) -> FileEntry:
        info: core.FileInfo = await self._files(lambda sb: core.stat(sb, path))
        return FileEntry(name=info.name, path=info.path, is_dir=info.is_dir, size=info.size)

    async def list_dir(self, path: str) -> Sequence[FileEntry]:
        infos: list[core.FileInfo] = await self._files(lambda sb: core.list_dir(sb, path))
        return [FileEntry(name=i.name, path=i.path, is_dir=i.is_dir, size=i.size) for i in infos]

    async def make_dir(self, path: str) -> None:
        await self._files(lambda sb: core.make_dir(sb, path))

    async def remove(self, path: str) -> None:
        working_dir = await self.working_dir()
        await self._files(lambda sb: core.remove(sb, path, working_dir=working_dir))

    async def exists(self, path: str) -> bool:
        found: bool = await self._files(lambda sb: core.exists(sb, path))
        return found

    async def realpath(self, path: str) -> str:
        """Symlinks resolved inside the sandbox (``realpath -m``: missing parts kept)."""
        resolved: str = await self._files(lambda sb: core.realpath(sb, path))
        return resolved


def _argv(command: WorkspaceCommand, *, shell: bool) -> list[str]:
    if isinstance(command, str):
        if not shell:
            raise TypeError("a string command requires shell=True; pass an argv sequence otherwise")
        return ["sh", "-c", command]
    if shell:
        raise TypeError("an argv sequence cannot be combined with shell=True")
    if not isinstance(command, Sequence) or not all(isinstance(a, str) for a in command):
        raise TypeError("command must be a str or a sequence of str")
    if not command:
        raise ValueError("command must not be empty")
    return list(command)


@dataclass
class CreateosWorkspaceCapability(AbstractCapability[Any]):
    """Gives an agent's runs a CreateOS sandbox as their workspace.

    A run without a ref gets a fresh :class:`CreateosWorkspace` (a sandbox is created on its first
    operation); a run continuing from a ``createos`` ref attaches to that sandbox. Refs of other
    providers are left to other capabilities. Nothing is destroyed when a run ends: the
    application decides (``result.workspace.backend.destroy()``, or a TTL of its own).
    """

    session: AsyncSession
    _: KW_ONLY
    working_dir: str = "/workspace"
    env: Mapping[str, str] | None = None
    create_options: Mapping[str, Any] | None = None
    id: str | None = "createos_workspace"

    def get_workspace(
        self, ctx: RunContext[Any], *, ref: WorkspaceRef | None
    ) -> WorkspaceBackend | None:
        if ref is not None and ref.provider != PROVIDER:
            return None
        return CreateosWorkspace(
            self.session,
            ref,
            working_dir=self.working_dir,
            env=self.env,
            create_options=self.create_options,
        )
