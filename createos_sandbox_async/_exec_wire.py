"""The exec stream's wire layer: frames (WIRE §11) in, ``ExecEvent`` objects out.

``_ndjson`` splits the body into JSON frames; this module turns frames into events, on the
per-event hot path of every exec stream. ``exec`` builds ``ExecStream`` and buffered exec on top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import attrs

from ._ndjson import DEFAULT_MAX_LINE, EXEC_HEARTBEAT, NDJSONDecoder
from .errors import ProtocolError

__all__ = [
    "BATCH",
    "ERROR",
    "EXIT",
    "STDERR",
    "STDOUT",
    "ExecEvent",
    "ExecEventKind",
    "FrameParser",
    "new_event",
    "size_only",
]

ExecEventKind = Literal["stdout", "stderr", "exit", "error"]

STDOUT: Final = "stdout"
STDERR: Final = "stderr"
EXIT: Final = "exit"
ERROR: Final = "error"

#: Lines decoded per batch. Small enough that a batch's events (GC-tracked; the decoded dicts of
#: strings are not) stay well under the cyclic GC's young-generation threshold (700 objects), so
#: no collection runs while a stream is parsed (400-line batches measured ~15% more CPU per event
#: in GC passes); large enough that one ``loads`` call per batch costs nothing per line.
BATCH: Final = 256


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
        self.decoder = NDJSONDecoder(max_line=max_line, heartbeat=EXEC_HEARTBEAT)
        self.exit_code: int | None = None
        self.error: str | None = None
        self.frame_heartbeats = 0  # heartbeats spelled differently from EXEC_HEARTBEAT
        self._spill: list[Any] = []  # decoded frames beyond a batch, not turned into events yet

    @property
    def queued(self) -> bool:
        """Lines or frames are waiting for :meth:`pop` (no network read needed)."""
        return bool(self._spill) or self.decoder.queued > 0

    @property
    def heartbeats(self) -> int:
        return self.decoder.heartbeats + self.frame_heartbeats

    def feed(self, chunk: bytes) -> list[ExecEvent]:
        """Events of every line this chunk completes (and of any frames still queued)."""
        frames, self._spill = self._spill, []
        return self._events(frames + self.decoder.feed(chunk))

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
        out: list[ExecEvent] = []
        append = out.append
        # The hot loop: ``new_event`` inlined (a call less per event), locals for globals.
        builder, event = _BUILDER, _EVENT
        try:
            for f in frames:
                # Fast path: the one-key output frames that make up nearly all of a stream.
                v = f.get("stdout")
                if v is not None:
                    if v.__class__ is str and len(f) == 1:
                        if v:
                            ev = builder()
                            ev.kind = STDOUT
                            ev.data = v
                            ev.exit_code = None
                            ev.__class__ = event
                            append(ev)
                        continue
                else:
                    v = f.get("stderr")
                    if v is not None and v.__class__ is str and len(f) == 1:
                        if v:
                            ev = builder()
                            ev.kind = STDERR
                            ev.data = v
                            ev.exit_code = None
                            ev.__class__ = event
                            append(ev)
                        continue
                self._frame(f, append)
        except AttributeError:
            raise ProtocolError(
                f"exec stream frame is not a JSON object (a {type(f).__name__})"
            ) from None
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
