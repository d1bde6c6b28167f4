"""Wire data as immutable attrs classes (frozen, slotted): what the server says about things.

Field names are the wire names. Optional fields default to None (the server omits empty ones, older
servers send ``null``; both mean "absent"). Lists arrive as tuples so a view cannot be mutated. Enum
fields hold the enum member for known values and the raw ``str`` for values this client does not
know yet; both compare equal to their text (``view.status == "running"``).
"""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any

import attrs

# Files/processes/computer/templates/networks/disks/tokens models, re-exported from here.
from ._resource_models import (
    PROCESS_SIGNALS,
    AccessTokenCreated,
    AccessTokenInfo,
    Disk,
    DiskConfig,
    Network,
    NetworkMember,
    Point,
    ProcessEvent,
    ProcessForeground,
    ProcessOutputWindow,
    ProcessView,
    Screen,
    ScreenConnection,
    ScreenSize,
    SecretStr,
    Template,
    TemplateLogEvent,
    Window,
    WindowGeometry,
)

__all__ = [
    "PROCESS_SIGNALS",
    "AccessTokenCreated",
    "AccessTokenInfo",
    "Bandwidth",
    "DestroyResult",
    "Disk",
    "DiskAttachment",
    "DiskConfig",
    "DiskMountStatus",
    "EgressView",
    "Health",
    "Host",
    "HostStatus",
    "Network",
    "NetworkEntry",
    "NetworkMember",
    "Point",
    "ProcessEvent",
    "ProcessForeground",
    "ProcessOutputWindow",
    "ProcessView",
    "Readiness",
    "ResizeResult",
    "RootfsCatalog",
    "RootfsEntry",
    "SandboxDisk",
    "SandboxStatus",
    "SandboxView",
    "Screen",
    "ScreenConnection",
    "ScreenSize",
    "SecretStr",
    "Shape",
    "Template",
    "TemplateLogEvent",
    "WhoAmI",
    "WhoAmIStats",
    "Window",
    "WindowGeometry",
]


class SandboxStatus(enum.StrEnum):
    """Sandbox states (WIRE §9): ``destroyed``/``failed`` are terminal, ``error`` recoverable."""

    CREATING = "creating"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    RESUMING = "resuming"
    FORKING = "forking"
    ERROR = "error"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


class HostStatus(enum.StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    DEAD = "dead"


class DiskMountStatus(enum.StrEnum):
    PENDING = "pending"
    MOUNTED = "mounted"
    ERROR = "error"
    UNMOUNTING = "unmounting"


@attrs.frozen(kw_only=True)
class Health:
    """``GET /healthz``: the process is up."""

    up: bool = False


@attrs.frozen(kw_only=True)
class Readiness:
    """``GET /readyz``: 200 means ready, 503 not ready (never raised, never retried)."""

    ready: bool = False
    reason: str | None = None
    scheduler_last_ok_ms_ago: int | None = None


@attrs.frozen(kw_only=True)
class WhoAmIStats:
    running: int = 0
    paused: int = 0
    other: int = 0
    total: int = 0


@attrs.frozen(kw_only=True)
class WhoAmI:
    """Identity behind the API key, with counts of its non-destroyed sandboxes."""

    user_id: str
    stats: WhoAmIStats = attrs.field(factory=WhoAmIStats)


@attrs.frozen(kw_only=True)
class Shape:
    """A machine size for ``create(shape=...)``."""

    id: str
    vcpu: int | None = None
    mem_mib: int | None = None
    default_disk_mib: int | None = None
    cpu_quota_pct: int | None = None


@attrs.frozen(kw_only=True)
class RootfsEntry:
    name: str
    description: str | None = None
    deprecated: bool = False
    successor: str | None = None


@attrs.frozen(kw_only=True)
class RootfsCatalog:
    """Built-in root filesystems; ``default`` is used when create omits ``rootfs``."""

    rootfs: tuple[str, ...] = ()
    default: str | None = None
    entries: tuple[RootfsEntry, ...] = ()


@attrs.frozen(kw_only=True)
class Host:
    """A worker host (administrator projection)."""

    id: str
    status: HostStatus | str | None = None
    free_mib: int | None = None
    vm_count: int | None = None
    rootfses: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SandboxView:
    """Everything the server says about one sandbox (GET, list, PATCH, pause, resume, fork, create).

    The create response lacks ``created_at`` and ``ingress_enabled``; the SDK fills ``status`` with
    ``running`` and ``ingress_enabled`` from the request (WIRE §10). ``envs`` holds names only.
    """

    id: str
    status: SandboxStatus | str = SandboxStatus.RUNNING
    ip: str | None = None
    name: str | None = None
    shape: str | None = None
    rootfs: str | None = None
    region: str | None = None
    vcpu: int | None = None
    mem_mib: int | None = None
    disk_mib: int | None = None
    spawn_ms: float | None = None
    ingress_enabled: bool = False
    ingress_url_template: str | None = None
    egress: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    ssh_pubkeys: tuple[str, ...] = ()
    created_by: str | None = None
    created_at: _dt.datetime | None = None
    running_at: _dt.datetime | None = None
    paused_at: _dt.datetime | None = None
    last_resumed_at: _dt.datetime | None = None
    destroyed_at: _dt.datetime | None = None
    forked_from: str | None = None
    auto_pause_after_seconds: int | None = None
    bandwidth_quota_bytes: int | None = None
    bandwidth_ingress_bytes: int | None = None


@attrs.frozen(kw_only=True)
class DestroyResult:
    """``DELETE /v1/sandboxes/{id}``: ``destroying`` (reclaim started) or ``destroyed``."""

    id: str
    status: SandboxStatus | str = SandboxStatus.DESTROYED


@attrs.frozen(kw_only=True)
class ResizeResult:
    id: str
    disk_mib: int


@attrs.frozen(kw_only=True)
class EgressView:
    """Egress allowlist; empty means allow all."""

    id: str
    egress: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Bandwidth:
    """Bandwidth quota and usage; ``quota_bytes == -1`` means unmetered."""

    id: str
    quota_bytes: int = 0
    used_bytes: int = 0
    ingress_bytes: int = 0
    remaining_bytes: int = 0
    capped: bool = False


@attrs.frozen(kw_only=True)
class NetworkEntry:
    """A network reference in ``create(networks=[...])``: id (``net_…``) or name."""

    id: str


@attrs.frozen(kw_only=True)
class DiskAttachment:
    """A disk mount in ``create(disks=[...])`` or ``attach_disk``."""

    disk_id: str
    mount_path: str
    sub_path: str | None = None


@attrs.frozen(kw_only=True)
class SandboxDisk:
    """A disk mounted in a sandbox, with its mount progress."""

    disk_id: str
    mount_path: str
    name: str | None = None
    kind: str | None = None
    config: DiskConfig | None = None
    sub_path: str | None = None
    mount_status: DiskMountStatus | str | None = None
    mount_error: str | None = None


def view_from_create(data: Any, *, ingress_enabled: bool) -> Any:
    """Normalize a ``CreateSandboxResponse`` dict into SandboxView wire data (WIRE §10)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if out.get("status") is None:
        out["status"] = "running"
    if out.get("ingress_enabled") is None:
        out["ingress_enabled"] = ingress_enabled or bool(out.get("ingress_url_template"))
    out.pop("mode", None)
    return out
