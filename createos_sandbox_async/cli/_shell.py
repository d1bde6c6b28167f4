"""``shell NAME``: an interactive terminal in a sandbox, over a managed PTY process (WIRE §13).

The local terminal goes to raw mode, so every key (Ctrl-C included) is sent to the remote PTY,
whose line discipline turns it into a signal there. Window size changes (SIGWINCH) resize the
remote PTY. The exit code of the remote shell becomes ours. A SIGINT sent to this process (not a
key: the terminal no longer makes those) kills the remote process and exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import select
import signal
import sys

import anyio

from createos_sandbox_async import CreateosError, ProcessView, Sandbox

from ._common import Context, Parser, Subparsers, add_command, resolve_sandbox, usage_error
from ._exec import split_command

#: Largest chunk of keystrokes (or pasted text) sent in one input call.
_READ = 64 * 1024


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = add_command(
        sub,
        common,
        "shell",
        cmd_shell,
        aliases=["sh"],
        help="open an interactive terminal in a sandbox; exits with the shell's exit code",
        example="createos-sandbox shell box            (or: shell box -- python3)",
    )
    s.add_argument("sandbox", help="id or name")
    s.add_argument(
        "cmd", nargs=argparse.REMAINDER, help="program to run instead of a login shell (after --)"
    )
    late = Parser(prog="createos-sandbox shell", add_help=False, parents=[common])
    s.set_defaults(fixup=functools.partial(split_command, late))


def _size(fd: int) -> tuple[int, int]:
    """(rows, cols) of our terminal; 24x80 when it does not say."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return size.lines or 24, size.columns or 80  # a pty nobody sized says 0x0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _exit_status(exit_code: int | None, sig: object) -> int:
    """The remote exit code, or 128 + the signal number when a signal ended it."""
    if exit_code is not None and exit_code >= 0:
        return exit_code
    if isinstance(sig, int) and sig > 0:
        return 128 + sig
    if isinstance(sig, str):
        name = sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()
        found = getattr(signal, name, None)
        if isinstance(found, int):
            return 128 + found
    return 1


async def _pump_input(sb: Sandbox, proc: ProcessView, fd: int) -> None:
    """Keystrokes -> the remote PTY, in order, one input call per batch read."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        while True:
            await ready.wait()
            ready.clear()
            # The reader callback is level-triggered and may have been queued again before we
            # read: check, or a blocking read would stall the event loop until the next key.
            if not select.select([fd], [], [], 0)[0]:
                continue
            data = os.read(fd, _READ)
            if not data:
                return  # our terminal closed: the remote side ends with the output pump
            try:
                await sb.processes.input(proc, data)
            except CreateosError:
                return  # the process has gone; the output pump reports how it ended
    finally:
        loop.remove_reader(fd)


async def _follow_resizes(sb: Sandbox, proc: ProcessView, fd: int) -> None:
    """SIGWINCH -> resize the remote PTY to our terminal's new size."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    loop.add_signal_handler(signal.SIGWINCH, changed.set)
    try:
        while True:
            await changed.wait()
            changed.clear()
            rows, cols = _size(fd)
            try:
                await sb.processes.resize(proc, rows, cols)
            except CreateosError:
                return
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


async def _relay(sb: Sandbox, proc: ProcessView, fd: int) -> int:
    """Run the pumps until the remote process exits; return its exit status."""
    status = 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump_input, sb, proc, fd)
        tg.start_soon(_follow_resizes, sb, proc, fd)
        out = sys.stdout.fileno()
        async with sb.processes.connect(proc) as events:
            async for event in events:
                if event.kind == "data" and event.data:
                    _write_all(out, event.data)
                elif event.kind == "error":
                    _write_all(sys.stderr.fileno(), f"\r\nerror: {event.error}\r\n".encode())
                elif event.kind == "exit":
                    status = _exit_status(event.exit_code, event.signal)
        tg.cancel_scope.cancel()
    return status


async def cmd_shell(ctx: Context, ns: argparse.Namespace) -> int:
    if ctx.out.json:
        usage_error("shell is interactive: --output json does not apply (use exec)")
    if os.name != "posix":
        usage_error("shell needs a POSIX terminal (Linux, macOS); use exec NAME -- CMD")
    import termios  # POSIX only: imported here so the rest of the CLI works on Windows
    import tty

    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        usage_error("shell needs a terminal on stdin; for scripts use exec NAME -- CMD")
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    rows, cols = _size(fd)
    cmd = ns.cmd[0] if ns.cmd else None
    proc = await sb.processes.create(cmd, ns.cmd[1:] or None if cmd else None, pty=(rows, cols))
    saved = termios.tcgetattr(fd)
    # TCSANOW, not setraw's default TCSAFLUSH: keys typed ahead are sent, not dropped.
    tty.setraw(fd, termios.TCSANOW)
    try:
        label = f"{sb.data.name or sb.id} ({sb.id})"
        _write_all(sys.stderr.fileno(), f"connected to {label}; leave with exit\r\n".encode())
        return await _relay(sb, proc, fd)
    except BaseException:
        # Interrupted or failed while the remote process may still run: stop it.
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            try:
                await sb.processes.kill(proc, grace_ms=500)
            except CreateosError:
                pass
        raise
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
