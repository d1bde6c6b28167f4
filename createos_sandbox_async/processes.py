"""Managed processes and PTYs that outlive the client's connection (WIRE §13).

Reached as ``sandbox.processes``. A managed process keeps running when nobody listens; its output
is numbered (``seq``) and retained, so :meth:`Processes.connect` can replay it and follow new
output. When the connection drops mid-stream, :class:`ProcessOutput` reconnects with
``after=<last seq seen>`` and carries on: the consumer sees every chunk exactly once, in order,
then the ``exit`` event.
"""

from __future__ import annotations

import base64
import signal as _signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._convert import structure
from ._process_output import ProcessOutput
from ._resource import Resource
from ._resource_models import PROCESS_SIGNALS, ProcessView
from ._validate import (
    check_args,
    check_cmd,
    check_env,
    check_int,
    check_optional_seconds,
    check_remote_path,
)
from .errors import (
    ProtocolError,
)

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["ProcessOutput", "ProcessRef", "Processes"]

#: A process id, or any object with ``process_id`` (a :class:`ProcessView`).
ProcessRef = str | ProcessView

#: Longest single long-poll we ask the server for; the HTTP deadline sits above it.
_WAIT_SLICE_MS = 30_000


def _process_id(process: object, argument: str = "process") -> str:
    """Accept an id or a view; refuse anything else before a request is built."""
    if isinstance(process, ProcessView):
        return process.process_id
    if isinstance(process, str) and process:
        return process
    raise TypeError(f"{argument} must be a process id (non-empty str) or a ProcessView")


def _signal_name(sig: object) -> str:
    """``"SIGTERM"``, ``"TERM"`` or ``signal.SIGTERM`` -> ``"SIGTERM"``, if the API allows it."""
    if isinstance(sig, _signal.Signals):
        name = sig.name
    elif isinstance(sig, str):
        name = sig.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
    else:
        raise TypeError(f"signal must be a signal name or signal.Signals, got {type(sig).__name__}")
    if name not in PROCESS_SIGNALS:
        allowed = ", ".join(sorted(PROCESS_SIGNALS))
        raise ValueError(f"signal {sig!r} is not allowed; use one of {allowed}")
    return name


