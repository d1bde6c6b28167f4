"""One ``map``/``as_completed`` call of a ``SandboxPool``: its state and how its input is read.

A list is walked by index; an async iterable is read by one feeder task into a memory stream of
``read_ahead`` slots, so a 10-million-item input never sits in memory. Problems are recorded
here (item errors, a creation-stopping error, a broken input) and the run's scope cancelled; the
pool raises them when the run ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import attrs

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Run", "new_run"]


@attrs.define(eq=False)
class Run:
    """State of one ``map``/``as_completed`` call."""

    job: Callable[[Any, Any], Awaitable[Any]]
    scope: anyio.CancelScope
    workers: int
    total: int | None
    stop_on_error: bool
    it: Iterator[tuple[int, Any]] | None = None
    feed: AsyncIterable[Any] | None = None
    recv: MemoryObjectReceiveStream[tuple[int, Any]] | None = None
    started: int = 0
    results: Any = None
    sink: MemoryObjectSendStream[tuple[Any, Any]] | None = None
    errors: list[BaseException] = attrs.Factory(list)
    fatal: BaseException | None = None
    broken: BaseException | None = None  # input iterator / on_progress raised

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.scope.cancel()

    def stop(self, fatal: BaseException) -> None:
        if self.fatal is None:
            self.fatal = fatal
        self.scope.cancel()

    def break_(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        self.scope.cancel()

    def queued(self) -> int:
        if self.recv is not None:
            return self.recv.statistics().current_buffer_used
        if self.total is not None:
            return max(0, self.total - self.started)
        return 0

    async def read_input(self, send: MemoryObjectSendStream[tuple[int, Any]]) -> None:
        """Read the async input into ``read_ahead`` slots; the send blocks when they are full."""
        assert self.feed is not None
        index = 0
        with send:
            try:
                async for item in self.feed:
                    await send.send((index, item))
                    index += 1
            except anyio.BrokenResourceError:
                return
            except Exception as exc:
                self.break_(exc)

    async def take(self) -> tuple[int, Any] | None:
        """The next ``(index, item)``, or None at the end of the input (or when it broke)."""
        if self.it is not None:
            try:
                return next(self.it)
            except StopIteration:
                return None
            except Exception as exc:
                self.break_(exc)
                return None
        assert self.recv is not None
        try:
            return await self.recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None


def new_run(job: Any, items: object, max_workers: int, stop_on_error: bool) -> Run:
    """A run over ``items``: a sized iterable gets ``min(max_workers, len)`` workers."""
    if not callable(job):
        raise TypeError(f"job must be an async callable job(sandbox, item), got {job!r}")
    total: int | None = None
    if isinstance(items, AsyncIterable):
        run = Run(job, anyio.CancelScope(), max_workers, None, stop_on_error, feed=items)
    elif isinstance(items, Iterable) and not isinstance(items, str | bytes):
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
        workers = max_workers if total is None else max(1, min(max_workers, total))
        run = Run(job, anyio.CancelScope(), workers, total, stop_on_error, it=enumerate(items))
    else:
        raise TypeError(f"items must be an iterable or an async iterable, got {items!r}")
    return run
