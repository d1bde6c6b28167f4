"""``push`` and ``pull``: copy files into and out of a sandbox (``-`` is stdin / stdout)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from ._common import (
    LOCAL_FILE,
    OK,
    CliError,
    Context,
    Subparsers,
    add_command,
    check_remote_path,
    resolve_sandbox,
    usage_error,
)


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = add_command(
        sub,
        common,
        "push",
        cmd_push,
        aliases=["upload"],
        help="copy a local file (or directory, or '-' for stdin) into a sandbox",
        example="tar -c src | createos-sandbox push box - /tmp/src.tar",
    )
    p.add_argument("sandbox", help="id or name")
    p.add_argument("local", help="local file or directory; '-' reads stdin")
    p.add_argument("remote", help="absolute guest path; parents are created")

    g = add_command(
        sub,
        common,
        "pull",
        cmd_pull,
        aliases=["download"],
        help="copy a file out of a sandbox (atomically) to a local path, or '-' for stdout",
        example="createos-sandbox pull box /workspace/out.csv - | head -5",
    )
    g.add_argument("sandbox", help="id or name")
    g.add_argument("remote", help="absolute guest path")
    g.add_argument("local", help="local file path; '-' writes to stdout")


def _local_source(path: str) -> tuple[str, int | None]:
    """What ``push`` sends: ("dir", None), ("file", size); a missing path is a local error."""
    if os.path.isdir(path):
        return "dir", None
    if os.path.isfile(path):
        return "file", os.path.getsize(path)
    raise CliError(f"{path}: no such local file", LOCAL_FILE)


def _check_destination(path: str) -> None:
    """``pull`` writes a file next to its final name: the folder must exist, the name not be one."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"{path}: no such local directory {parent!r}", LOCAL_FILE)
    if os.path.isdir(path):
        raise CliError(f"{path}: is a directory; give a file path", LOCAL_FILE)


async def _stdin_chunks(counter: list[int]) -> AsyncIterator[bytes]:
    """Our stdin as it arrives (a thread may block on a pipe; Ctrl-C abandons it)."""
    read: Callable[[int], bytes] = getattr(sys.stdin.buffer, "read1", sys.stdin.buffer.read)
    while True:
        chunk = await anyio.to_thread.run_sync(read, 1 << 20, abandon_on_cancel=True)
        if not chunk:
            return
        counter[0] += len(chunk)
        yield chunk


async def cmd_push(ctx: Context, ns: argparse.Namespace) -> int:
    remote = check_remote_path(ns.remote)
    counter = [0]
    source: Any
    size: int | None = None
    if ns.local == "-":
        kind, source = "stdin", _stdin_chunks(counter)
    else:
        kind, size = _local_source(ns.local)
        source = ns.local
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    if kind == "dir":
        await sb.files.upload_dir(ns.local, remote)
    else:
        await sb.files.upload(remote, source)
    if kind == "stdin":
        size = counter[0]
    ctx.out.document(
        {"action": "pushed", "sandbox_id": sb.id, "local": ns.local, "path": remote, "bytes": size}
    )
    ctx.out.note(f"pushed {ns.local} -> {sb.id}:{remote}")
    return OK


async def cmd_pull(ctx: Context, ns: argparse.Namespace) -> int:
    remote = check_remote_path(ns.remote)
    if ns.local == "-" and ctx.out.json:
        usage_error("pull to '-' writes the file to stdout: --output json cannot share it")
    if ns.local != "-":
        _check_destination(ns.local)
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    if ns.local == "-":
        out = sys.stdout.buffer
        async with sb.files.download_iter(remote) as chunks:
            async for chunk in chunks:
                out.write(chunk)
        out.flush()
        return OK
    written = await sb.files.download_to(remote, ns.local)
    ctx.out.document(
        {
            "action": "pulled",
            "sandbox_id": sb.id,
            "path": remote,
            "local": ns.local,
            "bytes": written,
        }
    )
    ctx.out.note(f"pulled {sb.id}:{remote} -> {ns.local} ({written} bytes)")
    return OK
