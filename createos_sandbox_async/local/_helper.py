"""A long-lived helper inside one sandbox that starts exec commands on request.

Entering a sandbox per command (`sh` joining the cgroup, `nsenter`, `setpriv`, then the command)
costs three process starts, about 3 ms. The helper pays them once: it is started the same way,
so it is in the sandbox's cgroup and every namespace, with no capability and `no_new_privs`.
For each command it starts a child in a new session with the pipes the emulator sent
(SCM_RIGHTS); the child inherits its cgroup, namespaces, file-size cap and lack of capabilities.
It answers with a pidfd of the child, from which the emulator reads the host pid (so `killpg`,
session kills and pause work as before), and later with the exit status, since only the helper
can reap its children.

The helper runs the host's `/usr/bin/python3` (the sandbox sees the host's /usr) and is started
by a sandbox's second exec. Where that python is missing, while the helper is starting, or after
it died (a tenant may kill it like any of its processes; it is restarted, at most 5 times),
commands take the ordinary path. A command running when its helper died reports 137, its real
status being lost with the helper. Managed processes always take the ordinary path.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import weakref
from typing import TYPE_CHECKING

from ._procs import kill_command

if TYPE_CHECKING:
    from ._vm import SandboxRuntime

PYTHON = "/usr/bin/python3"
_KILLED = -9  # the status of a command whose helper died before reporting it (exit code 137)
_ANSWER_WITHIN = 5.0  # seconds for a start to be confirmed; a helper this slow is replaced
# Runs inside the sandbox as `python3 -I -S -c _BOOT <socket fd>` with HELPER on its stdin,
# started like any command, so with the file-size cap of the sandbox's disk_mib at the time,
# which its children inherit (a resize makes the emulator start a new helper). Protocol, one
# datagram each way per message:
#   helper -> b"R 0 0" once it runs (until then commands take the ordinary path);
#   emulator -> JSON {seq, argv, env} with three fds (stdin, stdout, stderr): subprocess (vfork,
#     no copy of the helper) runs it in a new session, signals restored to their defaults, in
#     /root, no other descriptor inherited (not os.posix_spawn: glibc's leaves its internal
#     signals 32 and 33 ignored in the child, and so in the command);
#   helper -> b"F seq 0" if it cannot start (the ordinary path then reports the error), else
#     b"P seq pid" with a pidfd of the child;
#   emulator -> b"A pid" once it read the child's host pid from the pidfd (a reaped pid reads
#     -1, and the emulator needs it to kill the child's session): only then may it be reaped;
#   helper -> b"E pid status" (waitstatus_to_exitcode) when that child has ended.
_BOOT = "import sys; exec(sys.stdin.read())  # createos-local exec helper"
HELPER = r"""
import array, json, os, select, signal, socket, subprocess, sys
sock = socket.socket(fileno=int(sys.argv[1]))
os.set_inheritable(sock.fileno(), False)
os.chdir("/root")
wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
children = {}  # pid -> Popen, until reaped here (never by subprocess's own cleanup)
acked = set()
sock.send(b"R 0 0")
def reap():
    for pid in list(acked):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            acked.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            children.pop(pid).returncode = code
            sock.send(b"E %d %d" % (pid, code))
while True:
    ready = select.select([sock, wake_r], [], [])[0]
    if wake_r in ready:
        while True:
            try:
                if not os.read(wake_r, 512):
                    break
            except BlockingIOError:
                break
        reap()
    if sock not in ready:
        continue
    msg, anc, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(3 * 4))
    if not msg:
        sys.exit(0)
    if msg[:1] == b"A":
        acked.add(int(msg[2:]))
        reap()
        continue
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    req = json.loads(msg)
    try:
        child = subprocess.Popen(
            req["argv"], stdin=fds[0], stdout=fds[1], stderr=fds[2], env=req["env"],
            start_new_session=True, close_fds=True, restore_signals=True,
        )
    except (OSError, ValueError, IndexError):
        child = None
    for fd in fds:
        os.close(fd)
    if child is None:
        sock.send(b"F %d 0" % req["seq"])
        continue
    children[child.pid] = child
    pidfd = os.pidfd_open(child.pid)
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))]
    sock.sendmsg([b"P %d %d" % (req["seq"], child.pid)], rights)
    os.close(pidfd)
