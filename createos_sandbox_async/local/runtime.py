"""Real execution: one bubblewrap "VM" per sandbox, commands entered into it with nsenter.

Each sandbox is a long-lived `bwrap` (new user/pid/ipc/uts/net/mount namespaces, host system dirs
read-only, its own writable tree at `/`, `--die-with-parent`, `--new-session`) whose pid 1 is a tiny
reaper. Every exec joins those namespaces through `nsenter`, drops all capabilities with
`setpriv`, and runs in its own process group, so a whole command tree can be killed with one
`killpg`, while daemons started with `setsid` keep running like in a VM. Pause and resume send
SIGSTOP/SIGCONT to every process of the sandbox's pid namespace; destroy kills pid 1, which makes
the kernel kill everything else in the namespace.

Nothing a sandbox starts may outlive it or the emulator. Three layers see to that:
- pid 1 holds the read end of a pipe whose only write end the emulator holds (the "lifeline"),
  and exits when it reads EOF: when the emulator closes it (destroy, a cancelled or failed boot)
  or dies in any way, even SIGKILL, even in the middle of a boot. pid 1 exiting makes the kernel
  kill every process in the sandbox's pid namespace;
- `--die-with-parent` (a parent-death signal) on bwrap and its child, once booted;
- where cgroups can be made (see `_cgroups`), every process of the sandbox, inside or outside its
  namespaces, is in the sandbox's cgroup, killed as a whole on destroy and swept by the next
  emulator if this one was killed; the cgroup also caps processes and memory.

This module holds `Runtime` (isolation probe, the bwrap command line, a fresh tree, cgroups,
booting); one sandbox's VM and its commands are `_vm.SandboxRuntime`; what a sandbox sees of
the host is in `_host`, the process-tree plumbing in `_procs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Sequence

from ._cgroups import Cgroups
from ._host import (
    DEFAULT_PATH,
    SANDBOX_UID,
    SYSTEM_LINKS,
    chown_tree,
    etc_dirs,
    etc_entries,
)
from ._vm import SandboxRuntime

log = logging.getLogger("createos_sandbox_async.local")

ISOLATIONS = ("bubblewrap", "none")
DEFAULT_MAX_PROCESSES = 4096  # per sandbox, where a pids cgroup can be made
_INSTALL_HINT = (
    "install it with `apt-get install bubblewrap` (Debian/Ubuntu; `dnf install bubblewrap` on "
    'Fedora), or opt out of isolation explicitly with LocalServer(isolation="none") / '
    "`--isolation none` (commands then run directly on this machine, unsandboxed)"
)


class IsolationUnavailableError(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


class Runtime:
    """Starts sandbox VMs. One per LocalServer; knows the isolation mode and host layout."""

    def __init__(
        self, isolation: str, state_dir: str, *, max_processes: int = DEFAULT_MAX_PROCESSES
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        self.isolation = isolation
        self.state_dir = state_dir
        self.max_processes = max_processes
        self.cgroups: Cgroups | None = None  # see setup_cgroups()
        self.is_root = os.geteuid() == 0
        self.bwrap = shutil.which("bwrap") or "bwrap"
        self.nsenter = shutil.which("nsenter") or "nsenter"
        self.setpriv = shutil.which("setpriv") or "setpriv"
        self.disable_userns = False
        self.etc_entries = etc_entries()
        self.etc_dirs = etc_dirs()
        self.system_links: dict[str, str] = {}
        self.system_binds: list[str] = ["/usr"]
        for name in SYSTEM_LINKS:
            path = f"/{name}"
            if os.path.islink(path):
                self.system_links[name] = os.readlink(path)
            elif os.path.isdir(path):
                self.system_binds.append(path)

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) files in a sandbox tree must belong to, or None when no chown is needed."""
        if self.isolation == "bubblewrap" and self.is_root:
            return (SANDBOX_UID, SANDBOX_UID)
        return None

    def ro_mounts(self) -> dict[str, str]:
        """Inside path -> host path of every read-only mount a sandbox sees."""
        if self.isolation != "bubblewrap":
            return {}
        mounts = {p: p for p in self.system_binds}
        for name in self.etc_dirs:
            mounts[f"/etc/{name}"] = f"/etc/{name}"
        return mounts

    async def probe(self) -> None:
        """Fail fast, with instructions, when isolation cannot work here."""
        if self.isolation == "none":
            log.warning(
                "createos_sandbox_async.local: isolation='none' - sandbox commands run directly on "
                "this machine as %s, with its files and network. Use only with trusted code.",
                "root" if self.is_root else "the current user",
            )
            return
        missing = [n for n in ("bwrap", "nsenter", "setpriv") if shutil.which(n) is None]
        if "bwrap" in missing:
            raise IsolationUnavailableError(f"bubblewrap (bwrap) is not installed: {_INSTALL_HINT}")
        if missing:
            raise IsolationUnavailableError(
                f"{', '.join(missing)} not found (package util-linux); install it, or "
                + _INSTALL_HINT.split(", or ", 1)[1]
            )
        proc = await asyncio.create_subprocess_exec(
            self.bwrap, "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        self.disable_userns = self.is_root and b"--disable-userns" in out
        argv = self._bwrap_argv("/", "probe", ["/bin/true"], probe=True)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": DEFAULT_PATH},
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise IsolationUnavailableError(
                f"bubblewrap cannot create namespaces here ({detail}). Enable unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1 or, on Ubuntu 24.04+, "
                "kernel.apparmor_restrict_unprivileged_userns=0), or "
                + _INSTALL_HINT.split(", or ", 1)[1]
            )

    def _bwrap_argv(
        self, root: str, hostname: str, command: Sequence[str], *, probe: bool = False
    ) -> list[str]:
        argv: list[str] = []
        if self.is_root:
            argv += [
                self.setpriv,
                f"--reuid={SANDBOX_UID}",
                f"--regid={SANDBOX_UID}",
                "--clear-groups",
                "--",
            ]
        argv += [
            self.bwrap,
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--unshare-cgroup-try",
            "--uid",
            "0",
            "--gid",
            "0",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            hostname,
        ]
        if self.disable_userns:
            argv.append("--disable-userns")
        if probe:
            argv += ["--ro-bind", "/", "/"]
        else:
            argv += ["--bind", root, "/"]
            for path in self.system_binds:
                argv += ["--ro-bind", path, path]
            for name in self.etc_dirs:
                argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
            argv += ["--chdir", "/root"]
        argv += ["--proc", "/proc", "--dev", "/dev", "--as-pid-1", "--", *command]
        return argv

    def prepare_tree(self, root: str, hostname: str) -> None:
        """A fresh sandbox filesystem: a small Linux skeleton, owned by the sandbox user."""
        os.makedirs(root, mode=0o755)
        for d in (
            "etc",
            "root",
            "tmp",
            "var",
            "var/tmp",
            "run",
            "home",
            "workspace",
            "usr",
            "proc",
            "dev",
            "mnt",
            "opt",
            "srv",
        ):
            os.mkdir(os.path.join(root, d), 0o700 if d == "root" else 0o755)
        for d in ("tmp", "var/tmp"):
            os.chmod(os.path.join(root, d), 0o1777)
        if self.isolation == "bubblewrap":
            for name, target in self.system_links.items():
                os.symlink(target, os.path.join(root, name))
            os.mkdir(os.path.join(root, "etc", "ssl"))
        files: list[tuple[str, str, bytes | str]] = list(self.etc_entries)
        files += [
            (
                "etc/passwd",
                "file",
                b"root:x:0:0:root:/root:/bin/bash\n"
                b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            ),
            ("etc/group", "file", b"root:x:0:\nnogroup:x:65534:\n"),
            ("etc/hostname", "file", f"{hostname}\n".encode()),
            (
                "etc/hosts",
                "file",
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n".encode(),
            ),
            ("etc/resolv.conf", "file", b"# no network inside the local emulator\n"),
            ("etc/nsswitch.conf", "file", b"passwd: files\ngroup: files\nhosts: files dns\n"),
            ("etc/mtab", "link", "../proc/self/mounts"),
        ]
        for rel, kind, payload in files:
            path = os.path.join(root, rel)
            with contextlib.suppress(FileExistsError):
                if kind == "link":
                    assert isinstance(payload, str)
                    os.symlink(payload, path)
                else:
                    assert isinstance(payload, bytes)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                    try:
                        os.write(fd, payload)
                    finally:
                        os.close(fd)
        owner = self.owner
        if owner is not None:
            chown_tree(root, owner)

    def setup_cgroups(self) -> None:
        """Make this emulator's cgroups where the machine allows it (after killing what dead
        emulators left in theirs); without them sandboxes run unlimited in processes and
        memory, and are tracked by pid namespace only."""
        self.cgroups = Cgroups.setup(os.path.basename(self.state_dir).rsplit("-", 1)[-1])
        if self.cgroups is None:
            log.info("no cgroup can be made here: sandbox processes and memory are not limited")

    @property
    def enforced(self) -> frozenset[str]:
        """Which per-sandbox limits hold here: "processes", "memory" (cgroups), "file_size"."""
        have = self.cgroups.controllers if self.cgroups is not None else frozenset()
        names = {"pids": "processes", "memory": "memory"}
        return frozenset({names[c] for c in have} | {"file_size"})

    def close(self) -> None:
        """Kill anything left in this emulator's cgroups and remove them (blocking)."""
        if self.cgroups is not None:
            self.cgroups.close()
            self.cgroups = None

    async def start(
        self,
        sandbox_id: str,
        root: str,
        hostname: str,
        *,
        mem_mib: int | None = None,
        disk_mib: int | None = None,
    ) -> SandboxRuntime:
        """Boot a sandbox VM over an existing tree and wait until it is ready for commands.
        `mem_mib` caps its memory (where a memory cgroup can be made), `disk_mib` the size of
        any one file its commands write."""
        box = SandboxRuntime(self, sandbox_id, root)
        box.disk_mib = disk_mib
        if self.cgroups is not None:
            memory = (mem_mib or 1 << 20) * 1024 * 1024
            try:
                box.cgroup = self.cgroups.sandbox(
                    sandbox_id, pids_max=self.max_processes, memory_bytes=memory
                )
            except OSError as exc:
                log.warning("sandbox %s runs without its cgroup (no limits): %s", sandbox_id, exc)
        try:
            await box.boot(hostname)
        except BaseException:
            if box.cgroup is not None:  # boot() killed its processes; remove the directories
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(asyncio.to_thread(box.cgroup.remove))
            raise
        return box


__all__ = [
    "DEFAULT_MAX_PROCESSES",
    "ISOLATIONS",
    "IsolationUnavailableError",
    "Runtime",
    "SandboxRuntime",
]
