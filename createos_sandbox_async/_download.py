"""A guest file's bytes as they arrive: ``DownloadStream``, behind ``sandbox.files``' downloads.

Public as ``createos_sandbox_async.files.DownloadStream``; it lives here to keep ``files.py`` about
the transfers themselves. Its body ends the shared way (``_body``): released at EOF, closed
otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp

from ._body import BodyStream
from .errors import APITimeoutError, StreamInterruptedError

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["DownloadStream"]

_INF = float("inf")


def _stream_error(exc: BaseException) -> StreamInterruptedError:
    """A body that broke off mid-way is an interrupted stream, whatever aiohttp called it."""
    return StreamInterruptedError(f"download interrupted: {type(exc).__name__}: {exc}")


class DownloadStream(BodyStream):
    """Async iterator of a guest file's chunks; also an async context manager.

    The request is sent on first iteration. Chunks are what the network delivered, split to at
    most ``chunk_size`` bytes when one is given. Reading to the end returns the connection to the
    pool; leaving early (``break`` inside ``async with``, ``aclose()``, an exception,
    cancellation) closes the connection instead, so nothing half-read is ever reused. Without
    ``async with``, a stream dropped after ``break`` still closes its connection when collected.
    No byte for the session's ``stream_idle`` seconds raises :class:`StreamStalledError`.

    Attributes:
        bytes_read: Bytes received so far.

    Raises:
        NotFoundError: No such file in the guest (raised on the first iteration).
        StreamStalledError: Nothing arrived for the idle timeout.
        StreamInterruptedError: The connection ended before the whole file arrived.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        path: str,
        chunk_size: int | None,
        timeout: float | None,
        *,
        whole: bool = False,
    ) -> None:
        self._sandbox = sandbox
        self._path = path
        self._chunk_size = chunk_size
        self._timeout = timeout
        #: ``timeout`` bounds the whole transfer (download, download_to), not only the opening.
        self._whole = whole
        self.bytes_read = 0

    def _deadline(self) -> tuple[float | None, APITimeoutError | None]:
        """For a whole-call ``timeout``: the loop time the body must be over by, and its error."""
        timeout = self._timeout
        if not self._whole or timeout is None or timeout == _INF:
            return None, None
        error = APITimeoutError(
            f"download of {self._path} did not finish within timeout={timeout:g} s"
        )
        return asyncio.get_running_loop().time() + timeout, error

    async def _open(self) -> None:
        transport = self._sandbox._transport
        deadline, deadline_error = self._deadline()
        await self._open_body(
            transport,
            self._sandbox._path("/files"),
            {"path": self._path},
            timeout=self._timeout,
            idle=transport.timeouts.stream_idle or None,  # 0: no idle bound here
            what=f"download of {self._path}",
            deadline=deadline,
            deadline_error=deadline_error,
        )

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            if self._response is None:
                await self._open()
            chunk = await self._read_body(self._chunk_size)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            await self.aclose()
            raise _stream_error(exc) from exc
        except BaseException:
            await self.aclose()
            raise
        if not chunk:
            await self.aclose()
            raise StopAsyncIteration
        self.bytes_read += len(chunk)
        return chunk

    async def read_all(self) -> bytes:
        """The whole body at once (``download``): one read loop, no ``__anext__`` per chunk."""
        parts: list[bytes] = []
        await self.copy_into(parts.append)
        return b"".join(parts)

    async def copy_into(
        self,
        write: Callable[[bytes], bool | None],
        write_async: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> int:
        """Hand every chunk to ``write`` as it arrives; the number of bytes read.

        One read loop with the idle timer's bookkeeping inline: a big download is hundreds of
        chunks, and a coroutine per chunk (``__anext__``, ``_read_body``) was a measurable part
        of its CPU. Once ``write`` returns True (``download_to`` after a slow disk write), the
        rest goes to ``write_async``; time spent in either does not count as idle.
        """
        try:
            if self._response is None:
                await self._open()
            timer = self._timer
            response = self._response
            assert timer is not None and response is not None, "opened above"
            readany = response.content.readany
            clock = asyncio.get_running_loop().time
            size = 0
            inline = True
            while True:
                timer.started = clock()
                chunk = await readany()
                timer.started = None
                if not chunk:
                    break
                size += len(chunk)
                if inline:
                    if write(chunk) and write_async is not None:
                        inline = False
                elif write_async is not None:
                    await write_async(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            await self.aclose()
            raise _stream_error(exc) from exc
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        self.bytes_read += size
        return size


# Its public home: reprs and the docs name ``createos_sandbox_async.files.DownloadStream``.
DownloadStream.__module__ = "createos_sandbox_async.files"
