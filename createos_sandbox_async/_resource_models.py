"""Wire models for files, processes, computer, templates, networks, disks and access tokens.

They live apart from ``models.py`` (which re-exports them) so the sandbox/catalog models and these
can grow independently. Everything is an attrs frozen slotted class; optional wire fields default to
``None`` because the server omits empty values (WIRE §4 rule 6). Secrets (access tokens, noVNC
tokens) are wrapped in :class:`SecretStr`, whose repr and str never show the value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import attrs

from ._secret import SecretStr

__all__ = [
    "PROCESS_SIGNALS",
    "AccessTokenCreated",
    "AccessTokenInfo",
    "Disk",
    "DiskConfig",
    "Network",
    "NetworkMember",
    "Point",
    "ProcessEvent",
    "ProcessForeground",
    "ProcessOutputWindow",
    "ProcessView",
    "Screen",
    "ScreenConnection",
    "ScreenSize",
    "SecretStr",
    "Template",
    "TemplateLogEvent",
    "Window",
    "WindowGeometry",
]

#: Signal names the process ``signal`` route accepts (WIRE §13).
PROCESS_SIGNALS = frozenset(
    {"SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH"}
)


# --- processes ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ProcessOutputWindow:
    """Sequence bounds of the output the server still retains for replay."""

    oldest_seq: int = 0
    newest_seq: int = 0
    bytes: int = 0


@attrs.frozen(kw_only=True)
class ProcessForeground:
    """The job currently in the foreground of a PTY."""

    cmd: str
    pid: int | None = None
    args: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class ProcessView:
    """Server projection of a managed process (``kind`` is ``process`` or ``pty``)."""

    process_id: str
    kind: str
    pid: int
    state: str
    leader_exited: bool
    tree_exited: bool
    created_at: datetime | None = None
    output: ProcessOutputWindow = attrs.field(factory=ProcessOutputWindow)
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    cwd: str | None = None
    foreground: ProcessForeground | None = None

    @property
    def id(self) -> str:
        """Alias of ``process_id`` so a view can be passed wherever an id is expected."""
        return self.process_id


@attrs.frozen(kw_only=True)
class ProcessEvent:
    """One item of a process output stream.

    ``kind`` is ``"data"`` (``data`` holds raw bytes from ``stream``: stdout, stderr or pty),
    ``"exit"`` (``exit_code`` / ``signal``; always the last event) or ``"error"`` (``error``).
    ``oldest_available_seq`` is set when the server evicted part of the requested replay.
    The repr shows the size of ``data``, not its bytes (output may hold secrets).
    """

    kind: Literal["data", "exit", "error"]
    seq: int | None = None
    stream: str | None = None
    data: bytes = attrs.field(default=b"", repr=lambda v: f"<{len(v)} bytes>")
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    oldest_available_seq: int | None = None


# --- templates ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Template:
    """A custom rootfs built from a Dockerfile; ``status`` pending -> building -> ready | failed."""

    id: str
    name: str
    status: str
    base: str | None = None
    ext4_size_bytes: int | None = None
    created_at: datetime | None = None
    built_at: datetime | None = None
    dockerfile: str | None = None


@attrs.frozen(kw_only=True)
class TemplateLogEvent:
    """One frame of a followed build log; the last one has ``final=True`` and a ``status``.

    ``extra`` keeps keys this SDK does not know yet (the server may add some).
    """

    line: str | None = None
    ts: str | None = None
    level: str | None = None
    attempt: int | None = None
    final: bool = False
    status: str | None = None
    extra: dict[str, object] = attrs.field(factory=dict, repr=False)


# --- networks and disks -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class NetworkMember:
    """A sandbox in a network; ``ip`` is its overlay address, absent until programmed."""

    sandbox_id: str
    status: str
    ip: str | None = None
    name: str | None = None


@attrs.frozen(kw_only=True)
class Network:
    """A private overlay network. Lists carry ``member_count``; ``get`` carries ``members``."""

    id: str
    name: str
    created_at: datetime | None = None
    member_count: int | None = None
    members: tuple[NetworkMember, ...] | None = None


@attrs.frozen(kw_only=True)
class DiskConfig:
    """Where a disk's bucket lives; the credentials are write-only and never part of it."""

    bucket: str
    endpoint: str
    region: str | None = None
    use_path_style: bool | None = None


@attrs.frozen(kw_only=True)
class Disk:
    """A registered S3-compatible bucket that sandboxes can mount."""

    id: str
    name: str
    kind: str
    config: DiskConfig
    created_at: datetime | None = None


# --- access tokens -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AccessTokenCreated:
    """The plaintext delegated token, shown only on create and rotate.

    ``token`` is a :class:`SecretStr`: ``token.get_secret_value()`` is what goes in ``X-Api-Key``.
    """

    token: SecretStr
    enabled: bool
    created_at: datetime | None = None
    rotated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class AccessTokenInfo:
    """Token state without the token; ``token_hint`` is a redacted hint (``skp_sb_fi...irst``)."""

    enabled: bool
    token_hint: str | None = None
    created_at: datetime | None = None
    rotated_at: datetime | None = None


# --- computer ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ScreenSize:
    """Width and height of a screen, in pixels."""

    width: int
    height: int


@attrs.frozen(kw_only=True)
class Point:
    """A pixel position."""

    x: int
    y: int


@attrs.frozen(kw_only=True)
class Window:
    """A desktop window."""

    id: str
    title: str | None = None


@attrs.frozen(kw_only=True)
class WindowGeometry:
    """Where a window is and how big, plus the screen index it is on."""

    id: str
    x: int
    y: int
    width: int
    height: int
    screen: int | None = None


@attrs.frozen(kw_only=True)
class Screen:
    """A virtual screen (``screen-0`` .. ``screen-7``) with its VNC ports."""

    screen_id: str
    display: str | None = None
    width: int | None = None
    height: int | None = None
    vnc_port: int | None = None
    novnc_port: int | None = None


@attrs.frozen(kw_only=True)
class ScreenConnection:
    """A short-lived noVNC credential: ``token`` and ``url`` are secrets, never logged or cached."""

    screen_id: str
    port: int
    path: str
    token: SecretStr
    expires_at: datetime | None = None
    url: SecretStr | None = None
