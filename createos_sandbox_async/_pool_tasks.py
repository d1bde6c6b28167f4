"""The pool's background tasks: the warm filler and the drivers of ``as_completed``.

Each is a child of the pool's task group with its own cancel scope, so one can be stopped alone,
and they are counted, so the pool's exit can stop them all and wait until they are gone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

__all__ = ["Background"]

logger = logging.getLogger("createos_sandbox_async.pool")


class Background:
    """Counted, individually cancellable children of one task group."""

    __slots__ = ("_done", "_scopes", "count")

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._done: anyio.Event | None = None
        self.count = 0

    def spawn(self, tg: TaskGroup, fn: Callable[[], Awaitable[None]]) -> None:
        """Start ``fn()`` in ``tg`` under its own cancel scope."""
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        self.count += 1

        async def runner() -> None:
            try:
                with scope:
                    await fn()
            except Exception:  # pragma: no cover - a bug; never take the user's task down
                logger.exception("SandboxPool background task failed")
            finally:
                self._scopes.discard(scope)
                self.count -= 1
                if not self.count and self._done is not None:
                    self._done.set()

        tg.start_soon(runner)

    async def stop(self) -> None:
        """Cancel every child and wait until none is left (the caller shields this)."""
        for scope in list(self._scopes):
            scope.cancel()
        if self.count:
            self._done = anyio.Event()
            await self._done.wait()
