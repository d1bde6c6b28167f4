"""Managed processes and PTYs that outlive the client's connection (WIRE §13).

Reached as ``sandbox.processes``. A managed process keeps running when nobody listens; its output
is numbered (``seq``) and retained, so :meth:`Processes.connect` can replay it and follow new
output. When the connection drops mid-stream, :class:`ProcessOutput` reconnects with
``after=<last seq seen>`` and carries on: the consumer sees every chunk exactly once, in order,
then the ``exit`` event.
"""

from __future__ import annotations

import base64
import binascii
import signal as _signal
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import aiohttp
import anyio

from ._body import BodyStream
from ._convert import structure
from ._ndjson import NDJSONDecoder
from ._resource import Resource
from ._resource_models import PROCESS_SIGNALS, ProcessEvent, ProcessView
from ._validate import (
    check_args,
    check_cmd,
    check_env,
    check_int,
    check_optional_seconds,
    check_remote_path,
)
from .errors import (
    APIConnectionError,
    APITimeoutError,
    ProtocolError,
    ServerError,
    StreamInterruptedError,
    StreamStalledError,
)

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["ProcessOutput", "ProcessRef", "Processes"]

#: A process id, or any object with ``process_id`` (a :class:`ProcessView`).
ProcessRef = str | ProcessView

#: The heartbeat frame exactly as written by the server; dropped before any JSON decode.
PROCESS_HEARTBEAT: Final = b'{"type":"heartbeat"}'
#: Longest single long-poll we ask the server for; the HTTP deadline sits above it.
_WAIT_SLICE_MS = 30_000
#: Reconnect backoff: first retry at once, then 0.1 s doubling up to 2 s.
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 2.0


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


def _event_from_frame(frame: Any) -> ProcessEvent | None:
    """Wire frame -> event; heartbeats and unknown frame types (forward compatibility) -> None."""
    if not isinstance(frame, dict):
        raise ProtocolError("process stream frame is not a JSON object")
    kind = frame.get("type")
    if kind == "data":
        raw = frame.get("data_base64") or ""
        try:
            data = base64.b64decode(raw, validate=True) if raw else b""
        except (binascii.Error, ValueError, TypeError):
            raise ProtocolError("process stream frame has invalid data_base64") from None
        return ProcessEvent(
            kind="data",
            seq=frame.get("seq"),
            stream=frame.get("stream"),
            data=data,
            oldest_available_seq=frame.get("oldest_available_seq"),
        )
    if kind == "exit":
        return ProcessEvent(
            kind="exit",
            seq=frame.get("seq"),
            exit_code=frame.get("exit_code"),
            signal=frame.get("signal"),
            oldest_available_seq=frame.get("oldest_available_seq"),
        )
    if kind == "error":
        return ProcessEvent(
            kind="error",
            seq=frame.get("seq"),
            error=str(frame.get("error") or ""),
            oldest_available_seq=frame.get("oldest_available_seq"),
        )
    return None


