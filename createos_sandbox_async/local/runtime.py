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
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from ._cgroups import JOIN_SCRIPT, Cgroups, SandboxCgroup
from ._fs import View, open_in_root
from ._host import (
    DEFAULT_PATH,
    INIT_SCRIPT,
    SANDBOX_MARKER,
    SANDBOX_UID,
    SYSTEM_LINKS,
    chown_tree,
    etc_dirs,
    etc_entries,
    remove_tree,
)
from ._procs import (
    children,
    closing_inherited_fds,
    kill_command,
    kill_group,
    launch,
    pids_with_environ,
    proc_state,
    read_head,
    read_until,
)

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


class SandboxRuntime:
    """The running side of one sandbox: its VM process, tree, and the commands inside it."""

    def __init__(self, runtime: Runtime, sandbox_id: str, root: str) -> None:
        self.runtime = runtime
        self.sandbox_id = sandbox_id
        self.root = root
        virtual = ("/proc", "/dev") if runtime.isolation == "bubblewrap" else ()
        self.view = View(root, runtime.ro_mounts(), virtual)
        self.init: subprocess.Popen[bytes] | None = None
        self.on_death: Callable[[], None] | None = None  # the VM died on its own
        self.cgroup: SandboxCgroup | None = None
        self.disk_mib: int | None = None  # caps any one file a command writes (RLIMIT_FSIZE)
        self._lifeline = -1  # write end of pid 1's stdin: closing it ends the sandbox
        self._exited: asyncio.Future[None] | None = None
        self._pidfd = -1
        self.init_pid = 0  # host pid of the namespace's pid 1
        self.pidns: tuple[int, int] | None = None
        self.groups: set[int] = set()  # process groups of commands started here
        self.paused = False
        self.dead = False
        self._rootfd = -1

    @property
    def rootfd(self) -> int:
        """An O_PATH descriptor of the tree, the anchor of every file API lookup."""
        if self._rootfd < 0:
            self._rootfd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._rootfd

    async def boot(self, hostname: str) -> None:
        """Start the VM (bubblewrap) and wait for its pid 1 to say it is ready.

        The VM is a plain Popen watched through a pidfd (no asyncio child-watcher thread per
        sandbox); its stderr goes to a log file outside the tree, read only if the boot fails.
        """
        rt = self.runtime
        if rt.isolation != "bubblewrap":
            return
        loop = asyncio.get_running_loop()
        info_r, info_w = os.pipe()
        ready_r, ready_w = os.pipe()
        life_r, self._lifeline = os.pipe()
        log_path = os.path.join(rt.state_dir, "logs", f"{self.sandbox_id}.stderr")
        try:
            argv = rt._bwrap_argv(self.root, hostname, ["/bin/sh", "-c", INIT_SCRIPT])
            argv.insert(argv.index("--as-pid-1"), "--info-fd")
            argv.insert(argv.index("--as-pid-1"), str(info_w))
            self.init = launch(self.join_argv() + argv, life_r, ready_w, log_path, info_w)
            os.close(info_w)
            os.close(ready_w)
            os.close(life_r)
            info_w = ready_w = life_r = -1
            line = await read_until(ready_r, b"\n", 30.0)
            if line != b"ready\n":
                self._abort_boot()
                err = read_head(log_path)
                raise RuntimeError(f"sandbox VM failed to start: {err or 'no output'}")
            raw = await read_until(info_r, b"}", 5.0)
            self.init_pid = int(json.loads(raw)["child-pid"])
            st = os.stat(f"/proc/{self.init_pid}/ns/pid")
            self.pidns = (st.st_dev, st.st_ino)
            self._pidfd = os.pidfd_open(self.init.pid)
            self._exited = loop.create_future()
            loop.add_reader(self._pidfd, self._vm_exited)
        except BaseException:
            # A failed or cancelled boot (server shutdown) must not leave an unwatched VM behind.
            if self._exited is None:
                self._abort_boot()
            raise
        finally:
            for fd in (info_r, info_w, ready_r, ready_w, life_r):
                if fd >= 0:
                    os.close(fd)

    def _abort_boot(self) -> None:
        """Kill a VM caught at any point of its boot, and everything it started (blocking, but
        for milliseconds). bwrap's child (the sandbox's pid 1) may exist before bwrap reports
        it and may not have its parent-death signal yet: freeze bwrap so it forks no more, kill
        its child, then bwrap. The lifeline and the cgroup cover the rest."""
        self._cut_lifeline()
        if self.cgroup is not None:
            self.cgroup.kill()
        init = self.init
        if init is None or init.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(init.pid, signal.SIGSTOP)
        for _ in range(1000):  # ~1 s: stopping takes microseconds unless the machine stalls
            if proc_state(init.pid) in "TtZX":
                break
            time.sleep(0.001)
        for kid in children(init.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(kid, signal.SIGKILL)
        init.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            init.wait(timeout=5)  # SIGKILLed: this only reaps

    def _cut_lifeline(self) -> None:
        """Close our end of pid 1's lifeline: pid 1 then exits on its own."""
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1

    def join_argv(self) -> list[str]:
        """The prefix that puts a process into this sandbox's cgroups and caps file sizes."""
        blocks = "unlimited" if not self.disk_mib else str(self.disk_mib * 2048)
        files = self.cgroup.procs_files if self.cgroup is not None else []
        return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", blocks, *files, "--"]

    def _vm_exited(self) -> None:
        """The VM process ended: reap it, and report an unexpected death."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if self.init is not None:
            self.init.wait()  # it has exited: this only reaps
        expected = self.dead
        self.dead = True
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        if not expected and self.on_death is not None:
            self.on_death()

    def command_argv(self, argv: Sequence[str], *, pty: bool = False) -> list[str]:
        """The host argv that runs `argv` inside this sandbox with no capabilities."""
        rt = self.runtime
        if rt.isolation != "bubblewrap":
            return self.join_argv() + (["setsid", "-c"] if pty else []) + list(argv)
        creds = ["--preserve-credentials"] if not rt.is_root else ["-S", "0", "-G", "0"]
        enter = [
            rt.nsenter,
            "-t",
            str(self.init_pid),
            "-U",
            "-m",
            "-p",
            "-i",
            "-u",
            "-n",
            "-C",
            "-r",
            "-w",
            *creds,
            "--",
        ]
        tty = ["/usr/bin/setsid", "-c"] if pty else []
        drop = [
            "/usr/bin/setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ]
        return self.join_argv() + enter + tty + drop + list(argv)

    def resolve_command(self, cmd: str, env: Mapping[str, str]) -> str | None:
        """Why `cmd` cannot start (agent-style message), or None when it will."""
        if self.runtime.isolation != "bubblewrap":
            if shutil.which(cmd, path=env.get("PATH", DEFAULT_PATH)) is None:
                return f'exec: "{cmd}": executable file not found in $PATH'
            return None
        candidates = (
            [cmd]
            if "/" in cmd
            else [f"{d.rstrip('/')}/{cmd}" for d in env.get("PATH", DEFAULT_PATH).split(":") if d]
        )
        for cand in candidates:
            if not cand.startswith("/"):
                cand = "/root/" + cand
            if self._is_executable(cand):
                return None
        if "/" in cmd:
            return f"fork/exec {cmd}: no such file or directory"
        return f'exec: "{cmd}": executable file not found in $PATH'

    def _is_executable(self, inside: str) -> bool:
        try:
            path = self.view.canonical(self.rootfd, inside)
            host = self.view.ro_host_path(path)
            if host is not None:
                st = os.stat(host)
            else:
                fd = open_in_root(self.rootfd, path, os.O_PATH)
                try:
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    def base_env(self) -> dict[str, str]:
        """HOME and PATH as a fresh login would have them."""
        if self.runtime.isolation != "bubblewrap":
            return {"HOME": os.path.join(self.root, "root"), "PATH": DEFAULT_PATH}
        return {"HOME": "/root", "PATH": DEFAULT_PATH}

    async def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdin: int | None,
        stdout: int | None = asyncio.subprocess.PIPE,
        stderr: int | None = asyncio.subprocess.PIPE,
        pty: bool = False,
        pass_fds: tuple[int, ...] = (),
    ) -> asyncio.subprocess.Process:
        """Start a command inside the sandbox in its own process group (killable as one tree)."""
        new_session = not (pty and self.runtime.isolation != "bubblewrap")
        full, new_session = closing_inherited_fds(
            self.command_argv(argv, pty=pty), pass_fds, new_session
        )
        cwd = None
        if self.runtime.isolation != "bubblewrap":
            # no namespace holds the command: a marker variable finds its daemons again
            cwd = os.path.join(self.root, "root")
            env = {**env, SANDBOX_MARKER: self.sandbox_id}
        start = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *full,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=dict(env),
                cwd=cwd,
                start_new_session=new_session,
                pass_fds=pass_fds,
            )
        )
        try:
            proc = await asyncio.shield(start)
        except asyncio.CancelledError:
            # The fork happens anyway (asyncio alone would kill only nsenter, not the command it
            # forked): let it finish, then kill the whole command, so a request cancelled here
            # leaves nothing running.
            with contextlib.suppress(Exception):
                proc = await start
                kill_command(proc.pid)
                await asyncio.wait_for(proc.wait(), 10)
            raise
        self.groups.add(proc.pid)
        return proc

    def forget(self, pgid: int) -> None:
        """A command finished: stop tracking its process group."""
        self.groups.discard(pgid)

    def namespace_pids(self) -> list[int]:
        """Host pids of every process inside this sandbox's pid namespace (isolation "none":
        every process still carrying this sandbox's marker variable, daemons included)."""
        if self.runtime.isolation != "bubblewrap":
            return pids_with_environ(f"{SANDBOX_MARKER}={self.sandbox_id}".encode())
        if self.pidns is None:
            return []
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                st = os.stat(f"/proc/{name}/ns/pid")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == self.pidns:
                out.append(int(name))
        return out

    def _signal_all(self, sig: int) -> None:
        seen: set[int] = set()
        for _ in range(5):  # repeat: a process may fork while we walk /proc
            pids = [p for p in self.namespace_pids() if p not in seen]
            if not pids:
                break
            for pid in pids:
                seen.add(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        for pgid in list(self.groups):
            kill_group(pgid, sig)

    def pause(self) -> None:
        """Freeze every process of the sandbox (SIGSTOP)."""
        self._signal_all(signal.SIGSTOP)
        self.paused = True

    async def wait_stopped(self, limit: float = 2.0) -> bool:
        """Wait (bounded) until SIGSTOP has taken effect on every process of the sandbox, so a
        fork copies a quiescent tree."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            running = [p for p in self.namespace_pids() if proc_state(p) not in "TtZX"]
            if not running:
                return True
            if loop.time() > deadline:
                return False
            for pid in running:  # forked since the first pass
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(0.002)

    def resume(self) -> None:
        """Thaw every process of the sandbox (SIGCONT)."""
        self._signal_all(signal.SIGCONT)
        self.paused = False

    async def stop(self) -> None:
        """Kill everything that runs in the sandbox and wait for the VM to be gone."""
        self.dead = True
        self._cut_lifeline()
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.runtime.isolation != "bubblewrap":
            self._signal_all(signal.SIGKILL)  # no pid 1 to take the rest down with it
        for pgid in list(self.groups):
            kill_group(pgid)
            kill_group(pgid, signal.SIGCONT)
        self.groups.clear()
        if self.init is not None:
            kill_group(self.init.pid)
            if self.init_pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self.init_pid, signal.SIGKILL)
            if self._exited is not None:
                await self._exited
            else:
                await asyncio.to_thread(self.init.wait)
        if self._rootfd >= 0:
            os.close(self._rootfd)
            self._rootfd = -1

    def remove_tree(self) -> None:
        """Delete the sandbox's files and its cgroups (blocking; run it in a thread)."""
        remove_tree(self.root)
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    @staticmethod
    async def copy_tree(src: str, dst: str) -> None:
        """Copy a (paused) tree for a fork: `cp -a --reflink=auto` keeps owners, shares blocks."""
        proc = await asyncio.create_subprocess_exec(
            "cp",
            "-a",
            "--reflink=auto",
            src,
            dst,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await proc.communicate()
        except BaseException:  # server shutdown: stop writing into a tree about to be removed
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if proc.returncode != 0 and not _is_dir(dst):
            raise OSError(errno.EIO, "copying the sandbox tree failed: " + err.decode().strip())


def _is_dir(path: str) -> bool:
    return os.path.isdir(path)
