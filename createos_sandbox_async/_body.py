"""What the streamed-body wrappers share: downloads, process output, template build logs.

Each holds one response that ``Transport.stream`` opened and must leave that context exactly once:
the transport releases the connection when the body was read to EOF and closes it otherwise, so
nothing half-read is ever reused. ``ExecStream`` does the same by hand on its hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import anyio

from ._idle import IdleTimer

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    import aiohttp

    from ._transport import Transport

__all__ = ["BodyStream"]


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

    async def _close_body(self) -> None:
        """Leave the transport's stream context once: release at EOF, close otherwise."""
        self._stop_timer()
        cm, self._cm = self._cm, None
        self._response = None
        if cm is not None:
            with anyio.CancelScope(shield=True):
                await cm.__aexit__(None, None, None)

    def __del__(self) -> None:
        # Last resort: drop the socket synchronously so a half-read connection never lingers
        # (ClientResponse.close() needs no event loop turn).
        if self._timer is not None:
            self._timer.cancel()
        response = self._response
        if response is not None:
            response.close()
