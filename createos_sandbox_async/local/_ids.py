"""Identifiers the emulator mints: ULIDs, prefixed ids, secrets, friendly names, fake IPs."""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

_ADJECTIVES = (
    "amber",
    "brave",
    "calm",
    "clever",
    "cosmic",
    "crisp",
    "dapper",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "mellow",
    "nimble",
    "noble",
    "plucky",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "shiny",
    "silent",
    "snappy",
    "sunny",
    "swift",
    "tidy",
    "witty",
)
_ANIMALS = (
    "badger",
    "beaver",
    "bison",
    "cobra",
    "crane",
    "dingo",
    "eagle",
    "ferret",
    "gecko",
    "heron",
    "ibis",
    "jaguar",
    "koala",
    "lemur",
    "lynx",
    "marmot",
    "newt",
    "otter",
    "panda",
    "quail",
    "raven",
    "salmon",
    "tapir",
    "toucan",
    "urchin",
    "viper",
    "walrus",
    "yak",
    "zebra",
    "wombat",
)


def ulid() -> str:
    """A 26-char ULID: sortable by creation time, which keeps listings in creation order."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`<prefix>_<ULID>`, the spelling the spec uses for sandboxes, networks, disks, templates."""
    return f"{prefix}_{ulid()}"


def secret(prefix: str) -> str:
    """An unguessable credential with a recognisable prefix (never logged)."""
    return prefix + secrets.token_urlsafe(24)


def request_id() -> str:
    """Sent as X-Request-Id on every response."""
    return "req_" + secrets.token_hex(12)


def friendly_name() -> str:
    """`<adjective>-<animal>`, the auto-generated sandbox name format."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_ANIMALS)}"


def fake_ip(n: int) -> str:
    """A stable private address per sandbox, so by-ip lookups work."""
    return f"10.42.{(n // 250) % 250}.{n % 250 + 2}"


def now() -> datetime:
    """Timezone-aware UTC now."""
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 with a `Z` suffix, as Go servers print it."""
    if ts is None:
        return None
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")
