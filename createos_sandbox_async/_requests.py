"""Request bodies and query values built from the models: create, disk and network entries.

Checks that need no model live in ``_validate``; this module adds the ones that accept model
objects (``NetworkEntry``, ``DiskAttachment``, ``SandboxStatus``) and the create body that combines
them. Every resource imports from here or from ``_validate``, never from a sibling resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._validate import (
    check_auto_pause,
    check_bool,
    check_envs,
    check_int,
    check_remote_path,
    check_str,
    check_str_list,
    check_sub_path,
)
from .models import DiskAttachment, NetworkEntry, SandboxStatus

__all__ = ["build_create_body", "disk_entry", "network_entry", "status_arg"]

_STATUSES = frozenset(s.value for s in SandboxStatus)


def network_entry(name: str, value: object) -> dict[str, str]:
    if isinstance(value, NetworkEntry):
        value = value.id
    elif isinstance(value, Mapping):
        value = value.get("id")
    return {"id": check_str(name, value)}


def disk_entry(name: str, value: object) -> dict[str, str]:
    disk_id: object
    mount_path: object
    sub_path: object
    if isinstance(value, DiskAttachment):
        disk_id, mount_path, sub_path = value.disk_id, value.mount_path, value.sub_path
    elif isinstance(value, Mapping):
        disk_id, mount_path = value.get("disk_id"), value.get("mount_path")
        sub_path = value.get("sub_path")
    else:
        raise TypeError(f"{name} must be a DiskAttachment or a mapping")
    entry = {
        "disk_id": check_str(f"{name}.disk_id", disk_id),
        "mount_path": check_remote_path(mount_path, f"{name}.mount_path"),
    }
    if sub_path:
        entry["sub_path"] = check_sub_path(f"{name}.sub_path", sub_path)
    return entry


def status_arg(name: str, status: object) -> str:
    if not isinstance(status, str):
        raise TypeError(f"{name} must be a sandbox status str, got {type(status).__name__}")
    value = str(status.value if isinstance(status, SandboxStatus) else status)
    if value not in _STATUSES:
        raise ValueError(f"{name} must be one of {sorted(_STATUSES)}, got {value!r}")
    return value


def build_create_body(
    *,
    shape: str,
    rootfs: str | None = None,
    name: str | None = None,
    disk_mib: int | None = None,
    ssh_pubkeys: Sequence[str] | None = None,
    envs: Mapping[str, str] | None = None,
    ingress_enabled: bool | None = None,
    networks: Sequence[str | NetworkEntry | Mapping[str, str]] | None = None,
    disks: Sequence[DiskAttachment | Mapping[str, str]] | None = None,
    egress: Sequence[str] | None = None,
    auto_pause_after_seconds: int | None = None,
    host_id: str | None = None,
    region: str | None = None,
    node_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate create arguments (WIRE §10) and build the JSON body, omitting unset fields."""
    body: dict[str, Any] = {"shape": check_str("shape", shape)}
    if rootfs is not None:
        body["rootfs"] = check_str("rootfs", rootfs)
    if name is not None:
        body["name"] = check_str("name", name)
    if disk_mib is not None:
        body["disk_mib"] = check_int("disk_mib", disk_mib, 0)
    if ssh_pubkeys is not None:
        body["ssh_pubkeys"] = check_str_list("ssh_pubkeys", ssh_pubkeys)
    if envs is not None:
        body["envs"] = check_envs("envs", envs)
    if ingress_enabled is not None:
        body["ingress_enabled"] = check_bool("ingress_enabled", ingress_enabled)
    if networks is not None:
        if isinstance(networks, str) or not isinstance(networks, Iterable):
            raise TypeError("networks must be a list of network ids or names")
        body["networks"] = [network_entry(f"networks[{i}]", n) for i, n in enumerate(networks)]
    if disks is not None:
        if isinstance(disks, str) or not isinstance(disks, Iterable):
            raise TypeError("disks must be a list of DiskAttachment")
        body["disks"] = [disk_entry(f"disks[{i}]", d) for i, d in enumerate(disks)]
    if egress is not None:
        body["egress"] = check_str_list("egress", egress)
    if auto_pause_after_seconds is not None:
        body["auto_pause_after_seconds"] = check_auto_pause(
            "auto_pause_after_seconds", auto_pause_after_seconds
        )
    if host_id is not None:
        body["host_id"] = check_str("host_id", host_id)
    if region is not None:
        body["region"] = check_str("region", region)
    if node_selector is not None:
        if not isinstance(node_selector, Mapping):
            raise TypeError("node_selector must be a mapping of str to str")
        for key, value in node_selector.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("node_selector must be a mapping of str to str")
        body["node_selector"] = dict(node_selector)
    return body
