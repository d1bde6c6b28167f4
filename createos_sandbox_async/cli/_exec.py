"""``exec NAME [options] -- CMD ARGS``: run one command, stream its output, pass its exit code."""

from __future__ import annotations

import argparse
import functools
import os
import stat
import sys

import anyio

from ._common import (
    NOT_STARTED,
    OK,
    Context,
    Parser,
    Subparsers,
    add_command,
    parse_env,
    resolve_sandbox,
    usage_error,
)


def _exec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a variable declared at create time (--env there); repeatable",
    )
    parser.add_argument(
        "--stdin",
        metavar="FILE|-",
        help="send this file ('-': our stdin) as the command's stdin "
        "(default: our stdin when it is a pipe or a file, else nothing)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop (and kill) the command after this long (default: no limit)",
    )


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    e = add_command(
        sub,
        common,
        "exec",
        cmd_exec,
        help="run a command in a sandbox: its output streams to yours, its exit code is ours",
        example="echo hi | createos-sandbox exec box --env MODE=dev -- sh -c 'cat; exit 3'",
    )
    e.add_argument("sandbox", help="id or name")
    _exec_options(e)
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (after --)")
    # Options written between NAME and `--` reach us inside `cmd` (REMAINDER takes everything
    # after NAME): a second parser with the same options reads them before the command runs.
    late = Parser(prog="createos-sandbox exec", add_help=False, parents=[common])
    _exec_options(late)
    e.set_defaults(fixup=functools.partial(split_command, late))


def split_command(late: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    """``[opts] -- cmd args`` -> options parsed into ``ns``, ``ns.cmd`` the command line."""
    tokens: list[str] = list(ns.cmd)
    if "--" in tokens:
        at = tokens.index("--")
        late.parse_args(tokens[:at], namespace=ns)
        tokens = tokens[at + 1 :]
    ns.cmd = tokens


def _piped() -> bool:
    """Our stdin is a pipe, a file or a socket (not a terminal, not /dev/null)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


async def read_stdin(source: str | None) -> bytes | None:
    """The bytes to send as the command's stdin (exec's API takes it whole, as text)."""
    if source is not None and source != "-":
        path = source
        return await anyio.to_thread.run_sync(_read_file, path)
    if source == "-" or _piped():
        # A thread may block on a pipe; Ctrl-C abandons it instead of waiting for it.
        return await anyio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
    return None


def _read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


async def cmd_exec(ctx: Context, ns: argparse.Namespace) -> int:
    if not ns.cmd:
        usage_error("give the command after the sandbox, e.g. exec box -- ls -la")
    env = parse_env(ns.env) or None
    cmd, args = ns.cmd[0], ns.cmd[1:]
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    stdin = await read_stdin(ns.stdin)
    if ctx.out.json:
        # One document: the output becomes fields instead of bytes on our stdout.
        res = await sb.exec(cmd, args, stdin=stdin, env=env, timeout=ns.timeout)
        ctx.out.document(
            {
                "sandbox_id": sb.id,
                "exit_code": res.exit_code,
                "stdout": res.stdout,
                "stderr": res.stderr,
                "error": res.error or None,
            }
        )
        if res.error:
            return NOT_STARTED
        return res.exit_code if res.exit_code >= 0 else 1
    async with sb.exec_stream(cmd, args, stdin=stdin, env=env, timeout=ns.timeout) as stream:
        async for event in stream:
            if event.kind == "stdout":
                sys.stdout.write(event.data)
                sys.stdout.flush()
            elif event.kind == "stderr":
                sys.stderr.write(event.data)
                sys.stderr.flush()
            elif event.kind == "error":
                print(f"error: {event.data}", file=sys.stderr)
    code = stream.exit_code
    if stream.error:
        return NOT_STARTED  # never started: the shell's "command not found"
    if code is None or code < 0:
        return 1
    return OK if code == 0 else int(code)
