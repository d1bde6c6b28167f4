"""The ``Sandbox`` handle's commands, files, processes and desktop: the entry points into them.

``Sandbox`` inherits these; the work is in ``exec``, ``files``, ``processes`` and ``computer``.
Measured: those modules add ~25 ms to ``import createos_sandbox_async`` (~180 ms), so they load
on first use. None of them imports ``sandbox`` at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .computer import Computer
    from .exec import ExecResult, ExecStream
    from .files import Files
    from .processes import Processes
    from .sandbox import Sandbox

__all__ = ["SandboxCommands"]

# The hot path (``sb.exec``) skips the import machinery after the first call.
_run_exec: Callable[..., Awaitable[ExecResult]] | None = None


def _load_run_exec() -> Callable[..., Awaitable[ExecResult]]:
    global _run_exec
    from .exec import run_exec

    _run_exec = run_exec
    return run_exec


class SandboxCommands:
    """Run commands, move files, manage processes, drive the desktop (``Sandbox`` inherits it)."""

    __slots__ = ()

    async def exec(
        self,
        cmd: str,
        args: Sequence[str] | None = None,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Run a program to completion and return its output. No shell: see ``sh`` for one.

        With a deadline (``timeout=``, or an enclosing ``anyio.fail_after``/``move_on_after``)
        the command runs over the stream route so that giving up kills it; without one it is
        one buffered request. Resent only after 429 or 503 (the command did not start).

        Args:
            cmd: The program (``"python3"``, ``"/usr/bin/env"``), looked up in ``PATH``.
            args: Its arguments: a list of str (``"-la"`` alone is refused: ``["-la"]``).
            stdin: Input for the command, sent whole with the request (str, or UTF-8 bytes).
            env: Variables for this command; the service only lets it override variables
                declared in the sandbox's create-time ``envs``. Values are kept secret.
            timeout: Seconds for the whole call; the command is killed when it expires.
                Default: the session's request timeout, per attempt.
            check: Raise ``CommandError`` unless the command exited 0.

        Returns:
            An ``ExecResult``: ``stdout``, ``stderr``, ``exit_code``, ``exec_ms``, ``ok``.

        Raises:
            TypeError: ``cmd``, ``args``, ``stdin`` or ``env`` has the wrong type.
            ValueError: One of them has a wrong value (e.g. a bad env key).
            CommandError: ``check=True`` and the command failed; ``err.result`` holds the
                output.
            APITimeoutError: ``timeout`` expired (the exec is not sent again).
            ValidationError: The server refused the command (e.g. an env name not declared).
            NotFoundError: The sandbox is gone or not running.
            APIConnectionError: No answer (a POST is not resent after that).
            ProtocolError: The answer is off the wire format, or over 64 MiB.

        Example:
            ```python
            res = await sb.exec("python3", ["-c", "print(6 * 7)"], timeout=30)
            assert res.ok and res.stdout.strip() == "42"
            ```
        """
        run_exec = _run_exec or _load_run_exec()
        return await run_exec(self, cmd, args, stdin=stdin, env=env, timeout=timeout, check=check)

    async def sh(
        self,
        script: str,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Run ``script`` with ``bash -lc``, for pipes, globs and ``&&``.

        Same as ``exec("bash", ["-lc", script], ...)``.

        Args:
            script: The shell script.
            stdin: Input for the script (str, or UTF-8 bytes).
            env: Variables for this command (see ``exec``).
            timeout: Seconds for the whole call; the script is killed when it expires.
            check: Raise ``CommandError`` unless the script exited 0.

        Returns:
            An ``ExecResult``.

        Raises:
            CommandError: ``check=True`` and the script failed.
            TypeError: An argument has the wrong type.
            ValueError: An argument has a wrong value.
            APIError: As for ``exec`` (``APITimeoutError``, ``NotFoundError``, ...).

        Example:
            ```python
            await sb.sh("cd /workspace && make test", check=True)
            ```
        """
        from .exec import run_sh

        return await run_sh(
            cast("Sandbox", self), script, stdin=stdin, env=env, timeout=timeout, check=check
        )

    def exec_stream(
        self,
        cmd: str,
        args: Sequence[str] | None = None,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> ExecStream:
        """Run a program and read its output as it is produced.

        Nothing is sent until the stream is entered with ``async with`` (or ``wait()``/``text()``
        is awaited). Leaving the block before the exit event closes the connection, and the
        server kills the command. A stream is sent once and never resent.

        Args:
            cmd: The program.
            args: Its arguments, a list of str.
            stdin: Input for the command, sent whole (str, or UTF-8 bytes).
            env: Variables for this command (see ``exec``).
            timeout: Seconds for the whole run; when it expires the command is killed and
                ``APITimeoutError`` raised. Default: none.
            idle_timeout: Seconds without a byte (heartbeats count) before
                ``StreamStalledError``. Default: the session's ``Timeouts.stream_idle`` (30 s).

        Returns:
            An ``ExecStream``: ``async with`` it, then ``async for event in stream``.

        Raises:
            TypeError: An argument has the wrong type (raised here, before anything is sent).
            ValueError: An argument has a wrong value.

        Example:
            ```python
            async with sb.exec_stream("bash", ["-c", "echo a; sleep 1; echo b"]) as stream:
                async for event in stream:
                    print(event.kind, event.data or event.exit_code)
            ```
        """
        from .exec import ExecStream

        return ExecStream(
            cast("Sandbox", self),
            cmd,
            args,
            stdin=stdin,
            env=env,
            timeout=timeout,
            idle_timeout=idle_timeout,
        )

    @property
    def files(self) -> Files:
        """Uploads and downloads: a ``Files``."""
        from .files import Files

        return Files(cast("Sandbox", self))

    @property
    def processes(self) -> Processes:
        """Managed processes: a ``Processes``."""
        from .processes import Processes

        return Processes(cast("Sandbox", self))

    @property
    def computer(self) -> Computer:
        """The desktop API: a ``Computer``."""
        from .computer import Computer

        return Computer(cast("Sandbox", self))
