"""LangChain Deep Agents backend: a ``deepagents`` ``BaseSandbox`` on a CreateOS sandbox.

:class:`CreateosSandbox` implements what ``BaseSandbox`` leaves abstract (``id``, ``execute``,
``upload_files``, ``download_files``) and their async variants; ``ls``, ``read``, ``grep``,
``edit``... come from ``BaseSandbox`` on top of them. :class:`CreateosSandboxProvider` is the
object ``deepagents-code`` loads from the ``deepagents_code.sandbox_providers`` entry point
(``createos``): it is built with no argument and answers ``get_or_create(sandbox_id=...)`` and
``delete(sandbox_id=...)``.

deepagents calls the sync methods from worker threads, and the async ones from its event loop.
This SDK is asyncio-native and a session belongs to one event loop, so each backend runs its
session on a private event loop in a daemon thread; every call (sync or async) is a task there.
Cancelling an ``aexecute`` cancels that task, which closes the command's stream: the service
kills the command's process tree and the sandbox stays usable.

Lifecycle: a backend never destroys its sandbox by itself; ``provider.delete(sandbox_id=...)``
or :meth:`CreateosSandbox.destroy` does (deepagents-code deletes the sandboxes it created when
its session ends, and keeps one it was given by id).
"""

from __future__ import annotations

import asyncio
import posixpath
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from deepagents.backends.protocol import (
    ExecuteResponse,
    FileDownloadResponse,
    FileUploadResponse,
)
from deepagents.backends.sandbox import BaseSandbox

from createos_sandbox_async import AsyncSession, Sandbox
from createos_sandbox_async.integrations import core

__all__ = ["CreateosSandbox", "CreateosSandboxProvider"]

T = TypeVar("T")

#: Default bound on a command's output (bytes kept: half head, half tail). Large, because
#: BaseSandbox reads files through execute; deepagents bounds what the model sees itself.
OUTPUT_LIMIT = 4 * 1024 * 1024
#: Default command timeout (seconds) when the caller gives none.
DEFAULT_TIMEOUT = 30 * 60
#: Output read before a command is stopped (a runaway writer); only head and tail are kept.
MAX_READ = 64 * 1024 * 1024
#: Exit code reported for a command killed by its timeout (as ``timeout(1)`` does).
TIMEOUT_EXIT = 124

_FILE_ERRORS: dict[type[OSError], str] = {
    FileNotFoundError: "file_not_found",
    PermissionError: "permission_denied",
    IsADirectoryError: "is_directory",
    NotADirectoryError: "invalid_path",
}