"""


class HelperGone(Exception):
    """The helper is not running (any more), or refused this command before starting it: take
    the ordinary path."""


class HelperLost(Exception):
    """The helper went away (or stopped answering) after it was asked to start a command: the
    command may have started, so it must not be started again another way."""


class HelperProcess:
    """A command the helper started, shaped like `asyncio.subprocess.Process` for exec."""

    def __init__(
        self,
        pid: int,
        status: asyncio.Future[int],
        stdin: asyncio.StreamWriter | None,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self.pid = pid  # on the host: its session and process group have this id too
        self.transports = transports
        self.stdin = stdin
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self.returncode: int | None = None
        self._status = status

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal)."""
        self.returncode = await asyncio.shield(self._status)
        return self.returncode

    def close_pipes(self) -> None:
        """Close what is left of its pipes (the sandbox is going away)."""
        for transport in self.transports:
            transport.close()


class CommandHelper:
    """The emulator's end of one sandbox's helper."""

    def __init__(self, box: SandboxRuntime) -> None:
        self.box = box
        self.ready = False
        self.dead = False
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._seq = 0
        self._starting: dict[int, asyncio.Future[tuple[int, asyncio.Future[int]]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}  # by pid inside the sandbox
        self._pidfds: dict[int, int] = {}  # of children still running, by pid inside
        self._procs: weakref.WeakSet[HelperProcess] = weakref.WeakSet()
        self._null = -1
        self.disk_mib = box.disk_mib  # the file-size cap its children inherit

    async def start(self) -> None:
        """Start the helper inside the sandbox; it is `ready` once it says so."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            theirs.set_inheritable(True)
            self._proc = await self.box.spawn(
                [PYTHON, "-I", "-S", "-c", _BOOT, str(theirs.fileno())],
                {"PATH": "/usr/bin:/bin"},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.box.forget(self._proc.pid)  # not a command: _vm.stop ends it (and pause freezes it)
        assert self._proc.stdin is not None
        self._proc.stdin.write(HELPER.encode())  # its program, read to EOF before it runs
        self._proc.stdin.close()
        ours.setblocking(False)
        self._sock = ours
        self._null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)

    def close(self, *, final: bool = False) -> None:
        """Forget the helper (it exits on EOF, or with the sandbox); fail what waits on it.
        Commands it started keep their pipes unless `final` (the sandbox is going away); their
        exit status is lost with the helper (they report 137)."""
        self.ready = False
        self.dead = True
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._null >= 0:
            os.close(self._null)
            self._null = -1
        for fut in self._starting.values():
            if not fut.done():
                fut.set_exception(HelperLost())
        self._starting.clear()
        for pid in list(self._pidfds):
            self._unwatch(pid)
        for status in self._exits.values():
            if not status.done():
                status.set_result(_KILLED)
        self._exits.clear()
        if final:
            for proc in list(self._procs):
                proc.close_pipes()
        if self._proc is not None and self._proc.returncode is None:
            kill_command(self._proc.pid)

    async def reap(self) -> None:
        """Collect the helper's own process (after close)."""
        if self._proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._proc.wait(), 10)

    def _readable(self) -> None:
        """Answers from the helper: a started child (with its pidfd), an ended one, or EOF."""
        sock = self._sock
        while sock is not None:
            try:
                msg, anc, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(4))
            except BlockingIOError:
                return
            except OSError:
                msg, anc = b"", []
            fds = array.array("i")
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            try:
                if not msg:
                    self.close()
                    return
                try:
                    tag, first, second = msg.split()
                    int(first), int(second)
                except ValueError:  # not from our helper: stop trusting the socket
                    self.close()
                    return
                if tag == b"R":  # it runs: commands may go through it from now on
                    self.ready = not self.dead
                elif tag == b"P" and fds:
                    self._started(int(first), int(second), fds.pop(0))
                elif tag == b"F":
                    refused = self._starting.pop(int(first), None)
                    if refused is not None and not refused.done():
                        refused.set_exception(HelperGone())
                elif tag == b"E":
                    self._unwatch(int(first))
                    status = self._exits.pop(int(first), None)
                    if status is not None and not status.done():
                        status.set_result(int(second))
            finally:
                for fd in fds:
                    os.close(fd)

    def _late(self, seq: int) -> None:
        if seq in self._starting:
            self.close()

    def _child_ended(self, pid: int) -> None:
        """The child's pidfd says it exited: its status must follow soon, or the helper is
        stuck (a tenant may SIGSTOP it) and is replaced, so that no exec waits forever."""
        self._unwatch(pid)
        status = self._exits.get(pid)
        if status is not None and not status.done():
            timer = asyncio.get_running_loop().call_later(_ANSWER_WITHIN, self._no_status, pid)
            status.add_done_callback(lambda _: timer.cancel())

    def _no_status(self, pid: int) -> None:
        if pid in self._exits:
            self.close()

    def _unwatch(self, pid: int) -> None:
        pidfd = self._pidfds.pop(pid, -1)
        if pidfd >= 0:
            asyncio.get_running_loop().remove_reader(pidfd)
            os.close(pidfd)

    def _started(self, seq: int, pid: int, pidfd: int) -> None:
        """A child runs: note its host pid, watch its pidfd, let the helper reap it."""
        fut = self._starting.pop(seq, None)
        host_pid = _host_pid(pidfd)
        if host_pid <= 0:  # cannot be killed by pid from here: never let it run
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            if fut is not None and not fut.done():
                fut.set_exception(HelperLost())
            self.close()
            return
        loop = asyncio.get_running_loop()
        status: asyncio.Future[int] = loop.create_future()
        self._exits[pid] = status
        self._pidfds[pid] = pidfd
        loop.add_reader(pidfd, self._child_ended, pid)
        try:
            self._sock.send(b"A %d" % pid)  # type: ignore[union-attr]
        except OSError:
            self.close()
            return
        if fut is not None and not fut.done():
            fut.set_result((host_pid, status))

    async def spawn(self, argv: list[str], env: dict[str, str], *, stdin: bool) -> HelperProcess:
        """Start `argv` in the sandbox through the helper (HelperGone: take the other path).
        Cancelled once sent, it still waits for the start and kills the command."""
        sock = self._sock
        if sock is None or not self.ready:
            raise HelperGone()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (self._null, -1)
        mine = [out_r, err_r] + ([in_w] if stdin else [])
        self._seq += 1
        seq = self._seq
        req = {"seq": seq, "argv": argv, "env": env}
        fut: asyncio.Future[tuple[int, asyncio.Future[int]]]
        fut = asyncio.get_running_loop().create_future()
        try:
            fds = array.array("i", [in_r, out_w, err_w])
            sock.sendmsg([json.dumps(req).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            self._starting[seq] = fut
            # A helper that never answers (a tenant may SIGSTOP it) is killed: no exec hangs.
            timer = asyncio.get_running_loop().call_later(_ANSWER_WITHIN, self._late, seq)
            fut.add_done_callback(lambda _: timer.cancel())
        except OSError as exc:
            for fd in mine:
                os.close(fd)
            self.close()
            raise HelperGone() from exc
        finally:
            for fd in [out_w, err_w] + ([in_r] if stdin else []):
                os.close(fd)
        try:
            host_pid, status = await asyncio.shield(fut)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                host_pid, _ = await fut
                kill_command(host_pid)
            for fd in mine:
                os.close(fd)
            raise
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        wrap = asyncio.ensure_future(_wrap(host_pid, status, out_r, err_r, in_w))
        try:
            proc = await asyncio.shield(wrap)
        except asyncio.CancelledError:  # it runs: finish wrapping it, then kill it
            kill_command(host_pid)
            with contextlib.suppress(Exception):
                (await wrap).close_pipes()
            raise
        self._procs.add(proc)
        return proc


class _PipeReader(asyncio.StreamReaderProtocol):
    """A command's output pipe: closed at EOF (uvloop keeps a pipe open when the protocol's
    eof_received returns True, as StreamReaderProtocol's does for sockets)."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


async def _wrap(
    host_pid: int, status: asyncio.Future[int], out_r: int, err_r: int, in_w: int
) -> HelperProcess:
    """Stream objects over the pipes of a started command."""
    loop = asyncio.get_running_loop()
    readers = []
    transports: list[asyncio.BaseTransport] = []
    for fd in (out_r, err_r):
        reader = asyncio.StreamReader(limit=1 << 16, loop=loop)
        transport, _ = await loop.connect_read_pipe(
            functools.partial(_PipeReader, reader), os.fdopen(fd, "rb", 0)
        )
        transports.append(transport)
        readers.append(reader)
    writer = None
    if in_w >= 0:
        wtransport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(in_w, "wb", 0)
        )
        transports.append(wtransport)
        writer = asyncio.StreamWriter(wtransport, protocol, None, loop)
    return HelperProcess(host_pid, status, writer, readers[0], readers[1], transports)


def _host_pid(pidfd: int) -> int:
    """The pid, in our namespace, of the process a pidfd refers to (0 if unknown)."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/self/fdinfo/{pidfd}") as fh:
        for line in fh:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    return 0
