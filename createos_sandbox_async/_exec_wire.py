"""The exec wire format (WIRE §11): the request body out; results, frames and events in.

``_ndjson`` splits a stream body into JSON frames; this module turns frames into events, on the
per-event hot path of every exec stream, and buffered answers (or whole collected stream bodies)
into ``ExecResult``. ``exec`` builds buffered exec and ``ExecStream`` on top.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any, Final, Literal

import aiohttp
import attrs

from . import _json
from ._ndjson import DEFAULT_MAX_LINE, NDJSONDecoder
from ._validate import check_args, check_cmd, check_env, check_str, check_text
from .errors import CommandError, ProtocolError, StreamInterruptedError

__all__ = [
    "BATCH",
    "ERROR",
    "EXIT",
    "NO_EXIT_CODE",
    "STDERR",
    "STDOUT",
    "ExecEvent",
    "ExecEventKind",
    "ExecResult",
    "FrameParser",
    "check_stdin",
    "collect",
    "exec_body",
    "new_event",
    "result_from_wire",
    "sh_args",
    "size_only",
]

ExecEventKind = Literal["stdout", "stderr", "exit", "error"]

STDOUT: Final = "stdout"
STDERR: Final = "stderr"
EXIT: Final = "exit"
ERROR: Final = "error"

#: ``exit_code`` when the command never started and the server sent no exit status with the error.
NO_EXIT_CODE: Final = -1

#: Lines decoded per batch. Every decoded frame is a dict, and CPython counts each dict (tracked
#: or not) towards the cyclic GC's young-generation threshold (700) while it lives: batches of
#: 1024 lines set off a collection per batch (72 per 8 MiB stream, ~3% of its CPU, and survivors
#: promoted towards the older generations of the caller's heap); 512 lines plus their few dozen
#: events stay under it. Runs of frames make few events, so 512 still measured 3-10% less CPU
#: per frame than the earlier 256 (fewer per-batch calls).
BATCH: Final = 512


def size_only(value: str | bytes) -> str:
    """Repr of command output: its size, never its text (``env`` output holds secrets)."""
    unit = "bytes" if isinstance(value, bytes | bytearray) else "chars"
    return f"<{len(value)} {unit}>"


@attrs.define(frozen=True, slots=True)
class ExecEvent:
    """One item of an exec stream.

    ``kind`` is ``"stdout"`` or ``"stderr"`` (``data`` holds a chunk of output, not necessarily a
    whole line), ``"error"`` (``data`` holds the agent's message: the command never started) or
    ``"exit"`` (``exit_code`` holds the status; it is the last event). Heartbeats never show up.
    The repr shows the size of ``data``, not its text (output may hold secrets).
    """

    kind: ExecEventKind
    data: str = attrs.field(default="", repr=size_only)
    exit_code: int | None = None


# Its public home: reprs, pickles and the docs name ``createos_sandbox_async.exec.ExecEvent``.
ExecEvent.__module__ = "createos_sandbox_async.exec"


@attrs.define(frozen=True, slots=True)
class ExecResult:
    """What a finished command produced: returned by ``sb.exec``, ``sb.sh`` and ``stream.wait()``.

    A frozen attrs class. The repr shows the sizes of ``stdout`` and ``stderr``, not their text
    (output may hold secrets, e.g. from ``env``).

    Attributes:
        stdout: The whole standard output, as text.
        stderr: The whole standard error, as text.
        exit_code: The exit status (the emulator reports 128 + N for a command killed by signal
            N). When the command could not be started: whatever the server sent with the error
            (possibly 0), or ``NO_EXIT_CODE`` (-1) when it sent none.
        exec_ms: The server's timing of a buffered exec, in milliseconds; None for a stream's.
        error: The agent's message when the command could not be started; None otherwise.

    Example:
        ```python
        res = await sb.exec("ls", ["/nope"])
        if not res.ok:
            print(res.exit_code, res.stderr)
        ```
    """

    stdout: str = attrs.field(repr=size_only)
    stderr: str = attrs.field(repr=size_only)
    exit_code: int
    exec_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0 (what ``check=True`` insists on).

        Returns:
            ``exit_code == 0 and not error``.
        """
        return self.exit_code == 0 and not self.error

    def check(self) -> ExecResult:
        """Return this result when it is ``ok``; raise otherwise.

        Returns:
            This result, unchanged.

        Raises:
            CommandError: The command exited non-zero or could not be started; ``err.result``
                is this result.

        Example:
            ```python
            out = (await sb.exec("make", ["build"])).check().stdout
            ```
        """
        if self.exit_code != 0 or self.error:
            raise CommandError(self)
        return self


# Its public home, like ExecEvent's.
ExecResult.__module__ = "createos_sandbox_async.exec"


class _EventBuilder(ExecEvent):
    """Scaffolding for building events fast; its instances never leave this module as such.

    The frozen ``__init__`` sets each field through a C call with an argument tuple (so do the
    slot descriptors' ``__set__``): ~150-230 ns per event, more than a third of the CPU of a
    streamed event. This subclass has ExecEvent's exact memory layout (no slots of its own), a C
    ``__init__`` and plain attribute stores; the hot loop fills the three slots, then relabels the
    object ``ExecEvent`` by ``__class__`` assignment, which CPython allows between classes of
    identical layout. What comes out is an ordinary frozen ExecEvent (``type(ev) is ExecEvent``),
    built in ~60 ns.
    """

    __slots__ = ()
    __init__ = object.__init__
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


# Typed Any: mypy would refuse stores to a frozen class's fields and the ``__class__`` relabel.
_BUILDER: Final[Any] = _EventBuilder
_EVENT: Final[Any] = ExecEvent

_get: Final = dict.get
#: The frame after the last one of a batch: has no output, ends every run.
_NO_FRAME: Final[dict[str, Any]] = {}


def new_event(kind: ExecEventKind, data: str, exit_code: int | None) -> ExecEvent:
    ev = _BUILDER()
    ev.kind = kind
    ev.data = data
    ev.exit_code = exit_code
    ev.__class__ = _EVENT
    return ev  # type: ignore[no-any-return]


class FrameParser:
    """Exec stream bytes -> ``ExecEvent`` lists (WIRE §11).

    A frame normally carries one key; a frame with several is split in the order hb, stdout,
    stderr, error, exit, like the official SDKs. Zero values (``hb:false``, ``""``, ``null``) mean
    "not this kind". Unknown keys are ignored.
    """

    __slots__ = ("_spill", "decoder", "error", "exit_code", "frame_heartbeats")

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        # Heartbeats are decoded like any frame and counted in _frame: finding them by a bytes
        # search first cost ~28 ns per frame (a multi-byte find over every batch), one
        # heartbeat every few hundred frames costs almost nothing through the decoder.
        self.decoder = NDJSONDecoder(max_line=max_line, heartbeat=None)
        self.exit_code: int | None = None
        self.error: str | None = None
        self.frame_heartbeats = 0
        self._spill: list[Any] = []  # decoded frames beyond a batch, not turned into events yet

    @property
    def queued(self) -> bool:
        """Lines or frames are waiting for :meth:`pop` (no network read needed)."""
        return bool(self._spill) or self.decoder.queued > 0

    @property
    def heartbeats(self) -> int:
        return self.frame_heartbeats

    def feed(self, chunk: bytes) -> list[ExecEvent]:
        """Events of every line this chunk completes (and of any frames still queued)."""
        self.decoder.push(chunk)
        out: list[ExecEvent] = []
        while self.queued:
            out += self.pop(BATCH)
        return out

    def push(self, chunk: bytes) -> int:
        """Queue a chunk's complete lines; returns the bytes waiting for :meth:`pop`."""
        return self.decoder.push(chunk)

    def pop(self, limit: int = BATCH) -> list[ExecEvent]:
        """Events of about ``limit`` queued lines, never more than ``2 * limit``.

        The decoder sizes a batch in bytes from the line length seen so far, so shorter lines can
        make it larger; the frames beyond the bound wait here (decoded dicts of strings are not
        tracked by the garbage collector, events are: it is the events per batch that count).
        """
        frames = self._spill
        if frames:
            self._spill = frames[limit:]
            return self._events(frames[:limit])
        frames = self.decoder.pop(limit)
        if len(frames) > 2 * limit:
            self._spill = frames[limit:]
            frames = frames[:limit]
        return self._events(frames)

    def finish(self) -> list[ExecEvent]:
        frames, self._spill = self._spill, []
        return self._events(frames + self.decoder.finish())

    def _events(self, frames: list[Any]) -> list[ExecEvent]:
        """Events of a batch of frames, consecutive stdout (stderr) frames merged into one event.

        Output frames are only merged within one batch (lines that arrived together), so nothing
        waits for more input; the text of each stream and the order of its runs are unchanged
        (frame boundaries carry no meaning on this wire: WIRE §11 "not necessarily whole lines").
        Per frame the work runs in C (``map`` of ``dict.get``, ``max`` over ``len``);
        ``list.index`` finds the end of each stdout run and ``str.join`` glues a run, so Python
        code runs per run, per stderr frame and per exit/error/heartbeat frame only. This, not
        decoding, was ~75% of a stream's CPU when every frame became an event of its own.
        """
        n = len(frames)
        if n == 0:
            return []
        try:
            outs: list[Any] = list(map(_get, frames, repeat(STDOUT)))
        except TypeError:
            bad = next(f for f in frames if not isinstance(f, dict))
            raise ProtocolError(
                f"exec stream frame is not a JSON object (a {type(bad).__name__})"
            ) from None
        if max(map(len, frames)) > 1:  # a frame with several keys: split each in WIRE order
            return self._events_slow(frames)
        outs.append(None)  # sentinels: index() always finds the end of a stdout run, ...
        frames.append(_NO_FRAME)  # ... and a stderr run always meets a frame without stderr
        out: list[ExecEvent] = []
        append = out.append
        join = "".join
        i = 0
        try:
            while i < n:
                j = outs.index(None, i)
                if j > i:  # a run of stdout frames
                    data = join(outs[i:j])
                    kind = STDOUT
                else:  # a run of stderr frames (found frame by frame), else another frame
                    errs: list[str] = []
                    v = frames[j].get(STDERR)
                    while v is not None:
                        errs.append(v)
                        j += 1
                        v = frames[j].get(STDERR)
                    if j == i:
                        self._frame(frames[i], append)
                        i += 1
                        continue
                    data = join(errs)
                    kind = STDERR
                i = j
                if data:  # new_event, inlined: this runs once per event
                    ev = _BUILDER()
                    ev.kind = kind
                    ev.data = data
                    ev.exit_code = None
                    ev.__class__ = _EVENT
                    append(ev)
        except TypeError:  # an output value that is not a string: the per-frame path names it
            del frames[n:]
            return self._events_slow(frames)
        finally:
            del frames[n:]  # the sentinel: the caller's list is left as it came
        return out

    def _events_slow(self, frames: list[Any]) -> list[ExecEvent]:
        """One frame at a time, each checked and split in WIRE order (no merging)."""
        out: list[ExecEvent] = []
        for f in frames:
            if not isinstance(f, dict):
                raise ProtocolError(
                    f"exec stream frame is not a JSON object (a {type(f).__name__})"
                )
            self._frame(f, out.append)
        return out

    def _frame(self, f: dict[str, Any], append: Callable[[ExecEvent], None]) -> None:
        """Any frame: split its keys in WIRE order, checking each value's type."""
        if f.get("hb"):
            self.frame_heartbeats += 1
        kind: ExecEventKind
        for kind in (STDOUT, STDERR):
            v = f.get(kind)
            if v is None or v == "":
                continue
            if not isinstance(v, str):
                raise ProtocolError(
                    f"exec stream frame {kind!r} is a {type(v).__name__}, not a string"
                )
            append(new_event(kind, v, None))
        err = f.get("error")
        if err is not None and err != "":
            if not isinstance(err, str):
                err = str(err)
            if self.error is None:
                self.error = err
            append(new_event(ERROR, err, None))
        code = f.get("exit_code")
        if code is not None:
            if not isinstance(code, int) or isinstance(code, bool):
                raise ProtocolError(f"exec stream exit_code is a {type(code).__name__}, not an int")
            if self.exit_code is None:
                self.exit_code = code
            append(new_event(EXIT, "", code))


# ---------------------------------------------------------------- the request body


def check_stdin(stdin: object) -> str | None:
    """The API takes stdin as one JSON string field, so it must be text (WIRE §11)."""
    if stdin is None:
        return None
    if isinstance(stdin, str):
        return check_text("stdin", stdin)
    if isinstance(stdin, bytes | bytearray | memoryview):
        try:
            return bytes(stdin).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"stdin must be UTF-8 text: the exec API carries it as a JSON string "
                f"(invalid byte at offset {exc.start}); upload binary input with files.upload()"
            ) from None
    if hasattr(stdin, "__aiter__") or hasattr(stdin, "__iter__"):
        raise TypeError(
            "stdin must be str or bytes: the exec API takes stdin as one string and cannot stream "
            "it (use sb.processes for interactive input)"
        )
    raise TypeError(f"stdin must be str or bytes, got {type(stdin).__name__}")