class _Loop:
    """A private event loop in a daemon thread, where one ``AsyncSession`` lives."""

    def __init__(self, session_options: Mapping[str, Any]) -> None:
        self._options = dict(session_options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="createos-deepagents", daemon=True
        )
        self._thread.start()
        self._session: AsyncSession | None = None
        self._closed = False

    async def session(self) -> AsyncSession:
        if self._session is None:  # only ever touched on the private loop: no race
            self._session = AsyncSession(**self._options)
        return self._session

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait (from any thread but that loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the private loop; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def close(self) -> None:
        """Close the session and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._session is not None:
            self.run(self._session.aclose())
            self._session = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


def _error_text(exc: BaseException) -> str:
    return f"Error: {core.tool_error(exc)}"


def _file_error(exc: BaseException) -> str:
    for kind, code in _FILE_ERRORS.items():
        if isinstance(exc, kind):
            return code
    if isinstance(exc, TypeError | ValueError):
        return "invalid_path"
    return str(core.tool_error(exc))


class CreateosSandbox(BaseSandbox):
    """A deepagents sandbox backend on one CreateOS sandbox (created on first use, or by id).

    Build it with :meth:`CreateosSandboxProvider.get_or_create` or directly: ``session_options``
    go to ``AsyncSession`` (API key, base URL; by default from the ``CREATEOS_SANDBOX_*``
    variables), ``create_options`` to ``sandboxes.create``. Construction does no I/O.
    """

    def __init__(
        self,
        *,
        sandbox_id: str | None = None,
        create_options: Mapping[str, Any] | None = None,
        session_options: Mapping[str, Any] | None = None,
        working_dir: str = "/workspace",
        output_limit: int = OUTPUT_LIMIT,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not isinstance(working_dir, str) or not working_dir.startswith("/"):
            raise ValueError(f"working_dir must be an absolute path, got {working_dir!r}")
        core.OutputBudget.of(output_limit)  # checks the limit now
        if not isinstance(default_timeout, int | float) or default_timeout <= 0:
            raise ValueError(f"default_timeout must be a positive number, got {default_timeout!r}")
        self._working_dir = working_dir
        self._limit = output_limit
        self._default_timeout = float(default_timeout)
        self._sandbox_id = sandbox_id
        self._create_options = create_options
        self._loop = _Loop(session_options or {})
        self._holder: core.SandboxHolder | None = None

    def __repr__(self) -> str:
        return f"CreateosSandbox(id={self._sandbox_id!r})"

    # -- plumbing (runs on the private loop) --

    async def _sandbox(self) -> Sandbox:
        if self._holder is None:
            self._holder = core.SandboxHolder(
                await self._loop.session(),
                sandbox_id=self._sandbox_id,
                create_options=self._create_options,
                setup=self._setup,
            )
        sandbox = await self._holder.sandbox()
        self._sandbox_id = sandbox.id
        return sandbox

    async def _setup(self, sandbox: Sandbox) -> None:
        await core.make_dir(sandbox, self._working_dir)

    def _path(self, path: str) -> str:
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, got {type(path).__name__}")
        if not path.startswith("/"):  # the protocol's rule: relative paths are invalid_path
            raise ValueError(f"path must be absolute, got {path!r}")
        return posixpath.normpath(path)

    # -- BaseSandbox --

    @property
    def id(self) -> str:
        """The sandbox id (the sandbox is created here if it does not exist yet)."""
        if self._sandbox_id is None:
            self._loop.run(self._sandbox())
        assert self._sandbox_id is not None
        return self._sandbox_id

    async def _execute(self, command: str, timeout: int | None) -> ExecuteResponse:
        try:
            if not isinstance(command, str):
                raise TypeError(f"command must be a str, got {type(command).__name__}")
            if not command.strip():
                raise ValueError("command must not be empty")
            if timeout is not None and (
                not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0
            ):
                raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
            limit = self._default_timeout if timeout is None else (timeout or None)
            sandbox = await self._sandbox()
            budget = core.OutputBudget.of(self._limit)
            outcome = await core.run_command(
                sandbox,
                ["sh", "-c", command],
                lambda _kind, text: budget.add(text),
                cwd=self._working_dir,
                timeout=limit,
                read_limit=MAX_READ,
                merge_output=True,
            )
        except Exception as exc:  # a tool result the model can read, never a traceback
            return ExecuteResponse(output=_error_text(exc), exit_code=None)
        output, truncated = budget.render()
        if outcome.timed_out:
            output += f"\n[command timed out after {limit:g} s and was killed]"
            return ExecuteResponse(output=output, exit_code=TIMEOUT_EXIT, truncated=truncated)
        if outcome.over_limit:
            output += "\n[command stopped: too much output]"
            return ExecuteResponse(output=output, exit_code=outcome.exit_code, truncated=True)
        return ExecuteResponse(output=output, exit_code=outcome.exit_code, truncated=truncated)

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Run ``command`` with ``sh -c`` in the working directory; stdout and stderr merged.

        ``timeout`` seconds (None: the default; 0: none) kills the command's process tree and
        gives exit code 124. Output beyond the limit keeps its head and tail (``truncated``).
        """
        return self._loop.run(self._execute(command, timeout))

    async def aexecute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Async :meth:`execute`; cancelling it kills the command."""
        return await self._loop.arun(self._execute(command, timeout))

    async def _upload(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        out: list[FileUploadResponse] = []
        for item in files:
            path = item[0] if isinstance(item, tuple) and item else item
            try:
                if not (isinstance(item, tuple) and len(item) == 2):
                    raise TypeError("each file must be a (path, bytes) tuple")
                if not isinstance(item[1], bytes | bytearray):
                    raise TypeError(f"the content of {item[0]!r} must be bytes")
                await core.write_file(await self._sandbox(), self._path(item[0]), bytes(item[1]))
            except Exception as exc:
                out.append(FileUploadResponse(path=str(path), error=_file_error(exc)))
            else:
                out.append(FileUploadResponse(path=item[0]))
        return out

    async def _download(self, paths: list[str]) -> list[FileDownloadResponse]:
        out: list[FileDownloadResponse] = []
        for path in paths:
            try:
                data = await core.read_file(await self._sandbox(), self._path(path))
            except Exception as exc:
                out.append(FileDownloadResponse(path=str(path), error=_file_error(exc)))
            else:
                out.append(FileDownloadResponse(path=path, content=data))
        return out

    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Write each ``(path, bytes)`` (absolute paths; a relative one gives ``invalid_path``)."""
        return self._loop.run(self._upload(files))

    async def aupload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        return await self._loop.arun(self._upload(files))

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        """Read each path; a missing one gives ``error="file_not_found"``."""
        return self._loop.run(self._download(paths))

    async def adownload_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        return await self._loop.arun(self._download(paths))

    # -- lifecycle --

    async def _destroy(self) -> bool:
        if self._holder is None:
            if self._sandbox_id is None:
                return False
            self._holder = core.SandboxHolder(
                await self._loop.session(), sandbox_id=self._sandbox_id
            )
        return await self._holder.destroy()

    def destroy(self) -> bool:
        """Destroy the sandbox (True if there was one); later calls fail readably."""
        return self._loop.run(self._destroy())

    async def adestroy(self) -> bool:
        return await self._loop.arun(self._destroy())

    def close(self) -> None:
        """Release the session and its thread; the sandbox is left as it is."""
        self._loop.close()


class CreateosSandboxProvider:
    """The ``createos`` provider deepagents-code loads from its sandbox-providers entry point.

    deepagents-code builds it with no argument (configuration comes from the
    ``CREATEOS_SANDBOX_*`` variables, or ``session_options``), calls
    ``get_or_create(sandbox_id=None | id, **params)`` and, for the sandboxes it created,
    ``delete(sandbox_id=...)`` when its session ends.
    """

    def __init__(self, **session_options: Any) -> None:
        self._session_options = session_options

    @property
    def metadata(self) -> Any:
        """``SandboxProviderMetadata`` when deepagents-code is installed, else None."""
        try:
            from deepagents_code.integrations.sandbox_provider import (  # type: ignore[import-not-found]
                SandboxInstallHint,
                SandboxProviderMetadata,
            )
        except ImportError:
            return None
        return SandboxProviderMetadata(
            name="createos",
            working_dir="/workspace",
            install=SandboxInstallHint(kind="package", name="createos-sandbox-async[langchain]"),
            supports_sandbox_id=True,
            supports_snapshot_name=False,
            backend_module="createos_sandbox_async.integrations.deepagents",
        )

    def get_or_create(self, *, sandbox_id: str | None = None, **kwargs: Any) -> CreateosSandbox:
        """A backend attached to ``sandbox_id``, or on a new sandbox (``kwargs``: create options).

        The sandbox exists when this returns (attach errors surface here, not on first use).
        """
        if kwargs.get("snapshot") is not None:
            raise ValueError("the createos provider does not support snapshot_name")
        kwargs.pop("snapshot", None)
        backend_keys = ("working_dir", "output_limit", "default_timeout")
        backend_opts = {k: kwargs.pop(k) for k in backend_keys if k in kwargs}
        backend = CreateosSandbox(
            sandbox_id=sandbox_id,
            create_options=kwargs or None,
            session_options=self._session_options,
            **backend_opts,
        )
        try:
            backend._loop.run(backend._sandbox())
        except BaseException:
            backend.close()
            raise
        return backend

    def delete(self, *, sandbox_id: str, **kwargs: Any) -> None:
        """Destroy sandbox ``sandbox_id`` (a sandbox already gone is fine)."""
        backend = CreateosSandbox(sandbox_id=sandbox_id, session_options=self._session_options)
        try:
            backend.destroy()
        finally:
            backend.close()

    async def aget_or_create(
        self, *, sandbox_id: str | None = None, **kwargs: Any
    ) -> CreateosSandbox:
        return await asyncio.to_thread(self.get_or_create, sandbox_id=sandbox_id, **kwargs)

    async def adelete(self, *, sandbox_id: str, **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, sandbox_id=sandbox_id, **kwargs)
