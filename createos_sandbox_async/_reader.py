"""Streamed bodies read without aiohttp's per-HTTP-chunk Python work.

A server that flushes every exec frame sends HTTP chunks of ~100 bytes. For each one, aiohttp's
``StreamReader`` records the chunk's boundary (for ``readchunk()``, which nothing here uses),
and ``readany()`` later takes the buffered chunks back one Python call at a time: together
~1 µs per chunk, more than the rest of an exec stream's client work (8 MiB of frames in 128-byte
chunks: 72 ms of client CPU just to read them, 22 ms with this reader; 64 KiB chunks: 4.3 vs
3.5 ms).

:func:`lean` relabels one response's reader (``__class__`` assignment: same object, same state)
as a subclass that keeps no chunk boundaries and takes everything buffered with one
``bytes.join``. Every other method, ``feed_data`` included, stays aiohttp's own, so the state
they share (``_buffer``, ``_size``, ``_cursor``, flow control) is kept the way they keep it.

The subclass reads private fields. They have had the same names and meaning from aiohttp 3.9
through 3.14 (checked against each release's ``streams.py``); for any other version, or a reader
that is not a plain ``StreamReader``, :func:`lean` does nothing and aiohttp reads as usual.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
from aiohttp.streams import StreamReader

__all__ = ["LEAN", "lean"]


def _checked_version(version: str) -> bool:
    """The aiohttp releases whose ``StreamReader`` internals this module was checked against."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return major == 3 and 9 <= minor <= 14


#: Whether :func:`lean` relabels readers on this aiohttp.
LEAN: Final = _checked_version(aiohttp.__version__)


class _LeanReader(StreamReader):
    """``StreamReader`` minus chunk-boundary bookkeeping, with a one-join ``readany``."""

    __slots__ = ()

    # The HTTP parser calls these around every chunk; they only serve ``readchunk()``. A C
    # callable taking no argument (``tuple()``) costs less per call than a Python no-op.
    begin_http_chunk_receiving = staticmethod(tuple)  # type: ignore[assignment]
    end_http_chunk_receiving = staticmethod(tuple)  # type: ignore[assignment]

    async def readany(self) -> bytes:
        """Everything buffered, as one bytes object (``b""`` at EOF)."""
        if self._exception is not None:
            raise self._exception
        while not self._buffer and not self._eof:
            await self._wait("readany")
        return self._take_all()

    def _take_all(self) -> bytes:
        # Mirrors aiohttp's _read_nowait(-1) + _read_nowait_chunk, for all chunks at once.
        self._timer.assert_timeout()
        me: Any = self  # the fields below are aiohttp's private ones, untyped for mypy
        buffer = me._buffer
        if not buffer:
            return b""
        offset = me._buffer_offset
        if offset:
            buffer[0] = buffer[0][offset:]
            me._buffer_offset = 0
        data: bytes = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        me._size = 0
        me._cursor += len(data)
        splits = me._http_chunk_splits
        if splits:  # boundaries recorded before the relabel: none of them is ahead of us now
            splits.clear()
        protocol = me._protocol
        if protocol._reading_paused:  # flow control paused the socket at the high-water mark
            protocol.resume_reading()
        return data


def lean(content: aiohttp.StreamReader) -> None:
    """Make this response body's reader a :class:`_LeanReader`, where that is known to be safe."""
    if LEAN and type(content) is StreamReader:
        content.__class__ = _LeanReader
