"""The emulator's HTTP application: middleware (request ids, faults, auth, JSend errors), the
`Emulator` state and `build_app`. Every route lives in a module that adds it with
`register(app, emu)`: catalog.py (health, identity, shapes, hosts, metrics), sandboxes.py
(create and lifecycle), exec.py, files.py, resources.py (tokens, policies, networks, disks,
templates), processes.py and admin.py (fault control over HTTP, outside the API)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from . import _ids, admin, catalog, exec, files, processes, resources, sandboxes
from ._http import (
    JSON_TYPE,
    NDJSON_TYPE,
    ApiFail,
    error_response,
    fail,
    request_key,
)
from ._vm import Command
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
from .runtime import Runtime
from .state import (
    AccessToken,
    Disk,
    Network,
    Sandbox,
    Template,
    Tenant,
)

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
        admin_token: str | None = None,
    ) -> None:
        self.runtime = runtime
        # Opens the /__createos/ routes (admin.py); never a tenant's key, never logged.
        self.admin_token = admin_token or _ids.secret("adm_local_")
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
        self.ip_counter = 0
        self._tenant_counter = 0

    # ----------------------------------------------------------------- tenants & bookkeeping

    def add_tenant(self, key: str | None = None) -> str:
        """Register an account and return its API key."""
        self._tenant_counter += 1
        key = key or _ids.secret("sk_local_")
        self.tenants[key] = Tenant(key=key, user_id=f"usr_local_{self._tenant_counter}")
        return key

    def request_count(self, method: str | None = None, path: str = "*") -> int:
        """Requests received so far (fnmatch on the path).

        Safe to call from another thread than the server's (the pytest plugin runs the server on
        its own thread): it iterates over a copy, which the server's inserts cannot disturb.
        """
        want = method.upper() if method else None
        return sum(
            n
            for (m, p), n in list(self.requests.items())
            if (want is None or m == want) and fnmatch.fnmatchcase(p, path)
        )

    def spawn_background(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run work that must finish even if the request that started it goes away."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def reap_later(self, proc: Command, helpers: Sequence[asyncio.Task[Any]] = ()) -> None:
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
        """Count, maybe fault, authenticate, run, and turn failures into JSend bodies. Admin
        routes are neither counted nor faulted: they have their own guard (admin.py)."""
        if admin.is_admin(request):
            return await self._admin(request, handler)
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
                resp = _http_error(request, exc)
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

    async def _admin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Guard (loopback peer, admin token), then run an admin route."""
        try:
            admin.check_admin(request, self.admin_token)
            match = request.match_info
            if match.http_exception is not None:
                raise match.http_exception
            resource = match.route.resource
            if resource is None or not resource.canonical.startswith(admin.ADMIN_PREFIX):
                fail(404, f"no admin route for {request.path}")
            return await handler(request)
        except ApiFail as exc:
            return error_response(exc)
        except web.HTTPException as exc:
            return _http_error(request, exc)

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
        self.begin_pause(sb)

    def begin_pause(self, sb: Sandbox) -> asyncio.Task[Any]:
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


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, body too big) as JSend bodies."""
    if exc.status == 405:
        return error_response(ApiFail(405, f"method {request.method} not allowed"))
    if exc.status == 404:
        return error_response(ApiFail(404, f"no route for {request.path}"))
    if exc.status == 413:
        return error_response(ApiFail(400, "request body too large"))
    return error_response(ApiFail(exc.status, exc.reason))


def build_app(emu: Emulator) -> web.Application:
    """The aiohttp application with every route of openapi.yaml."""
    app = web.Application(middlewares=[emu.middleware], client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = emu
    app.on_response_prepare.append(emu.on_prepare)
    for module in (catalog, sandboxes, exec, files, resources, processes, admin):
        module.register(app, emu)
    return app


__all__ = ["EMULATOR", "JSON_TYPE", "AccessToken", "Emulator", "build_app"]
