"""Catalog and identity routes: health, readiness, whoami, shapes, rootfs, hosts, account
metrics. Answers are fixed or counted from the emulator's records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ._http import ok, page
from .state import DEFAULT_ROOTFS, ROOTFS, SHAPES

if TYPE_CHECKING:
    from .app import Emulator


def register(app: web.Application, emu: Emulator) -> None:
    """Add the catalog routes."""
    h = _Handlers(emu)
    r = app.router
    r.add_get("/healthz", h.healthz)
    r.add_get("/readyz", h.readyz)
    r.add_get("/v1/whoami", h.whoami)
    r.add_get("/v1/shapes", h.shapes)
    r.add_get("/v1/rootfs", h.rootfs)
    r.add_get("/v1/hosts", h.hosts)
    r.add_get("/v1/metrics", h.metrics)
    r.add_get("/v1/metrics/timeseries", h.metrics_timeseries)


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return ok({"up": True})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        return ok({"ready": True, "scheduler_last_ok_ms_ago": 0})

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        tenant = self.emu.tenant(request)
        mine = [s for s in self.emu.sandboxes.values() if s.owner == tenant.user_id]
        alive = [s for s in mine if s.status != "destroyed"]
        running = sum(1 for s in alive if s.status == "running")
        paused = sum(1 for s in alive if s.status == "paused")
        return ok(
            {
                "user_id": tenant.user_id,
                "stats": {
                    "running": running,
                    "paused": paused,
                    "other": len(alive) - running - paused,
                    "total": len(alive),
                },
            }
        )

    async def shapes(self, request: web.Request) -> web.StreamResponse:
        return page(request, [s.view() for s in SHAPES])

    async def rootfs(self, request: web.Request) -> web.StreamResponse:
        return ok(
            {
                "rootfs": [r["name"] for r in ROOTFS],
                "default": DEFAULT_ROOTFS,
                "entries": list(ROOTFS),
            }
        )

    async def hosts(self, request: web.Request) -> web.StreamResponse:
        alive = sum(1 for s in self.emu.sandboxes.values() if not s.terminal and s.runtime)
        host = {
            "id": "host-local-1",
            "status": "active",
            "free_mib": 65536,
            "vm_count": alive,
            "rootfses": [r["name"] for r in ROOTFS],
        }
        return page(request, [host])

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        tenant = self.emu.tenant(request)
        mine = [s for s in self.emu.sandboxes.values() if s.owner == tenant.user_id]
        return ok(
            {
                "user_id": tenant.user_id,
                "sandboxes": len(mine),
                "running": sum(1 for s in mine if s.status == "running"),
                "bandwidth_used_bytes": sum(s.bandwidth_used for s in mine),
            }
        )

    async def metrics_timeseries(self, request: web.Request) -> web.StreamResponse:
        return ok({"points": [], "note": "the local emulator keeps no history"})