class Processes(Resource):
    """Start and drive managed processes in one sandbox: ``sandbox.processes``.

    A managed process keeps running when nobody is connected, and its output is numbered and
    kept by the server, so a reader can disconnect and resume without losing a byte. Every
    method takes a process id or the ``ProcessView`` returned by ``create``.

    Example:
        ```python
        proc = await sb.processes.create("python3", ["-u", "server.py"])
        async with sb.processes.connect(proc) as output:
            async for event in output:
                ...
        await sb.processes.kill(proc)
        ```
    """

    __slots__ = ("_sandbox",)

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox._transport, sandbox._path("/processes"))
        self._sandbox = sandbox

    def __repr__(self) -> str:
        return f"Processes(sandbox={self._sandbox.id!r})"

    def _process(self, process: object, suffix: str = "") -> str:
        """``.../processes/<id><suffix>`` for a process id or view."""
        return self._item("process", _process_id(process), suffix)

    async def create(
        self,
        cmd: str | None = None,
        args: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        pty: tuple[int, int] | bool | None = None,
        timeout: float | None = None,
    ) -> ProcessView:
        """Start ``cmd args...`` (no shell) as a managed process and return its view.

        ``pty=(rows, cols)`` (or ``True`` for 24x80) runs it on a terminal, whose output arrives
        on the ``pty`` stream; a PTY without ``cmd`` starts a shell. ``env`` adds or overrides
        variables for this process only. The process keeps running after this returns.

        Args:
            cmd: The program; may be omitted with ``pty`` to start a shell.
            args: Its arguments, a list of str (needs ``cmd``).
            env: Variables for this process only (values are kept secret).
            cwd: Its working directory, an absolute guest path.
            pty: ``(rows, cols)`` or ``True`` (24x80) to run on a terminal.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The process's view: ``process_id``, ``kind``, ``pid``, ``state``, ...

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: No ``cmd`` and no ``pty``, ``args`` without ``cmd``, or a bad value.
            APIError: The server refused (``NotFoundError``: the sandbox is not running).
        """
        body: dict[str, Any] = {}
        if cmd is not None:
            body["cmd"] = check_cmd(cmd)
        elif pty is None or pty is False:
            raise ValueError(
                "cmd is required unless pty is given (a PTY without cmd starts a shell)"
            )
        if args is not None and cmd is None:
            raise ValueError("args need cmd")
        # The same rules as exec: checked names in messages, values never shown.
        arg_list = check_args(args)
        if arg_list:
            body["args"] = arg_list
        env_map = check_env(env)
        if env_map:
            body["env"] = env_map
        if cwd is not None:
            body["cwd"] = check_remote_path(cwd, "cwd")
        if pty is not None and pty is not False:
            rows, cols = (24, 80) if pty is True else pty
            body["pty"] = {
                "rows": check_int("pty rows", rows, 1),
                "cols": check_int("pty cols", cols, 1),
            }
        data = await self._transport.request("POST", self._base, json=body, timeout=timeout)
        return structure(data, ProcessView)

    async def list(self, *, timeout: float | None = None) -> list[ProcessView]:
        """Every process the server still retains (running and recently exited).

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            Their views.

        Raises:
            APIError: An error status.
            ProtocolError: The answer has no process list.
        """
        data = await self._transport.request("GET", self._base, timeout=timeout)
        items = data.get("processes") if isinstance(data, dict) else data
        if items is None:
            return []
        if not isinstance(items, list):
            raise ProtocolError("process list response has no 'processes' array")
        return [structure(item, ProcessView) for item in items]

    async def get(self, process: ProcessRef, *, timeout: float | None = None) -> ProcessView:
        """The current view of one process.

        Args:
            process: Its id, or its ``ProcessView``.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The view: state, exit code, output window, ...

        Raises:
            NotFoundError: No such process.
            APIError: Another error status.
        """
        data = await self._transport.request("GET", self._process(process), timeout=timeout)
        return structure(data, ProcessView)

    async def kill(
        self, process: ProcessRef, *, grace_ms: int | None = None, timeout: float | None = None
    ) -> ProcessView:
        """Terminate the whole process tree and return its final view.

        The server sends a polite signal, waits ``grace_ms`` (server default when None), then
        SIGKILL.

        Args:
            process: Its id, or its ``ProcessView``.
            grace_ms: Milliseconds between the polite signal and SIGKILL.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The final view.

        Raises:
            NotFoundError: No such process.
            APIError: Another error status.
        """
        params: dict[str, object] = {}
        if grace_ms is not None:
            params["grace_ms"] = check_int("grace_ms", grace_ms, 0)
        data = await self._transport.request(
            "DELETE", self._process(process), params=params, timeout=timeout
        )
        return structure(data, ProcessView)

    async def input(
        self, process: ProcessRef, data: bytes | str, *, timeout: float | None = None
    ) -> int:
        """Write to the process's stdin (or its terminal); returns the server's ``input_seq``.

        ``str`` is sent as UTF-8. Sent once: a POST is never resent after a failure.

        Args:
            process: Its id, or its ``ProcessView``.
            data: The input (bytes, or str sent as UTF-8).
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The server's ``input_seq`` for this write.

        Raises:
            TypeError: ``data`` is neither bytes nor str.
            NotFoundError: No such process.
            ValidationError: The process has exited or its stdin is closed.
        """
        if isinstance(data, str):
            raw = data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError(f"data must be bytes or str, got {type(data).__name__}")
        body = {"data_base64": base64.b64encode(raw).decode("ascii")}
        result = await self._transport.request(
            "POST", self._process(process, "/input"), json=body, timeout=timeout
        )
        seq = result.get("input_seq") if isinstance(result, dict) else None
        if type(seq) is not int:  # no int() of server text: its error would quote the value
            raise ProtocolError("process input response has no integer input_seq")
        return seq

    async def close_stdin(self, process: ProcessRef, *, timeout: float | None = None) -> None:
        """Close a pipe process's stdin, so it reads EOF.

        Args:
            process: Its id, or its ``ProcessView``.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            NotFoundError: No such process.
            APIError: Another error status (e.g. a PTY process).
        """
        await self._transport.request(
            "POST", self._process(process, "/stdin/close"), timeout=timeout
        )

    async def resize(
        self, process: ProcessRef, rows: int, cols: int, *, timeout: float | None = None
    ) -> None:
        """Change a PTY's size (the program gets SIGWINCH).

        Args:
            process: Its id, or its ``ProcessView``.
            rows: Terminal rows.
            cols: Terminal columns.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: A size below 1.
            NotFoundError: No such process.
            APIError: Another error status (e.g. not a PTY).
        """
        body = {"rows": check_int("rows", rows, 1), "cols": check_int("cols", cols, 1)}
        await self._transport.request(
            "POST", self._process(process, "/resize"), json=body, timeout=timeout
        )

    async def signal(
        self, process: ProcessRef, sig: str | _signal.Signals, *, timeout: float | None = None
    ) -> None:
        """Send a signal to the process.

        Args:
            process: Its id, or its ``ProcessView``.
            sig: One of SIGHUP SIGINT SIGQUIT SIGKILL SIGTERM SIGUSR1 SIGUSR2 SIGWINCH, as a
                name (``"SIGTERM"``, ``"TERM"``) or a ``signal.Signals``.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            TypeError: ``sig`` is neither a str nor a ``signal.Signals``.
            ValueError: Another signal.
            NotFoundError: No such process.
        """
        body = {"signal": _signal_name(sig)}
        await self._transport.request(
            "POST", self._process(process, "/signal"), json=body, timeout=timeout
        )

    async def wait(
        self,
        process: ProcessRef,
        *,
        scope: Literal["leader", "tree"] = "leader",
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> ProcessView:
        """Wait until the leader (or, with ``scope="tree"``, every process it started) exits.

        Long-polls the server in slices of at most 30 s, each with an HTTP deadline above its
        budget. With ``timeout_ms=None`` it waits until exit (bound it with ``anyio.fail_after``);
        otherwise it returns the current view once ``timeout_ms`` ran out: check
        ``leader_exited`` / ``tree_exited``.

        Args:
            process: Its id, or its ``ProcessView``.
            scope: ``"leader"`` for the process itself, ``"tree"`` for every process it started.
            timeout_ms: Give up after this many milliseconds and return the current view.
            timeout: Seconds for the whole call, every slice included; when it runs out,
                ``APITimeoutError`` (``timeout_ms`` returns the view instead).

        Returns:
            The view at exit (or when ``timeout_ms`` ran out).

        Raises:
            ValueError: A bad ``scope`` or ``timeout_ms``.
            NotFoundError: No such process.
        """
        if scope not in ("leader", "tree"):
            raise ValueError(f"scope must be 'leader' or 'tree', got {scope!r}")
        if timeout_ms is not None:
            check_int("timeout_ms", timeout_ms, 1)
        wait = lambda: self._wait(process, scope, timeout_ms)  # noqa: E731
        return await self._within(timeout, wait, "waiting for the process")

    async def _wait(self, process: ProcessRef, scope: str, timeout_ms: int | None) -> ProcessView:
        path = self._process(process, "/wait")
        transport = self._sandbox._transport
        margin = transport.timeouts.request or 30.0
        deadline = None if timeout_ms is None else anyio.current_time() + timeout_ms / 1000
        while True:
            if deadline is None:
                budget = _WAIT_SLICE_MS
            else:
                budget = max(1, min(_WAIT_SLICE_MS, int((deadline - anyio.current_time()) * 1000)))
            started = anyio.current_time()
            data = await transport.request(
                "GET",
                path,
                params={"scope": scope, "timeout_ms": budget},
                timeout=budget / 1000 + margin,
            )
            view = structure(data, ProcessView)
            if view.tree_exited or (scope == "leader" and view.leader_exited):
                return view
            now = anyio.current_time()
            if deadline is not None and now >= deadline:
                return view
            if now - started < min(1.0, budget / 1000):
                # The server answered early without an exit: do not spin.
                await anyio.sleep(0.25)

    def connect(
        self,
        process: ProcessRef,
        *,
        after: int = 0,
        max_reconnects: int = 5,
        idle_timeout: float | None = None,
    ) -> ProcessOutput:
        """Replay output with ``seq > after``, then follow it to the exit (see ProcessOutput).

        ``after=0`` replays everything the server retained. ``idle_timeout`` defaults to the
        session's stream idle timeout.

        Args:
            process: Its id, or its ``ProcessView``.
            after: Replay only output with a ``seq`` above this (e.g. an earlier
                ``output.last_seq``).
            max_reconnects: Reconnects in a row without new data before giving up.
            idle_timeout: Seconds without a byte before a reconnect.

        Returns:
            A ``ProcessOutput``: ``async with`` it, then ``async for event in output``.

        Example:
            ```python
            async with sb.processes.connect(proc, after=0) as output:
                stdout, stderr, code = await output.collect()
            ```
        """
        return ProcessOutput(
            self._sandbox,
            _process_id(process),
            after=check_int("after", after, 0),
            max_reconnects=check_int("max_reconnects", max_reconnects, 0),
            idle_timeout=check_optional_seconds("idle_timeout", idle_timeout),
        )
