"""Request bodies and query values built from the models: the create request, fork, disks, networks.

Checks that need no model live in ``_validate``; this module adds the ones that accept model
objects (``NetworkEntry``, ``DiskAttachment``, ``SandboxStatus``) and ``CreateSandboxRequest``, the
create arguments defined once (``sandboxes.create``, ``fork`` and the pool check through it). Every
resource imports from here or from ``_validate``, never from a sibling resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

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

__all__ = [
    "CHECKS",
    "CREATE_FIELDS",
    "CreateSandboxRequest",
    "disk_entry",
    "fork_body",
    "network_entry",
    "status_arg",
    "wire_value",
]

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


def _str_tuple(name: str) -> Callable[[object], tuple[str, ...]]:
    return lambda value: tuple(check_str_list(name, value))


def _entries(
    name: str, what: str, entry: Callable[[str, object], Any]
) -> Callable[[object], tuple[Any, ...]]:
    def convert(value: object) -> tuple[Any, ...]:
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise TypeError(f"{name} must be a list of {what}")
        return tuple(entry(f"{name}[{i}]", item) for i, item in enumerate(value))

    return convert


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("node_selector must be a mapping of str to str")
    return dict(value)


def _network_id(name: str, value: object) -> str:
    return network_entry(name, value)["id"]


def _disk(name: str, value: object) -> DiskAttachment:
    return DiskAttachment(**disk_entry(name, value))


def _env_keys(envs: Mapping[str, str] | None) -> str:
    """The repr of ``envs``: its keys only (values are secrets)."""
    return "None" if envs is None else "{" + ", ".join(f"{k!r}: ***" for k in envs) + "}"


def _shape(value: object) -> str:
    return check_str("shape", value)


#: The checks of the create arguments, by name; ``fork`` checks the arguments it shares with them.
CHECKS: dict[str, Callable[[object], Any]] = {
    "shape": _shape,
    "rootfs": lambda v: check_str("rootfs", v),
    "name": lambda v: check_str("name", v),
    "disk_mib": lambda v: check_int("disk_mib", v, 0),
    "ssh_pubkeys": _str_tuple("ssh_pubkeys"),
    "envs": lambda v: check_envs("envs", v),
    "ingress_enabled": lambda v: check_bool("ingress_enabled", v),
    "networks": _entries("networks", "network ids or names", _network_id),
    "disks": _entries("disks", "DiskAttachment", _disk),
    "egress": _str_tuple("egress"),
    "auto_pause_after_seconds": lambda v: check_auto_pause("auto_pause_after_seconds", v),
    "host_id": lambda v: check_str("host_id", v),
    "region": lambda v: check_str("region", v),
    "node_selector": _labels,
}


def wire_value(value: object) -> object:
    """A checked argument as JSON: tuples as lists, a ``DiskAttachment`` as its mapping."""
    if isinstance(value, tuple):
        return [wire_value(v) for v in value]
    if isinstance(value, DiskAttachment):
        out = {"disk_id": value.disk_id, "mount_path": value.mount_path}
        if value.sub_path:
            out["sub_path"] = value.sub_path
        return out
    if isinstance(value, Mapping):
        return dict(value)
    return value


@attrs.frozen(kw_only=True)
class CreateSandboxRequest:
    """The arguments of a sandbox create, checked once: ``sandboxes.create_from(request)``.

    ``session.sandboxes.create(**fields)`` builds one; so does ``SandboxPool`` from its create
    arguments. Every argument is checked on construction (``TypeError`` for a wrong type,
    ``ValueError`` for a wrong value, the argument named, never an env value); lists are kept as
    tuples, disks as ``DiskAttachment``, networks as ids or names. ``attrs.evolve(request,
    name=...)`` makes a checked copy. The repr shows env keys, never their values.

    Attributes:
        shape: The machine size, e.g. ``"s-1vcpu-256mb"`` (see ``session.shapes()``).
        rootfs: The root filesystem, e.g. ``"devbox:1"`` or a template id (default: the
            catalog's default).
        name: A name, unique among your live sandboxes (default: generated).
        disk_mib: Disk size in MiB (default: the shape's).
        ssh_pubkeys: OpenSSH public keys allowed to log in.
        envs: Environment variables of every command (at most 64; keys like
            ``[A-Za-z_][A-Za-z0-9_]*``; 4 KiB per value, 64 KiB in total); values are secrets.
        ingress_enabled: Give the sandbox public URLs (``preview_url(port)``).
        networks: Private networks to join: ids or names (``NetworkEntry`` or ``{"id": ...}``
            accepted, kept as the id).
        disks: Disks to mount: ``DiskAttachment`` objects (or mappings with ``disk_id``,
            ``mount_path`` and optionally ``sub_path``), kept as ``DiskAttachment``.
        egress: The egress allowlist (default: everything allowed).
        auto_pause_after_seconds: Pause after this many idle seconds (60 to 86400).
        host_id: Place on this worker host (administrators).
        region: Must equal the server's region when given.
        node_selector: Host labels the placement must match.

    Example:
        ```python
        request = CreateSandboxRequest(shape="s-1vcpu-256mb", envs={"MODE": "test"})
        sb = await session.sandboxes.create_from(request)
        ```
    """

    shape: str
    rootfs: str | None = None
    name: str | None = None
    disk_mib: int | None = None
    ssh_pubkeys: Sequence[str] | None = None
    envs: Mapping[str, str] | None = attrs.field(default=None, repr=_env_keys, hash=False)
    ingress_enabled: bool | None = None
    networks: Sequence[str | NetworkEntry | Mapping[str, str]] | None = None
    disks: Sequence[DiskAttachment | Mapping[str, str]] | None = None
    egress: Sequence[str] | None = None
    auto_pause_after_seconds: int | None = None
    host_id: str | None = None
    region: str | None = None
    node_selector: Mapping[str, str] | None = attrs.field(default=None, hash=False)

    def __attrs_post_init__(self) -> None:
        """Check every argument given, in order, and keep its normal form (tuples, ids)."""
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None or name == "shape":
                object.__setattr__(self, name, CHECKS[name](value))

    def to_wire(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/sandboxes`` (WIRE §10): the fields set, nothing else."""
        body: dict[str, Any] = {}
        for field in _FIELDS:
            value = getattr(self, field)
            if value is not None:
                body[field] = wire_value(value)
        if "networks" in body:
            body["networks"] = [{"id": n} for n in body["networks"]]
        return body


_FIELDS = tuple(f.name for f in attrs.fields(CreateSandboxRequest))
#: The argument names ``CreateSandboxRequest`` takes (for callers that pass them on).
CREATE_FIELDS = frozenset(_FIELDS)


def fork_body(**arguments: object) -> dict[str, Any]:
    """The JSON body of a fork: its own ``start_paused`` and ``bandwidth_quota_bytes``, and the
    arguments it shares with a create, checked as a create checks them. None: inherited."""
    body: dict[str, Any] = {}
    for name, value in arguments.items():
        if value is None:
            continue
        if name == "start_paused":
            body[name] = check_bool(name, value)
        elif name == "bandwidth_quota_bytes":
            body[name] = check_int(name, value)
        else:
            body[name] = wire_value(CHECKS[name](value))
    return body
