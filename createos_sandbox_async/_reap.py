"""``session.sandboxes.reap``: find the sandboxes a crashed run left behind and destroy them.

A client killed by SIGKILL or the OOM killer runs no cleanup; its sandboxes stay (paused, if they
had ``auto_pause_after_seconds``). The service keeps only a name per sandbox, so the reaper
selects by name (prefix, or a run id of the convention in ``naming``), status and age, lists
what matches, and in a real run destroys each, continuing past failures.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import attrs

from ._validate import check_bool, check_int, check_str
from .naming import check_run_id, parse_sandbox_name

if TYPE_CHECKING:
    from .sandbox import Sandbox
    from .session import AsyncSession

__all__ = ["ReapOutcome", "ReapResult", "reap"]

#: Statuses of sandboxes that still hold resources: what ``reap`` looks at by default.
LIVE_STATUSES: Final = ("creating", "running", "pausing", "paused", "resuming", "forking", "error")

Action = Literal["would destroy", "destroyed", "failed"]


@attrs.frozen(kw_only=True)
class ReapOutcome:
    """One matched sandbox and what happened to it (``error`` is the failure's text)."""

    id: str
    name: str | None
    status: str
    created_at: _dt.datetime | None
    action: Action
    error: str | None = None


@attrs.frozen(kw_only=True)
class ReapResult:
    """What ``reap`` matched and, unless ``dry_run``, what it destroyed."""

    dry_run: bool
    outcomes: tuple[ReapOutcome, ...] = ()

    @property
    def matched(self) -> tuple[str, ...]:
        """Ids of every sandbox that matched the filters."""
        return tuple(o.id for o in self.outcomes)

    @property
    def destroyed(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.outcomes if o.action == "destroyed")

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.outcomes if o.action == "failed")

    @property
    def ok(self) -> bool:
        """True when nothing failed (a dry run is always ok)."""
        return not self.failed

    def lines(self) -> list[str]:
        """One human line per sandbox, for a CLI to print."""
        out = []
        for o in self.outcomes:
            when = o.created_at.isoformat(timespec="seconds") if o.created_at else "-"
            tail = f": {o.error}" if o.error else ""
            out.append(f"{o.action:<13} {o.id}  {o.name or '-'}  {o.status}  {when}{tail}")
        return out

    def __str__(self) -> str:
        verb = "would destroy" if self.dry_run else "destroyed"
        count = len(self.outcomes) if self.dry_run else len(self.destroyed)
        head = f"reap: {verb} {count} of {len(self.outcomes)} matched sandbox(es)"
        if self.failed:
            head += f", {len(self.failed)} failed"
        return "\n".join([head, *self.lines()])


def _statuses(status: str | Collection[str] | None) -> tuple[str, ...]:
    if status is None:
        return LIVE_STATUSES
    wanted = (status,) if isinstance(status, str) else tuple(status)
    if not wanted:
        raise ValueError("status must name at least one status")
    for value in wanted:
        if not isinstance(value, str):
            raise TypeError(f"status must be a str or a collection of str, got {value!r}")
        if str(value) not in LIVE_STATUSES:
            raise ValueError(
                f"status must be among the live statuses {LIVE_STATUSES}, got {value!r} "
                "(destroyed and failed sandboxes hold nothing to reap)"
            )
    return tuple(dict.fromkeys(str(v) for v in wanted))


def _age(older_than: float | _dt.timedelta | None) -> _dt.timedelta | None:
    if older_than is None:
        return None
    if isinstance(older_than, _dt.timedelta):
        seconds = older_than.total_seconds()
    elif isinstance(older_than, int | float) and not isinstance(older_than, bool):
        seconds = float(older_than)
    else:
        raise TypeError(
            f"older_than must be seconds or a timedelta, got {type(older_than).__name__}"
        )
    if not seconds >= 0:
        raise ValueError(f"older_than must be >= 0 seconds, got {older_than!r}")
    return _dt.timedelta(seconds=seconds)


def _created(sb: Sandbox) -> _dt.datetime | None:
    """When a sandbox was created: the server's ``created_at``, else the time in its name."""
    if sb.data.created_at is not None:
        return sb.data.created_at
    parsed = parse_sandbox_name(sb.data.name)
    return parsed.created_at if parsed is not None else None


async def reap(
    session: AsyncSession,
    prefix: str | None = None,
    *,
    run_id: str | None = None,
    status: str | Collection[str] | None = None,
    older_than: float | _dt.timedelta | None = None,
    match_all: bool = False,
    dry_run: bool = False,
    concurrency: int = 16,
    now: _dt.datetime | None = None,
) -> ReapResult:
    """The implementation of ``Sandboxes.reap`` (see there)."""
    if prefix is not None:
        check_str("prefix", prefix)
    if run_id is not None:
        check_run_id(run_id)
    statuses = _statuses(status)
    age = _age(older_than)
    check_bool("match_all", match_all)
    check_bool("dry_run", dry_run)
    check_int("concurrency", concurrency, 1)
    if prefix is None and run_id is None and age is None and not match_all:
        raise ValueError(
            "reap needs a filter (prefix=, run_id= or older_than=), or match_all=True to "
            "select every live sandbox of the account"
        )
    cutoff = None if age is None else (now or _dt.datetime.now(_dt.UTC)) - age

    def wanted(sb: Sandbox) -> bool:
        name = sb.data.name or ""
        if prefix is not None and not name.startswith(prefix):
            return False
        if run_id is not None:
            parsed = parse_sandbox_name(name)
            if parsed is None or parsed.run_id != run_id:
                return False
        if cutoff is not None:
            created = _created(sb)
            if created is None or created > cutoff:
                return False  # age unknown: never reaped for being old
        return True

    found: dict[str, Sandbox] = {}
    for one in statuses:  # one list per status: the server filters; order is kept stable
        async for sb in session.sandboxes.list(status=one):
            if sb.id not in found and wanted(sb):
                found[sb.id] = sb
    if dry_run:
        return ReapResult(
            dry_run=True, outcomes=tuple(_outcome(sb, "would destroy") for sb in found.values())
        )
    outcomes: dict[str, ReapOutcome] = {}
    limiter = anyio.CapacityLimiter(concurrency)

    async def destroy(sb: Sandbox) -> None:
        done = _outcome(sb, "destroyed")  # the status it was found in
        async with limiter:
            try:
                await sb.destroy()
            except Exception as exc:  # report it, go on with the others
                done = attrs.evolve(done, action="failed", error=f"{type(exc).__name__}: {exc}")
            outcomes[sb.id] = done

    async with anyio.create_task_group() as tg:
        for sb in found.values():
            tg.start_soon(destroy, sb)
    return ReapResult(dry_run=False, outcomes=tuple(outcomes[sid] for sid in found))


def _outcome(sb: Sandbox, action: Action, error: str | None = None) -> ReapOutcome:
    status: Any = sb.data.status
    return ReapOutcome(
        id=sb.id,
        name=sb.data.name,
        status=str(status),
        created_at=_created(sb),
        action=action,
        error=error,
    )
