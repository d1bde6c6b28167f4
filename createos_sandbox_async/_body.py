"""The one lifecycle of streamed response bodies: exec streams, downloads, process output, logs.

Each holds one response that ``Transport.stream`` opened and leaves that context exactly once,
through :func:`end_body`: after a terminal frame (exec's exit, a process's exit, a build log's
final line) a bounded drain reads the normally empty rest of the body, so the transport, which
releases a connection read to EOF and closes any other, can put it back in the pool; every other
way out (``break``, ``aclose()``, an error, cancellation, a deadline) closes it, so nothing
half-read is ever reused and the server sees the disconnect. ``ExecStream`` keeps its own
per-event fast path and ends through the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self

import aiohttp
import anyio

from ._idle import IdleTimer

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ._transport import Transport

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "BodyStream", "end_body"]

#: After a terminal frame: how long, and how many bytes, to read for the end of the body so the
#: connection can be reused. A server that sends more, or takes longer, gets the connection closed.
DRAIN_SECONDS: Final = 1.0
DRAIN_BYTES: Final = 64 * 1024


async def _drain(content: aiohttp.StreamReader) -> None:
    """Read the (normally empty) rest of a body, within the drain limits; errors mean "closed"."""
    if content.at_eof():  # the usual case: the end arrived with the terminal frame
        return
    left = DRAIN_BYTES
    try:
        with anyio.move_on_after(DRAIN_SECONDS):
            while left > 0 and not content.at_eof():
                chunk = await content.readany()
                if not chunk:
                    break
                left -= len(chunk)
    except (aiohttp.ClientError, OSError):
        pass  # not at EOF: the transport closes the connection instead


async def end_body(
    cm: AbstractAsyncContextManager[aiohttp.ClientResponse],
    response: aiohttp.ClientResponse | None,
    *,
    drain: bool,
    exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None] = (
        None,
        None,
        None,
    ),
) -> None:
    """Leave the transport's stream context once: after a bounded drain when ``drain`` (the
    terminal frame was read), at once otherwise. The exit is shielded, also when the drain is
    cancelled: the connection is released or closed now, not when the GC finds it."""
    try:
        if drain and response is not None:
            await _drain(response.content)
    finally:
        with anyio.CancelScope(shield=True):
            await cm.__aexit__(*exc_info)


class BodyStream:
    """Base of an async iterator over one streamed GET; also an async context manager.

    Subclasses define ``__anext__`` (and may extend ``aclose``, ending in :meth:`_close_body`);
    this class opens the body with its idle timer, reads chunks through the timer, leaves the
    transport's context once and shielded (a cancelled task still releases or closes the
    connection now, not when the GC finds it), and drops the socket from ``__del__`` when a
    wrapper is collected still open (``break`` without ``async with``).
    """

    # Class-level defaults, so ``__del__`` works even if a subclass ``__init__`` failed early.
    _cm: AbstractAsyncContextManager[aiohttp.ClientResponse] | None = None
    _response: aiohttp.ClientResponse | None = None
    _timer: IdleTimer | None = None
    #: Set once iteration is over (end of body, aclose, an error): ``__anext__`` then stops.
    _done: bool = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        """Stop reading; the connection is dropped unless the body was read to the end."""
        self._done = True
        await self._close_body()

    async def _open_body(
        self,
        transport: Transport,
        path: str,
        params: dict[str, object],
        *,
        timeout: float | None,
        idle: float | None,
        what: str,
        deadline: float | None = None,
        deadline_error: BaseException | None = None,
    ) -> aiohttp.ClientResponse:
        """Send the GET (once, never retried) and watch the body for silence (``what`` stalled).

        ``deadline`` (loop time), if given, ends the body with ``deadline_error`` once passed.
        """
        cm = transport.stream("GET", path, params=params, timeout=timeout)
        response: aiohttp.ClientResponse = await cm.__aenter__()
        self._cm, self._response = cm, response
        self._timer = IdleTimer(
            response.content, idle, what, deadline=deadline, deadline_error=deadline_error
        )
        return response

    async def _read_body(self, n: int | None = None) -> bytes:
        """The next chunk (at most ``n`` bytes); b"" at EOF; StreamStalledError on silence."""
        timer = self._timer
        assert timer is not None, "read before _open_body"
        return await timer.read(n)

    def _stop_timer(self) -> None:
        """No more reads that count (draining after the last frame must not stall)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    async def _close_body(self, *, drain: bool = False) -> None:
        """Leave the transport's stream context once (:func:`end_body`): ``drain`` after the
        terminal frame, so the connection can be reused; closed on any other way out."""
        self._stop_timer()
        cm, self._cm = self._cm, None
        response, self._response = self._response, None
        if cm is not None:
            await end_body(cm, response, drain=drain)

    def __del__(self) -> None:
        # Last resort: drop the socket synchronously so a half-read connection never lingers
        # (ClientResponse.close() needs no event loop turn).
        if self._timer is not None:
            self._timer.cancel()
        response = self._response
        if response is not None:
            response.close()
