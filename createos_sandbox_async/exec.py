"""Running commands: buffered ``exec`` and the streamed ``ExecStream`` (WIRE §11).

(work in progress: events and the frame parser first)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import attrs

from ._ndjson import DEFAULT_MAX_LINE, EXEC_HEARTBEAT, NDJSONDecoder
from .errors import ProtocolError

__all__ = ["ExecEvent", "ExecEventKind", "ExecResult"]

ExecEventKind = Literal["stdout", "stderr", "exit", "error"]

STDOUT: Final = "stdout"
STDERR: Final = "stderr"
EXIT: Final = "exit"
ERROR: Final = "error"

#: ``ExecResult.exit_code`` when the command never started and no exit frame followed the error.
NO_EXIT_CODE: Final = -1


@attrs.define(frozen=True, slots=True)
class ExecEvent:
    """One item of an exec stream.

    ``kind`` is ``"stdout"`` or ``"stderr"`` (``data`` holds a chunk of output, not necessarily a
    whole line), ``"error"`` (``data`` holds the agent's message: the command never started) or
    ``"exit"`` (``exit_code`` holds the status; it is the last event). Heartbeats never show up.
    """

    kind: ExecEventKind
    data: str = ""
    exit_code: int | None = None


def _event_factory() -> Callable[[ExecEventKind, str, int | None], ExecEvent]:
    """Build events without the generated frozen ``__init__`` (~25% of the per-event cost).

    The slot descriptors are set directly: same object, same immutability afterwards.
    """
    new = object.__new__
    set_kind = ExecEvent.__dict__["kind"].__set__
    set_data = ExecEvent.__dict__["data"].__set__
    set_code = ExecEvent.__dict__["exit_code"].__set__

    def make(kind: ExecEventKind, data: str, exit_code: int | None) -> ExecEvent:
        ev: ExecEvent = new(ExecEvent)
        set_kind(ev, kind)
        set_data(ev, data)
        set_code(ev, exit_code)
        return ev

    return make


_new_event = _event_factory()


@attrs.define(frozen=True, slots=True)
class ExecResult:
    """What a finished command produced.

    ``error`` is the agent's message when the command could not be started (then ``exit_code`` is
    whatever the server sent, possibly 0, or -1 when a stream carried no exit frame). ``exec_ms`` is
    the server's timing for a buffered exec, None for a stream.
    """

    stdout: str
    stderr: str
    exit_code: int
    exec_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.exit_code == 0 and not self.error


class _FrameParser:
    """Exec stream bytes -> ``ExecEvent`` lists (WIRE §11).

    A frame normally carries one key; a frame with several is split in the order hb, stdout,
    stderr, error, exit, like the official SDKs. Zero values (``hb:false``, ``""``, ``null``) mean
    "not this kind". Unknown keys are ignored.
    """

    __slots__ = ("decoder", "error", "exit_code", "frame_heartbeats")

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.decoder = NDJSONDecoder(max_line=max_line, heartbeat=EXEC_HEARTBEAT)
        self.exit_code: int | None = None
        self.error: str | None = None
        self.frame_heartbeats = 0  # heartbeats spelled differently from EXEC_HEARTBEAT

    @property
    def heartbeats(self) -> int:
        return self.decoder.heartbeats + self.frame_heartbeats

    def feed(self, chunk: bytes) -> list[ExecEvent]:
        return self._events(self.decoder.feed(chunk))

    def finish(self) -> list[ExecEvent]:
        return self._events(self.decoder.finish())

    def _events(self, frames: list[Any]) -> list[ExecEvent]:
        out: list[ExecEvent] = []
        append = out.append
        new = _new_event
        try:
            for f in frames:
                # Fast path: the one-key output frames that make up nearly all of a stream.
                v = f.get("stdout")
                if v is not None:
                    if v.__class__ is str and len(f) == 1:
                        if v:
                            append(new(STDOUT, v, None))
                        continue
                else:
                    v = f.get("stderr")
                    if v is not None and v.__class__ is str and len(f) == 1:
                        if v:
                            append(new(STDERR, v, None))
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
        for key, kind in ((STDOUT, STDOUT), (STDERR, STDERR)):
            v = f.get(key)
            if v is None or v == "":
                continue
            if not isinstance(v, str):
                raise ProtocolError(
                    f"exec stream frame {key!r} is a {type(v).__name__}, not a string"
                )
            append(_new_event(kind, v, None))
        err = f.get("error")
        if err is not None and err != "":
            if not isinstance(err, str):
                err = str(err)
            if self.error is None:
                self.error = err
            append(_new_event(ERROR, err, None))
        code = f.get("exit_code")
        if code is not None:
            if not isinstance(code, int) or isinstance(code, bool):
                raise ProtocolError(f"exec stream exit_code is a {type(code).__name__}, not an int")
            if self.exit_code is None:
                self.exit_code = code
            append(_new_event(EXIT, "", code))