class ProcessOutput(BodyStream):
    """Async iterator of :class:`ProcessEvent` for one process; also an async context manager.

    Yields ``data`` events (raw bytes, decoded from base64) in ``seq`` order, ``error`` events
    when the server reports one, and finally one ``exit`` event, after which iteration stops.
    Heartbeats never show up. If the connection breaks, stalls (no byte for the idle timeout)
    or ends before the exit frame, it reconnects with ``after=last_seq``; data frames already
    seen are dropped, so nothing is lost or repeated. At most ``max_reconnects`` reconnects in a
    row without new data are attempted before :class:`StreamInterruptedError` (or
    :class:`StreamStalledError`) is raised. Leaving early closes the connection; the process keeps
    running (disconnecting never kills it).

    Attributes:
        process_id: The process followed.
        last_seq: The highest ``seq`` handed to you: pass it as ``after=`` to resume later.
        reconnects: Reconnects made so far.
        exit_code: The exit status, once the exit event arrived.
        signal: The signal that ended the process, if one did.

    Raises:
        StreamInterruptedError: Reconnecting failed ``max_reconnects`` times in a row.
        StreamStalledError: Idle for too long, ``max_reconnects`` times in a row.
        NotFoundError: No such process (or sandbox).
    """

    def __init__(
        self,
        sandbox: Sandbox,
        process_id: str,
        *,
        after: int = 0,
        max_reconnects: int = 5,
        idle_timeout: float | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._path = sandbox._path(f"/processes/{quote(process_id, safe='')}/connect")
        self.process_id = process_id
        #: Highest ``seq`` handed to the consumer: pass it as ``after`` to resume later.
        self.last_seq = after
        self._seen_seq = after  # highest seq received (queued or delivered); reconnects use it
        #: Reconnects made so far (all of them, not just the current run of failures).
        self.reconnects = 0
        self.exit_code: int | None = None
        self.signal: str | None = None
        self._max_reconnects = max_reconnects
        self._idle = (
            sandbox._transport.timeouts.stream_idle if idle_timeout is None else idle_timeout
        )
        self._failures = 0  # reconnects in a row without progress
        self._decoder: NDJSONDecoder | None = None
        self._queue: deque[ProcessEvent] = deque()
        self._done = False
        self._saw_error = False
        self._connected_once = False

    def __repr__(self) -> str:
        return (
            f"ProcessOutput(process_id={self.process_id!r}, last_seq={self.last_seq}, "
            f"reconnects={self.reconnects}, done={self._done})"
        )

    async def __anext__(self) -> ProcessEvent:
        try:
            while True:
                if self._queue:
                    event = self._queue.popleft()
                    if event.seq is not None and event.kind == "data":
                        self.last_seq = event.seq
                    return event
                if self._done:
                    raise StopAsyncIteration
                await self._pump()
        except StopAsyncIteration:
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._disconnect()
            self._done = True
            raise

    async def _pump(self) -> None:
        """Fill the queue from the current connection, (re)connecting as needed."""
        if self._response is None:
            await self._connect()
            return
        assert self._decoder is not None
        try:
            chunk = await self._read_body()
        except StreamStalledError as exc:
            await self._reconnect(exc)
            return
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            await self._reconnect(
                StreamInterruptedError(f"process output interrupted: {type(exc).__name__}")
            )
            return
        if chunk:
            self._accept(self._decoder.feed(chunk))
            if self._done:  # exit frame: hand the connection back now, not at aclose()
                await self._disconnect()
        else:
            self._accept(self._decoder.finish())
            if not self._done:
                if self._saw_error:  # the server said why it stopped: no point reconnecting
                    await self._disconnect()
                    self._done = True
                else:
                    await self._reconnect(
                        StreamInterruptedError("process output ended before the exit frame")
                    )

    def _accept(self, frames: list[Any]) -> None:
        """Queue new events, dropping data already delivered (a replay after a reconnect)."""
        for frame in frames:
            event = _event_from_frame(frame)
            if event is None:
                continue
            if event.kind == "data":
                seq = event.seq
                if seq is not None:
                    if seq <= self._seen_seq:
                        continue
                    self._seen_seq = seq
                self._failures = 0
            elif event.kind == "exit":
                self.exit_code = event.exit_code
                self.signal = event.signal
                self._done = True
                self._queue.append(event)
                return
            else:
                self._saw_error = True
            self._queue.append(event)

    async def _connect(self) -> None:
        """Open ``connect?after=last_seq``; transient failures count as reconnect attempts."""
        try:
            await self._open_body(
                self._sandbox._transport,
                self._path,
                {"after": self._seen_seq},
                timeout=None,
                idle=self._idle,
                what=f"process {self.process_id} output",
            )
        except (APIConnectionError, APITimeoutError, ServerError) as exc:
            if not self._connected_once:  # nothing seen yet: the caller decides what to do
                raise
            await self._reconnect(exc, connected=False)
            return
        self._connected_once = True
        self._decoder = NDJSONDecoder(heartbeat=PROCESS_HEARTBEAT)

    async def _reconnect(self, cause: BaseException, *, connected: bool = True) -> None:
        """Drop the connection and schedule a new one, or give up after too many failures."""
        if connected:
            await self._disconnect()
        if self._failures >= self._max_reconnects:
            raise cause
        delay = (
            0.0
            if self._failures == 0
            else min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (self._failures - 1))
        )
        self._failures += 1
        self.reconnects += 1
        if delay:
            await anyio.sleep(delay)

    async def _disconnect(self) -> None:
        """Leave the transport's stream context: release at EOF, drop the socket otherwise."""
        self._decoder = None
        self._stop_timer()  # the drain below must not count as a stall
        response = self._response
        try:
            if response is not None and self._done and not response.content.at_eof():
                # The exit frame came; give the server's end-of-body a moment so the
                # connection can go back to the pool instead of being dropped.
                with anyio.move_on_after(0.5):
                    while await response.content.readany():
                        pass
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError):
            pass  # everything up to the exit frame was read; the connection is dropped below
        finally:  # also when cancelled mid-drain: close now, not when the GC finds it
            await self._close_body()

    async def aclose(self) -> None:
        """Stop following and close the connection; the process keeps running. Idempotent."""
        with anyio.CancelScope(shield=True):
            await self._disconnect()
        self._done = True

    async def collect(self) -> tuple[bytes, bytes, int | None]:
        """Read to the exit event and return everything that came.

        Returns:
            ``(stdout, stderr, exit_code)``: bytes, bytes, and the exit status (None when the
            process ended by a signal without one). A PTY's output is in ``stdout``.

        Raises:
            StreamError: Following failed after the reconnects allowed.
        """
        out: list[bytes] = []
        err: list[bytes] = []
        async with self:
            async for event in self:
                if event.kind == "data":
                    (err if event.stream == "stderr" else out).append(event.data)
        return b"".join(out), b"".join(err), self.exit_code


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
