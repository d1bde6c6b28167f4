"""Exec routes: buffered (output captured up to a cap per channel, then one JSend body) and
streamed (NDJSON frames with heartbeats, backpressure through a bounded queue). A command whose
request ends early is killed with its whole tree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from ._helper import HelperLost
from ._http import (
    JSON_TYPE,
    argv_problem,
    check_no_nul,
    dumps,
    fail,
    json_body,
    ok,
    opt_bool,
    opt_str,
    opt_str_list,
    opt_str_map,
    query_bool,
)
from ._procs import kill_tree
from ._vm import Command
from .faults import StreamEnded
from .runtime import SandboxRuntime
from .state import Sandbox

if TYPE_CHECKING:
    from .app import Emulator

# A buffered exec keeps at most this much of each of stdout and stderr (the rest is read and
# dropped): one command printing 200 MB must not grow the emulator by gigabytes or freeze it.
MAX_BUFFERED_OUTPUT = 4 << 20
_TRUNCATED_MARK = (
    "\n[createos-local: {kind} truncated: {n} more bytes dropped after the first {cap} "
    "(buffered exec keeps at most that much per channel); stream the exec or redirect to a "
    "file for the rest]\n"
)
_ENCODE_INLINE = 256 << 10  # larger outputs are decoded and JSON-encoded in a worker thread
_ENCODE_SLOTS = threading.BoundedSemaphore(2)  # a thread lock: shared by every server's loop
_QUEUED_CHUNKS = 16  # per exec stream: at most ~1 MiB of output read ahead of the client
HEARTBEAT = b'{"hb":true}\n'
# The sandbox's exec helper (_helper.py) vanished after it was asked to start the command.
_LOST = (
    "the command's start was not confirmed: the sandbox's exec helper died or stopped "
    "answering (was it killed or stopped from inside the sandbox?); it may have run"
)


def exit_status(returncode: int | None) -> int:
    """A shell-style exit status: 128 + signal number for a command killed by a signal."""
    if returncode is None:
        return -1
    return 128 - returncode if returncode < 0 else returncode


def register(app: web.Application, emu: Emulator) -> None:
    """Add the exec route (buffered, or streamed with `?stream=true`)."""
    app.router.add_post("/v1/sandboxes/{id}/exec", _Handlers(emu).exec)


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _exec_env(self, sb: Sandbox, overrides: dict[str, str] | None) -> dict[str, str]:
        assert sb.runtime is not None
        env = sb.runtime.base_env()
        env.update(sb.envs)
        for key, value in (overrides or {}).items():
            if key not in sb.envs:
                fail(
                    400,
                    f"env key {key!r} was not declared in the sandbox's create-time envs",
                    fields={"env": f"undeclared key {key}"},
                )
            check_no_nul("env", value)
            env[key] = value
        return env

    async def exec(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.running(request)
        body = await json_body(request)
        cmd = opt_str(body, "cmd", required=True)
        assert cmd is not None
        args = opt_str_list(body, "args") or []
        check_no_nul("cmd", cmd)
        check_no_nul("args", *args)
        stdin = opt_str(body, "stdin")
        env = self._exec_env(sb, opt_str_map(body, "env"))
        stream = query_bool(request, "stream") or bool(opt_bool(body, "stream"))
        runtime = sb.runtime
        assert runtime is not None
        problem = runtime.resolve_command(cmd, env) or argv_problem(
            runtime.command_argv([cmd, *args]), env
        )
        sb.busy += 1
        self.emu.touch(sb)
        try:
            if stream:
                return await self._exec_stream(
                    request, sb, runtime, [cmd, *args], env, stdin, problem
                )
            run = self._exec_buffered(runtime, [cmd, *args], env, stdin, problem)
            if self.emu.detached_buffered_exec:
                return await self._detached(sb, run)
            return await run
        finally:
            sb.busy -= 1
            self.emu.touch(sb)

    async def _detached(
        self, sb: Sandbox, run: Awaitable[web.StreamResponse]
    ) -> web.StreamResponse:
        """A buffered exec that outlives its client, as a service that does not kill on
        disconnect would run it (WIRE §11 promises the kill for streams only). The command runs
        to its end in a background task; the emulator's stop still cancels it (and so kills it)."""

        async def to_the_end() -> web.StreamResponse:
            sb.busy += 1
            try:
                return await run
            finally:
                sb.busy -= 1
                self.emu.touch(sb)

        return await asyncio.shield(self.emu.spawn_background(to_the_end()))

    async def _exec_buffered(
        self,
        runtime: SandboxRuntime,
        argv: list[str],
        env: dict[str, str],
        stdin: str | None,
        problem: str | None,
    ) -> web.StreamResponse:
        t0 = time.perf_counter()
        if problem is not None:
            result = {"stdout": "", "stderr": "", "exit_code": 127, "error": problem}
            return ok({"result": result, "exec_ms": 0.0})
        try:
            proc = await runtime.run_command(argv, env, stdin=bool(stdin))
        except HelperLost:
            result = {"stdout": "", "stderr": "", "exit_code": 137, "error": _LOST}
            return ok({"result": result, "exec_ms": 0.0})
        finished = False
        try:
            out, err = await collect_output(proc, stdin.encode() if stdin else None)
            finished = True
        finally:
            self._end_command(runtime, proc, finished=finished)
        exec_ms = round((time.perf_counter() - t0) * 1000, 3)
        return await buffered_response(out, err, exit_status(proc.returncode), exec_ms)

    async def _exec_stream(
        self,
        request: web.Request,
        sb: Sandbox,
        runtime: SandboxRuntime,
        argv: list[str],
        env: dict[str, str],
        stdin: str | None,
        problem: str | None,
    ) -> web.StreamResponse:
        resp, writer = await self.emu.open_stream(request)
        proc = None
        if problem is None:
            try:
                proc = await runtime.run_command(argv, env, stdin=bool(stdin))
            except HelperLost:
                problem = _LOST
        if proc is None:
            try:
                await writer.final((dumps({"error": problem}) + "\n").encode())
                await resp.write_eof()
            except StreamEnded:
                pass
            return resp
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=_QUEUED_CHUNKS)
        tasks = [
            asyncio.ensure_future(_pump(proc.stdout, "stdout", queue)),
            asyncio.ensure_future(_pump(proc.stderr, "stderr", queue)),
        ]
        if stdin:
            tasks.append(asyncio.ensure_future(_feed(proc, stdin.encode())))
        finished = False
        try:
            open_channels = 2
            while open_channels:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), self.emu.heartbeat_interval)
                except TimeoutError:
                    await writer.heartbeat(HEARTBEAT)
                    continue
                if not data:
                    open_channels -= 1
                    continue
                await writer.frame((dumps({kind: data.decode("utf-8", "replace")}) + "\n").encode())
                self.emu.touch(sb)
            code = await proc.wait()
            finished = True
            await writer.final((dumps({"exit_code": exit_status(code)}) + "\n").encode())
            await resp.write_eof()
        except StreamEnded:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._end_command(runtime, proc, finished=finished, helpers=tasks)
        return resp

    def _end_command(
        self,
        runtime: SandboxRuntime,
        proc: Command,
        *,
        finished: bool,
        helpers: Sequence[asyncio.Task[None]] = (),
    ) -> None:
        """An exec's request is over. Unless the command ran to the end (its pipes closed), kill
        its whole tree - the leader may have exited while a child still holds the pipes - and
        collect it in the background."""
        if not finished:
            kill_tree(proc.pid)
            self.emu.reap_later(proc, helpers)
        runtime.forget(proc.pid)


