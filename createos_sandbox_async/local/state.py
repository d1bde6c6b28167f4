"""In-memory records of the emulator (tenants, sandboxes, networks, disks, templates) and the
JSON views the API returns for them. Everything here is process-local and gone on shutdown."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

from ._http import prune
from ._ids import iso, now

if TYPE_CHECKING:
    from .processes import ManagedProcess
    from .runtime import SandboxRuntime

REGION = "local"
DEFAULT_ROOTFS = "devbox:1"
DEFAULT_BANDWIDTH_QUOTA = 5 * 1024**3
STATUSES = (
    "creating",
    "running",
    "pausing",
    "paused",
    "resuming",
    "forking",
    "error",
    "destroying",
    "destroyed",
    "failed",
)
TERMINAL = ("destroyed", "failed")


@frozen
class Shape:
    """A sandbox size from the catalog (the emulator enforces memory where it can make a
    cgroup, never cpu; see docs/emulator.md)."""

    id: str
    vcpu: int
    mem_mib: int
    default_disk_mib: int = 10240
    cpu_quota_pct: int | None = None

    def view(self) -> dict[str, Any]:
        return prune(
            {
                "id": self.id,
                "vcpu": self.vcpu,
                "mem_mib": self.mem_mib,
                "default_disk_mib": self.default_disk_mib,
                "cpu_quota_pct": self.cpu_quota_pct,
            }
        )


SHAPES = (
    Shape("s-1vcpu-256mb", 1, 256, cpu_quota_pct=25),
    Shape("s-1vcpu-512mb", 1, 512, cpu_quota_pct=50),
    Shape("s-1vcpu-1gb", 1, 1024),
    Shape("s-2vcpu-2gb", 2, 2048),
    Shape("s-4vcpu-4gb", 4, 4096),
)
ROOTFS = (
    {
        "name": "devbox:1",
        "description": "Default developer image (the emulator uses the host's /usr)",
    },
    {
        "name": "desktop:1",
        "description": "Desktop image; the computer API is not supported by the local emulator",
    },
)


@define(eq=False)
class Tenant:
    """One account: an API key and the user id it maps to."""

    key: str
    user_id: str


@define(eq=False)
class AccessToken:
    """A sandbox's delegated token (the plaintext lives only in memory, never in a view)."""

    token: str
    created_at: datetime
    rotated_at: datetime | None = None

    def metadata(self) -> dict[str, Any]:
        hint = f"{self.token[:9]}...{self.token[-4:]}"
        return prune(
            {
                "enabled": True,
                "token_hint": hint,
                "created_at": iso(self.created_at),
                "rotated_at": iso(self.rotated_at),
            }
        )


@define(eq=False)
class DiskMount:
    """One (disk, mount_path) attachment on a sandbox."""

    disk_id: str
    mount_path: str
    sub_path: str | None = None
    status: str = "mounted"


