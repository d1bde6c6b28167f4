"""Checks of request-body fields that more than one route takes (create, fork, egress, keys,
disk attachments): 400 naming the field, before anything changes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._http import check_no_nul, fail, opt_str
from .state import DiskMount

if TYPE_CHECKING:
    from .app import Emulator

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_envs(envs: dict[str, str] | None, key: str = "envs") -> dict[str, str]:
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


def validate_auto_pause(value: int | None, key: str) -> int | None:
    if value is not None and not 60 <= value <= 86400:
        fail(400, f"{key} must be between 60 and 86400", fields={key: "out of range"})
    return value


def validate_egress(rules: list[str] | None) -> list[str] | None:
    if rules is None:
        return None
    for rule in rules:
        if not re.fullmatch(r"\*|[A-Za-z0-9.\-:/\[\]]+(:\d{1,5})?", rule) or " " in rule:
            fail(400, f"invalid egress rule {rule!r}", fields={"egress": "invalid rule"})
    return [] if rules == ["*"] else rules


def validate_keys(keys: list[str] | None) -> list[str]:
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


def parse_attachment(emu: Emulator, owner: str, entry: object) -> DiskMount:
    """A DiskAttachment body -> DiskMount (400 on bad fields, 404 on an unknown disk)."""
    if not isinstance(entry, dict):
        fail(400, "disk attachment must be an object", fields={"disks": "must be objects"})
    ref = opt_str(entry, "disk_id", required=True)
    mount_path = opt_str(entry, "mount_path", required=True)
    sub_path = opt_str(entry, "sub_path")
    assert ref is not None and mount_path is not None
    if not mount_path.startswith("/") or ".." in mount_path.split("/"):
        fail(
            400,
            "mount_path must be an absolute path without '..'",
            fields={"mount_path": "invalid"},
        )
    if sub_path and (sub_path.startswith("/") or ".." in sub_path.split("/")):
        fail(
            400,
            "sub_path must be relative and must not contain '..'",
            fields={"sub_path": "invalid"},
        )
    disk = emu.disk_by_ref(owner, ref)
    return DiskMount(disk_id=disk.id, mount_path=mount_path, sub_path=sub_path or None)
