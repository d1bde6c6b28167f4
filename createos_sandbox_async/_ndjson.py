"""Incremental NDJSON decoding for streaming responses (WIRE §11, §13, §14).

Why our own splitter: aiohttp's ``readline`` (and ``async for line in resp.content``) raises on a
line longer than its buffer, and decoding one line at a time with ``json.loads`` is what makes a
stream client CPU-bound. :class:`NDJSONDecoder` takes the raw chunks of
``response.content.iter_any()``, keeps the unfinished tail of the last line, drops heartbeat
lines by a bytes comparison (no JSON decode), and decodes all the complete lines of a chunk with
ONE ``loads`` of a JSON array. Only a chunk that fails that fast path (a blank or SSE control line,
invalid JSON) is decoded line by line, to clean it up or to name the bad line.

With ``orjson`` importable (the optional ``speed`` extra) it is used instead of the stdlib decoder.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from .errors import ProtocolError

__all__ = ["DEFAULT_MAX_LINE", "EXEC_HEARTBEAT", "NDJSONDecoder", "default_loads"]

#: Longest line accepted before :class:`ProtocolError`: a bound on memory, not a wire rule.
DEFAULT_MAX_LINE = 16 * 1024 * 1024

#: The exec stream's heartbeat frame exactly as the server writes it (WIRE §11).
EXEC_HEARTBEAT = b'{"hb":true}'

_SSE_SKIP = (b":", b"event:", b"id:", b"retry:")
_DATA = b"data:"


def _pick_loads() -> Callable[[bytes], Any]:
    """orjson when installed (about 2x faster on small objects), else the stdlib decoder."""
    try:
        orjson: Any = importlib.import_module("orjson")
    except ImportError:
        return json.loads
    loads: Callable[[bytes], Any] = orjson.loads
    return loads


#: The decoder used when none is passed: bytes in, objects out, ``ValueError`` on bad JSON.
default_loads: Callable[[bytes], Any] = _pick_loads()


class NDJSONDecoder:
    """Turn network chunks into decoded JSON values, one per non-blank, non-heartbeat line.

    Two ways to use it. Simple: ``feed(chunk)`` returns the values of the lines the chunk
    completed. Streaming: ``push(chunk)`` queues the completed lines (no decoding yet) and
    ``pop(n)`` decodes up to ``n`` of them; a consumer that pops small batches and drops each value
    before the next batch keeps few objects alive at once, which spares the cyclic garbage collector
    (whole 256 KiB chunks decoded at once cost ~40% more CPU in GC passes alone).

    ``finish()`` at EOF decodes whatever is queued plus a last line that had no newline.
    ``heartbeats`` counts the heartbeat lines dropped. A line longer than ``max_line`` bytes
    raises :class:`ProtocolError` as soon as that is known: a server cannot make us buffer without
    bound.
    """

    __slots__ = (
        "_base",
        "_has_hb",
        "_lines",
        "_loads",
        "_next",
        "_parts",
        "_pending",
        "heartbeat",
        "heartbeats",
        "max_line",
    )

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        heartbeat: bytes | None = EXEC_HEARTBEAT,
        loads: Callable[[bytes], Any] | None = None,
    ) -> None:
        if not isinstance(max_line, int) or isinstance(max_line, bool) or max_line < 1:
            raise ValueError(f"max_line must be a positive int, got {max_line!r}")
        self.max_line = max_line
        self.heartbeat = heartbeat
        self.heartbeats = 0
        self._loads = default_loads if loads is None else loads
        self._parts: list[bytes] = []  # pieces of the unfinished last line
        self._pending = 0  # their total length
        self._lines: list[bytes] = []  # complete lines not decoded yet start at _lines[_next]
        self._next = 0
        self._base = 0  # number of lines before _lines[0], for error messages
        self._has_hb = False  # the queued lines may contain a heartbeat

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back until its newline arrives."""
        return self._pending

    @property
    def queued(self) -> int:
        """Complete lines waiting for :meth:`pop`."""
        return len(self._lines) - self._next

    def feed(self, chunk: bytes) -> list[Any]:
        """Values of the lines this chunk completes, in order."""
        self.push(chunk)
        return self.pop(len(self._lines))

    def push(self, chunk: bytes) -> int:
        """Queue the lines this chunk completes (not decoded yet); returns the queue length."""
        nl = chunk.rfind(b"\n")
        if nl < 0:
            if chunk:
                self._pending += len(chunk)
                if self._pending > self.max_line:
                    self._too_long(self._pending)
                self._parts.append(chunk)
            return len(self._lines) - self._next
        if self._parts:
            self._parts.append(chunk[:nl])
            block = b"".join(self._parts)
            self._parts = []
        else:
            block = chunk[:nl]
        rest = chunk[nl + 1 :]
        if rest:
            self._parts.append(rest)
            self._pending = len(rest)
            if self._pending > self.max_line:
                self._too_long(self._pending)
        else:
            self._pending = 0
        lines = block.split(b"\n")
        if len(block) > self.max_line and max(map(len, lines)) > self.max_line:
            self._too_long(max(map(len, lines)))
        has_hb = self.heartbeat is not None and self.heartbeat in block
        if self._next >= len(self._lines):
            self._base += len(self._lines)
            self._lines = lines
            self._has_hb = has_hb
        else:  # the consumer pushed before popping everything: keep the rest in front
            self._base += self._next
            self._lines = self._lines[self._next :] + lines
            self._has_hb = self._has_hb or has_hb
        self._next = 0
        return len(self._lines)

    def pop(self, limit: int = 256) -> list[Any]:
        """Decode up to ``limit`` queued lines (heartbeats, blank and SSE lines yield nothing)."""
        i = self._next
        batch = self._lines[i : i + limit]
        self._next = i + len(batch)
        if not batch:
            return []
        return self._decode(batch, self._base + i)

    def finish(self) -> list[Any]:
        """At EOF: the queued lines and a last line that ended without a newline (tolerated)."""
        values = self.pop(len(self._lines)) if self._next < len(self._lines) else []
        if not self._parts:
            return values
        line = b"".join(self._parts)
        self._parts = []
        self._pending = 0
        self._base += len(self._lines)
        self._lines = []
        self._next = 0
        values.extend(self._decode_slow([line], self._base))
        self._base += 1
        return values

    def _decode(self, batch: list[bytes], first: int) -> list[Any]:
        """Fast path: every line of the batch decoded by one ``loads`` of a JSON array."""
        lines = batch
        hb = self.heartbeat
        if self._has_hb and hb in batch:
            lines = [line for line in batch if line != hb]
            if not lines:
                self.heartbeats += len(batch)
                return []
        try:
            values: list[Any] = self._loads(b"[" + b",\n".join(lines) + b"]")
        except ValueError:
            return self._decode_slow(batch, first)
        if len(values) != len(lines):  # a line held two values ("{..},{..}"): find it
            return self._decode_slow(batch, first)
        self.heartbeats += len(batch) - len(lines)
        return values

    def _decode_slow(self, lines: list[bytes], first: int) -> list[Any]:
        """Clean up blank, SSE and ``\\r`` lines, then decode; name the first bad line."""
        hb = self.heartbeat
        clean: list[bytes] = []
        numbers: list[int] = []
        for i, raw in enumerate(lines):
            line = raw.strip()
            if not line:
                continue
            if line[:1] != b"{":
                if line.startswith(_DATA):
                    line = line[len(_DATA) :].strip()
                    if not line:
                        continue
                elif line.startswith(_SSE_SKIP):
                    continue
            if line == hb:
                self.heartbeats += 1
                continue
            clean.append(line)
            numbers.append(first + i + 1)
        if not clean:
            return []
        loads = self._loads
        try:
            values: list[Any] = loads(b"[" + b",\n".join(clean) + b"]")
        except ValueError:
            pass
        else:
            if len(values) == len(clean):
                return values
        out: list[Any] = []
        for line, number in zip(clean, numbers, strict=True):
            try:
                out.append(loads(line))
            except ValueError as exc:
                # The message names a position, never the content (output may hold secrets).
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                raise ProtocolError(
                    f"stream line {number} ({len(line)} bytes) is not valid JSON: {reason}"
                ) from None
        return out

    def _too_long(self, size: int) -> None:
        raise ProtocolError(
            f"a stream line is longer than max_line={self.max_line} bytes (at least {size} bytes)"
        )