def exec_body(cmd: object, args: object, stdin: object, env: object) -> dict[str, Any]:
    """The POST body, optional fields omitted rather than sent empty (WIRE §3)."""
    body: dict[str, Any] = {"cmd": check_cmd(cmd)}
    arg_list = check_args(args)
    if arg_list:
        body["args"] = arg_list
    text = check_stdin(stdin)
    if text:
        body["stdin"] = text
    env_map = check_env(env)
    if env_map:
        body["env"] = env_map
    return body


def sh_args(script: object) -> list[str]:
    return ["-lc", check_str("script", script)]


# ---------------------------------------------------------------- answers -> ExecResult


def result_from_wire(data: Any) -> ExecResult:
    """``{"result": {stdout, stderr, exit_code, error?}, "exec_ms"}`` -> ExecResult.

    Hand-written rather than through the converter: this runs once per exec on the hot path.
    """
    if type(data) is not dict or type(data.get("result")) is not dict:
        raise ProtocolError("exec response has no 'result' object")
    r = data["result"]
    stdout = r.get("stdout") or ""
    stderr = r.get("stderr") or ""
    code = r.get("exit_code")
    if code is None:
        code = 0  # omitempty servers drop a zero exit code
    error = r.get("error") or None
    exec_ms = data.get("exec_ms")
    if (
        type(stdout) is not str
        or type(stderr) is not str
        or type(code) is not int
        or (error is not None and type(error) is not str)
        or (exec_ms is not None and type(exec_ms) not in (int, float))
    ):
        raise ProtocolError("exec response 'result' has fields of the wrong type")
    return ExecResult(stdout, stderr, code, None if exec_ms is None else float(exec_ms), error)


