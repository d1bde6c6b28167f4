"""The ledger of the sandboxes a ``SandboxPool`` created, and the cleanup that empties it.

Every sandbox the pool creates is entered here the moment its create answer arrives (the call runs
shielded) and stays until a DELETE for it succeeded. On exit the pool destroys the whole ledger
concurrently; when some create answers never arrived (they may have succeeded server-side), a sweep
lists the account's live sandboxes and destroys those carrying the pool's name prefix or forked
from its template.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from .naming import sandbox_name

if TYPE_CHECKING:
    from .sandbox import Sandbox
    from .session import AsyncSession

__all__ = ["LIVE_STATUSES", "Ledger"]

logger = logging.getLogger("createos_sandbox_async.pool")

#: Statuses of sandboxes that still hold resources (what the orphan sweep lists).
LIVE_STATUSES = ("creating", "running", "pausing", "paused", "resuming", "forking", "error")


class Ledger:
    """Sandboxes created and not yet destroyed (``live``), with the counts ``PoolStats`` shows.

    ``errors`` maps an id to the last error its DELETE got; ``parents`` holds fork templates;
    ``uncertain`` counts creates whose answer never arrived (a sweep runs on exit if any).
    """

    __slots__ = (
        "_cleanup_timeout",
        "_name_prefix",
        "_prefix",
        "_run_id",
        "_seq",
        "_session",
        "created",
        "destroyed",
        "errors",
        "live",
        "parents",
        "uncertain",
    )

    def __init__(
        self, session: AsyncSession, name_prefix: str, run_id: str, cleanup_timeout: float
    ) -> None:
        self._session = session
        self._name_prefix = name_prefix
        self._run_id = run_id
        self._prefix = f"{name_prefix}-{run_id}-"  # what the sweep looks for
        self._seq = 0
        self._cleanup_timeout = cleanup_timeout
        self.live: dict[str, Sandbox] = {}
        self.errors: dict[str, BaseException] = {}
        self.parents: set[str] = set()
        self.uncertain = 0
        self.created = 0
        self.destroyed = 0

    def next_name(self) -> str:
        """The name of the next create (``naming.sandbox_name``): the pool's unique prefix, the
        UTC time and a number. The prefix is the sweep's key, the run id ``reap``'s."""
        self._seq += 1
        return sandbox_name(self._name_prefix, run_id=self._run_id, seq=self._seq)

    def add(self, sb: Sandbox) -> None:
        """A create (or fork, or a found orphan) answered: the sandbox is ours to destroy."""
        self.live[sb.id] = sb
        self.created += 1

    async def discard(self, sb: Sandbox) -> None:
        """Destroy a sandbox in an unknown state, even while being cancelled (bounded)."""
        with anyio.move_on_after(self._cleanup_timeout, shield=True):
            await self.destroy(sb)

    async def destroy(self, sb: Sandbox) -> bool:
        """DELETE; the ledger forgets the sandbox once the server accepted (destroy maps 404)."""
        try:
            await sb.destroy()
        except Exception as exc:
            self.errors[sb.id] = exc
            logger.debug("destroying %s failed: %r", sb.id, exc)
            return False
        if self.live.pop(sb.id, None) is not None:
            self.destroyed += 1
        self.errors.pop(sb.id, None)
        return True

    async def cleanup(self, concurrency: int) -> None:
        """Destroy the ledger concurrently; then sweep for sandboxes whose create reply was lost."""
        limiter = anyio.CapacityLimiter(concurrency)

        async def destroy(sb: Sandbox) -> None:
            async with limiter:
                await self.destroy(sb)

        async with anyio.create_task_group() as tg:
            for sb in list(self.live.values()):
                tg.start_soon(destroy, sb)
        if self.uncertain:
            await self._sweep(destroy)

    async def _sweep(self, destroy: Callable[[Sandbox], Coroutine[Any, Any, None]]) -> None:
        """Find live sandboxes named with this pool's prefix (or forked from its template)."""
        found: dict[str, Sandbox] = {}

        async def scan(status: str) -> None:
            try:
                async for sb in self._session.sandboxes.list(status=status):
                    name = sb.data.name or ""
                    if name.startswith(self._prefix) or sb.data.forked_from in self.parents:
                        found[sb.id] = sb
            except Exception as exc:
                logger.warning(
                    "SandboxPool: listing %s sandboxes for the sweep failed: %r", status, exc
                )

        async with anyio.create_task_group() as tg:
            for status in LIVE_STATUSES:
                tg.start_soon(scan, status)
        orphans = [sb for sid, sb in found.items() if sid not in self.live]
        if not orphans:
            return
        logger.info(
            "SandboxPool: destroying %d sandbox(es) whose create answer was lost", len(orphans)
        )
        for sb in orphans:
            self.add(sb)
        async with anyio.create_task_group() as tg:
            for sb in orphans:
                tg.start_soon(destroy, sb)
