"""Running commands in a sandbox: buffered ``exec`` and streamed ``ExecStream`` (WIRE §11).

A buffered exec is one POST that answers after the command exits; it is resent only when the server
said it did not process it (429, 503), never after a timeout or a dropped connection, because the
command may already have run.

A stream (``?stream=true``) yields :class:`ExecEvent` objects as output arrives. The connection is
returned to the pool only when the stream was read to its end; every other way out (``break``,
``aclose()``, an exception in the consumer, cancellation, a deadline) closes it, so the server sees
the disconnect and kills the command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import attrs
from anyio import current_effective_deadline

from ._body import end_body
from ._exec_wire import (
    BATCH,
    ERROR,
    EXIT,
    NO_EXIT_CODE,
    STDERR,
    STDOUT,
    ExecEvent,
    ExecEventKind,
    ExecResult,
    FrameParser,
    collect,
    exec_body,
    new_event,
    result_from_wire,
    sh_args,
)
from ._idle import IdleTimer
from ._ndjson import DEFAULT_MAX_LINE
from ._validate import check_bool, check_int, check_optional_seconds, check_timeout
from .errors import (
    APITimeoutError,
    CommandError,
    NotFoundError,
    ProtocolError,
    StreamInterruptedError,
    StreamStalledError,
    redact_text,
)

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ._transport import Transport

__all__ = [
    "NO_EXIT_CODE",
    "ExecEvent",
    "ExecEventKind",
    "ExecResult",
    "ExecStream",
    "run_exec",
    "run_sh",
]

_INF: Final = float("inf")
_STREAM_QUERY: Final = {"stream": True}


class _SandboxLike(Protocol):
    """What exec needs from a ``Sandbox`` handle."""

    @property
    def _transport(self) -> Transport: ...

    def _path(self, suffix: str) -> str: ...


# ---------------------------------------------------------------- buffered exec


async def run_exec(
    sandbox: _SandboxLike,
    cmd: str,
    args: Sequence[str] | None = None,
    *,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = False,
) -> ExecResult:
    """Run ``cmd`` (no shell) and return its output after it exits: ``Sandbox.exec``'s body.

    Use ``sb.exec(...)``; its docstring lists the arguments and errors.

    ``stdin`` is str or UTF-8 bytes, sent whole in the request (the API cannot stream stdin).
    ``env`` may only override keys declared when the sandbox was created. ``timeout`` bounds the
    whole call (default: the session's request timeout, 60 s, per attempt); the request is never
    resent after a timeout. ``check=True`` raises :class:`CommandError` (holding the result) on a
    non-zero exit or an agent error.

    A call with a deadline (``timeout=``, or inside ``anyio.fail_after``/``move_on_after``) runs
    over the stream route and collects the output: a timeout or a cancel then closes a stream,
    which the service kills the command on (WIRE §11). Without a deadline it is one buffered
    request, the fastest form (see docs/exec-and-streams.md).
    """
    body = exec_body(cmd, args, stdin, env)
    seconds = check_timeout("timeout", timeout)
    check_bool("check", check)
    transport = sandbox._transport
    path = sandbox._path("/exec")
    if seconds is None and current_effective_deadline() == _INF:
        result = result_from_wire(await transport.request("POST", path, json=body))
    else:
        result = await _exec_collected(transport, path, body, seconds)
    if check and (result.exit_code != 0 or result.error):
        raise CommandError(_scrubbed(result, transport.secrets_for(body)))
    return result


def _scrubbed(result: ExecResult, secrets: tuple[str, ...]) -> ExecResult:
    """The result an error may carry: the request's env values (and the key) cut out.

    The returned result (``check=False``) keeps the output as it is; an error travels further
    (logs, tracebacks, pickles), so the copy it holds is redacted like every other error field.
    """
    clean = [redact_text(text, secrets) for text in (result.stdout, result.stderr)]
    error = None if result.error is None else redact_text(result.error, secrets)
    return attrs.evolve(result, stdout=clean[0], stderr=clean[1], error=error)


async def _exec_collected(
    transport: Transport, path: str, body: dict[str, Any], timeout: float | None
) -> ExecResult:
    """Run over the stream route, collecting the whole output like a buffered exec.

    Retried like a buffered exec (429/503 only) and bounded the same way, but the command lives
    and dies with the connection: a deadline or a cancel closes it and the service kills the
    command, where a buffered exec might run on after its caller gave up. A control plane that
    answers 404 to ``?stream=true`` (older ones; or the sandbox is gone, and then the buffered
    call fails the same way) gets a buffered exec within what is left of the deadline.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await transport.request(  # type: ignore[no-any-return]
            "POST",
            path,
            params=_STREAM_QUERY,
            json={**body, "stream": True},
            timeout=timeout,
            decode=collect,
        )
    except NotFoundError:
        if timeout is not None and timeout != _INF:
            timeout = max(timeout - (loop.time() - started), 0.001)
        data = await transport.request("POST", path, json=body, timeout=timeout)
        return result_from_wire(data)


async def run_sh(sandbox: _SandboxLike, script: str, **kw: Any) -> ExecResult:
    """Run ``script`` with ``bash -lc`` (pipes, globs, ``&&``); keywords as for :func:`run_exec`."""
    return await run_exec(sandbox, "bash", sh_args(script), **kw)


# ---------------------------------------------------------------- streaming exec


class ExecStream:
    """Output of a running command as it happens: an async context manager and async iterator.

    Returned by ``sb.exec_stream(...)`` (see it for the arguments); nothing is sent until the
    stream is entered. Each item is an ``ExecEvent``: ``stdout`` / ``stderr`` chunks as they are
    produced (not necessarily whole lines), an ``error`` event when the command could not start,
    and last an ``exit`` event with the exit status. Heartbeats are counted, never yielded.

    Leaving the block before the exit event (``break``, an exception, cancellation, a deadline)
    closes the connection, and the server kills the command. ``idle_timeout`` (default: the
    session's ``stream_idle``, 30 s) bounds the silence between two bytes, heartbeats included:
    more raises :class:`StreamStalledError`. ``timeout`` bounds the whole run (the command is
    killed and :class:`APITimeoutError` raised); by default there is none. A stream that ends
    without an exit status raises :class:`StreamInterruptedError`. A control plane that does not
    stream exec (404 to ``?stream=true``) gets a buffered exec instead, replayed as events (that
    call is bounded by ``timeout``, else by the session's request timeout).

    ``stdin`` is str or UTF-8 bytes sent whole with the request: the exec API has no streaming
    stdin (use ``sb.processes`` for interactive input). ``max_line`` bounds one frame's size.

    Raises:
        StreamStalledError: Nothing arrived for ``idle_timeout`` seconds (raised while
            iterating).
        StreamInterruptedError: The connection ended before the exit event.
        APITimeoutError: ``timeout`` expired; the command was killed.
        ProtocolError: A frame off the wire format, or over ``max_line`` bytes.
        APIError: The server refused the exec (raised on entering: ``NotFoundError``,
            ``ValidationError``, ...).
        RuntimeError: Iterating without entering the stream, or entering it twice.

    Example:
        ```python
        async with sb.exec_stream("make", ["test"]) as stream:
            async for event in stream:  # stdout / stderr chunks, then the exit event
                if event.kind == "exit":
                    print("exit", event.exit_code)
                else:
                    print(event.kind, event.data, end="")
        print(stream.exit_code)
        ```
    """

    __slots__ = (
        "_body",
        "_cm",
        "_deadline",
        "_error",
        "_exec_ms",
        "_exit_code",
        "_finished",
        "_idle",
        "_it",
        "_parser",
        "_path",
        "_resp",
        "_state",
        "_timeout",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        sandbox: _SandboxLike,
        cmd: str,
        args: Sequence[str] | None = None,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self._body = exec_body(cmd, args, stdin, env)
        self._timeout = check_optional_seconds("timeout", timeout)
        idle = check_optional_seconds("idle_timeout", idle_timeout)
        check_int("max_line", max_line, 1)
        self._transport = sandbox._transport
        self._path = sandbox._path("/exec")
        self._idle = self._transport.timeouts.stream_idle if idle is None else idle
        self._parser = FrameParser(max_line=max_line)
        self._cm: AbstractAsyncContextManager[aiohttp.ClientResponse] | None = None
        self._resp: aiohttp.ClientResponse | None = None
        self._it: Iterator[ExecEvent] = iter(())  # the events decoded and not yet taken
        self._state = "new"  # new -> open -> closed
        self._finished = False  # the terminal frame (or a clean EOF after an error) was read
        self._exit_code: int | None = None
        self._error: str | None = None
        self._exec_ms: float | None = None
        self._deadline: float | None = None
        self._timer: IdleTimer | None = None  # idle bound and total deadline of the reads

    def __repr__(self) -> str:
        # The command line and its output may hold secrets: show the program name only.
        return (
            f"<ExecStream {self._body['cmd']!r} {self._state}"
            f"{'' if self._exit_code is None else f' exit_code={self._exit_code}'}>"
        )

    # -- results -----------------------------------------------------------------------------------

    @property
    def exit_code(self) -> int | None:
        """The command's exit status once the stream ended; None before (or when cut short).

        ``NO_EXIT_CODE`` (-1) when the command never started and no status came with the error.
        """
        return self._exit_code

    @property
    def error(self) -> str | None:
        """The agent's message when the command could not be started."""
        return self._error

    @property
    def heartbeats(self) -> int:
        """Heartbeat frames received so far (liveness only; they are never yielded)."""
        return self._parser.heartbeats

    @property
    def finished(self) -> bool:
        """True once the exit status (or a terminal error) has been read."""
        return self._finished

    # -- context manager --------------------------------------------------------------------------

    async def __aenter__(self) -> ExecStream:
        if self._state != "new":
            raise RuntimeError("an ExecStream can be entered only once")
        self._state = "open"
        try:
            await self._open()
        except BaseException:
            self._state = "closed"
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop now: drop the connection, and the server kills a command still running.

        Idempotent. ``exit_code`` stays None when the command had not exited.
        """
        await self._close(None, None, None, drain=False)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._timeout is not None:
            self._deadline = loop.time() + self._timeout
        cm = self._transport.stream(
            "POST",
            self._path,
            params={"stream": True},
            json={**self._body, "stream": True},
            timeout=self._timeout,
        )
        try:
            self._resp = await cm.__aenter__()
        except NotFoundError:
            # Either an old control plane without streaming (then the buffered call works) or a
            # sandbox that is gone (then it raises the same NotFoundError again).
            await self._fallback()
            return
        self._cm = cm
        if self._idle is not None or self._deadline is not None:
            self._timer = IdleTimer(
                self._resp.content,
                self._idle,
                f"exec stream (POST {self._path})",
                deadline=self._deadline,
                deadline_error=APITimeoutError(
                    f"exec stream: the command did not finish within timeout={self._timeout} s "
                    f"(POST {self._path}); it has been killed"
                ),
            )

    async def _fallback(self) -> None:
        """Run the command buffered and queue its output as events (WIRE §11, old servers)."""
        timeout = self._timeout
        if self._deadline is not None:
            timeout = max(self._deadline - asyncio.get_running_loop().time(), 0.001)
        data = await self._transport.request("POST", self._path, json=self._body, timeout=timeout)
        res = result_from_wire(data)
        events = []
        if res.stdout:
            events.append(ExecEvent(STDOUT, res.stdout))
        if res.stderr:
            events.append(ExecEvent(STDERR, res.stderr))
        if res.error:
            events.append(ExecEvent(ERROR, res.error))
        events.append(ExecEvent(EXIT, "", res.exit_code))
        self._it = iter(events)
        self._finished = True
        self._exit_code = res.exit_code
        self._error = res.error
        self._exec_ms = res.exec_ms

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        *,
        drain: bool = True,
    ) -> None:
        """End the body the one shared way (``_body.end_body``): drained after the exit frame so
        the connection can be reused, closed on any other way out."""
        self._state = "closed"
        self._stop_timer()
        cm, self._cm = self._cm, None
        resp, self._resp = self._resp, None
        if cm is not None:
            drain = exc_type is None and drain and self._finished
            await end_body(cm, resp, drain=drain, exc_info=(exc_type, exc, tb))

    # -- iteration ---------------------------------------------------------------------------------

    def __aiter__(self) -> ExecStream:
        # The stream is its own iterator (not an async generator, which would cost less per
        # event): a cancelled ``__anext__`` (a keepalive timer, ``move_on_after`` around one
        # read) must leave the stream usable, and an exception thrown into a generator ends it.
        return self

    async def __anext__(self) -> ExecEvent:
        # The fast path: an event already decoded, no await. A list iterator, not an index: no
        # store to self per event, and the exhausted iterator lets go of its batch right away,
        # so the next batch's events are built with the previous ones already freed.
        for ev in self._it:
            return ev
        return await self._next_batch()

    async def _next_batch(self) -> ExecEvent:
        """Refill the event buffer from the network; the slow path of ``__anext__``."""
        if self._finished:
            raise StopAsyncIteration
        resp = self._resp
        if resp is None:
            if self._state == "new":
                raise RuntimeError(
                    "use `async with sb.exec_stream(...) as stream:` before iterating, so the "
                    "connection is closed however the loop ends"
                )
            raise RuntimeError("this exec stream is closed")
        parser = self._parser
        content = resp.content
        while True:
            if parser.queued:
                events = parser.pop(BATCH)
            else:
                chunk = await self._read(content)
                if chunk:
                    parser.push(chunk)
                    continue
                events = self._at_eof(parser)
            if parser.exit_code is not None and not self._finished:
                events = self._cut_at_exit(events, parser)
            if events:
                it = iter(events)
                self._it = it
                return next(it)
            if self._finished:
                raise StopAsyncIteration

    def _stop_timer(self) -> None:
        """No more reads that count: the deadlines must not fail the drain or a late read."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _cut_at_exit(self, events: list[ExecEvent], parser: FrameParser) -> list[ExecEvent]:
        """The exit event ends the stream: drop whatever a server sent after it."""
        self._finished = True
        self._stop_timer()
        self._exit_code = parser.exit_code
        self._error = parser.error
        for j, ev in enumerate(events):
            if ev.kind == EXIT:
                return events[: j + 1]
        return events

    def _at_eof(self, parser: FrameParser) -> list[ExecEvent]:
        """EOF: a last unterminated line is tolerated; no exit status is an interrupted stream."""
        try:
            events = parser.finish()
        except ProtocolError:
            if parser.exit_code is None and parser.error is None:
                raise StreamInterruptedError(
                    f"exec stream ended in the middle of a frame (POST {self._path})"
                ) from None
            raise
        if parser.exit_code is None:
            if parser.error is None:
                raise StreamInterruptedError(
                    f"exec stream ended without an exit status (POST {self._path})"
                )
            # The agent could not start the command and sent no status: a clean end.
            self._finished = True
            self._stop_timer()
            self._error = parser.error
            self._exit_code = NO_EXIT_CODE
        return events

    async def _read(self, content: aiohttp.StreamReader) -> bytes:
        """One network chunk; any byte (a heartbeat too) resets the idle deadline.

        The shared :class:`IdleTimer` only stamps the time per read (~0.2 us, against ~4 us for
        a timeout scheduled and cancelled around each read); it raises StreamStalledError, or
        the APITimeoutError of ``timeout``, from the pending read.
        """
        timer = self._timer
        try:
            if timer is None:
                return await content.readany()
            return await timer.read()
        except (StreamStalledError, APITimeoutError):
            raise  # APITimeoutError is an OSError (a TimeoutError): not an interruption
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            raise StreamInterruptedError(
                f"exec stream broke before the exit status (POST {self._path}): "
                f"{type(exc).__name__}"
            ) from exc

    # -- conveniences ------------------------------------------------------------------------------

    async def wait(self) -> ExecResult:
        """Read the stream to its end and return the result.

        Output events already taken by iterating are not repeated in ``stdout``/``stderr`` (nothing
        is kept twice in memory). Works inside or outside ``async with`` (outside, it opens and
        closes the stream itself).

        Returns:
            An ``ExecResult`` (``exec_ms`` is None).

        Raises:
            RuntimeError: The stream was closed before the command finished.
            StreamError: The stream stalled or was cut (see the class).
            APIError: As for entering the stream.

        Example:
            ```python
            res = await sb.exec_stream("bash", ["-c", "echo a; exit 2"]).wait()
            assert res.exit_code == 2
            ```
        """
        if self._state == "new":
            async with self:
                return await self.wait()
        out: list[str] = []
        err: list[str] = []
        async for ev in self:
            kind = ev.kind
            if kind == STDOUT:
                out.append(ev.data)
            elif kind == STDERR:
                err.append(ev.data)
        code = self._exit_code
        if code is None:
            raise RuntimeError("this exec stream was closed before the command finished")
        return ExecResult("".join(out), "".join(err), code, self._exec_ms, self._error)

    async def text(self) -> str:
        """The rest of stdout as one string: ``(await stream.wait()).stdout``.

        Returns:
            The standard output not yet taken by iterating.

        Raises:
            RuntimeError: The stream was closed before the command finished.
            StreamError: The stream stalled or was cut.
        """
        return (await self.wait()).stdout

    async def lines(self) -> AsyncIterator[ExecEvent]:
        """Whole lines per channel, for log tailing: one ``ExecEvent`` per line, ``\\n`` removed.

        stdout and stderr are buffered separately; a last line without a newline comes out when
        the command exits. Error events pass through; the exit status is ``exit_code`` afterwards.

        Returns:
            An async iterator of ``ExecEvent`` (kinds ``stdout``, ``stderr`` and ``error``).

        Example:
            ```python
            async with sb.exec_stream("tail", ["-n", "5", "/var/log/app.log"]) as stream:
                async for line in stream.lines():
                    print(line.kind, line.data)
            ```
        """
        partial: dict[str, list[str]] = {STDOUT: [], STDERR: []}
        async for ev in self:
            kind = ev.kind
            if kind in (STDOUT, STDERR):
                buf = partial[kind]
                data = ev.data
                if "\n" not in data:
                    buf.append(data)
                    continue
                pieces = data.split("\n")
                if buf:
                    buf.append(pieces[0])
                    pieces[0] = "".join(buf)
                    buf.clear()
                tail = pieces.pop()
                if tail:
                    buf.append(tail)
                for line in pieces:
                    yield new_event(kind, line, None)
            elif kind == ERROR:
                yield ev
        for kind in (STDOUT, STDERR):
            if partial[kind]:
                yield new_event(kind, "".join(partial[kind]), None)
