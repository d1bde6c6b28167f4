"""Per-sandbox control groups: where the machine lets the emulator make them, every process a
sandbox starts (its VM and every command entered into it) joins the sandbox's cgroup, which

- finds every one of them, wherever it was reparented to, so destroy, a cancelled boot, shutdown
  and the next emulator's sweep can kill them all;
- caps how many processes the sandbox may run at once (`pids.max`) and how much memory it may
  use (`memory.limit_in_bytes` / `memory.max`, no swap beyond it).

Both cgroup versions are used as they come: v1 controllers mounted on their own (`pids`,
`memory`) and the v2 hierarchy (a plain v2 group still tracks processes and has `cgroup.kill`;
its controllers are used only if they can be enabled for our subtree). Anything that cannot be
created is skipped: the emulator then works without that limit (see docs/emulator.md).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import time

log = logging.getLogger("createos_sandbox_async.local")

PREFIX = "createos-local-"
_serial = itertools.count(1)  # several emulators may share a process and a state directory
_WANTED = ("pids", "memory")
# Join the sandbox's cgroups (each file named before `--`), cap the size of any file written
# (ulimit -f, in 512-byte blocks), then become the real command: one small shell, no Python.
JOIN_SCRIPT = (
    'ulimit -f "$1" || exit 126; shift; '
    'while [ "$1" != -- ]; do echo $$ >"$1" || exit 126; shift; done; shift; exec "$@"'
)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _own_dirs() -> list[tuple[int, str, tuple[str, ...]]]:
    """(version, this process's cgroup directory, controllers it may give children) for each
    mounted hierarchy that matters here: v1 `pids` and `memory`, and v2."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in _read("/proc/self/cgroup").splitlines():
            hid, ctrls, path = line.split(":", 2)
            if hid == "0" and not ctrls:
                paths[""] = path
            for name in ctrls.split(","):
                if name in _WANTED:
                    paths[name] = path
    found: dict[str, tuple[int, str, tuple[str, ...]]] = {}
    with contextlib.suppress(OSError):
        for line in _read("/proc/self/mountinfo").splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            root, mnt, fstype, opts = fields[3], fields[4], tail[0], tail[2].split(",")
            if fstype == "cgroup":
                keys = [c for c in _WANTED if c in opts]
            elif fstype == "cgroup2":
                keys = [""]
            else:
                continue
            for key in keys:
                if key in found or key not in paths:
                    continue
                path = paths[key]
                if root != "/":
                    if not (path == root or path.startswith(root + "/")):
                        continue
                    path = path[len(root) :]
                own = mnt + path if path != "/" else mnt
                found[key] = (1 if key else 2, own, (key,) if key else ())
    out = list(found.values())
    for i, (version, own, _) in enumerate(out):
        if version == 2:
            try:
                names = _read(f"{own}/cgroup.controllers").split()
                offered = tuple(c for c in names if c in _WANTED)
            except OSError:
                offered = ()
            out[i] = (2, own, tuple(c for c in offered if c not in found))
    return out


class Cgroups:
    """This emulator's cgroup directories (one per usable hierarchy) and its sandboxes' groups."""

    def __init__(self, bases: list[tuple[int, str, tuple[str, ...]]]) -> None:
        self.bases = bases
        self.controllers = frozenset(c for _, _, cs in bases for c in cs)

    @classmethod
    def setup(cls, tag: str) -> Cgroups | None:
        """Make this emulator's directories (after sweeping those of dead emulators), or None
        where no hierarchy lets us (not root, no delegation)."""
        bases = []
        for version, own, controllers in _own_dirs():
            sweep_stale(own)
            base = os.path.join(own, f"{PREFIX}{tag}-{next(_serial)}-{os.getpid()}")
            try:
                os.mkdir(base, 0o755)
            except OSError:
                continue
            if version == 2 and controllers:
                controllers = _enable_v2(own, base, controllers)
            bases.append((version, base, controllers))
        if not bases:
            return None
        return cls(bases)

    def sandbox(self, sandbox_id: str, *, pids_max: int, memory_bytes: int) -> SandboxCgroup:
        """The cgroups of one sandbox, with its limits written (OSError if any step fails)."""
        made: list[str] = []
        try:
            for version, base, controllers in self.bases:
                path = os.path.join(base, sandbox_id)
                os.mkdir(path, 0o755)
                made.append(path)
                if "pids" in controllers:
                    _write(f"{path}/pids.max", str(pids_max))
                if "memory" in controllers and version == 1:
                    _write(f"{path}/memory.limit_in_bytes", str(memory_bytes))
                    with contextlib.suppress(FileNotFoundError):  # no swap accounting
                        _write(f"{path}/memory.memsw.limit_in_bytes", str(memory_bytes))
                elif "memory" in controllers:
                    _write(f"{path}/memory.max", str(memory_bytes))
                    with contextlib.suppress(FileNotFoundError):
                        _write(f"{path}/memory.swap.max", "0")
        except OSError:
            SandboxCgroup(made).remove()
            raise
        return SandboxCgroup(made)

    def close(self) -> None:
        """Kill whatever is still in any of our groups, then remove them all."""
        for _, base, _ in self.bases:
            _remove_tree(base)


class SandboxCgroup:
    """One sandbox's directories, one per hierarchy."""

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid to in order to join (see JOIN_SCRIPT)."""
        return [f"{d}/cgroup.procs" for d in self.dirs]

    def pids(self) -> list[int]:
        """Every live process in the sandbox's groups."""
        out: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                out.update(int(p) for p in _read(f"{d}/cgroup.procs").split())
        return sorted(out)

    def kill(self, rounds: int = 3) -> None:
        """SIGKILL everything in the groups (cgroup.kill where the kernel has it; else rounds of
        kill until nothing is left: a process limit keeps any fork race short). A few rounds
        only by default (this runs on the event loop); `remove()` finishes the job."""
        _kill_dirs(self.dirs, rounds)

    def remove(self) -> None:
        """Kill what is left and remove the directories."""
        _kill_dirs(self.dirs)
        for d in self.dirs:
            _rmdir(d)


def _kill_dirs(dirs: list[str], rounds: int = 100) -> None:
    for d in dirs:
        with contextlib.suppress(OSError):
            _write(f"{d}/cgroup.kill", "1")
    for _ in range(rounds):
        left = False
        for d in dirs:
            try:
                pids = [int(p) for p in _read(f"{d}/cgroup.procs").split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                left = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if not left:
            return
        time.sleep(0.002)


def _rmdir(path: str) -> None:
    """rmdir, retried briefly while killed processes finish exiting (EBUSY)."""
    for _ in range(500):  # ~1 s
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.debug("cannot remove cgroup %s: %s", path, exc)
                return
        time.sleep(0.002)
    log.warning("cgroup %s still busy; left behind (the next emulator removes it)", path)


def _remove_tree(base: str) -> None:
    """Kill and remove a base directory and every sandbox group in it."""
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            path = os.path.join(base, name)
            if os.path.isdir(path):
                SandboxCgroup([path]).remove()
    _kill_dirs([base])
    _rmdir(base)


def _enable_v2(own: str, base: str, controllers: tuple[str, ...]) -> tuple[str, ...]:
    """Turn v2 controllers on for our subtree; those the kernel refuses (a group holding
    processes cannot give controllers to children) are dropped."""
    got = []
    for name in controllers:
        try:
            enabled = _read(f"{own}/cgroup.subtree_control").split()
            if name not in enabled:
                _write(f"{own}/cgroup.subtree_control", f"+{name}")
            _write(f"{base}/cgroup.subtree_control", f"+{name}")
        except OSError:
            continue
        got.append(name)
    return tuple(got)


def sweep_stale(own: str) -> None:
    """Kill and remove the groups of emulators that died without cleaning up (SIGKILL, OOM):
    only directories named by this module whose recorded process is gone."""
    try:
        names = [n for n in os.listdir(own) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid > 0 and not os.path.exists(f"/proc/{pid}"):
            _remove_tree(os.path.join(own, name))
