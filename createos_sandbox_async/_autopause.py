"""Auto-pause for pool sandboxes: a crashed batch stops burning compute on its own.

A process killed by SIGKILL or the OOM killer runs no cleanup, so its sandboxes outlive it. The
service can only pause a sandbox after ``auto_pause_after_seconds`` without activity (WIRE §9),
so ``SandboxPool`` asks for that by default. A sandbox the pool keeps ready (``warm=``,
``reuse=True``) may then auto-pause while it waits for an item: it is looked at before being
handed out and resumed if it was paused.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._requests import CreateSandboxRequest
    from .sandbox import Sandbox

__all__ = ["PARKED_CHECK_AFTER", "POOL_AUTO_PAUSE_SECONDS", "wake_if_parked"]

#: ``SandboxPool``'s default ``auto_pause_after_seconds`` (30 minutes; None disables it).
POOL_AUTO_PAUSE_SECONDS: Final = 1800
#: A ready sandbox idle longer than this is refreshed (one GET) before it is handed out.
PARKED_CHECK_AFTER: Final = 1.0


async def wake_if_parked(
    sb: Sandbox, parked_at: float | None, request: CreateSandboxRequest
) -> None:
    """Resume ``sb`` if it auto-paused while it waited in the pool (a no-op without auto-pause)."""
    if parked_at is None or request.auto_pause_after_seconds is None:
        return
    if time.monotonic() - parked_at < PARKED_CHECK_AFTER:
        return
    await sb.refresh()
    if sb.status == "pausing":
        await sb.wait_until("paused")
    if sb.status == "paused":
        await sb.resume(wait=True)
