"""The one idle bound of streamed response bodies: no byte for ``idle`` seconds is a stall.

Exec streams, downloads, process output, template logs and screenshots all read an aiohttp body
chunk by chunk and must give up when the server goes silent. They share :class:`IdleTimer`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .errors import StreamStalledError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["IdleTimer"]


class IdleTimer:
    """Fail the pending read of a response body once it waited ``idle`` seconds for a byte.

    Why not a timeout around every read (``asyncio.timeout``, an anyio cancel scope): that
    schedules and cancels a loop timer per chunk, which on an exec stream or a big download
    costs more than the rest of the per-chunk work. Here a read only stamps the loop time it
    began; one loop timer per stream wakes up at most every ``idle`` seconds and, on a real
    stall, puts :class:`StreamStalledError` into aiohttp's reader, which raises it from the
    pending read (the reader keeps it: the stream is over). Only time spent waiting inside a
    read counts, so a consumer that is slow between reads is never taken for a silent server.

    ``deadline`` (loop time) ends the stream with ``deadline_error`` once passed, reading or
    not: exec's total ``timeout`` rides on the same timer. ``idle=None`` and no deadline: no
    timer at all, reads just read.
    """

    __slots__ = (
        "_content",
        "_deadline",
        "_deadline_error",
        "_handle",
        "_idle",
        "_loop",
        "_what",
        "started",
    )

    def __init__(
        self,
        content: aiohttp.StreamReader,
        idle: float | None,
        what: str,
        *,
        deadline: float | None = None,
        deadline_error: BaseException | None = None,
    ) -> None:
        if deadline is not None and deadline_error is None:
            raise TypeError("a deadline needs its deadline_error")
        self._loop = asyncio.get_running_loop()
        self._content = content
        self._idle = idle
        self._what = what
        self._deadline = deadline
        self._deadline_error = deadline_error
        #: Loop time the pending read began; None between reads (that time does not count).
        self.started: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._arm(self._loop.time())

    async def read(self, n: int | None = None) -> bytes:
        """The next chunk as the network delivered it (``readany``), or at most ``n`` bytes."""
        content = self._content
        self.started = self._loop.time()
        try:
            return await (content.readany() if n is None else content.read(n))
        finally:
            self.started = None

    def cancel(self) -> None:
        """Stop watching (the stream ended or is being closed). Idempotent."""
        handle = self._handle
        if handle is not None:
            self._handle = None
            handle.cancel()

    def _arm(self, start: float) -> None:
        """Wake up at ``start + idle`` or at the deadline, whichever comes first."""
        idle, due = self._idle, self._deadline
        if idle is not None and (due is None or start + idle < due):
            due = start + idle
        self._handle = None if due is None else self._loop.call_at(due, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        self._handle = None
        deadline = self._deadline
        if deadline is not None and now >= deadline:
            assert self._deadline_error is not None
            self._content.set_exception(self._deadline_error)
            return
        started, idle = self.started, self._idle
        if started is None:  # between reads: the clock starts again with the next read
            self._arm(now)
        elif idle is not None and now >= started + idle:
            self._content.set_exception(
                StreamStalledError(f"{self._what} stalled: nothing received for {idle:g} s")
            )
        else:
            self._arm(started)
