"""One sandbox's VM, as runtime.py describes it: its bwrap process and lifeline, the commands
entered into it (nsenter, setpriv, own process group, its cgroup and file-size cap), pause,
resume, stop, and its tree on disk."""

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
from typing import TYPE_CHECKING

from ._cgroups import JOIN_SCRIPT, SandboxCgroup
from ._fs import View, open_in_root
from ._helper import PYTHON as HELPER_PYTHON
from ._helper import CommandHelper, HelperGone, HelperProcess
from ._host import DEFAULT_PATH, INIT_SCRIPT, SANDBOX_MARKER, remove_tree
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

if TYPE_CHECKING:
    from .runtime import Runtime

Command = asyncio.subprocess.Process | HelperProcess  # what run_command starts
log = logging.getLogger("createos_sandbox_async.local")
_HELPER_STARTS = 5  # per sandbox: a tenant that keeps killing its helper gets the slow path


def _consume(task: asyncio.Task[None]) -> None:
    """A helper that failed to start is logged at DEBUG; commands take the ordinary path."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("sandbox command helper did not start: %r", task.exception())


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
        self.helper: CommandHelper | None = None  # forks exec commands inside (see _helper)
        self._helper_task: asyncio.Task[None] | None = None
        self._helper_starts = 0
        self._execs = 0

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

    async def run_command(
        self, argv: Sequence[str], env: Mapping[str, str], *, stdin: bool
    ) -> Command:
        """An exec's command: through the sandbox's helper once it runs (see `_helper`), else
        entered the ordinary way. The second exec of a sandbox starts its helper in the
        background (a sandbox that runs one command never pays for a helper)."""
        self._execs += 1
        helper = self.helper
        if helper is not None and helper.ready and helper.disk_mib != self.disk_mib:
            helper.close()  # resized: its children would inherit the old file-size cap
        if helper is not None and helper.ready:
            try:
                proc = await helper.spawn(list(argv), dict(env), stdin=stdin)
            except HelperGone:
                pass
            else:
                self.groups.add(proc.pid)
                return proc
        if (helper is None or helper.dead) and self._helper_wanted():
            self._start_helper()
        return await self.spawn(
            argv, env, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL
        )

    def _helper_wanted(self) -> bool:
        return (
            self.runtime.isolation == "bubblewrap"
            and not self.dead
            and self._helper_task is None
            and self._execs >= 2
            and self._helper_starts < _HELPER_STARTS
            and os.path.exists(HELPER_PYTHON)
        )

    def _start_helper(self) -> None:
        """Start a helper in the background; until it runs, commands take the ordinary path."""
        helper = CommandHelper(self)
        self._helper_starts += 1

        async def start() -> None:
            try:
                await helper.start()
            except BaseException:
                helper.close()
                await helper.reap()
                raise
            finally:
                self._helper_task = None
            old, self.helper = self.helper, helper
            if old is not None:
                await old.reap()

        self._helper_task = asyncio.ensure_future(start())
        self._helper_task.add_done_callback(_consume)

    async def _stop_helper(self) -> None:
        task = self._helper_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.helper is not None:
            self.helper.close(final=True)
            await self.helper.reap()

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
        await self._stop_helper()
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
