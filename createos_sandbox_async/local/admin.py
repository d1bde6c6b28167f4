"""Fault control over HTTP: the `server.faults` API and the request counts for processes that
cannot hold the `LocalServer` object (the official TypeScript SDK, a docker-compose service,
curl). See docs/fault-control.md.

The routes live under `/__createos/`, outside the CreateOS API (`/v1/...`, `/healthz`). They
answer only a peer on a loopback address (403 otherwise, even with `--allow-remote`) that sends
the emulator's own admin token as `Authorization: Bearer <token>` (401 otherwise); a tenant's
API key never opens them. The middleware sends them here before counting and before faults, so
they are never counted as requests and no fault can hit them.
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._http import fail, json_body, ok
from .faults import FaultHandle

if TYPE_CHECKING:
    from .app import Emulator

ADMIN_PREFIX = "/__createos/"
# The fields each kind takes besides kind/route/method/times (the keywords of Faults.<kind>).
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "status": ("status", "retry_after", "html", "body"),
    "reset": ("after_headers",),
    "stall": ("after_frames",),
    "truncate": ("after_frames",),
    "slow": ("delay", "chunk_size"),
}
_COMMON_FIELDS = ("kind", "route", "method", "times")


def register(app: web.Application, emu: Emulator) -> None:
    """Add the admin routes."""
    h = _Handlers(emu)
    r = app.router
    base = ADMIN_PREFIX + "faults"
    r.add_get(base, h.list_faults)
    r.add_post(base, h.add_fault)
    r.add_delete(base, h.clear_faults)
    r.add_get(base + "/{fault_id}", h.get_fault)
    r.add_delete(base + "/{fault_id}", h.delete_fault)
    r.add_get(ADMIN_PREFIX + "requests", h.request_counts)
    r.add_delete(ADMIN_PREFIX + "requests", h.clear_requests)


def is_admin(request: web.Request) -> bool:
    """Is this request for an admin route, by its path or by the route it matched? Both are
    checked so that no spelling of a path can reach an admin handler without the admin guard,
    or a tenant handler through it."""
    if request.path.startswith(ADMIN_PREFIX):
        return True
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.startswith(ADMIN_PREFIX)


def peer_is_loopback(remote: str | None) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback (::ffff:127.0.0.1, a dual-stack socket)."""
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def check_admin(request: web.Request, token: str) -> None:
    """403 unless the peer is on loopback; 401 unless the request carries the admin token."""
    if not peer_is_loopback(request.remote):
        fail(403, "the emulator's admin routes answer loopback clients only")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        fail(
            401,
            "missing or wrong admin token: send Authorization: Bearer <admin token> (printed "
            "as CREATEOS_LOCAL_ADMIN_TOKEN at start, or LocalServer.admin_token); the API key "
            "does not open these routes",
        )


