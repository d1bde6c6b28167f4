"""One naming convention for sandboxes a program creates, so that a crashed run can be found.

The service keeps no labels on a sandbox, only its ``name`` (unique among your live sandboxes,
used as its hostname: WIRE §10). A name that carries who made it, which run and when is what a
cleanup after a crash (``session.sandboxes.reap``) can select on::

    <prefix>-<run_id>-<YYYYMMDDHHMMSS>[-<seq>]      e.g.  nightly-eval-3f9a1c2e-20261204145100-17

- ``prefix``: 1-30 characters of ``a-z``, ``0-9`` and ``-``, starting with a letter or digit
  (``SandboxPool``'s ``name_prefix``, default ``"pool"``);
- ``run_id``: 1-8 characters of ``a-z0-9`` (no ``-``), one per run; :func:`new_run_id` draws a
  random one;
- the creation time in UTC, to the second (14 digits);
- ``seq``: an optional counter of 1-8 digits (a pool numbers its sandboxes 1, 2, ...).

The whole name is at most 63 characters of ``a-z0-9-``: a valid DNS label, so a valid hostname.
Names are parsed from the right, which is why a prefix may contain ``-`` and a run id may not.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
from typing import Final

import attrs

__all__ = ["SandboxName", "new_run_id", "parse_sandbox_name", "sandbox_name"]

_PREFIX_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")
_RUN_RE: Final = re.compile(r"^[a-z0-9]{1,8}$")
_NAME_RE: Final = re.compile(
    r"^(?P<prefix>[a-z0-9][a-z0-9-]{0,29})-(?P<run>[a-z0-9]{1,8})-(?P<stamp>\d{14})"
    r"(?:-(?P<seq>\d{1,8}))?$"
)
_STAMP: Final = "%Y%m%d%H%M%S"
MAX_SEQ: Final = 99_999_999


@attrs.frozen
class SandboxName:
    """A name of the convention, taken apart: ``str(name)`` puts it back together."""

    prefix: str
    run_id: str
    created_at: _dt.datetime  # UTC, whole seconds
    seq: int | None = None

    def __str__(self) -> str:
        stamp = self.created_at.astimezone(_dt.UTC).strftime(_STAMP)
        base = f"{self.prefix}-{self.run_id}-{stamp}"
        return base if self.seq is None else f"{base}-{self.seq}"

    @property
    def run_prefix(self) -> str:
        """``<prefix>-<run_id>-``: what every name of this run starts with."""
        return f"{self.prefix}-{self.run_id}-"


def check_prefix(prefix: object, argument: str = "prefix") -> str:
    """A name prefix of the convention, or TypeError / ValueError naming ``argument``."""
    if not isinstance(prefix, str):
        raise TypeError(f"{argument} must be a str, got {type(prefix).__name__}")
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"{argument} must be 1-30 chars of a-z, 0-9 and '-', starting with a letter or digit, "
            f"got {prefix!r}"
        )
    return prefix


def check_run_id(run_id: object) -> str:
    """A run id of the convention, or TypeError / ValueError naming ``run_id``."""
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a str, got {type(run_id).__name__}")
    if not _RUN_RE.match(run_id):
        raise ValueError(f"run_id must be 1-8 chars of a-z and 0-9 (no '-'), got {run_id!r}")
    return run_id


def new_run_id() -> str:
    """A random run id: 8 hex digits (4 billion values: distinct runs do not collide)."""
    return secrets.token_hex(4)


def sandbox_name(
    prefix: str,
    *,
    run_id: str,
    created_at: _dt.datetime | None = None,
    seq: int | None = None,
) -> str:
    """A name of the convention; ``created_at`` defaults to now (an aware datetime, any zone).

    >>> sandbox_name("ci", run_id="a1", created_at=_dt.datetime(2026, 12, 4, tzinfo=_dt.UTC))
    'ci-a1-20261204000000'
    """
    check_prefix(prefix)
    check_run_id(run_id)
    if created_at is None:
        created_at = _dt.datetime.now(_dt.UTC)
    elif not isinstance(created_at, _dt.datetime):
        raise TypeError(f"created_at must be a datetime, got {type(created_at).__name__}")
    elif created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware (e.g. datetime.now(UTC))")
    if seq is not None:
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError(f"seq must be an int or None, got {type(seq).__name__}")
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"seq must be in 0..{MAX_SEQ}, got {seq!r}")
    return str(SandboxName(prefix, run_id, created_at.replace(microsecond=0), seq))


def parse_sandbox_name(name: str | None) -> SandboxName | None:
    """The parts of a name of the convention; None for any other name (or None)."""
    if not name:
        return None
    match = _NAME_RE.match(name)
    if match is None:
        return None
    try:
        when = _dt.datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=_dt.UTC)
    except ValueError:  # 14 digits that are no date
        return None
    seq = match["seq"]
    return SandboxName(match["prefix"], match["run"], when, None if seq is None else int(seq))
