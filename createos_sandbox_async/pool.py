"""SandboxPool: fan a batch out over many sandboxes, within the service's limits, none left behind.

A batch runner (evaluations, test matrices, data jobs) wants three things the plain SDK does not
give it: bounded concurrency, polite behaviour when the service says "slow down" or "no more", and
the certainty that a crash, a cancel or a Ctrl-C does not leave sandboxes running (and billing).

How it works, in the order an item meets it:

- **Concurrency.** One ``anyio.CapacityLimiter(max_concurrency)`` bounds the items (and
  ``acquire()`` blocks) in progress, across every ``map``/``as_completed``/``acquire`` of the pool.
  ``map`` and ``as_completed`` run ``max_concurrency`` worker tasks that pull items lazily: a list
  is walked by index, an async iterable is read by one feeder task through a memory stream of
  ``read_ahead`` slots, so a 10-million-item input never sits in memory.
- **Sandboxes.** An item gets a ready sandbox (a warm one, or with ``reuse=True`` one a previous
  item returned) or a new one: created (then ``prepare(sandbox)`` once), or with ``strategy="fork"``
  forked from one prepared, paused template. ``reuse=False`` destroys it after the item;
  ``reuse=True`` calls ``reset(sandbox)`` and keeps it for the next item. An item whose job raised
  never hands its sandbox on: it is destroyed, since its state is unknown.
- **Limits of the service.** Creates (and forks) pass an AIMD gate: a window of concurrent create
  calls that halves on 429/503 (once per episode) and grows by one per success, plus a shared
  "not before" instant: ``Retry-After`` when the server sent one (up to the session's
  ``RetryPolicy.max_retry_after``: a longer one fails that create at once with its typed error),
  else exponential backoff with jitter. The pool sends its creates with the transport's retries
  OFF, so every create attempt is one HTTP request the pool decided on, counted in
  ``stats.retries``: ``create_attempts`` bounds the attempts per sandbox. 401/402/403/404 and
  400/422 from create mean every further create would fail the same way: the pool stops
  creating at once and the batch raises that one error.
- **Cleanup.** Every sandbox the pool creates is in a ledger until a DELETE for it succeeded. The
  create call itself runs shielded from cancellation (it is short: the server answers once the VM
  is up), so a cancel never loses a sandbox that was being created. On exit (normal return,
  exception, cancellation, KeyboardInterrupt under ``asyncio.run``/``anyio.run``) the pool stops
  its work and destroys the whole ledger concurrently, in a shielded scope with its own deadline
  (``cleanup_timeout``). Creates whose answer never arrived (timeout, reset, 5xx) may have
  succeeded server-side; for those the pool lists the account's live sandboxes and destroys any
  carrying its unique name prefix (or forked from its template). Whatever could not be destroyed
  is in ``stats.cleanup_failed`` and raised as ``PoolCleanupError`` (normal exit) or logged and
  noted on the exception already propagating.

``map`` error semantics: with ``return_exceptions=True`` a failed item's exception is its result.
Otherwise the first failure cancels the other items and is raised as itself; if more than one
item had already failed by the time they all stopped (they raced the cancellation), the failures
are raised together as an ``ExceptionGroup`` in the order they happened. A creation-stopping
error (402, 403, ...) is raised as itself either way, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

import anyio
from anyio.abc import TaskGroup

from ._autopause import POOL_AUTO_PAUSE_SECONDS
from ._pool_gate import CreateGate, CreationStopped
from ._pool_ledger import Ledger
from ._pool_run import Run, new_run
from ._pool_stats import Counters, PoolStats
from ._pool_supply import Supply
from ._pool_tasks import Background
from ._progress import ProgressBar, Reporter
from ._requests import CREATE_FIELDS, CreateSandboxRequest
from ._retry import RetryPolicy
from ._validate import check_bool, check_int, check_optional_seconds, check_seconds, check_str
from .errors import PoolCleanupError
from .naming import check_prefix, check_run_id, new_run_id

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from .sandbox import Sandbox
    from .session import AsyncSession

__all__ = ["PoolCleanupError", "PoolStats", "SandboxPool"]

logger = logging.getLogger("createos_sandbox_async.pool")

T = TypeVar("T")
R = TypeVar("R")


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be an async callable, got {type(value).__name__}")


_DEFAULT_MAX_RETRY_AFTER: Final = RetryPolicy().max_retry_after


class SandboxPool:
    """Run jobs over many sandboxes with bounded concurrency; destroys all it created on exit.

    Use it with ``async with``: the exit destroys every sandbox the pool created, however the
    block ends (shielded, bounded by ``cleanup_timeout``). Arguments are checked before any
    request. A job must not ``acquire()`` from its own pool (it would wait for a slot it holds).
    Cancelling waits for creates already sent (they are short; bounded by ``create_timeout`` or
    the session's request timeout), so that no sandbox is created unseen.

    Args:
        session: The session to create sandboxes with.
        shape: The shape of every sandbox.
        rootfs: Their root filesystem (default: the catalog's).
        max_concurrency: Items (and ``acquire()`` blocks) in progress at once, pool-wide.
        strategy: ``"fresh"`` creates each sandbox; ``"fork"`` creates and prepares one
            template, pauses it and forks every sandbox from it.
        prepare: ``await prepare(sandbox)`` once per new sandbox (once in all with ``"fork"``).
        reuse: Keep a sandbox for the next item instead of destroying it.
        reset: With ``reuse``, ``await reset(sandbox)`` between two items.
        warm: Sandboxes kept created (and prepared) ahead of demand.
        on_progress: A sync callable given a ``PoolStats``, called at most every
            ``progress_interval`` seconds as items finish and once at the end of each run.
        progress: True draws a plain-text bar on stderr.
        progress_interval: Seconds between two ``on_progress`` calls.
        read_ahead: Slots between an async input and the workers (default
            ``max_concurrency``).
        create_attempts: Attempts per sandbox create (429/503 are retried with backoff).
        create_timeout: Seconds for one create request (default: the session's).
        backoff: First backoff after a 429/503, in seconds.
        backoff_cap: Longest backoff.
        cleanup_timeout: The deadline of the shielded cleanup on exit.
        name_prefix: The start of every sandbox name, which follows
            ``naming.sandbox_name`` (``<prefix>-<run_id>-<time>-<n>``): 1-30 of ``a-z``,
            ``0-9`` and ``-``.
        run_id: The run id in every name (random by default), so
            ``session.sandboxes.reap(run_id=...)`` finds a crashed run's sandboxes.
        **create_kwargs: The other fields of the ``CreateSandboxRequest`` every create sends
            (``envs=``, ``disk_mib=``, ``egress=``, ...); the pool owns ``name``, which it uses
            to find sandboxes whose create answer was lost. ``auto_pause_after_seconds`` is 1800
            unless given (None disables it), so a crashed batch stops burning compute.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument has a wrong value.
        PoolCleanupError: On exit, some sandboxes could not be destroyed in time.

    Example:
        ```python
        async def job(sb: Sandbox, n: int) -> str:
            return (await sb.exec("python3", ["-c", f"print({n} ** 2)"], check=True)).stdout

        async with SandboxPool(session, shape="s-1vcpu-256mb", max_concurrency=64) as pool:
            results = await pool.map(job, range(1000))  # in input order
        ```
    """

    def __init__(
        self,
        session: AsyncSession,
        *,
        shape: str,
        rootfs: str | None = None,
        max_concurrency: int = 16,
        strategy: Literal["fresh", "fork"] = "fresh",
        prepare: Callable[[Sandbox], Awaitable[object]] | None = None,
        reuse: bool = False,
        reset: Callable[[Sandbox], Awaitable[object]] | None = None,
        warm: int = 0,
        on_progress: Callable[[PoolStats], object] | None = None,
        progress: bool | ProgressBar = False,
        progress_interval: float = 0.1,
        read_ahead: int | None = None,
        create_attempts: int = 10,
        create_timeout: float | None = None,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
        cleanup_timeout: float = 60.0,
        name_prefix: str = "pool",
        run_id: str | None = None,
        **create_kwargs: Any,
    ) -> None:
        if not hasattr(session, "sandboxes"):
            raise TypeError(f"session must be an AsyncSession, got {type(session).__name__}")
        if not check_str("shape", shape, allow_empty=True):
            raise ValueError("shape must be a non-empty string, e.g. 's-1vcpu-256mb'")
        if strategy not in ("fresh", "fork"):
            raise ValueError(f"strategy must be 'fresh' or 'fork', got {strategy!r}")
        check_bool("reuse", reuse)
        _check_callable("prepare", prepare)
        _check_callable("reset", reset)
        _check_callable("on_progress", on_progress)
        if reset is not None and not reuse:
            raise ValueError("reset is only used with reuse=True (a sandbox serving many items)")
        if not isinstance(progress, bool | ProgressBar):
            raise TypeError("progress must be a bool or a ProgressBar")
        check_prefix(name_prefix, "name_prefix")
        for reserved in ("name", "retry", "timeout"):
            if reserved in create_kwargs:
                raise ValueError(
                    f"{reserved}= cannot be passed to SandboxPool: the pool sets it "
                    "(see name_prefix=, create_attempts=, create_timeout=)"
                )
        self._session = session
        self._max = check_int("max_concurrency", max_concurrency, 1)
        warm = check_int("warm", warm, 0)
        self._read_ahead = (
            self._max if read_ahead is None else check_int("read_ahead", read_ahead, 0)
        )
        attempts = check_int("create_attempts", create_attempts, 1)
        create_timeout = check_optional_seconds("create_timeout", create_timeout, finite=True)
        self._cleanup_timeout = check_seconds("cleanup_timeout", cleanup_timeout, finite=True)
        interval = check_seconds("progress_interval", progress_interval, finite=True)
        base = check_seconds("backoff", backoff, finite=True)
        cap = check_seconds("backoff_cap", backoff_cap, finite=True)
        self._report = Reporter(on_progress, progress, interval)
        for key in create_kwargs:
            if key not in CREATE_FIELDS:
                raise TypeError(f"SandboxPool got an unexpected keyword argument {key!r}")
        # A crashed batch stops burning compute: pool sandboxes auto-pause unless told otherwise.
        create_kwargs.setdefault("auto_pause_after_seconds", POOL_AUTO_PAUSE_SECONDS)
        self._request = CreateSandboxRequest(shape=shape, rootfs=rootfs, **create_kwargs)
        # The run id makes the prefix unique to this pool: the orphan sweep destroys by prefix,
        # and names follow the convention of ``naming`` so that ``reap(run_id=...)`` finds them.
        self._run_id = new_run_id() if run_id is None else check_run_id(run_id)
        self._prefix = f"{name_prefix}-{self._run_id}-"
        # The same cap on honoured Retry-After waits as the session's own retries.
        policy = getattr(getattr(session, "_transport", None), "retry_policy", None)
        self._gate = CreateGate(
            self._max + warm,
            base,
            cap,
            attempts=attempts,
            max_retry_after=getattr(policy, "max_retry_after", _DEFAULT_MAX_RETRY_AFTER),
        )
        self._limiter: anyio.CapacityLimiter | None = None
        self._ledger = Ledger(session, name_prefix, self._run_id, self._cleanup_timeout)
        self._supply = Supply(
            session,
            self._gate,
            self._ledger,
            strategy=strategy,
            prepare=prepare,
            reuse=reuse,
            reset=reset,
            warm=warm,
            create_timeout=create_timeout,
            request=self._request,
        )
        self._cleanup_failed: tuple[str, ...] = ()
        self._runs: set[Run] = set()
        self._tg: TaskGroup | None = None
        self._background = Background()
        self._state = "new"
        self._counts = Counters()

    def __repr__(self) -> str:
        return (
            f"<SandboxPool {self._state} shape={self._request.shape!r} "
            f"max_concurrency={self._max} alive={len(self._ledger.live)}>"
        )

    # -- public surface ---------------------------------------------------------------------------

    @property
    def name_prefix(self) -> str:
        """The unique prefix of every sandbox name this pool creates (``<prefix>-<run_id>-``).

        Useful to find sandboxes a crashed program left:
        ``session.sandboxes.reap(run_id=pool.run_id)``.
        """
        return self._prefix

    @property
    def run_id(self) -> str:
        """This pool's run id (names: ``<prefix>-<run_id>-<UTC time>-<n>``, see ``naming``)."""
        return self._run_id

    @property
    def stats(self) -> PoolStats:
        """A consistent snapshot of counters, rates and item-time percentiles (``PoolStats``)."""
        return self._counts.snapshot(
            queued=sum(run.queued() for run in self._runs),
            created=self._ledger.created,
            destroyed=self._ledger.destroyed,
            alive=len(self._ledger.live),
            retries=self._gate.retries,
            rate_limited=self._gate.rate_limited,
            create_limit=int(self._gate.window),
            cleanup_failed=self._cleanup_failed,
        )

    async def __aenter__(self) -> SandboxPool:
        if self._state != "new":
            raise RuntimeError("a SandboxPool can be entered once; create a new one")
        self._limiter = anyio.CapacityLimiter(self._max)
        self._supply.start()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = "open"
        if self._supply.warm:
            self._background.spawn(tg, self._supply.filler)
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._state = "closing"
        self._supply.closing = True
        error: PoolCleanupError | None = None
        try:
            with anyio.move_on_after(self._cleanup_timeout, shield=True):
                await self._stop_children()
                self._supply.ready.clear()
                await self._ledger.cleanup(max(16, self._max))
        finally:
            self._state = "closed"
            failed = tuple(self._ledger.live)
            self._cleanup_failed = failed
            if failed:
                errors = {k: self._ledger.errors[k] for k in failed if k in self._ledger.errors}
                error = PoolCleanupError(failed, errors)
                logger.warning("%s", error)
                if exc is not None:
                    exc.add_note(str(error))
            tg, self._tg = self._tg, None
            if tg is not None:
                if self._background.count:  # the deadline ran out while they stopped: force them
                    tg.cancel_scope.cancel()
                await tg.__aexit__(None, None, None)
        if error is not None and exc is None:
            raise error

    async def _stop_children(self) -> None:
        """Cancel runs and background tasks and wait until they are gone (shielded caller)."""
        closed = RuntimeError("the SandboxPool was closed while this call was running")
        for run in list(self._runs):
            run.break_(closed)
        await self._background.stop()

    @overload
    async def map(
        self,
        job: Callable[[Sandbox, T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        return_exceptions: Literal[False] = False,
    ) -> list[R]: ...
    @overload
    async def map(
        self,
        job: Callable[[Sandbox, T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        return_exceptions: bool,
    ) -> list[R | Exception]: ...
    async def map(
        self,
        job: Callable[[Sandbox, T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        return_exceptions: bool = False,
    ) -> list[R] | list[R | Exception]:
        """Run ``job(sandbox, item)`` for every item; results in input order.

        Args:
            job: An async callable taking a sandbox and one item.
            items: The items: an iterable or an async iterable (read lazily).
            return_exceptions: A failed item's exception is its result, instead of stopping.

        Returns:
            One result per item, in input order.

        Raises:
            Exception: Without ``return_exceptions``, the first failure cancels the rest and is
                raised (an ``ExceptionGroup`` when several failed before the others stopped).
            APIError: Creating sandboxes stopped for good (402, 403, ...): raised as itself.
            RuntimeError: The pool is not entered, or already closed.
        """
        run = self._new_run(job, items, stop_on_error=not return_exceptions)
        results: dict[int, Any] | list[Any]
        results = [None] * run.total if run.total is not None else {}
        run.results = results
        await self._drive(run)
        self._raise_run_problem(run)
        if run.errors:
            if len(run.errors) == 1:
                raise run.errors[0]
            raise ExceptionGroup(
                f"{len(run.errors)} items failed in SandboxPool.map",
                [e for e in run.errors if isinstance(e, Exception)],
            )
        if isinstance(results, dict):
            return [results[i] for i in range(len(results))]
        return results

    async def as_completed(
        self,
        job: Callable[[Sandbox, T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
    ) -> AsyncGenerator[tuple[T, R | Exception], None]:
        """Yield ``(item, result or exception)`` as items finish; ``items`` is read lazily.

        Closing the generator (``aclose()``, or ``async with contextlib.aclosing(...)`` around a
        loop you may leave early) stops the remaining items and destroys their sandboxes; a
        generator abandoned without closing stops when it is garbage-collected or, at the
        latest, when the pool exits.

        Args:
            job: An async callable taking a sandbox and one item.
            items: The items: an iterable or an async iterable.

        Returns:
            An async generator of ``(item, result)`` pairs, where a failed item's result is its
            exception.

        Raises:
            APIError: Creating sandboxes stopped for good (402, 403, ...): raised as itself.
            RuntimeError: The pool is not entered, or already closed.

        Example:
            ```python
            async for item, result in pool.as_completed(job, items):
                if isinstance(result, Exception):
                    print(item, "failed:", result)
            ```
        """
        run = self._new_run(job, items, stop_on_error=False)
        send, recv = anyio.create_memory_object_stream[tuple[Any, Any]](0)
        run.sink = send
        assert self._tg is not None  # open: checked by _new_run
        self._background.spawn(self._tg, lambda: self._drive_into(run, send))
        try:
            async with recv:
                async for pair in recv:
                    yield pair
            self._raise_run_problem(run)
        finally:
            run.scope.cancel()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Sandbox]:
        """Check a sandbox out for hand-written control; it counts against ``max_concurrency``.

        On a normal exit the sandbox is destroyed (or, with ``reuse=True``, reset and kept); if the
        block raised or was cancelled it is destroyed.

        Returns:
            An async context manager yielding a running ``Sandbox``.

        Raises:
            RuntimeError: The pool is not entered, or already closed.
            APIError: Creating the sandbox failed after the attempts allowed.

        Example:
            ```python
            async with pool.acquire() as sb:
                await sb.sh("make test", check=True)
            ```
        """
        self._check_open()
        assert self._limiter is not None
        token = object()
        await self._limiter.acquire_on_behalf_of(token)
        try:
            try:
                sb = await self._supply.checkout()
            except CreationStopped as stop:
                raise stop.error from None
            try:
                yield sb
            except BaseException:
                await self._ledger.discard(sb)
                raise
            await self._supply.release(sb)
        finally:
            self._limiter.release_on_behalf_of(token)

    # -- runs -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            if self._state == "new":
                raise RuntimeError(
                    "use `async with SandboxPool(...) as pool:` - its exit is what cleans up"
                )
            raise RuntimeError("this SandboxPool is closed")

    def _new_run(self, job: Any, items: object, *, stop_on_error: bool) -> Run:
        self._check_open()
        run = new_run(job, items, self._max, stop_on_error)
        self._counts.add_run(run.total)
        return run

    def _raise_run_problem(self, run: Run) -> None:
        if run.fatal is not None:
            raise run.fatal
        if run.broken is not None:
            raise run.broken

    async def _drive(self, run: Run) -> None:
        """Run the workers (and a feeder for async input) until the input is done or stopped."""
        self._runs.add(run)
        self._counts.started()
        try:
            with run.scope:
                async with anyio.create_task_group() as tg:
                    if run.feed is not None:
                        send, recv = anyio.create_memory_object_stream[tuple[int, Any]](
                            self._read_ahead
                        )
                        run.recv = recv
                        tg.start_soon(run.read_input, send)
                    for _ in range(run.workers):
                        tg.start_soon(self._worker, run)
        finally:
            if run.recv is not None:
                run.recv.close()
            if self._report.active:
                self._tick(final=True)
            self._runs.discard(run)

    async def _drive_into(self, run: Run, send: MemoryObjectSendStream[tuple[Any, Any]]) -> None:
        """``as_completed``'s driver, a child of the pool's task group."""
        try:
            with send:
                await self._drive(run)
        except Exception as exc:
            run.break_(exc)

    async def _worker(self, run: Run) -> None:
        """Take an item, run it, hand its outcome over; holds a limiter token per item only."""
        limiter = self._limiter
        assert limiter is not None
        token = object()
        while not run.scope.cancel_called:
            try:  # fast path without the two checkpoints of acquire(): the item awaits soon anyway
                limiter.acquire_on_behalf_of_nowait(token)
            except anyio.WouldBlock:
                await limiter.acquire_on_behalf_of(token)
            try:
                got = await run.take()
                if got is None:
                    return
                run.started += 1
                index, item = got
                ok, value = await self._one(run.job, item)
            except CreationStopped as stop:
                run.stop(stop.error)
                return
            finally:
                limiter.release_on_behalf_of(token)
            if self._report.active:
                self._tick()
            if run.sink is not None:
                try:
                    await run.sink.send((item, value))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    run.scope.cancel()  # the consumer left the loop
                    return
            else:
                run.results[index] = value
                if not ok and run.stop_on_error:
                    run.fail(value)

    async def _one(self, job: Callable[[Any, Any], Awaitable[Any]], item: Any) -> tuple[bool, Any]:
        """One item: sandbox in, job, sandbox out. Job errors become (False, exc)."""
        counts = self._counts
        counts.running += 1
        t0 = time.perf_counter()
        try:
            sb = await self._supply.checkout()
            try:
                value = await job(sb, item)
            except BaseException:
                await self._ledger.discard(sb)
                raise
            counts.times.append(time.perf_counter() - t0)
            await self._supply.release(sb)
        except CreationStopped:
            raise
        except Exception as exc:
            counts.failed += 1
            counts.times.append(time.perf_counter() - t0)
            return False, exc
        finally:
            counts.running -= 1
        counts.completed += 1
        return True, value

    def _tick(self, final: bool = False) -> None:
        """Report progress when due; an ``on_progress`` that raised stops the runs."""
        exc = self._report.tick(lambda: self.stats, final)
        if exc is not None:
            for run in list(self._runs):
                run.break_(exc)
            if not self._runs:
                raise exc