async def _pump(
    reader: asyncio.StreamReader | None, kind: str, queue: asyncio.Queue[tuple[str, bytes]]
) -> None:
    """Forward a pipe to the frame queue as UTF-8-safe chunks; b'' marks its end. The queue is
    bounded, so a client that reads slowly slows the command down instead of filling memory.
    Cancelled, it just stops (nothing is waiting for the end marker any more)."""
    decoder_tail = b""
    with contextlib.suppress(Exception):  # a failed pipe ends like a closed one
        while reader is not None and (chunk := await reader.read(65536)):
            chunk = decoder_tail + chunk
            cut = _utf8_boundary(chunk)
            decoder_tail = chunk[cut:]
            if cut:
                await queue.put((kind, chunk[:cut]))
    if decoder_tail:
        await queue.put((kind, decoder_tail))
    await queue.put((kind, b""))


def _utf8_boundary(data: bytes) -> int:
    """Length of the longest prefix that does not end inside a UTF-8 sequence."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        byte = data[n - back]
        if byte & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        if byte < 0x80:
            return n
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return n - back if back < need else n
    return n


class Captured(NamedTuple):
    """What a buffered exec kept of one output channel, and how many bytes it threw away."""

    data: bytearray
    dropped: int


async def _read_capped(reader: asyncio.StreamReader | None, cap: int) -> Captured:
    """Keep the first `cap` bytes of a pipe; read and discard the rest until EOF, so the command
    never blocks on a full pipe and the emulator's memory does not grow with its output."""
    kept = bytearray()
    dropped = 0
    while reader is not None and (chunk := await reader.read(1 << 16)):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        dropped += max(0, len(chunk) - max(room, 0))
    return Captured(kept, dropped)


