"""Following a managed process's output: ``ProcessOutput``, returned by ``sandbox.processes``.

Public as ``createos_sandbox_async.processes.ProcessOutput``; it lives here to keep
``processes.py`` about the process API. A dropped connection is resumed with ``after=<last seq>``;
every connection ends the shared way (``_body``): drained after the exit frame, closed otherwise.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
import anyio

from ._body import BodyStream
from ._ndjson import NDJSONDecoder
from ._resource_models import ProcessEvent
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

__all__ = ["PROCESS_HEARTBEAT", "ProcessOutput"]

#: The heartbeat frame exactly as written by the server; dropped before any JSON decode.
PROCESS_HEARTBEAT: Final = b'{"type":"heartbeat"}'
#: Reconnect backoff: first retry at once, then 0.1 s doubling up to 2 s.
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 2.0


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
        """Leave the transport's stream context: after the exit frame drained so the connection
        can be reused, closed otherwise (the shared lifecycle of ``_body.end_body``)."""
        self._decoder = None
        await self._close_body(drain=self._done)

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


# Its public home: reprs and the docs name ``createos_sandbox_async.processes.ProcessOutput``.
ProcessOutput.__module__ = "createos_sandbox_async.processes"
