"""The pool's adaptive create gate: every create and fork of a ``SandboxPool`` passes through it.

An AIMD window of concurrent create calls that halves on 429/503 (once per episode) and grows by
one per success, a shared "not before" instant (``Retry-After``, else exponential backoff with
jitter), and the attempt loop that classifies each failure: throttled, uncertain (the sandbox
may exist: the ledger's sweep will look), fatal (every further create would fail the same way:
creation stops for the whole pool), or the item's own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from .errors import APIConnectionError, APIError, APITimeoutError, ProtocolError, RateLimitError

if TYPE_CHECKING:
    from ._pool_ledger import Ledger
    from .sandbox import Sandbox

__all__ = ["FATAL_STATUSES", "CreateGate", "CreationStopped", "classify", "retry_after_of"]

logger = logging.getLogger("createos_sandbox_async.pool")

#: Create failures that every further create would repeat: stop creating at once.
FATAL_STATUSES = frozenset({400, 401, 402, 403, 404, 422})


class CreationStopped(Exception):
    """Internal: creation is stopped for good; carries the server's error (402, 403, ...).

    A signal between the gate and the pool's workers, never raised to the user: the pool raises
    ``error`` itself.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def retry_after_of(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


def classify(exc: BaseException) -> str:
    """What a failed create means: throttle, uncertain (may exist), fatal, or item (this one)."""
    if isinstance(exc, RateLimitError):
        return "throttle"
    if isinstance(exc, APIError):
        if exc.status == 503:
            return "throttle"
        if exc.status >= 500 or exc.status == 408:
            return "uncertain"
        if exc.status in FATAL_STATUSES:
            return "fatal"
        return "item"
    if isinstance(exc, APITimeoutError | APIConnectionError | ProtocolError | TimeoutError):
        return "uncertain"  # the request may have been processed: the sweep will look
    return "item"


class CreateGate:
    """AIMD window on concurrent create calls plus a shared backoff instant.

    Why a window and not a token bucket: the service's create is synchronous (it answers once the
    VM runs), so in-flight creates self-clock like TCP segments; halving the window on a 429 and
    adding one per success converges on what the service accepts without knowing its rate.

    ``spawn`` is the attempt loop around it: ``attempts`` per sandbox, ``Retry-After`` honoured up
    to ``max_retry_after``; ``retries`` and ``rate_limited`` are the counts ``PoolStats`` shows;
    ``fatal`` is the error that stopped creation, once one did.
    """

    __slots__ = (
        "_base",
        "_cap",
        "_changed",
        "attempts",
        "ceiling",
        "epoch",
        "fatal",
        "in_flight",
        "max_retry_after",
        "not_before",
        "rate_limited",
        "retries",
        "streak",
        "window",
    )

    def __init__(
        self, ceiling: int, base: float, cap: float, *, attempts: int, max_retry_after: float
    ) -> None:
        self.ceiling = float(ceiling)
        self.window = float(ceiling)
        self.in_flight = 0
        self.not_before = 0.0
        self.epoch = 0
        self.streak = 0
        self._base = base
        self._cap = cap
        self._changed: anyio.Event | None = None
        self.attempts = attempts
        self.max_retry_after = max_retry_after
        self.fatal: BaseException | None = None
        self.retries = 0
        self.rate_limited = 0

    async def enter(self) -> int:
        """Wait for the backoff instant and a free slot; return the epoch seen (for throttled())."""
        while True:
            wait = self.not_before - anyio.current_time() if self.not_before else 0.0
            if wait > 0:
                await anyio.sleep(wait)
                continue
            if self.in_flight < self.window:
                self.in_flight += 1
                return self.epoch
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def leave(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def success(self) -> None:
        """Additive increase; a success also ends a throttling streak."""
        self.streak = 0
        if self.window < self.ceiling:
            self.window = min(self.ceiling, self.window + 1.0)
            self._wake()

    def throttled(self, epoch: int, retry_after: float | None) -> float:
        """Multiplicative decrease (once per episode) and push the shared backoff instant."""
        if epoch == self.epoch:
            self.epoch += 1
            self.window = max(1.0, self.window / 2)
            self.streak += 1
        if retry_after is not None and retry_after >= 0:
            delay = retry_after
        else:
            delay = min(self._base * 2 ** max(0, self.streak - 1), self._cap)
            delay += random.random() * self._base
        until = anyio.current_time() + delay
        if until > self.not_before:
            self.not_before = until
        return delay

    def set_fatal(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
            logger.info("SandboxPool stopped creating sandboxes: %s", exc)

    async def spawn(self, call: Callable[[str], Awaitable[Sandbox]], ledger: Ledger) -> Sandbox:
        """Create (or fork) one sandbox through the AIMD gate; every success goes in the ledger."""
        attempt = 0
        while True:
            if self.fatal is not None:
                raise CreationStopped(self.fatal)
            epoch = await self.enter()
            if self.fatal is not None:
                self.leave()
                raise CreationStopped(self.fatal)
            try:
                # Not one create after a cancel (the fast paths above did not yield).
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                self.leave()
                raise
            name = ledger.next_name()
            try:
                # Shielded: a create that was sent must be answered, or the sandbox is lost.
                with anyio.CancelScope(shield=True):
                    sb = await call(name)
                    ledger.add(sb)
            except Exception as exc:
                kind = classify(exc)
                if kind == "fatal":
                    self.set_fatal(exc)
                    raise CreationStopped(exc) from None
                if kind == "item":
                    raise
                attempt += 1
                if kind == "throttle":
                    self.rate_limited += 1
                else:
                    ledger.uncertain += 1
                retry_after = retry_after_of(exc)
                if attempt >= self.attempts or (
                    retry_after is not None and retry_after > self.max_retry_after
                ):
                    raise  # out of attempts, or told to wait longer than the policy ever sleeps
                self.retries += 1
                self.throttled(epoch, retry_after)
                continue
            finally:
                self.leave()
            self.success()
            return sb
