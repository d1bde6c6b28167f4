"""The emulator's HTTP application: middleware (request ids, faults, auth, JSend errors) and the
sandbox routes. Exec lives in exec.py, files in files.py, account resources in resources.py,
managed processes in processes.py."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from . import _ids
from ._http import (
    JSON_TYPE,
    NDJSON_TYPE,
    ApiFail,
    check_no_nul,
    error_response,
    fail,
    json_body,
    ok,
    opt_bool,
    opt_int,
    opt_str,
    opt_str_list,
    opt_str_map,
    page,
    request_key,
)
from .faults import (
    FAULT,
    ConnectionDropped,
    FaultHandle,
    Faults,
    FrameWriter,
    abort_connection,
    body_fault,
    reset_after_headers,
    status_response,
)
from .runtime import Runtime, SandboxRuntime
from .state import (
    DEFAULT_ROOTFS,
    REGION,
    ROOTFS,
    SHAPES,
    STATUSES,
    AccessToken,
    Disk,
    Network,
    Sandbox,
    Template,
    Tenant,
)

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OPEN_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/shapes"),
    ("GET", "/v1/rootfs"),
}
_TOKEN_ROUTES = (
    ("GET", "/v1/sandboxes/{id}"),
    ("DELETE", "/v1/sandboxes/{id}"),
    ("POST", "/v1/sandboxes/{id}/pause"),
    ("POST", "/v1/sandboxes/{id}/resume"),
    ("POST", "/v1/sandboxes/{id}/exec"),
    ("*", "/v1/sandboxes/{id}/files"),
    ("GET", "/v1/sandboxes/{id}/metrics"),
    ("*", "/v1/sandboxes/{id}/processes*"),
    ("*", "/v1/sandboxes/{id}/computer*"),
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("createos_sandbox_async.local")
EMULATOR: web.AppKey[Emulator] = web.AppKey("emulator")


class TokenPrincipal:
    """A caller authenticated with a sandbox's delegated access token."""

    __slots__ = ("sandbox_id", "tenant")

    def __init__(self, tenant: Tenant, sandbox_id: str) -> None:
        self.tenant = tenant
        self.sandbox_id = sandbox_id


TENANT = request_key("tenant", Tenant)
TOKEN = request_key("token", TokenPrincipal)


