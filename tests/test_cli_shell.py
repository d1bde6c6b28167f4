"""``shell`` and the interactive ``create`` prompt, driven through a real pseudo-terminal.

The CLI runs as a child whose stdin/stdout/stderr are the slave side of a pty that is its
controlling terminal (as in a terminal emulator): raw mode, SIGWINCH and the exit status are the
real ones. Reads are bounded by generous deadlines; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _emulator import pids_with_argv, start_emulator

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

#: Makes the pty the child's controlling terminal (it is a session leader: start_new_session),
#: puts SIGINT back to Python's default (an ignored SIGINT survives exec), then runs the CLI.
_PRELUDE = (
    "import fcntl, runpy, signal, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "sys.argv[0] = 'createos-sandbox'\n"
    "runpy.run_module('createos_sandbox_async', run_name='__main__', alter_sys=True)\n"
)
DEADLINE = 30.0


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[LocalServer]:
    async with start_emulator() as emu:
        yield emu


class Terminal:
    """The master side of a pty with the CLI running on its slave side."""

    def __init__(self, server: LocalServer, *args: str, rows: int = 24, cols: int = 80) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols, fd=slave)
        env = dict(os.environ)
        env.update(
            CREATEOS_SANDBOX_API_KEY=server.api_key,
            CREATEOS_SANDBOX_BASE_URL=server.base_url,
            TERM="xterm",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PRELUDE, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.seen = b""

    def resize(self, rows: int, cols: int, *, fd: int | None = None) -> None:
        """Change the window size; the kernel sends SIGWINCH to the terminal's foreground."""
        size = struct.pack("HHHH", rows, cols, 0, 0)
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, size)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    async def _read(self) -> bytes:
        """Whatever the child wrote next (b"" once it closed the terminal)."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(self.master, ready.set)
        try:
            await ready.wait()
        finally:
            loop.remove_reader(self.master)
        try:
            return os.read(self.master, 65536)
        except OSError:  # EIO: every slave fd is closed
            return b""

    async def expect(self, needle: bytes, timeout: float = DEADLINE) -> bytes:
        """Read until ``needle`` shows up after what was matched before; returns what came
        before it (since the last match)."""
        with anyio.fail_after(timeout):
            while needle not in self.seen:
                chunk = await self._read()
                if not chunk:
                    raise AssertionError(f"terminal closed before {needle!r}: {self.seen[-500:]!r}")
                self.seen += chunk
        at = self.seen.index(needle)
        before, self.seen = self.seen[:at], self.seen[at + len(needle) :]
        return before

    async def wait(self, timeout: float = DEADLINE) -> int:
        """The child's exit status; the terminal is drained meanwhile so it never blocks."""
        with anyio.fail_after(timeout):
            while self.proc.poll() is None:
                with anyio.move_on_after(0.5):
                    self.seen += await self._read()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
async def box(server: LocalServer) -> AsyncIterator[Any]:
    async with server.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        try:
            yield sb
        finally:
            with anyio.CancelScope(shield=True):
                await sb.destroy()


def _mode(fd: int) -> tuple[int, int]:
    attrs = termios.tcgetattr(fd)
    return attrs[3] & (termios.ECHO | termios.ICANON | termios.ISIG), attrs[1] & termios.OPOST


async def test_shell_is_a_raw_pty_with_resize_ctrl_c_and_the_exit_code(
    server: LocalServer, box: Any
) -> None:
    term = Terminal(server, "shell", box.id, rows=24, cols=80)
    before = _mode(term.master)
    try:
        await term.expect(b"connected to")
        term.send(b"echo mark-$((6*7))\r")
        await term.expect(b"mark-42")
        # Raw mode: our terminal no longer echoes or cooks lines; the remote PTY does that.
        assert _mode(term.master)[0] == 0

        # A window size change reaches the remote PTY (the resize and the next command race:
        # ask again until the new size shows, a bounded number of times).
        # The marker is computed remotely, so the PTY's echo of the command line never matches
        # it: what comes before the marker is the command's own output, stty's included.
        term.resize(33, 101)
        sizes = b""
        for attempt in range(20):
            term.send(f"stty size; echo size-done-$((1000+{attempt}))\r".encode())
            sizes = await term.expect(f"size-done-{1000 + attempt}\r\n".encode())
            if b"33 101" in sizes:
                break
        assert b"33 101" in sizes, sizes[-300:]

        # Ctrl-C is a key like any other: it interrupts the remote command, not the CLI.
        term.send(b"sleep 4323\r")
        with anyio.fail_after(DEADLINE):  # ^C before bash started it would not reach it
            while not pids_with_argv("sleep", "4323"):
                await anyio.sleep(0.02)
        term.send(b"\x03")
        term.send(b"echo back-$((2+3))\r")
        await term.expect(b"back-5", timeout=DEADLINE)
        assert term.proc.poll() is None

        term.send(b"exit 7\r")
        assert await term.wait() == 7
        assert _mode(term.master) == before  # the terminal is given back as it was
    finally:
        term.close()


async def test_shell_sigint_kills_the_remote_process_and_exits_130(
    server: LocalServer, box: Any
) -> None:
    term = Terminal(server, "shell", box.id, "--", "sh", "-c", "echo ready; exec sleep 4322")
    try:
        await term.expect(b"ready")
        with anyio.fail_after(30):  # `exec sleep` runs right after the echo: wait for it
            while not pids_with_argv("sleep", "4322"):
                await anyio.sleep(0.02)
        term.proc.send_signal(signal.SIGINT)
        assert await term.wait() == 130
        with anyio.fail_after(DEADLINE):
            while pids_with_argv("sleep", "4322"):
                await anyio.sleep(0.05)
        views = await box.processes.list()
        assert all(v.leader_exited for v in views)
    finally:
        term.close()


async def test_shell_refuses_without_a_terminal(server: LocalServer, box: Any) -> None:
    env = dict(os.environ)
    env.update(CREATEOS_SANDBOX_API_KEY=server.api_key, CREATEOS_SANDBOX_BASE_URL=server.base_url)
    argv = [sys.executable, "-m", "createos_sandbox_async", "shell", box.id]
    with anyio.fail_after(60):
        proc = await anyio.run_process(argv, env=env, check=False, input=b"")
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("error: shell needs a terminal")
    assert await box.processes.list() == []


async def test_create_prompts_on_a_terminal_when_given_no_flags(server: LocalServer) -> None:
    term = Terminal(server, "create")
    try:
        await term.expect(b"Shape [s-1vcpu-256mb]: ")
        term.send(b"s-1vcpu-512mb\n")
        await term.expect(b"Name (empty: generated): ")
        term.send(b"prompted-box\n")
        await term.expect(b"Root filesystem [devbox:1]: ")
        term.send(b"\n")
        assert await term.wait() == 0
    finally:
        term.close()
    async with server.session() as session:
        made = [sb async for sb in session.sandboxes.list() if sb.data.name == "prompted-box"]
        assert [sb.data.shape for sb in made] == ["s-1vcpu-512mb"]
        assert made[0].id.encode() in term.seen
        await made[0].destroy()