@define(eq=False)
class Sandbox:
    """One sandbox row; destroyed rows stay readable and listable."""

    id: str
    owner: str  # user id
    name: str
    shape: Shape
    rootfs: str
    ip: str
    disk_mib: int
    status: str = "creating"
    envs: dict[str, str] = field(factory=dict)
    egress: list[str] | None = None
    ssh_pubkeys: list[str] = field(factory=list)
    ingress_enabled: bool = False
    auto_pause_after_seconds: int | None = None
    created_at: datetime = field(factory=now)
    running_at: datetime | None = None
    destroyed_at: datetime | None = None
    paused_at: datetime | None = None
    last_resumed_at: datetime | None = None
    forked_from: str | None = None
    spawn_ms: float = 0.0
    bandwidth_quota: int = DEFAULT_BANDWIDTH_QUOTA
    bandwidth_used: int = 0
    runtime: SandboxRuntime | None = None
    access_token: AccessToken | None = None
    networks: list[str] = field(factory=list)
    disks: list[DiskMount] = field(factory=list)
    processes: dict[str, ManagedProcess] = field(factory=dict)
    busy: int = 0  # execs / transfers in flight (they hold off auto-pause)
    auto_pause_timer: asyncio.TimerHandle | None = None
    transition: asyncio.Task[None] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def ingress_template(self) -> str | None:
        if not self.ingress_enabled:
            return None
        ulid = self.id.split("_", 1)[-1].lower()
        return f"http://{ulid}-<port>.{REGION}.sandbox.localhost"

    def view(self) -> dict[str, Any]:
        """The SandboxView (GET, list items, PATCH, pause, resume, fork)."""
        return prune(
            {
                "id": self.id,
                "status": self.status,
                "ip": None if self.status == "creating" else self.ip,
                "vcpu": self.shape.vcpu,
                "mem_mib": self.shape.mem_mib,
                "disk_mib": self.disk_mib,
                "created_at": iso(self.created_at),
                "ingress_enabled": self.ingress_enabled,
                "ingress_url_template": self.ingress_template(),
                "name": self.name,
                "running_at": iso(self.running_at),
                "destroyed_at": iso(self.destroyed_at),
                "spawn_ms": self.spawn_ms,
                "shape": self.shape.id,
                "rootfs": self.rootfs,
                "region": REGION,
                "egress": self.egress or None,
                "envs": sorted(self.envs) or None,
                "ssh_pubkeys": self.ssh_pubkeys or None,
                "created_by": self.owner,
                "bandwidth_ingress_bytes": 0,
                "paused_at": iso(self.paused_at),
                "last_resumed_at": iso(self.last_resumed_at),
                "forked_from": self.forked_from,
                "auto_pause_after_seconds": self.auto_pause_after_seconds,
            }
        )

    def create_view(self) -> dict[str, Any]:
        """CreateSandboxResponse: not a SandboxView (no created_at / ingress_enabled)."""
        return prune(
            {
                "id": self.id,
                "status": "running",
                "name": self.name,
                "ip": self.ip,
                "shape": self.shape.id,
                "rootfs": self.rootfs,
                "vcpu": self.shape.vcpu,
                "mem_mib": self.shape.mem_mib,
                "disk_mib": self.disk_mib,
                "spawn_ms": self.spawn_ms,
                "egress": self.egress or None,
                "bandwidth_quota_bytes": self.bandwidth_quota,
                "ssh_pubkeys": self.ssh_pubkeys or None,
                "ingress_url_template": self.ingress_template(),
            }
        )

    def bandwidth_view(self) -> dict[str, Any]:
        remaining = max(self.bandwidth_quota - self.bandwidth_used, 0)
        return {
            "id": self.id,
            "quota_bytes": self.bandwidth_quota,
            "used_bytes": self.bandwidth_used,
            "ingress_bytes": 0,
            "remaining_bytes": remaining,
            "capped": self.bandwidth_quota >= 0 and remaining == 0,
        }


@define(eq=False)
class Network:
    """A private overlay network (bookkeeping only: sandboxes have no network in the emulator)."""

    id: str
    owner: str
    name: str
    created_at: datetime = field(factory=now)
    members: list[str] = field(factory=list)

    def view(self, *, detail: bool, sandboxes: dict[str, Sandbox]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "created_at": iso(self.created_at)}
        if detail:
            out["members"] = [
                prune(
                    {
                        "sandbox_id": sid,
                        "status": sandboxes[sid].status,
                        "ip": sandboxes[sid].ip.replace("10.42.", "10.200.", 1),
                        "name": sandboxes[sid].name,
                    }
                )
                for sid in self.members
                if sid in sandboxes
            ]
        else:
            out["member_count"] = len(self.members)
        return out


@define(eq=False)
class Disk:
    """A registered S3 disk (credentials kept write-only, never returned)."""

    id: str
    owner: str
    name: str
    config: dict[str, Any]
    credentials: dict[str, str]
    created_at: datetime = field(factory=now)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": "s3",
            "config": self.config,
            "created_at": iso(self.created_at),
        }


@define(eq=False)
class Template:
    """A Dockerfile template; the emulator 'builds' it by logging steps (rootfs: the host's)."""

    id: str
    owner: str
    name: str
    dockerfile: str
    base: str
    status: str = "pending"
    created_at: datetime = field(factory=now)
    built_at: datetime | None = None
    log: list[dict[str, Any]] = field(factory=list)
    changed: asyncio.Event = field(factory=asyncio.Event)

    def view(self, *, include_dockerfile: bool = False) -> dict[str, Any]:
        return prune(
            {
                "id": self.id,
                "name": self.name,
                "base": self.base,
                "status": self.status,
                "ext4_size_bytes": 0 if self.status != "ready" else 512 * 1024**2,
                "created_at": iso(self.created_at),
                "built_at": iso(self.built_at),
                "dockerfile": self.dockerfile if include_dockerfile else None,
            }
        )
