"""Where a ``SandboxPool``'s sandboxes come from and where they go after an item.

A checkout takes a ready sandbox (warm, or kept by ``reuse=True``) or makes a new one through the
create gate: created then prepared, or forked from the one prepared, paused template
(``strategy="fork"``). After a successful item the sandbox is reset and kept (``reuse``) or
destroyed. A background filler keeps ``warm`` sandboxes ready ahead of demand.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import anyio
import attrs

from ._autopause import wake_if_parked
from ._pool_gate import CreateGate, CreationStopped
from ._pool_ledger import Ledger

if TYPE_CHECKING:
    from ._requests import CreateSandboxRequest
    from .sandbox import Sandbox
    from .session import AsyncSession

__all__ = ["Supply"]

logger = logging.getLogger("createos_sandbox_async.pool")


class Supply:
    """The pool's sandboxes between items: ``ready`` ones, new ones, the fork template.

    ``closing`` (set by the pool's exit) stops keeping sandboxes for reuse.
    """

    def __init__(
        self,
        session: AsyncSession,
        gate: CreateGate,
        ledger: Ledger,
        *,
        strategy: Literal["fresh", "fork"],
        prepare: Callable[[Sandbox], Awaitable[object]] | None,
        reuse: bool,
        reset: Callable[[Sandbox], Awaitable[object]] | None,
        warm: int,
        create_timeout: float | None,
        request: CreateSandboxRequest,
    ) -> None:
        self._session = session
        self._gate = gate
        self._ledger = ledger
        self._strategy = strategy
        self._prepare = prepare
        self._reuse = reuse
        self._reset = reset
        self.warm = warm
        self._create_timeout = create_timeout
        self._request = request
        self.ready: collections.deque[Sandbox] = collections.deque()
        self._parked: dict[str, float] = {}  # ready sandboxes' id -> when they went idle
        self.closing = False
        self._template: Sandbox | None = None
        self._template_lock: anyio.Lock | None = None
        self._fill_event: anyio.Event | None = None
        self._filling = 0
        self._warm_broken = False

    def start(self) -> None:
        """Called as the pool is entered (inside the running loop)."""
        self._template_lock = anyio.Lock()

    async def checkout(self) -> Sandbox:
        """A ready sandbox (warm or reused) if any, else a new prepared one."""
        if self.ready:
            sb = self.ready.popleft()
            if self.warm:
                self._wake_filler()
            await wake_if_parked(sb, self._parked.pop(sb.id, None), self._request)
            return sb
        if self._gate.fatal is not None:
            raise CreationStopped(self._gate.fatal)
        return await self._fresh()

    async def _fresh(self) -> Sandbox:
        """A new sandbox ready for a job: created and prepared, or forked from the template."""
        if self._strategy == "fork":
            parent = await self._get_template()
            child = await self._gate.spawn(
                lambda _name: parent.fork(retry=False, timeout=self._create_timeout), self._ledger
            )
            try:
                await child.wait_until("running")
            except BaseException:
                await self._ledger.discard(child)
                raise
            return child
        sb = await self._gate.spawn(self._create_call, self._ledger)
        if self._prepare is not None:
            try:
                await self._prepare(sb)
            except BaseException:
                await self._ledger.discard(sb)
                raise
        return sb

    async def _get_template(self) -> Sandbox:
        """Create, prepare and pause the one sandbox children are forked from (once)."""
        if self._template is not None:
            return self._template
        assert self._template_lock is not None
        async with self._template_lock:
            if self._template is not None:
                return self._template
            if self._gate.fatal is not None:
                raise CreationStopped(self._gate.fatal)
            sb = await self._gate.spawn(self._create_call, self._ledger)
            try:
                if self._prepare is not None:
                    await self._prepare(sb)
                await sb.pause()
                await sb.wait_until("paused")
            except Exception as exc:
                await self._ledger.discard(sb)
                # Every child would inherit the failure: stop instead of failing N items.
                exc.add_note("SandboxPool(strategy='fork'): preparing the template sandbox failed")
                self._gate.set_fatal(exc)
                raise CreationStopped(exc) from None
            except BaseException:
                await self._ledger.discard(sb)
                raise
            self._ledger.parents.add(sb.id)
            self._template = sb
            return sb

    def _create_call(self, name: str) -> Awaitable[Sandbox]:
        """One create attempt: the transport's retries are off, the pool decides (module doc)."""
        request = attrs.evolve(self._request, name=name)
        return self._session.sandboxes.create_from(
            request, retry=False, timeout=self._create_timeout
        )

    async def release(self, sb: Sandbox) -> None:
        """After a successful item: keep it (reuse, after reset) or destroy it."""
        if self._reuse and not self.closing:
            if self._reset is not None:
                try:
                    await self._reset(sb)
                except Exception:
                    logger.debug("reset(%s) failed; destroying it", sb.id, exc_info=True)
                    await self._ledger.destroy(sb)
                    return
            self.ready.append(sb)
            self._parked[sb.id] = time.monotonic()
            return
        await self._ledger.destroy(sb)

    # -- warm sandboxes ---------------------------------------------------------------------------

    def _wake_filler(self) -> None:
        event, self._fill_event = self._fill_event, None
        if event is not None:
            event.set()

    async def filler(self) -> None:
        """Keep ``warm`` sandboxes ready ahead of demand."""
        async with anyio.create_task_group() as tg:
            while True:
                while (
                    self._gate.fatal is None
                    and not self._warm_broken
                    and len(self.ready) + self._filling < self.warm
                ):
                    self._filling += 1
                    tg.start_soon(self._fill_one)
                self._fill_event = event = anyio.Event()
                await event.wait()

    async def _fill_one(self) -> None:
        try:
            sb = await self._fresh()
        except CreationStopped:
            pass
        except Exception:
            logger.warning(
                "SandboxPool: creating a warm sandbox failed; warming stops", exc_info=True
            )
            self._warm_broken = True
        else:
            self.ready.append(sb)
            self._parked[sb.id] = time.monotonic()
        finally:
            self._filling -= 1
            self._wake_filler()
