"""Helpers shared by the SandboxPool tests (test_pool.py, test_pool_faults.py)."""

from __future__ import annotations

import anyio

from createos_sandbox_async import AsyncSession

SHAPE = "s-1vcpu-256mb"


async def live_ids(session: AsyncSession) -> list[str]:
    """Sandboxes of this tenant that still hold resources, read through the API.

    A DELETE may answer ``destroying`` (reclaim in progress): wait, bounded, for those to finish,
    so only sandboxes nobody asked to destroy are reported.
    """
    with anyio.fail_after(20):
        while True:
            rows = [sb async for sb in session.sandboxes.list()]
            if not any(str(sb.status) == "destroying" for sb in rows):
                return [sb.id for sb in rows if str(sb.status) not in ("destroyed", "failed")]
            await anyio.sleep(0.01)
