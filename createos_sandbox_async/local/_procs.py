"""Host-side process utilities: start the VM process, read its pipes without blocking the loop,
wait for an exit without waiting for orphaned pipes, and find and kill whole process trees
(groups, sessions, children) through /proc. Nothing here knows about sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from ._host import DEFAULT_PATH

# Closes every descriptor above 2 except those listed in $0, then runs "$@" (same pid).
_CLOSE_FDS_SCRIPT = (
    'for f in /proc/self/fd/*; do n=${f##*/}; case " $0 " in *" $n "*) continue;; esac; '
    '[ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@"'
)


def launch(
    argv: list[str], stdin: int, stdout: int, log_path: str, keep_fd: int
) -> subprocess.Popen[bytes]:
    """Fork/exec the VM (the same synchronous call asyncio makes), stderr to a log file."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=log,
            pass_fds=(keep_fd,),
            start_new_session=True,
            env={"PATH": DEFAULT_PATH},
        )


def read_head(path: str) -> str:
    """The first few KiB of a log file, as text."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4096).decode(errors="replace").strip()
    except OSError:
        return ""


async def read_until(fd: int, end: bytes, timeout: float) -> bytes:
    """Read a pipe without blocking the loop until `end` is seen, EOF, or `timeout`."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = b""
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        nonlocal data
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        data += chunk
        if (not chunk or end in data) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)
    return data


async def wait_exited(proc: asyncio.subprocess.Process) -> int:
    """The exit status as soon as the process exits, even while an orphan still holds its pipes
    (asyncio's `Process.wait()` only returns once every pipe is closed)."""
    if proc.returncode is not None:
        return proc.returncode
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return await _reaped_status(proc)  # exited and reaped before we looked
    except (OSError, AttributeError):
        return await proc.wait()
    try:
        done: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(pidfd, exited)
        try:
            await done
        finally:
            loop.remove_reader(pidfd)
        try:
            flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
            info = os.waitid(os.P_PIDFD, pidfd, flags)  # noqa: ASYNC222 - it has exited
        except ChildProcessError:
            info = None  # reaped by asyncio's child watcher meanwhile
        if info is None:
            return await _reaped_status(proc)
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status
    finally:
        os.close(pidfd)


async def _reaped_status(proc: asyncio.subprocess.Process) -> int:
    """The exit status of a process asyncio's child watcher has already reaped.

    The watcher (a thread on Python 3.11) reaps first and posts the status to the loop a moment
    later, so a fast command can be gone before `wait_exited` looks at it. `Process.wait()` is no
    substitute: it also waits for the pipes, which an orphaned child may hold for minutes.
    """
    for _ in range(10_000):  # ~10 s: the status is one loop callback away
        if proc.returncode is not None:
            return proc.returncode
        await asyncio.sleep(0.001)
    return await proc.wait()


def closing_inherited_fds(
    argv: list[str], keep: Sequence[int], new_session: bool
) -> tuple[list[str], bool]:
    """`argv` and `start_new_session` that start it without descriptors it should not inherit.

    asyncio's own loops spawn with `close_fds=True`. uvloop does not implement `close_fds`: the
    child inherits every inheritable descriptor, among them uvloop's copies of the child's own
    pipe ends, so a daemon a command leaves behind (`nohup srv >/dev/null &`) would hold the
    command's output open and a buffered exec would never end. Under such a loop bash (POSIX sh
    cannot name descriptors above 9) closes them, all but `keep`, then execs `argv` in place.
    The new session, if any, is made after that by `setsid` (same pid): bash as a session
    leader would make a terminal on its stdin the session's controlling terminal, which a pty
    command's own `setsid -c` then could not take.
    """
    if isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop):
        return argv, new_session
    kept = " ".join(str(fd) for fd in keep) or "-"
    session = [_tool("setsid")] if new_session else []
    return [_tool("bash"), "-c", _CLOSE_FDS_SCRIPT, kept, *session, *argv], False


@functools.cache
def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """killpg that tolerates a group that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def session_members(sid: int) -> list[int]:
    """Host pids whose session id is `sid` (the whole tree of one command, setpgid included)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            out.append(int(name))
    return out


def kill_tree(leader: int) -> None:
    """SIGKILL a command's process group and every process left in its session."""
    kill_group(leader)
    for pid in session_members(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def pids_with_environ(entry: bytes) -> list[int]:
    """Host pids of this user's processes whose environment holds `entry` (NAME=value)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if env.startswith(entry + b"\0") or b"\0" + entry + b"\0" in env:
            out.append(int(name))
    return out


def children(pid: int) -> list[int]:
    """Child pids of a process (procfs, never blocks)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(k) for k in fh.read().split()]
    except (OSError, ValueError):
        return []


def kill_command(pid: int) -> None:
    """SIGKILL everything `SandboxRuntime.spawn` started: the helper's group and session, and
    the session a PTY command makes for itself."""
    for kid in children(pid):
        kill_tree(kid)
    kill_tree(pid)


def proc_state(pid: int) -> str:
    """The one-letter scheduler state of a process ('X' when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return "X"
    return chr(data[data.rfind(b")") + 2])
