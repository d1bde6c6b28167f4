"""Managed processes: commands (pipes or a PTY) that outlive client connections, with numbered,
replayable output (`seq`), input, signals, resize and long-poll waits (WIRE §13)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import os
import signal
import struct
import termios
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _ids
from ._bodies import validate_envs
from ._http import (
    argv_problem,
    check_no_nul,
    dumps,
    fail,
    json_body,
    ok,
    opt_int,
    opt_str,
    opt_str_list,
    opt_str_map,
    prune,
    query_int,
)
from ._procs import (
    children,
    kill_command,
    kill_group,
    read_until,
    session_members,
    wait_exited,
)
from .faults import StreamEnded
from .runtime import SandboxRuntime

if TYPE_CHECKING:
    from .app import Emulator
    from .state import Sandbox

RETAIN_BYTES = 16 * 1024 * 1024
SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH")
_HEARTBEAT = b'{"type":"heartbeat"}\n'
_DEFAULT_WAIT_MS = 30_000
_WRAPPER = (
    'echo $$ >&"$0"; eval "exec $0>&-"; '
    'if [ -n "$1" ]; then cd -- "$1" || exit 127; fi; shift; exec "$@"'
)


class ManagedProcess:
    """One managed process and its retained output window."""

    def __init__(
        self, runtime: SandboxRuntime, kind: str, cmd: str, args: list[str], cwd: str | None
    ) -> None:
        self.id = _ids.new_id("proc")
        self.runtime = runtime
        self.kind = kind
        self.cmd = cmd
        self.args = args
        self.cwd = cwd
        self.created_at: datetime = _ids.now()
        self.finished_at: datetime | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.leader = 0  # host pid of the command itself
        self.ns_pid = 0  # its pid inside the sandbox
        self.session = 0  # host session id shared by the command tree
        self.master = -1  # PTY master
        self.state = "starting"
        self.exit_code: int | None = None
        self.signal: str | None = None
        self.frames: list[tuple[int, str, bytes]] = []
        self.seq = 0
        self.retained = 0
        self.input_seq = 0
        self.stdin_closed = False
        self.exited = asyncio.Event()
        self.changed = asyncio.Event()
        self.rows = 24
        self.cols = 80
        self._pumps: list[asyncio.Task[None]] = []
        self._watch: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self, argv: list[str], env: dict[str, str]) -> None:
        """Spawn it and start collecting output."""
        loop = asyncio.get_running_loop()
        pid_r, pid_w = os.pipe()
        # The wrapper reports the command's own pid before exec'ing it, so the view has a pid
        # even for a command that exits at once; it also applies `cwd`.
        argv = ["/bin/bash", "-c", _WRAPPER, str(pid_w), self.cwd or "", *argv]
        try:
            if self.kind == "pty":
                master, slave = os.openpty()
                self.master = master
                self._winsize()
                try:
                    self.proc = await self.runtime.spawn(
                        argv,
                        env,
                        stdin=slave,
                        stdout=slave,
                        stderr=slave,
                        pty=True,
                        pass_fds=(pid_w,),
                    )
                finally:
                    os.close(slave)
                os.set_blocking(master, False)
                done: asyncio.Future[None] = loop.create_future()
                loop.add_reader(master, self._read_pty, done)
                self._pumps = [asyncio.ensure_future(_await(done))]
            else:
                self.proc = await self.runtime.spawn(
                    argv, env, stdin=asyncio.subprocess.PIPE, pass_fds=(pid_w,)
                )
                self._pumps = [
                    asyncio.ensure_future(self._pump(self.proc.stdout, "stdout")),
                    asyncio.ensure_future(self._pump(self.proc.stderr, "stderr")),
                ]
            os.close(pid_w)
            pid_w = -1
            self.ns_pid = await _read_pid(pid_r)
        finally:
            os.close(pid_r)
            if pid_w >= 0:
                os.close(pid_w)
        self._find_leader()
        self.state = "running"
        self._watch = asyncio.ensure_future(self._wait_exit())

    def _find_leader(self) -> None:
        """Learn the host pid of the command (nsenter forks it) for signals and tree checks."""
        assert self.proc is not None
        if self.runtime.runtime.isolation != "bubblewrap":
            self.leader = self.session = self.proc.pid
            return
        kids = children(self.proc.pid)
        if kids:
            self.leader = kids[0]
        else:
            for pid in self.runtime.namespace_pids():
                if _ns_pid(pid) == self.ns_pid:
                    self.leader = pid
                    break
        self.session = self.leader if self.kind == "pty" else self.proc.pid

    def _winsize(self) -> None:
        fcntl.ioctl(
            self.master, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0)
        )

    def _read_pty(self, done: asyncio.Future[None]) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._record("pty", data)
            return
        asyncio.get_running_loop().remove_reader(self.master)
        if not done.done():
            done.set_result(None)

    async def _pump(self, reader: asyncio.StreamReader | None, stream: str) -> None:
        if reader is None:
            return
        while chunk := await reader.read(65536):
            self._record(stream, chunk)

    def _record(self, stream: str, data: bytes) -> None:
        self.seq += 1
        self.frames.append((self.seq, stream, data))
        self.retained += len(data)
        while self.retained > RETAIN_BYTES and len(self.frames) > 1:
            self.retained -= len(self.frames.pop(0)[2])
        self._notify()

    def _notify(self) -> None:
        old = self.changed
        self.changed = asyncio.Event()
        old.set()

    async def _wait_exit(self) -> None:
        assert self.proc is not None
        code = await wait_exited(self.proc)
        # Let the pipes drain what the leader wrote before it exited (bounded: a background
        # child may hold them open forever).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps, return_exceptions=True), 0.5)
        if code < 0:
            self.signal = signal.Signals(-code).name
            self.exit_code = 128 - code
        else:
            self.exit_code = code
        self.state = "exited"
        self.finished_at = _ids.now()
        self.runtime.forget(self.proc.pid)
        self.exited.set()
        self._notify()

    async def settled(self) -> None:
        """Wait for the exit watcher and output pumps to finish (after a kill)."""
        tasks = [t for t in (self._watch, *self._pumps) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def leader_exited(self) -> bool:
        return self.exited.is_set()

    def tree_alive(self) -> list[int]:
        """Host pids still running in the command's session (the tree)."""
        if not self.session:
            return []
        return [
            p for p in session_members(self.session) if p != (self.proc.pid if self.proc else 0)
        ]

    def send(self, sig: int) -> None:
        """Signal the command's tree (never the nsenter helper, which relays the exit status)."""
        if self.kind == "pty" and self.leader:
            kill_group(self.leader, sig)
            return
        for pid in self.tree_alive() or ([self.leader] if self.leader else []):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL everything (sandbox destroy)."""
        self.send(signal.SIGKILL)
        if self.proc is not None and self.proc.returncode is None:
            kill_group(self.proc.pid)
        self.close_fds()

    def abandon(self) -> None:
        """`start()` failed or was cancelled after the spawn: kill what started, free its fds."""
        for task in self._pumps:
            task.cancel()
        if self.proc is not None:
            if self.proc.returncode is None:
                kill_command(self.proc.pid)
            self.runtime.forget(self.proc.pid)
        self.close_fds()

    def close_fds(self) -> None:
        if self.master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.master = -1

    # ------------------------------------------------------------- I/O

    async def write(self, data: bytes) -> int:
        """Send bytes to stdin / the terminal; returns the input sequence number."""
        if self.leader_exited or self.stdin_closed:
            fail(409, f"process {self.id} does not accept input (exited or stdin closed)")
        if self.kind == "pty":
            view = memoryview(data)
            deadline = time.monotonic() + 5
            while view:
                try:
                    view = view[os.write(self.master, view) :]
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        fail(409, "the terminal is not reading its input")
                    await asyncio.sleep(0.005)
        else:
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(data)
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                fail(409, f"process {self.id} closed its stdin")
        self.input_seq += 1
        return self.input_seq

    def view(self) -> dict[str, Any]:
        oldest = self.frames[0][0] if self.frames else 0
        out: dict[str, Any] = {
            "process_id": self.id,
            "kind": self.kind,
            "pid": self.ns_pid,
            "state": self.state,
            "leader_exited": self.leader_exited,
            "tree_exited": self.leader_exited and not self.tree_alive(),
            "created_at": _ids.iso(self.created_at),
            "finished_at": _ids.iso(self.finished_at),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "cmd": self.cmd,
            "args": self.args or None,
            "cwd": self.cwd,
            "output": {"oldest_seq": oldest, "newest_seq": self.seq, "bytes": self.retained},
        }
        if self.kind == "pty" and self.master >= 0 and not self.leader_exited:
            out["foreground"] = self._foreground()
        return prune(out)

    def _foreground(self) -> dict[str, Any] | None:
        try:
            pgid = os.tcgetpgrp(self.master)
            with open(f"/proc/{pgid}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            ns_pid = pgid
            with open(f"/proc/{pgid}/status") as fh:
                for line in fh:
                    if line.startswith("NSpid:"):
                        ns_pid = int(line.split()[-1])
        except (OSError, ValueError):
            return None
        if not argv:
            return None
        return prune({"pid": ns_pid, "cmd": argv[0], "args": argv[1:] or None})


def _ns_pid(pid: int) -> int:
    """The pid a host process has inside its own pid namespace (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return 0


async def _read_pid(fd: int) -> int:
    """The pid the wrapper writes to its report pipe (0 if it died first)."""
    data = await read_until(fd, b"\n", 10.0)
    try:
        return int(data.split(b"\n", 1)[0] or 0)
    except ValueError:
        return 0


async def _await(fut: asyncio.Future[None]) -> None:
    await fut


def register(app: web.Application, emu: Emulator) -> None:
    """Add the managed-process routes."""
    h = _Handlers(emu)
    base = "/v1/sandboxes/{id}/processes"
    r = app.router
    r.add_post(base, h.create)
    r.add_get(base, h.list)
    r.add_get(base + "/{process_id}", h.get)
    r.add_delete(base + "/{process_id}", h.delete)
    r.add_get(base + "/{process_id}/connect", h.connect)
    r.add_post(base + "/{process_id}/input", h.input)
    r.add_post(base + "/{process_id}/stdin/close", h.close_stdin)
    r.add_post(base + "/{process_id}/resize", h.resize)
    r.add_post(base + "/{process_id}/signal", h.signal)
    r.add_get(base + "/{process_id}/wait", h.wait)


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _proc(self, request: web.Request) -> tuple[Sandbox, ManagedProcess]:
        sb = self.emu.running(request)
        pid = request.match_info["process_id"]
        proc = sb.processes.get(pid)
        if proc is None:
            fail(404, f"process {pid} not found")
        return sb, proc

    async def create(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.running(request)
        body = await json_body(request, required=False)
        cmd = opt_str(body, "cmd")
        args = opt_str_list(body, "args") or []
        cwd = opt_str(body, "cwd")
        if cwd is not None and not cwd.startswith("/"):
            fail(400, "cwd must be an absolute path", fields={"cwd": "must be absolute"})
        check_no_nul("cmd", cmd or "")
        check_no_nul("args", *args)
        check_no_nul("cwd", cwd or "")
        overrides = opt_str_map(body, "env") or {}
        validate_envs(overrides, "env")
        pty = body.get("pty")
        if pty is not None and not isinstance(pty, dict):
            fail(400, "pty must be an object {rows, cols}", fields={"pty": "must be an object"})
        runtime = sb.runtime
        assert runtime is not None
        env = runtime.base_env()
        env.update(sb.envs)
        env.update(overrides)
        if pty is not None:
            env.setdefault("TERM", "xterm-256color")
        if not cmd:
            if pty is None:
                fail(400, "cmd is required for a pipe process", fields={"cmd": "required"})
            cmd, args = "/bin/bash", ["-l"]
        problem = runtime.resolve_command(cmd, env)
        if problem is not None:
            fail(400, problem, fields={"cmd": "not found"})
        wrapped = ["/bin/bash", "-c", _WRAPPER, "0", cwd or "", cmd, *args]
        problem = argv_problem(runtime.command_argv(wrapped, pty=pty is not None), env)
        if problem is not None:
            fail(400, problem, fields={"args": "too long"})
        proc = ManagedProcess(runtime, "pty" if pty is not None else "process", cmd, args, cwd)
        if pty is not None:
            rows, cols = opt_int(pty, "rows"), opt_int(pty, "cols")
            proc.rows = 24 if rows is None else rows
            proc.cols = 80 if cols is None else cols
            if proc.rows < 1 or proc.cols < 1:
                fail(400, "pty rows and cols must be >= 1", fields={"pty": "invalid size"})
        try:
            await proc.start([cmd, *args], env)
        except BaseException:  # e.g. the client went away: nothing may outlive the request
            proc.abandon()
            if proc.proc is not None:
                self.emu.reap_later(proc.proc, proc._pumps)
            raise
        sb.processes[proc.id] = proc
        self.emu.touch(sb)
        return ok(proc.view())

    async def list(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.running(request)
        return ok({"processes": [p.view() for p in sb.processes.values()]})

    async def get(self, request: web.Request) -> web.StreamResponse:
        return ok(self._proc(request)[1].view())

    async def delete(self, request: web.Request) -> web.StreamResponse:
        sb, proc = self._proc(request)
        grace = query_int(request, "grace_ms", 2000) or 0
        if not proc.leader_exited or proc.tree_alive():
            proc.state = "terminating"
            proc.send(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.exited.wait(), grace / 1000)
            proc.send(signal.SIGKILL)
            await asyncio.wait_for(proc.exited.wait(), 10)
            for _ in range(100):
                if not proc.tree_alive():
                    break
                proc.send(signal.SIGKILL)
                await asyncio.sleep(0.01)
        proc.close_fds()
        self.emu.touch(sb)
        return ok(proc.view())

    async def input(self, request: web.Request) -> web.StreamResponse:
        sb, proc = self._proc(request)
        body = await json_body(request)
        raw = opt_str(body, "data_base64", required=False)
        if raw is None:
            fail(400, "data_base64 is required", fields={"data_base64": "required"})
        try:
            data = base64.b64decode(raw.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            fail(400, "data_base64 is not valid base64", fields={"data_base64": "invalid"})
        seq = await proc.write(data)
        self.emu.touch(sb)
        return ok({"input_seq": seq})

    async def close_stdin(self, request: web.Request) -> web.StreamResponse:
        _, proc = self._proc(request)
        if proc.kind == "pty":
            if not proc.leader_exited and not proc.stdin_closed:
                await proc.write(b"\x04")
        elif proc.proc is not None and proc.proc.stdin is not None and not proc.stdin_closed:
            proc.proc.stdin.close()
        proc.stdin_closed = True
        return ok({"ok": True})

    async def resize(self, request: web.Request) -> web.StreamResponse:
        _, proc = self._proc(request)
        body = await json_body(request)
        rows, cols = opt_int(body, "rows"), opt_int(body, "cols")
        if proc.kind != "pty":
            fail(409, f"process {proc.id} has no terminal to resize")
        if (rows is not None and rows < 1) or (cols is not None and cols < 1):
            fail(400, "rows and cols must be >= 1", fields={"rows": "invalid size"})
        proc.rows = rows or proc.rows
        proc.cols = cols or proc.cols
        if proc.master >= 0:
            proc._winsize()
        return ok({"ok": True})

    async def signal(self, request: web.Request) -> web.StreamResponse:
        _, proc = self._proc(request)
        body = await json_body(request)
        name = opt_str(body, "signal", required=True)
        if name not in SIGNALS:
            fail(400, f"signal must be one of {', '.join(SIGNALS)}", fields={"signal": "unknown"})
        if proc.leader_exited and not proc.tree_alive():
            fail(409, f"process {proc.id} has exited")
        proc.send(signal.Signals[name])
        return ok({"ok": True})

    async def wait(self, request: web.Request) -> web.StreamResponse:
        _, proc = self._proc(request)
        scope = request.query.get("scope") or "leader"
        if scope not in ("leader", "tree"):
            fail(400, "scope must be leader or tree", fields={"scope": "unknown"})
        budget = (query_int(request, "timeout_ms", _DEFAULT_WAIT_MS) or _DEFAULT_WAIT_MS) / 1000
        deadline = time.monotonic() + budget
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.exited.wait(), budget)
        if scope == "tree":
            while proc.tree_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        return ok(proc.view())

    async def connect(self, request: web.Request) -> web.StreamResponse:
        _, proc = self._proc(request)
        after = query_int(request, "after", 0) or 0
        resp, writer = await self.emu.open_stream(request)
        hb = self.emu.heartbeat_interval
        try:
            first = True
            while True:
                changed = proc.changed
                pending = [f for f in proc.frames if f[0] > after]
                for seq, stream, data in pending:
                    frame: dict[str, Any] = {
                        "type": "data",
                        "seq": seq,
                        "stream": stream,
                        "data_base64": base64.b64encode(data).decode("ascii"),
                    }
                    if first and proc.frames and after + 1 < proc.frames[0][0]:
                        frame["oldest_available_seq"] = proc.frames[0][0]
                    first = False
                    await writer.frame((dumps(frame) + "\n").encode())
                    after = seq
                if proc.leader_exited and not [f for f in proc.frames if f[0] > after]:
                    end = prune(
                        {"type": "exit", "exit_code": proc.exit_code, "signal": proc.signal}
                    )
                    await writer.final((dumps(end) + "\n").encode())
                    await resp.write_eof()
                    break
                try:
                    await asyncio.wait_for(changed.wait(), hb)
                except TimeoutError:
                    await writer.heartbeat(_HEARTBEAT)
        except StreamEnded:
            pass
        return resp
