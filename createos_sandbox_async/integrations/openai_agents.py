"""CreateOS sandboxes for the OpenAI Agents SDK (extra ``[openai-agents]``).

:class:`CreateosSandboxClient` implements ``agents.sandbox``'s ``BaseSandboxClient`` and
:class:`CreateosSandboxSession` its ``BaseSandboxSession``, so a ``SandboxAgent`` runs its shell,
file and patch tools in a CreateOS sandbox::

    client = CreateosSandboxClient(session)
    options = CreateosSandboxClientOptions(shape="s-1vcpu-256mb")
    config = RunConfig(sandbox=SandboxRunConfig(client=client, options=options))
    result = await Runner.run(agent, "...", run_config=config)

- ``create`` makes one sandbox (a create cancelled mid-way destroys what it made: nobody could
  reach it), ``delete`` destroys it, ``resume`` reattaches to the sandbox a persisted
  :class:`CreateosSandboxSessionState` names (also after an unclean shutdown that never called
  ``delete``), and creates a replacement only when that sandbox is gone;
- commands run streamed (a timeout or a cancelled run kills the process tree); files go through
  the SDK's upload and download; the interactive ``exec_command``/``write_stdin`` tools run as
  managed processes (``tty=True`` on a terminal), whose output survives a dropped connection.

The state serialises to JSON with the sandbox id and the options, never a credential: the
session's API key stays in the ``AsyncSession`` the client was built with.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import time
import uuid
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
from agents.sandbox.errors import (
    ExecTimeoutError,
    ExecTransportError,
    WorkspaceArchiveReadError,
    WorkspaceArchiveWriteError,
    WorkspaceReadNotFoundError,
)
from agents.sandbox.manifest import Manifest
from agents.sandbox.session import SandboxSession, SandboxSessionState
from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
from agents.sandbox.session.dependencies import Dependencies
from agents.sandbox.session.manager import Instrumentation
from agents.sandbox.session.pty_output import collect_pty_output
from agents.sandbox.session.pty_types import (
    PTY_PROCESSES_MAX,
    PtyExecUpdate,
    allocate_pty_process_id,
    clamp_pty_yield_time_ms,
    resolve_pty_write_yield_time_ms,
)
from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
from agents.sandbox.session.workspace_payloads import coerce_write_payload
from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
from agents.sandbox.types import ExecResult, User

from createos_sandbox_async import (
    APIConnectionError,
    AsyncSession,
    CreateosError,
    RateLimitError,
    Sandbox,
    ServerError,
    StreamError,
)
from createos_sandbox_async.integrations import core

__all__ = [
    "CreateosSandboxClient",
    "CreateosSandboxClientOptions",
    "CreateosSandboxSession",
    "CreateosSandboxSessionState",
]

BACKEND = "createos"
_SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGTERM": 15}


class CreateosSandboxClientOptions(BaseSandboxClientOptions):
    """How ``create`` makes a sandbox (registered under ``type="createos"``)."""

    type: Literal["createos"] = "createos"
    shape: str = "s-1vcpu-256mb"
    rootfs: str | None = None
    auto_pause_after_seconds: int | None = None

    def create_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"shape": self.shape}
        if self.rootfs is not None:
            kwargs["rootfs"] = self.rootfs
        if self.auto_pause_after_seconds is not None:
            kwargs["auto_pause_after_seconds"] = self.auto_pause_after_seconds
        return kwargs


class CreateosSandboxSessionState(SandboxSessionState):
    """Serialisable state: the sandbox id and the options to make a replacement."""

    type: Literal["createos"] = "createos"
    sandbox_id: str
    shape: str = "s-1vcpu-256mb"
    rootfs: str | None = None
    auto_pause_after_seconds: int | None = None

    def options(self) -> CreateosSandboxClientOptions:
        return CreateosSandboxClientOptions(
            shape=self.shape,
            rootfs=self.rootfs,
            auto_pause_after_seconds=self.auto_pause_after_seconds,
        )


def _transport_error(command: Sequence[str | Path], exc: BaseException) -> ExecTransportError:
    retryable = isinstance(exc, RateLimitError | ServerError | APIConnectionError | StreamError)
    return ExecTransportError(
        command=command, cause=exc, message=str(core.tool_error(exc)), retryable=retryable
    )


@dataclass
class _Process:
    """One interactive command: a managed process followed into a chunk queue."""

    process_id: str
    tty: bool
    chunks: deque[bytes] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    notify: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None
    follower: asyncio.Task[None] | None = None
    last_used: float = field(default_factory=time.monotonic)


class CreateosSandboxSession(BaseSandboxSession):
    """A ``BaseSandboxSession`` on one CreateOS sandbox."""

    state: CreateosSandboxSessionState

    def __init__(
        self,
        *,
        session: AsyncSession,
        state: CreateosSandboxSessionState,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.state = state
        self._session = session
        self._holder = core.SandboxHolder(session, sandbox_id=state.sandbox_id)
        self._known = sandbox
        self._pty: dict[int, _Process] = {}
        self._pty_lock = asyncio.Lock()

    @property
    def sandbox_id(self) -> str:
        return self.state.sandbox_id

    async def _sandbox(self, command: Sequence[str | Path] = ()) -> Sandbox:
        if self._known is not None:
            return self._known
        try:
            self._known = await self._holder.sandbox()
        except core.SandboxGoneError as exc:
            raise _transport_error(command, exc) from None
        return self._known

    def supports_pty(self) -> bool:
        return True

    async def _ensure_backend_started(self) -> None:
        sandbox = await self._sandbox()
        await sandbox.exec("mkdir", ["-p", self._root()], timeout=60)

    def _root(self) -> str:
        return posixpath.normpath(str(self.state.manifest.root))

    async def _env(self) -> dict[str, str]:
        return dict(await self.state.manifest.environment.resolve())

    # -- commands ---------------------------------------------------------------------------------

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> ExecResult:
        argv = [str(part) for part in command]
        sandbox = await self._sandbox(command)
        out = bytearray()
        err = bytearray()

        def take(kind: str, text: str) -> None:
            (out if kind == "stdout" else err).extend(text.encode("utf-8", "surrogateescape"))

        try:
            outcome = await core.run_command(
                sandbox, argv, take, cwd=self._root(), env=await self._env(), timeout=timeout
            )
        except (CreateosError, core.SandboxGoneError) as exc:
            raise _transport_error(command, exc) from exc
        if outcome.timed_out:
            raise ExecTimeoutError(command=command, timeout_s=timeout)
        assert outcome.exit_code is not None
        return ExecResult(stdout=bytes(out), stderr=bytes(err), exit_code=outcome.exit_code)

    async def pty_exec_start(
        self,
        *command: str | Path,
        timeout: float | None = None,
        shell: bool | list[str] = True,
        user: str | User | None = None,
        tty: bool = False,
        yield_time_s: float | None = None,
        max_output_tokens: int | None = None,
    ) -> PtyExecUpdate:
        argv = self._prepare_exec_command(*command, shell=shell, user=user)
        sandbox = await self._sandbox(argv)
        try:
            view = await sandbox.processes.create(
                argv[0],
                argv[1:],
                env=await self._env() or None,
                cwd=self._root(),
                pty=(24, 80) if tty else None,
            )
            if not tty:
                await sandbox.processes.close_stdin(view)  # no terminal: stdin at EOF
        except CreateosError as exc:
            raise _transport_error(argv, exc) from exc
        entry = _Process(process_id=view.id, tty=tty)
        entry.follower = asyncio.create_task(self._follow(sandbox, entry))
        async with self._pty_lock:
            if len(self._pty) >= PTY_PROCESSES_MAX:
                oldest = min(self._pty, key=lambda k: self._pty[k].last_used)
                await self._terminate(self._pty.pop(oldest))
            session_id = allocate_pty_process_id(set(self._pty))
            self._pty[session_id] = entry
        wait_ms = 10_000 if yield_time_s is None else int(yield_time_s * 1000)
        return await self._update(
            session_id, entry, clamp_pty_yield_time_ms(wait_ms), max_output_tokens
        )

    async def pty_write_stdin(
        self,
        *,
        session_id: int,
        chars: str,
        yield_time_s: float | None = None,
        max_output_tokens: int | None = None,
    ) -> PtyExecUpdate:
        async with self._pty_lock:
            entry = self._resolve_pty_session_entry(pty_processes=self._pty, session_id=session_id)
        if chars:
            if not entry.tty:
                raise RuntimeError("stdin is not available for this process (start it with tty)")
            sandbox = await self._sandbox()
            with suppress(CreateosError):  # an exited process takes no input; its output says so
                await sandbox.processes.input(entry.process_id, chars)
        entry.last_used = time.monotonic()
        wait_ms = 250 if yield_time_s is None else int(yield_time_s * 1000)
        wait_ms = resolve_pty_write_yield_time_ms(yield_time_ms=wait_ms, input_empty=chars == "")
        return await self._update(session_id, entry, wait_ms, max_output_tokens)

    async def pty_terminate_all(self) -> None:
        async with self._pty_lock:
            entries = list(self._pty.values())
            self._pty.clear()
        for entry in entries:
            await self._terminate(entry)

    async def _follow(self, sandbox: Sandbox, entry: _Process) -> None:
        try:
            async with sandbox.processes.connect(entry.process_id) as output:
                async for event in output:
                    if event.kind == "data" and event.data:
                        async with entry.lock:
                            entry.chunks.append(bytes(event.data))
                        entry.notify.set()
                    elif event.kind == "exit":
                        entry.exit_code = _exit_status(event.exit_code, event.signal)
        except Exception as exc:
            message = f"\n[output lost: {core.tool_error(exc)}]\n".encode()
            async with entry.lock:
                entry.chunks.append(message)
            if entry.exit_code is None:
                entry.exit_code = -1
        finally:
            entry.closed.set()
            entry.notify.set()

    async def _update(
        self, session_id: int, entry: _Process, wait_ms: int, max_tokens: int | None
    ) -> PtyExecUpdate:
        output, original_tokens, closed = await collect_pty_output(
            output_chunks=entry.chunks,
            output_lock=entry.lock,
            output_notify=entry.notify,
            is_done=entry.closed.is_set,
            yield_time_ms=wait_ms,
            max_output_tokens=max_tokens,
        )
        exit_code = entry.exit_code if closed else None
        live: int | None = session_id
        if closed:
            async with self._pty_lock:
                self._pty.pop(session_id, None)
            live = None
        return PtyExecUpdate(
            process_id=live,
            output=output,
            exit_code=exit_code,
            original_token_count=original_tokens,
        )

    async def _terminate(self, entry: _Process) -> None:
        """Kill a process tree and stop following it (shielded, bounded: cleanup must finish)."""
        with anyio.move_on_after(10, shield=True):
            if not entry.closed.is_set():
                with suppress(Exception):
                    sandbox = await self._sandbox()
                    await sandbox.processes.kill(entry.process_id, grace_ms=0)
            if entry.follower is not None:
                entry.follower.cancel()
                with suppress(BaseException):
                    await entry.follower

    # -- files ------------------------------------------------------------------------------------

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        target = await self._validate_path_access(path)
        sandbox = await self._sandbox()
        try:
            return io.BytesIO(await core.read_file(sandbox, str(target)))
        except FileNotFoundError:
            raise WorkspaceReadNotFoundError(path=path) from None
        except (OSError, CreateosError, core.SandboxGoneError) as exc:
            raise WorkspaceArchiveReadError(path=path, cause=exc) from exc

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        payload = coerce_write_payload(path=path, data=data)
        target = await self._validate_path_access(path, for_write=True)
        body = payload.stream.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        sandbox = await self._sandbox()
        try:
            await core.write_file(sandbox, str(target), bytes(body))
        except (OSError, CreateosError, core.SandboxGoneError) as exc:
            raise WorkspaceArchiveWriteError(path=path, cause=exc) from exc

    async def running(self) -> bool:
        try:
            sandbox = await self._sandbox()
            return await core.is_alive(sandbox)
        except Exception:
            return False

    async def persist_workspace(self) -> io.IOBase:
        """The workspace as a tar stream with workspace-relative member names."""
        root = self._root()
        archive = f"/tmp/.createos-persist-{uuid.uuid4().hex}.tar"
        excludes = [f"--exclude=./{p.as_posix()}" for p in self._persist_workspace_skip_relpaths()]
        sandbox = await self._sandbox()
        try:
            res = await sandbox.exec(
                "tar", [*excludes, "-C", root, "-cf", archive, "."], timeout=600
            )
            if res.exit_code != 0:
                raise OSError(f"tar exited {res.exit_code}: {res.stderr[-300:]}")
            data = await sandbox.files.download(archive)
        except (OSError, CreateosError) as exc:
            raise WorkspaceArchiveReadError(path=Path(root), cause=exc) from exc
        finally:
            with anyio.CancelScope(shield=True), suppress(Exception):
                await sandbox.exec("rm", ["-f", archive], timeout=30)
        return io.BytesIO(data)

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        """Unpack a tar stream from :meth:`persist_workspace` under the workspace root."""
        root = self._root()
        body = data.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        archive = f"/tmp/.createos-hydrate-{uuid.uuid4().hex}.tar"
        sandbox = await self._sandbox()
        try:
            await sandbox.files.upload(archive, bytes(body))
            script = 'mkdir -p -- "$1" && tar --no-same-owner -xf "$2" -C "$1"'
            res = await sandbox.exec("sh", ["-c", script, "sh", root, archive], timeout=600)
            if res.exit_code != 0:
                raise OSError(f"tar exited {res.exit_code}: {res.stderr[-300:]}")
        except (OSError, CreateosError) as exc:
            raise WorkspaceArchiveWriteError(path=Path(root), cause=exc) from exc
        finally:
            with anyio.CancelScope(shield=True), suppress(Exception):
                await sandbox.exec("rm", ["-f", archive], timeout=30)


def _exit_status(exit_code: int | None, signal: str | None) -> int:
    if exit_code is not None:
        return exit_code
    if signal is not None:
        return 128 + _SIGNALS.get(signal, 0)
    return -1


class CreateosSandboxClient(BaseSandboxClient[CreateosSandboxClientOptions]):
    """Creates, resumes and deletes CreateOS sandboxes for ``agents.sandbox``."""

    backend_id = BACKEND
    supports_default_options = True

    def __init__(
        self,
        session: AsyncSession,
        *,
        instrumentation: Instrumentation | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self._instrumentation = instrumentation or Instrumentation()
        self._dependencies = dependencies

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: CreateosSandboxClientOptions | None = None,
    ) -> SandboxSession:
        options = options or CreateosSandboxClientOptions()
        manifest = self._validate_manifest_for_create(manifest or Manifest())
        sandbox = await self._new_sandbox(options)
        session_id = uuid.uuid4()
        state = CreateosSandboxSessionState(
            session_id=session_id,
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            sandbox_id=sandbox.id,
            shape=options.shape,
            rootfs=options.rootfs,
            auto_pause_after_seconds=options.auto_pause_after_seconds,
        )
        inner = CreateosSandboxSession(session=self.session, state=state, sandbox=sandbox)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    async def _new_sandbox(self, options: CreateosSandboxClientOptions) -> Sandbox:
        holder = core.SandboxHolder(self.session, create_options=options.create_kwargs())
        try:
            return await holder.sandbox()
        except BaseException:
            # A create cancelled after the service made the sandbox: nobody holds a session for
            # it, so nobody could ever delete it. Destroy it now.
            if holder.id is not None:
                await holder.destroy()
            raise

    async def delete(self, session: SandboxSession) -> SandboxSession:
        inner = session._inner
        if not isinstance(inner, CreateosSandboxSession):
            raise TypeError("CreateosSandboxClient.delete expects a CreateosSandboxSession")
        try:
            await inner.shutdown()
        finally:
            await core.SandboxHolder(self.session, sandbox_id=inner.sandbox_id).destroy()
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        if not isinstance(state, CreateosSandboxSessionState):
            raise TypeError("CreateosSandboxClient.resume expects a CreateosSandboxSessionState")
        holder = core.SandboxHolder(self.session, sandbox_id=state.sandbox_id)
        try:
            sandbox = await holder.sandbox()  # resumes a paused sandbox
            preserved = True
        except core.SandboxGoneError:
            # The sandbox is gone: a replacement, rebuilt from the snapshot by start().
            sandbox = await self._new_sandbox(state.options())
            state.sandbox_id = sandbox.id
            state.workspace_root_ready = False
            preserved = False
        inner = CreateosSandboxSession(session=self.session, state=state, sandbox=sandbox)
        inner._set_start_state_preserved(preserved)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, CreateosSandboxSessionState)