class Emulator:
    """All emulator state plus the route handlers that act on it."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        heartbeat_interval: float,
        transition_delay: float,
        auto_pause_scale: float = 1.0,
        detached_buffered_exec: bool = False,
    ) -> None:
        self.runtime = runtime
        self.heartbeat_interval = heartbeat_interval
        self.transition_delay = transition_delay
        self.auto_pause_scale = auto_pause_scale
        self.detached_buffered_exec = detached_buffered_exec
        self.faults = Faults()
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.tenants: dict[str, Tenant] = {}
        self.tokens: dict[str, Sandbox] = {}
        self.sandboxes: dict[str, Sandbox] = {}
        self.networks: dict[str, Network] = {}
        self.disks: dict[str, Disk] = {}
        self.templates: dict[str, Template] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.reaping: set[asyncio.Task[Any]] = set()
        self.closing = False
        self._ip_counter = 0
        self._tenant_counter = 0

    # ----------------------------------------------------------------- tenants & bookkeeping

    def add_tenant(self, key: str | None = None) -> str:
        """Register an account and return its API key."""
        self._tenant_counter += 1
        key = key or _ids.secret("sk_local_")
        self.tenants[key] = Tenant(key=key, user_id=f"usr_local_{self._tenant_counter}")
        return key

    def request_count(self, method: str | None = None, path: str = "*") -> int:
        """Requests received so far (fnmatch on the path)."""
        want = method.upper() if method else None
        return sum(
            n
            for (m, p), n in self.requests.items()
            if (want is None or m == want) and fnmatch.fnmatchcase(p, path)
        )

    def spawn_background(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run work that must finish even if the request that started it goes away."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def reap_later(
        self, proc: asyncio.subprocess.Process, helpers: Sequence[asyncio.Task[Any]] = ()
    ) -> None:
        """Collect a killed command in the background (its handler may be cancelled), so no
        subprocess outlives the server's event loop. Once its (cancelled) helper tasks are done,
        its pipes are read to EOF: a pipe whose buffer filled up is paused and would never see
        its EOF, and `wait()` needs every pipe closed."""

        async def reap() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    await asyncio.gather(*helpers, return_exceptions=True)
                    for reader in (proc.stdout, proc.stderr):
                        while reader is not None and await reader.read(1 << 16):
                            pass
                    await proc.wait()

        task = asyncio.ensure_future(reap())
        self.reaping.add(task)
        task.add_done_callback(self.reaping.discard)

    # ----------------------------------------------------------------- middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count, maybe fault, authenticate, run, and turn failures into JSend bodies."""
        self.requests[(request.method, request.path)] += 1
        rule = self.faults.take(request.method, request.path)
        try:
            if rule is not None:
                if rule.kind == "status":
                    return status_response(rule)
                if rule.kind == "reset":
                    if rule.params["after_headers"]:
                        return await reset_after_headers(request)
                    abort_connection(request)
                    raise ConnectionDropped
                request[FAULT] = rule
            try:
                self._authenticate(request)
                resp = await handler(request)
            except ApiFail as exc:
                resp = error_response(exc)
            except web.HTTPException as exc:
                if exc.status == 405:
                    resp = error_response(ApiFail(405, f"method {request.method} not allowed"))
                elif exc.status == 404:
                    resp = error_response(ApiFail(404, f"no route for {request.path}"))
                elif exc.status == 413:
                    resp = error_response(ApiFail(400, "request body too large"))
                else:
                    resp = error_response(ApiFail(exc.status, exc.reason))
            if (
                rule is not None
                and isinstance(resp, web.Response)
                and not resp.prepared
                and rule.kind in ("stall", "truncate", "slow")
            ):
                return await body_fault(request, rule, resp)
            return resp
        except ConnectionDropped:
            return web.Response(status=500)
        except ConnectionError as exc:
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise
            # The client went away mid-response (a stream or download closed early): routine,
            # not a server error. The handler's own cleanup (killing its command) already ran.
            log.debug("client left %s %s mid-response: %r", request.method, request.path, exc)
            return web.Response(status=500)  # never sent: aiohttp drops it on the dead transport

    def _authenticate(self, request: web.Request) -> None:
        match = request.match_info
        if match.http_exception is not None:
            raise match.http_exception
        if (request.method, request.path) in _OPEN_ROUTES or not request.path.startswith("/v1/"):
            return
        key = request.headers.get("X-Api-Key", "")
        tenant = self.tenants.get(key)
        if tenant is not None:
            request[TENANT] = tenant
            return
        token_box = self.tokens.get(key) if key else None
        if token_box is None:
            fail(401, "missing or invalid API key (send it in the X-Api-Key header)")
        tenant = self._tenant_by_user(token_box.owner)
        canonical = match.route.resource.canonical if match.route.resource else ""
        allowed = any(
            (m == "*" or m == request.method) and fnmatch.fnmatchcase(canonical, pattern)
            for m, pattern in _TOKEN_ROUTES
        )
        if not allowed:
            fail(403, "a sandbox access token cannot call this route; use the account API key")
        if match.get("id") != token_box.id:
            fail(404, f"sandbox {match.get('id')} not found")
        request[TENANT] = tenant
        request[TOKEN] = TokenPrincipal(tenant, token_box.id)

    def _tenant_by_user(self, user_id: str) -> Tenant:
        for tenant in self.tenants.values():
            if tenant.user_id == user_id:
                return tenant
        fail(401, "the account behind this token no longer exists")

    @staticmethod
    def on_prepare(request: web.Request, response: web.StreamResponse) -> Awaitable[None]:
        """Every response, streams included, carries an X-Request-Id."""
        response.headers["X-Request-Id"] = _ids.request_id()

        async def done() -> None:
            return None

        return done()

    # ----------------------------------------------------------------- lookups

    @staticmethod
    def tenant(request: web.Request) -> Tenant:
        tenant: Tenant = request[TENANT]
        return tenant

    def sandbox(self, request: web.Request) -> Sandbox:
        """The caller's sandbox named in the path; anyone else's is a 404, never a 403."""
        sid = request.match_info["id"]
        sb = self.sandboxes.get(sid)
        if sb is None or sb.owner != self.tenant(request).user_id:
            fail(404, f"sandbox {sid} not found")
        return sb

    def running(self, request: web.Request) -> Sandbox:
        """The caller's sandbox, which must be running (exec/files/processes: 404 otherwise)."""
        sb = self.sandbox(request)
        if sb.status != "running" or sb.runtime is None:
            fail(404, f"sandbox {sb.id} is not running (status {sb.status})")
        return sb

    def live(self, request: web.Request) -> Sandbox:
        """The caller's sandbox, which must not be destroyed/destroying/failed (else 409)."""
        sb = self.sandbox(request)
        if sb.status in ("destroying", "destroyed", "failed"):
            fail(409, f"sandbox {sb.id} is {sb.status}")
        return sb

    # ----------------------------------------------------------------- auto-pause

    def touch(self, sb: Sandbox) -> None:
        """Activity (exec, file transfer, process I/O): restart the auto-pause countdown."""
        if sb.auto_pause_timer is not None:
            sb.auto_pause_timer.cancel()
            sb.auto_pause_timer = None
        if sb.auto_pause_after_seconds and sb.status == "running" and not self.closing:
            delay = sb.auto_pause_after_seconds * self.auto_pause_scale
            sb.auto_pause_timer = asyncio.get_running_loop().call_later(delay, self._auto_pause, sb)

    def _auto_pause(self, sb: Sandbox) -> None:
        sb.auto_pause_timer = None
        if sb.status != "running":
            return
        if sb.busy:
            self.touch(sb)
            return
        self._begin_pause(sb)

    # ----------------------------------------------------------------- catalog & identity

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return ok({"up": True})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        return ok({"ready": True, "scheduler_last_ok_ms_ago": 0})

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenant(request)
        mine = [s for s in self.sandboxes.values() if s.owner == tenant.user_id]
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
        alive = sum(1 for s in self.sandboxes.values() if not s.terminal and s.runtime)
        host = {
            "id": "host-local-1",
            "status": "active",
            "free_mib": 65536,
            "vm_count": alive,
            "rootfses": [r["name"] for r in ROOTFS],
        }
        return page(request, [host])

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenant(request)
        mine = [s for s in self.sandboxes.values() if s.owner == tenant.user_id]
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

    async def sandbox_metrics(self, request: web.Request) -> web.StreamResponse:
        sb = self.sandbox(request)
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

    # ----------------------------------------------------------------- sandboxes CRUD

    def _validate_envs(self, envs: dict[str, str] | None, key: str = "envs") -> dict[str, str]:
        envs = envs or {}
        if len(envs) > 64:
            fail(400, f"{key}: at most 64 entries", fields={key: "at most 64 entries"})
        total = 0
        for name, value in envs.items():
            if not _ENV_KEY.match(name):
                fail(400, f"{key}: invalid variable name {name!r}", fields={key: "invalid name"})
            check_no_nul(key, value)
            size = len(value.encode())
            if size > 4096:
                fail(400, f"{key}: value of {name} exceeds 4 KiB", fields={key: "value too long"})
            total += size
        if total > 65536:
            fail(400, f"{key}: values exceed 64 KiB in total", fields={key: "too large"})
        return envs

    def _validate_auto_pause(self, value: int | None, key: str) -> int | None:
        if value is not None and not 60 <= value <= 86400:
            fail(400, f"{key} must be between 60 and 86400", fields={key: "out of range"})
        return value

    def _unique_name(self, owner: str, wanted: str | None) -> str:
        taken = {s.name for s in self.sandboxes.values() if s.owner == owner and not s.terminal}
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
        for tpl in self.templates.values():
            if tpl.owner == owner and rootfs in (tpl.id, tpl.name):
                if tpl.status != "ready":
                    fail(400, f"template {rootfs!r} is not ready (status {tpl.status})")
                return rootfs
        fail(400, f"unknown rootfs {rootfs!r}", fields={"rootfs": "unknown"})

    def _validate_egress(self, rules: list[str] | None) -> list[str] | None:
        if rules is None:
            return None
        for rule in rules:
            if not re.fullmatch(r"\*|[A-Za-z0-9.\-:/\[\]]+(:\d{1,5})?", rule) or " " in rule:
                fail(400, f"invalid egress rule {rule!r}", fields={"egress": "invalid rule"})
        return [] if rules == ["*"] else rules

    @staticmethod
    def _validate_keys(keys: list[str] | None) -> list[str]:
        out: list[str] = []
        for key in keys or []:
            parts = key.split()
            if len(parts) < 2 or not (
                parts[0].startswith(("ssh-", "ecdsa-", "sk-")) and len(parts[1]) >= 16
            ):
                fail(400, "invalid OpenSSH public key", fields={"ssh_pubkeys": "invalid key"})
            if key not in out:
                out.append(key)
        return out

    async def create_sandbox(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenant(request)
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
        envs = self._validate_envs(opt_str_map(body, "envs"))
        auto_pause = self._validate_auto_pause(
            opt_int(body, "auto_pause_after_seconds"), "auto_pause_after_seconds"
        )
        egress = self._validate_egress(opt_str_list(body, "egress"))
        keys = self._validate_keys(opt_str_list(body, "ssh_pubkeys"))
        ingress = bool(opt_bool(body, "ingress_enabled"))
        host_id = opt_str(body, "host_id")
        if host_id is not None and host_id != "host-local-1":
            fail(503, f"host {host_id!r} cannot fit this sandbox")
        networks = self._resolve_networks(tenant.user_id, body.get("networks"))
        mounts = self._resolve_disk_mounts(tenant.user_id, body.get("disks"))
        name = self._unique_name(tenant.user_id, opt_str(body, "name"))
        self._ip_counter += 1
        sb = Sandbox(
            id=_ids.new_id("sb"),
            owner=tenant.user_id,
            name=name,
            shape=shape,
            rootfs=rootfs,
            ip=_ids.fake_ip(self._ip_counter),
            disk_mib=disk_mib,
            envs=envs,
            egress=egress,
            ssh_pubkeys=keys,
            ingress_enabled=ingress,
            auto_pause_after_seconds=auto_pause,
        )
        self.sandboxes[sb.id] = sb
        for net in networks:
            net.members.append(sb.id)
            sb.networks.append(net.id)
        sb.disks.extend(mounts)
        # The boot finishes even if the client goes away, like a real control plane.
        await asyncio.shield(self.spawn_background(self._boot(sb)))
        if sb.status != "running":
            fail(500, f"sandbox {sb.id} failed to start")
        return ok(sb.create_view())

    async def _boot(self, sb: Sandbox, *, source_root: str | None = None) -> None:
        t0 = time.perf_counter()
        root = os.path.join(self.runtime.state_dir, "sandboxes", sb.id)
        try:
            if source_root is None:
                self.runtime.prepare_tree(root, sb.name)
            else:
                await SandboxRuntime.copy_tree(source_root, root)
            sb.runtime = await self.runtime.start(
                sb.id, root, sb.name, mem_mib=sb.shape.mem_mib, disk_mib=sb.disk_mib
            )
            sb.runtime.on_death = lambda: self._vm_died(sb)
            if self.transition_delay:
                await asyncio.sleep(self.transition_delay)
        except Exception:
            sb.status = "failed"
            if sb.runtime is not None:
                await sb.runtime.stop()
            await asyncio.to_thread(SandboxRuntime(self.runtime, sb.id, root).remove_tree)
            raise
        if sb.status in ("creating", "forking"):
            sb.spawn_ms = round((time.perf_counter() - t0) * 1000, 3)
            sb.status = "running"
            sb.running_at = _ids.now()
            self.touch(sb)

    def _vm_died(self, sb: Sandbox) -> None:
        """The sandbox's VM process ended without a destroy: the sandbox is `failed`."""
        if sb.status in ("destroying", "destroyed") or self.closing:
            return
        sb.status = "failed"
        if sb.auto_pause_timer is not None:
            sb.auto_pause_timer.cancel()
            sb.auto_pause_timer = None
        for proc in sb.processes.values():
            proc.kill()

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
            out.append(self.network_by_ref(owner, ref))
        return out

    def network_by_ref(self, owner: str, ref: str) -> Network:
        for net in self.networks.values():
            if net.owner == owner and ref in (net.id, net.name):
                return net
        fail(404, f"network {ref} not found")

    def disk_by_ref(self, owner: str, ref: str) -> Disk:
        for disk in self.disks.values():
            if disk.owner == owner and ref in (disk.id, disk.name):
                return disk
        fail(404, f"disk {ref} not found")

    def _resolve_disk_mounts(self, owner: str, raw: object) -> list[Any]:
        from .resources import parse_attachment

        if raw is None:
            return []
        if not isinstance(raw, list):
            fail(400, "disks must be a list", fields={"disks": "must be a list"})
        return [parse_attachment(self, owner, entry) for entry in raw]

    async def list_sandboxes(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenant(request)
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            fail(400, f"unknown status filter {status!r}", fields={"status": "unknown"})
        rows = [
            s.view()
            for s in self.sandboxes.values()
            if s.owner == tenant.user_id and (status is None or s.status == status)
        ]
        return page(request, rows)

    async def get_sandbox(self, request: web.Request) -> web.StreamResponse:
        return ok(self.sandbox(request).view())

    async def by_ip(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenant(request)
        ip = request.match_info["ip"]
        for sb in reversed(self.sandboxes.values()):
            if sb.owner == tenant.user_id and sb.ip == ip and not sb.terminal:
                return ok(sb.view())
        fail(404, f"no sandbox with ip {ip}")

    async def patch_sandbox(self, request: web.Request) -> web.StreamResponse:
        sb = self.live(request)
        body = await json_body(request)
        ingress = opt_bool(body, "ingress_enabled")
        seconds = self._validate_auto_pause(
            opt_int(body, "auto_pause_after_seconds"), "auto_pause_after_seconds"
        )
        disable = opt_bool(body, "disable_auto_pause")
        if ingress is not None:
            sb.ingress_enabled = ingress
        if disable:
            sb.auto_pause_after_seconds = None
        elif seconds is not None:
            sb.auto_pause_after_seconds = seconds
        self.touch(sb)
        return ok(sb.view())

    async def resize_sandbox(self, request: web.Request) -> web.StreamResponse:
        sb = self.live(request)
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

    # ----------------------------------------------------------------- lifecycle

    def _later(self, sb: Sandbox, step: Callable[[], None]) -> None:
        """Apply `step` after transition_delay (or now), so waiters see transitional states."""
        if not self.transition_delay:
            step()
            return

        async def run() -> None:
            await asyncio.sleep(self.transition_delay)
            step()

        if sb.transition is not None:
            sb.transition.cancel()
        sb.transition = self.spawn_background(run())

    def _begin_pause(self, sb: Sandbox) -> asyncio.Task[Any]:
        """Freeze the sandbox now; it reads `paused` once frozen and transition_delay passed."""
        sb.status = "pausing"
        if sb.auto_pause_timer is not None:
            sb.auto_pause_timer.cancel()
            sb.auto_pause_timer = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        runtime = sb.runtime

        async def run() -> None:
            if runtime is not None:
                runtime.pause()
                await runtime.wait_stopped()
            rest = self.transition_delay - (loop.time() - started)
            if rest > 0:
                await asyncio.sleep(rest)
            if sb.status == "pausing":
                sb.status = "paused"
                sb.paused_at = _ids.now()

        if sb.transition is not None:
            sb.transition.cancel()
        sb.transition = self.spawn_background(run())
        return sb.transition

    async def pause(self, request: web.Request) -> web.StreamResponse:
        sb = self.sandbox(request)
        if sb.status != "running":
            fail(409, f"cannot pause sandbox {sb.id} in status {sb.status}")
        task = self._begin_pause(sb)
        if not self.transition_delay:
            await asyncio.shield(task)
        return ok(sb.view())

    async def resume(self, request: web.Request) -> web.StreamResponse:
        sb = self.sandbox(request)
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
                self.touch(sb)

        self._later(sb, done)
        return ok(sb.view())

    async def fork(self, request: web.Request) -> web.StreamResponse:
        source = self.sandbox(request)
        body = await json_body(request, required=False)
        if source.status != "paused" or source.runtime is None:
            fail(409, f"cannot fork sandbox {source.id} in status {source.status}; pause it first")
        start_paused = bool(opt_bool(body, "start_paused"))
        keys = opt_str_list(body, "ssh_pubkeys")
        egress = self._validate_egress(opt_str_list(body, "egress"))
        ingress = opt_bool(body, "ingress_enabled")
        envs = opt_str_map(body, "envs")
        if envs is not None:
            self._validate_envs(envs)
        self._ip_counter += 1
        child = Sandbox(
            id=_ids.new_id("sb"),
            owner=source.owner,
            name=self._unique_name(source.owner, None),
            shape=source.shape,
            rootfs=source.rootfs,
            ip=_ids.fake_ip(self._ip_counter),
            disk_mib=source.disk_mib,
            status="forking",
            envs=dict(source.envs if envs is None else envs),
            egress=source.egress if egress is None else egress,
            ssh_pubkeys=list(source.ssh_pubkeys) if keys is None else self._validate_keys(keys),
            ingress_enabled=source.ingress_enabled if ingress is None else ingress,
            auto_pause_after_seconds=source.auto_pause_after_seconds,
            forked_from=source.id,
        )
        self.sandboxes[child.id] = child
        task = self.spawn_background(self._fork_child(source, child, start_paused))
        if not self.transition_delay:
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
        if self.transition_delay:
            child.status = "resuming"
            await asyncio.sleep(self.transition_delay)
            if child.status == "resuming":
                child.status = "running"
        child.last_resumed_at = _ids.now()

    async def destroy(self, request: web.Request) -> web.StreamResponse:
        sb = self.sandbox(request)
        if sb.status in ("destroyed", "failed") and sb.runtime is None:
            return ok({"id": sb.id, "status": "destroyed"})
        if sb.status == "destroying":
            return ok({"id": sb.id, "status": "destroying"})
        inline = sb.status in ("paused", "error") or not self.transition_delay
        sb.status = "destroying"
        teardown = self.spawn_background(self._teardown(sb, delay=not inline))
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
            self.tokens.pop(sb.access_token.token, None)
            sb.access_token = None
        for proc in sb.processes.values():
            proc.kill()
        for net_id in sb.networks:
            net = self.networks.get(net_id)
            if net is not None and sb.id in net.members:
                net.members.remove(sb.id)
        sb.networks.clear()
        sb.disks.clear()
        runtime = sb.runtime
        if runtime is not None:
            await runtime.stop()
        if delay:
            await asyncio.sleep(self.transition_delay)
        sb.status = "destroyed"
        sb.destroyed_at = _ids.now()
        sb.runtime = None
        if runtime is not None:
            await asyncio.to_thread(runtime.remove_tree)

    # ----------------------------------------------------------------- streams

    async def open_stream(
        self, request: web.Request, content_type: str = NDJSON_TYPE
    ) -> tuple[web.StreamResponse, FrameWriter]:
        """Start a chunked streaming response and its fault-aware frame writer."""
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        rule: FaultHandle | None = request.get(FAULT)
        return resp, FrameWriter(resp, rule)

    # ----------------------------------------------------------------- not supported here

    async def not_supported(self, request: web.Request) -> web.StreamResponse:
        """Computer (desktop) and raw-socket routes: checked like any route, then a clear 501."""
        if "id" in request.match_info:
            self.running(request)
        what = "computer (desktop)" if "/computer" in request.path else "raw socket (tunnel/shell)"
        fail(
            501,
            f"the {what} API is not supported by the local emulator: it runs commands in "
            "bubblewrap with no display server or agent sockets; use managed processes "
            "(PTY mode) for terminals, or a real CreateOS sandbox",
            code="not_supported_here",
        )


def build_app(emu: Emulator) -> web.Application:
    """The aiohttp application with every route of openapi.yaml."""
    from . import exec, files, processes, resources

    app = web.Application(middlewares=[emu.middleware], client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = emu
    app.on_response_prepare.append(emu.on_prepare)
    r = app.router
    sb = "/v1/sandboxes/{id}"
    r.add_get("/healthz", emu.healthz)
    r.add_get("/readyz", emu.readyz)
    r.add_get("/v1/whoami", emu.whoami)
    r.add_get("/v1/shapes", emu.shapes)
    r.add_get("/v1/rootfs", emu.rootfs)
    r.add_get("/v1/hosts", emu.hosts)
    r.add_get("/v1/metrics", emu.metrics)
    r.add_get("/v1/metrics/timeseries", emu.metrics_timeseries)
    r.add_post("/v1/sandboxes", emu.create_sandbox)
    r.add_get("/v1/sandboxes", emu.list_sandboxes)
    r.add_get("/v1/sandboxes/by-ip/{ip}", emu.by_ip)
    r.add_get(sb, emu.get_sandbox)
    r.add_patch(sb, emu.patch_sandbox)
    r.add_delete(sb, emu.destroy)
    r.add_post(sb + "/pause", emu.pause)
    r.add_post(sb + "/resume", emu.resume)
    r.add_post(sb + "/fork", emu.fork)
    r.add_post(sb + "/resize", emu.resize_sandbox)
    r.add_get(sb + "/metrics", emu.sandbox_metrics)
    r.add_post(sb + "/tunnel/{port}", emu.not_supported)
    r.add_post(sb + "/shell", emu.not_supported)
    r.add_get(sb + "/shell-ws", emu.not_supported)
    r.add_route("*", sb + "/computer/{tail:.*}", emu.not_supported)
    exec.register(app, emu)
    files.register(app, emu)
    resources.register(app, emu)
    processes.register(app, emu)
    return app


__all__ = ["EMULATOR", "JSON_TYPE", "AccessToken", "Emulator", "build_app"]