async def collect_output(
    proc: Command, stdin: bytes | None, cap: int = MAX_BUFFERED_OUTPUT
) -> tuple[Captured, Captured]:
    """`proc.communicate()` with a cap per channel (see MAX_BUFFERED_OUTPUT). Cancelled, its
    readers are stopped before it returns, so `reap_later` can drain the pipes alone."""
    tasks: list[asyncio.Task[Any]] = [
        asyncio.ensure_future(_read_capped(proc.stdout, cap)),
        asyncio.ensure_future(_read_capped(proc.stderr, cap)),
    ]
    if stdin:
        tasks.append(asyncio.ensure_future(_feed(proc, stdin)))
    try:
        await asyncio.gather(*tasks)
        await proc.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    return tasks[0].result(), tasks[1].result()


def _channel_text(kind: str, captured: Captured) -> str:
    data = captured.data
    if captured.dropped:  # appended in place: no second copy of a large output
        mark = _TRUNCATED_MARK.format(kind=kind, n=captured.dropped, cap=MAX_BUFFERED_OUTPUT)
        data += mark.encode()
    return data.decode("utf-8", "replace")


def _buffered_body(out: Captured, err: Captured, code: int, exec_ms: float) -> bytes:
    """The JSend body of a buffered exec; a truncated channel carries a marker line and a
    `<channel>_truncated_bytes` count (omitted when nothing was dropped). Each channel is decoded
    and JSON-encoded on its own (ASCII escapes), so only one large string exists at a time."""
    extra: dict[str, Any] = {"exit_code": code}
    if out.dropped:
        extra["stdout_truncated_bytes"] = out.dropped
    if err.dropped:
        extra["stderr_truncated_bytes"] = err.dropped
    parts = [b'{"status":"success","data":{"result":{"stdout":']
    parts.append(json.dumps(_channel_text("stdout", out)).encode("ascii"))
    parts.append(b',"stderr":')
    parts.append(json.dumps(_channel_text("stderr", err)).encode("ascii"))
    parts.append(b"," + dumps(extra)[1:-1].encode() + b'},"exec_ms":')
    parts.append(dumps(exec_ms).encode() + b"}}")
    return b"".join(parts)


def _buffered_body_in_turn(out: Captured, err: Captured, code: int, exec_ms: float) -> bytes:
    """_buffered_body in a worker thread, at most two at a time: encoding briefly takes several
    times the output's size (binary output decodes to replacement characters and escapes), so
    many floods at once must not multiply that peak."""
    with _ENCODE_SLOTS:
        return _buffered_body(out, err, code, exec_ms)


async def buffered_response(
    out: Captured, err: Captured, code: int, exec_ms: float
) -> web.Response:
    """Decode and JSON-encode a buffered exec's output; a large one in a worker thread, so the
    event loop keeps serving other clients meanwhile (the cap bounds the work either way)."""
    if len(out.data) + len(err.data) > _ENCODE_INLINE:
        body = await asyncio.to_thread(_buffered_body_in_turn, out, err, code, exec_ms)
    else:
        body = _buffered_body(out, err, code, exec_ms)
    return web.Response(body=body, content_type=JSON_TYPE, charset="utf-8")


async def _feed(proc: Command, data: bytes) -> None:
    """Write stdin, then close it so the command sees EOF."""
    assert proc.stdin is not None
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        proc.stdin.write(data)
        await proc.stdin.drain()
        proc.stdin.close()