def collect(status: int, raw: bytes, resp: aiohttp.ClientResponse) -> ExecResult:
    """A whole exec stream body -> ExecResult; a server that ignored ``?stream=true`` and
    answered with a buffered JSend result is taken as it is.

    The transport read ``raw`` with its buffered-answer bound (``MAX_BODY``, 64 MiB), so a
    flood of output ends in ProtocolError rather than in the client's memory.
    """
    if "ndjson" not in resp.headers.get("Content-Type", ""):
        try:
            doc = _json.loads(raw) if raw else None
        except ValueError:
            doc = None  # not JSON at all: the ProtocolError below, without the decoder's error
        if type(doc) is dict and doc.get("status") == "success":
            return result_from_wire(doc.get("data"))
        raise ProtocolError(f"exec stream: HTTP {status} body is neither NDJSON nor a JSend result")
    parser = FrameParser()
    events = parser.feed(raw)
    try:
        events += parser.finish()
    except ProtocolError:
        if parser.exit_code is None and parser.error is None:
            raise StreamInterruptedError("exec stream ended in the middle of a frame") from None
        raise
    code = parser.exit_code
    if code is None:
        if parser.error is None:
            raise StreamInterruptedError("exec stream ended without an exit status")
        code = NO_EXIT_CODE
    out: list[str] = []
    err: list[str] = []
    for ev in events:
        if ev.kind == STDOUT:
            out.append(ev.data)
        elif ev.kind == STDERR:
            err.append(ev.data)
        elif ev.kind == EXIT:
            break
    return ExecResult("".join(out), "".join(err), code, None, parser.error)