def parse_fault(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A fault spec -> (kind, keywords of Faults.<kind>), 400 naming the field on a bad one.
    Values in range are left to Faults itself (its ValueError becomes a 400 too)."""
    kind = body.get("kind")
    if kind not in _KIND_FIELDS:
        fail(
            400,
            f"kind must be one of {', '.join(_KIND_FIELDS)}, got {kind!r}",
            fields={"kind": "unknown"},
        )
    allowed = _COMMON_FIELDS + _KIND_FIELDS[kind]
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        fail(
            400,
            f"unknown field(s) {', '.join(unknown)} for a {kind} fault; "
            f"it takes {', '.join(allowed)}",
            fields={name: "unknown" for name in unknown},
        )
    kw: dict[str, Any] = {}
    if "route" in body:
        kw["route"] = _typed(body, "route", str, "a non-empty string (an fnmatch pattern)")
    if "method" in body and body["method"] is not None:
        kw["method"] = _typed(body, "method", str, "a string such as POST, or null for any")
    if "times" in body:
        kw["times"] = None if body["times"] is None else _integer(body, "times")
    for name in _KIND_FIELDS[kind]:
        if name not in body:
            continue
        value = body[name]
        if name in ("status", "after_frames", "chunk_size"):
            kw[name] = _integer(body, name)
        elif name in ("html", "after_headers"):
            kw[name] = _typed(body, name, bool, "true or false")
        elif name == "delay":
            kw[name] = _number(body, name)
        elif name == "retry_after":
            if value is not None and not isinstance(value, str):
                _number(body, name)  # seconds (int or float), or a string such as an HTTP-date
            kw[name] = value
        elif name == "body":
            if value is not None and not isinstance(value, (str, dict)):
                fail(400, "body must be a string or a JSON object", fields={"body": "bad type"})
            kw[name] = value
    if kind == "status" and "status" not in kw:
        fail(
            400, "a status fault needs status (an HTTP status code)", fields={"status": "required"}
        )
    return kind, kw


def _typed(body: Mapping[str, Any], name: str, kind: type, what: str) -> Any:
    value = body[name]
    if not isinstance(value, kind) or (kind is str and not value):
        fail(400, f"{name} must be {what}, got {value!r}", fields={name: "bad type"})
    return value


def _integer(body: Mapping[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        fail(400, f"{name} must be an integer, got {value!r}", fields={name: "must be an integer"})
    return value


def _number(body: Mapping[str, Any], name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(400, f"{name} must be a number, got {value!r}", fields={name: "must be a number"})
    return float(value)


def fault_view(handle: FaultHandle) -> dict[str, Any]:
    """A rule as the admin routes show it: its spec, hits, and whether it still applies."""
    params = {
        k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
        for k, v in handle.params.items()
    }
    return {
        "id": handle.id,
        "kind": handle.kind,
        "route": handle.route,
        "method": handle.method,
        "times": handle.times,
        "hits": handle.hits,
        "active": handle.active,
        **params,
    }


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def list_faults(self, request: web.Request) -> web.StreamResponse:
        return ok({"faults": [fault_view(h) for h in self.emu.faults.known()]})

    async def add_fault(self, request: web.Request) -> web.StreamResponse:
        kind, kw = parse_fault(await json_body(request))
        try:
            handle: FaultHandle = getattr(self.emu.faults, kind)(**kw)
        except ValueError as exc:
            fail(400, f"bad {kind} fault: {exc}")
        return ok(fault_view(handle), status=201)

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        cleared = len(self.emu.faults.known())
        self.emu.faults.clear()
        return ok({"cleared": cleared})

    def _fault(self, request: web.Request) -> FaultHandle:
        fault_id = request.match_info["fault_id"]
        handle = self.emu.faults.get(fault_id)
        if handle is None:
            fail(404, f"fault {fault_id} not found (cleared, or never added)")
        return handle

    async def get_fault(self, request: web.Request) -> web.StreamResponse:
        return ok(fault_view(self._fault(request)))

    async def delete_fault(self, request: web.Request) -> web.StreamResponse:
        handle = self._fault(request)
        self.emu.faults.remove(handle.id)
        return ok(fault_view(handle))

    async def request_counts(self, request: web.Request) -> web.StreamResponse:
        """Requests received (admin ones never count), filtered like `server.request_count`:
        `method` exact (any if absent), `path` an fnmatch pattern (`*` if absent)."""
        method = request.query.get("method") or None
        path = request.query.get("path") or "*"
        want = method.upper() if method else None
        hits = sorted(
            (p, m, n)
            for (m, p), n in self.emu.requests.items()
            if (want is None or m == want) and fnmatch.fnmatchcase(p, path)
        )
        rows = [{"method": m, "path": p, "count": n} for p, m, n in hits]
        return ok({"count": sum(n for _, _, n in hits), "requests": rows})

    async def clear_requests(self, request: web.Request) -> web.StreamResponse:
        cleared = sum(self.emu.requests.values())
        self.emu.requests.clear()
        return ok({"cleared": cleared})
