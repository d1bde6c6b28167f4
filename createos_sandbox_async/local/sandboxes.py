"""Sandbox routes: create, list, get, patch, resize, pause, resume, fork, destroy, per-sandbox
metrics, and the 501 answers for what the emulator does not provide (desktop, raw sockets).
Booting and tearing down the VM itself is runtime.py's job; this module keeps the records and
the lifecycle states (with `transition_delay`) right."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _ids
from ._bodies import (
    parse_attachment,
    validate_auto_pause,
    validate_egress,
    validate_envs,
    validate_keys,
)
from ._http import (
    fail,
    json_body,
    ok,
    opt_bool,
    opt_int,
    opt_str,
    opt_str_list,
    opt_str_map,
    page,
)
from .runtime import SandboxRuntime
from .state import DEFAULT_ROOTFS, REGION, ROOTFS, SHAPES, STATUSES, Network, Sandbox

if TYPE_CHECKING:
    from .app import Emulator


def register(app: web.Application, emu: Emulator) -> None:
    """Add the sandbox routes."""
    h = _Handlers(emu)
    r = app.router
    sb = "/v1/sandboxes/{id}"
    r.add_post("/v1/sandboxes", h.create_sandbox)
    r.add_get("/v1/sandboxes", h.list_sandboxes)
    r.add_get("/v1/sandboxes/by-ip/{ip}", h.by_ip)
    r.add_get(sb, h.get_sandbox)
    r.add_patch(sb, h.patch_sandbox)
    r.add_delete(sb, h.destroy)
    r.add_post(sb + "/pause", h.pause)
    r.add_post(sb + "/resume", h.resume)
    r.add_post(sb + "/fork", h.fork)
    r.add_post(sb + "/resize", h.resize_sandbox)
    r.add_get(sb + "/metrics", h.sandbox_metrics)
    r.add_post(sb + "/tunnel/{port}", h.not_supported)
    r.add_post(sb + "/shell", h.not_supported)
    r.add_get(sb + "/shell-ws", h.not_supported)
    r.add_route("*", sb + "/computer/{tail:.*}", h.not_supported)


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def create_sandbox(self, request: web.Request) -> web.StreamResponse:
        tenant = self.emu.tenant(request)
        body = await json_body(request)
        shape_id = opt_str(body, "shape", required=True)
        shape = next((s for s in SHAPES if s.id == shape_id), None)
        if shape is None:
            fail(400, f"unknown shape {shape_id!r}", fields={"shape": "unknown"})
        region = opt_str(body, "region")
        if region is not None and region != REGION:
            fail(
                400,
                f"region {region!r} is not served here (this is {REGION!r})",
                fields={"region": "mismatch"},
            )
        quota = opt_int(body, "bandwidth_quota_bytes")
        if quota:
            fail(
                400,
                "bandwidth_quota_bytes cannot be set at create; recharge instead",
                fields={"bandwidth_quota_bytes": "not accepted"},
            )
        rootfs = self._rootfs_ok(tenant.user_id, opt_str(body, "rootfs") or DEFAULT_ROOTFS)
        disk_mib = opt_int(body, "disk_mib") or shape.default_disk_mib
        if disk_mib < 0:
            fail(400, "disk_mib must not be negative", fields={"disk_mib": "negative"})
        envs = validate_envs(opt_str_map(body, "envs"))
        auto_pause = validate_auto_pause(
            opt_int(body, "auto_pause_after_seconds"), "auto_pause_after_seconds"
        )
        egress = validate_egress(opt_str_list(body, "egress"))
        keys = validate_keys(opt_str_list(body, "ssh_pubkeys"))
        ingress = bool(opt_bool(body, "ingress_enabled"))
        host_id = opt_str(body, "host_id")
        if host_id is not None and host_id != "host-local-1":
            fail(503, f"host {host_id!r} cannot fit this sandbox")
        networks = self._resolve_networks(tenant.user_id, body.get("networks"))
        mounts = self._resolve_disk_mounts(tenant.user_id, body.get("disks"))
        name = self._unique_name(tenant.user_id, opt_str(body, "name"))
        self.emu.ip_counter += 1
        sb = Sandbox(
            id=_ids.new_id("sb"),
            owner=tenant.user_id,
            name=name,
            shape=shape,
            rootfs=rootfs,
            ip=_ids.fake_ip(self.emu.ip_counter),
            disk_mib=disk_mib,
            envs=envs,
            egress=egress,
            ssh_pubkeys=keys,
            ingress_enabled=ingress,
            auto_pause_after_seconds=auto_pause,
        )
        self.emu.sandboxes[sb.id] = sb
        for net in networks:
            net.members.append(sb.id)
            sb.networks.append(net.id)
        sb.disks.extend(mounts)
        # The boot finishes even if the client goes away, like a real control plane.
        await asyncio.shield(self.emu.spawn_background(self._boot(sb)))
        if sb.status != "running":
            fail(500, f"sandbox {sb.id} failed to start")
        return ok(sb.create_view())

    def _unique_name(self, owner: str, wanted: str | None) -> str:
        taken = {s.name for s in self.emu.sandboxes.values() if s.owner == owner and not s.terminal}
        if wanted is not None:
            if wanted in taken:
                fail(409, f"a sandbox named {wanted!r} already exists", fields={"name": "taken"})
            return wanted
        for _ in range(20):
            name = _ids.friendly_name()
            if name not in taken:
                return name
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        return f"{name}-{n}"

    def _rootfs_ok(self, owner: str, rootfs: str) -> str:
        if rootfs in {r["name"] for r in ROOTFS}:
            return rootfs
        for tpl in self.emu.templates.values():
            if tpl.owner == owner and rootfs in (tpl.id, tpl.name):
                if tpl.status != "ready":
                    fail(400, f"template {rootfs!r} is not ready (status {tpl.status})")
                return rootfs
        fail(400, f"unknown rootfs {rootfs!r}", fields={"rootfs": "unknown"})

    def _resolve_networks(self, owner: str, raw: object) -> list[Network]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            fail(400, "networks must be a list of {id}", fields={"networks": "must be a list"})
        out = []
        for entry in raw:
            ref = entry.get("id") if isinstance(entry, dict) else entry
            if not isinstance(ref, str):
                fail(400, "networks entries need an id", fields={"networks": "missing id"})
            out.append(self.emu.network_by_ref(owner, ref))
        return out

    def _resolve_disk_mounts(self, owner: str, raw: object) -> list[Any]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            fail(400, "disks must be a list", fields={"disks": "must be a list"})
        return [parse_attachment(self.emu, owner, entry) for entry in raw]

    async def _boot(self, sb: Sandbox, *, source_root: str | None = None) -> None:
        t0 = time.perf_counter()
        root = os.path.join(self.emu.runtime.state_dir, "sandboxes", sb.id)
        try:
            if source_root is None:
                self.emu.runtime.prepare_tree(root, sb.name)
            else:
                await SandboxRuntime.copy_tree(source_root, root)
            sb.runtime = await self.emu.runtime.start(
                sb.id, root, sb.name, mem_mib=sb.shape.mem_mib, disk_mib=sb.disk_mib
            )
            sb.runtime.on_death = lambda: self._vm_died(sb)
            if self.emu.transition_delay:
                await asyncio.sleep(self.emu.transition_delay)
        except Exception:
            sb.status = "failed"
            if sb.runtime is not None:
                await sb.runtime.stop()
            await asyncio.to_thread(SandboxRuntime(self.emu.runtime, sb.id, root).remove_tree)
            raise
        if sb.status in ("creating", "forking"):
            sb.spawn_ms = round((time.perf_counter() - t0) * 1000, 3)
            sb.status = "running"
            sb.running_at = _ids.now()
            self.emu.touch(sb)

    def _vm_died(self, sb: Sandbox) -> None:
        """The sandbox's VM process ended without a destroy: the sandbox is `failed`."""
        if sb.status in ("destroying", "destroyed") or self.emu.closing:
            return
        sb.status = "failed"
        if sb.auto_pause_timer is not None:
            sb.auto_pause_timer.cancel()
            sb.auto_pause_timer = None
        for proc in sb.processes.values():
            proc.kill()

    async def list_sandboxes(self, request: web.Request) -> web.StreamResponse:
        tenant = self.emu.tenant(request)
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            fail(400, f"unknown status filter {status!r}", fields={"status": "unknown"})
        rows = [
            s.view()
            for s in self.emu.sandboxes.values()
            if s.owner == tenant.user_id and (status is None or s.status == status)
        ]
        return page(request, rows)

    async def get_sandbox(self, request: web.Request) -> web.StreamResponse:
        return ok(self.emu.sandbox(request).view())

    async def by_ip(self, request: web.Request) -> web.StreamResponse:
        tenant = self.emu.tenant(request)
        ip = request.match_info["ip"]
        for sb in reversed(self.emu.sandboxes.values()):
            if sb.owner == tenant.user_id and sb.ip == ip and not sb.terminal:
                return ok(sb.view())
        fail(404, f"no sandbox with ip {ip}")

    async def patch_sandbox(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        body = await json_body(request)
        ingress = opt_bool(body, "ingress_enabled")
        seconds = validate_auto_pause(
            opt_int(body, "auto_pause_after_seconds"), "auto_pause_after_seconds"
        )
        disable = opt_bool(body, "disable_auto_pause")
        if ingress is not None:
            sb.ingress_enabled = ingress
        if disable:
            sb.auto_pause_after_seconds = None
        elif seconds is not None:
            sb.auto_pause_after_seconds = seconds
        self.emu.touch(sb)
        return ok(sb.view())

    async def resize_sandbox(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        body = await json_body(request)
        disk_mib = opt_int(body, "disk_mib")
        if disk_mib is None:
            fail(400, "disk_mib is required", fields={"disk_mib": "required"})
        if disk_mib <= sb.disk_mib:
            fail(
                400,
                f"disk_mib must exceed the current size ({sb.disk_mib})",
                fields={"disk_mib": "grow only"},
            )
        sb.disk_mib = disk_mib
        if sb.runtime is not None:
            sb.runtime.disk_mib = disk_mib  # the next commands may write bigger files
        return ok({"id": sb.id, "disk_mib": sb.disk_mib})

    def _later(self, sb: Sandbox, step: Callable[[], None]) -> None:
        """Apply `step` after transition_delay (or now), so waiters see transitional states."""
        if not self.emu.transition_delay:
            step()
            return

        async def run() -> None:
            await asyncio.sleep(self.emu.transition_delay)
            step()

        if sb.transition is not None:
            sb.transition.cancel()
        sb.transition = self.emu.spawn_background(run())

    async def pause(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        if sb.status != "running":
            fail(409, f"cannot pause sandbox {sb.id} in status {sb.status}")
        task = self.emu.begin_pause(sb)
        if not self.emu.transition_delay:
            await asyncio.shield(task)
        return ok(sb.view())

    async def resume(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        if sb.status not in ("paused", "error"):
            fail(409, f"cannot resume sandbox {sb.id} in status {sb.status}")
        sb.status = "resuming"
        if sb.runtime is not None:
            sb.runtime.resume()

        def done() -> None:
            if sb.status == "resuming":
                sb.status = "running"
                sb.last_resumed_at = _ids.now()
                sb.paused_at = None
                self.emu.touch(sb)

        self._later(sb, done)
        return ok(sb.view())

    async def fork(self, request: web.Request) -> web.StreamResponse:
        source = self.emu.sandbox(request)
        body = await json_body(request, required=False)
        if source.status != "paused" or source.runtime is None:
            fail(409, f"cannot fork sandbox {source.id} in status {source.status}; pause it first")
        start_paused = bool(opt_bool(body, "start_paused"))
        keys = opt_str_list(body, "ssh_pubkeys")
        egress = validate_egress(opt_str_list(body, "egress"))
        ingress = opt_bool(body, "ingress_enabled")
        envs = opt_str_map(body, "envs")
        if envs is not None:
            validate_envs(envs)
        self.emu.ip_counter += 1
        child = Sandbox(
            id=_ids.new_id("sb"),
            owner=source.owner,
            name=self._unique_name(source.owner, None),
            shape=source.shape,
            rootfs=source.rootfs,
            ip=_ids.fake_ip(self.emu.ip_counter),
            disk_mib=source.disk_mib,
            status="forking",
            envs=dict(source.envs if envs is None else envs),
            egress=source.egress if egress is None else egress,
            ssh_pubkeys=list(source.ssh_pubkeys) if keys is None else validate_keys(keys),
            ingress_enabled=source.ingress_enabled if ingress is None else ingress,
            auto_pause_after_seconds=source.auto_pause_after_seconds,
            forked_from=source.id,
        )
        self.emu.sandboxes[child.id] = child
        task = self.emu.spawn_background(self._fork_child(source, child, start_paused))
        if not self.emu.transition_delay:
            await asyncio.shield(task)
            if child.status == "failed":
                fail(500, f"fork of {source.id} failed")
        return ok(child.view())

    async def _fork_child(self, source: Sandbox, child: Sandbox, start_paused: bool) -> None:
        assert source.runtime is not None
        await self._boot(child, source_root=source.runtime.root)
        if child.status != "running":
            return
        if start_paused:
            child.status = "pausing"
            assert child.runtime is not None
            child.runtime.pause()
            await child.runtime.wait_stopped()
            child.status = "paused"
            child.paused_at = _ids.now()
            return
        if self.emu.transition_delay:
            child.status = "resuming"
            await asyncio.sleep(self.emu.transition_delay)
            if child.status == "resuming":
                child.status = "running"
        child.last_resumed_at = _ids.now()

    async def destroy(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        if sb.status in ("destroyed", "failed") and sb.runtime is None:
            return ok({"id": sb.id, "status": "destroyed"})
        if sb.status == "destroying":
            return ok({"id": sb.id, "status": "destroying"})
        inline = sb.status in ("paused", "error") or not self.emu.transition_delay
        sb.status = "destroying"
        teardown = self.emu.spawn_background(self._teardown(sb, delay=not inline))
        if inline:
            await asyncio.shield(teardown)
        return ok({"id": sb.id, "status": sb.status})

    async def _teardown(self, sb: Sandbox, *, delay: bool) -> None:
        """Kill everything in the sandbox, forget its links, remove its tree."""
        if sb.transition is not None:
            sb.transition.cancel()
            sb.transition = None
        if sb.auto_pause_timer is not None:
            sb.auto_pause_timer.cancel()
            sb.auto_pause_timer = None
        if sb.access_token is not None:
            self.emu.tokens.pop(sb.access_token.token, None)
            sb.access_token = None
        for proc in sb.processes.values():
            proc.kill()
        for net_id in sb.networks:
            net = self.emu.networks.get(net_id)
            if net is not None and sb.id in net.members:
                net.members.remove(sb.id)
        sb.networks.clear()
        sb.disks.clear()
        runtime = sb.runtime
        if runtime is not None:
            await runtime.stop()
        if delay:
            await asyncio.sleep(self.emu.transition_delay)
        sb.status = "destroyed"
        sb.destroyed_at = _ids.now()
        sb.runtime = None
        if runtime is not None:
            await asyncio.to_thread(runtime.remove_tree)

    async def sandbox_metrics(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        procs = len(sb.runtime.namespace_pids()) if sb.runtime is not None else 0
        return ok(
            {
                "id": sb.id,
                "status": sb.status,
                "processes": procs,
                "cpu_pct": 0.0,
                "mem_used_mib": 0,
            }
        )

    async def not_supported(self, request: web.Request) -> web.StreamResponse:
        """Computer (desktop) and raw-socket routes: checked like any route, then a clear 501."""
        if "id" in request.match_info:
            self.emu.running(request)
        what = "computer (desktop)" if "/computer" in request.path else "raw socket (tunnel/shell)"
        fail(
            501,
            f"the {what} API is not supported by the local emulator: it runs commands in "
            "bubblewrap with no display server or agent sockets; use managed processes "
            "(PTY mode) for terminals, or a real CreateOS sandbox",
            code="not_supported_here",
        )
