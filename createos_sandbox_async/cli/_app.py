"""The parser, the dispatch and the one place where failures become an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from createos_sandbox_async import APIError, CreateosError, __version__

from . import _catalog, _exec, _files, _lifecycle, _local, _resources, _shell
from ._common import (
    INTERRUPTED,
    CliError,
    Context,
    Handler,
    Parser,
    add_common,
    error_message,
    exit_status,
)

#: Commands handed their arguments untouched (they parse their own).
_PASSTHROUGH = {"local": _local.run_local, "mcp": _local.run_mcp}


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; each module registers its verbs."""
    parser = Parser(
        prog="createos-sandbox",
        description="Drive CreateOS Sandbox (or the local emulator) from a shell. Sandboxes are "
        "named by id (sb_...) or by name; a name means your most recent sandbox with it.",
        epilog="example:\n  createos-sandbox create --name box\n"
        "  createos-sandbox exec box -- uname -a",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"createos-sandbox {__version__}")
    add_common(parser, top=True)
    common = Parser(add_help=False)
    add_common(common, top=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (_lifecycle, _exec, _shell, _files, _catalog, _resources, _local):
        module.register(sub, common)
    return parser


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _report(ctx: Context | None, exc: BaseException) -> int:
    """One line on stderr (and the JSON error document); returns the exit status."""
    status = exit_status(exc)
    message = error_message(exc)
    print(f"error: {message}", file=sys.stderr)
    if ctx is not None and ctx.out.json:
        doc: dict[str, Any] = {
            "error": {"type": type(exc).__name__, "message": message, "exit_status": status}
        }
        if isinstance(exc, APIError):
            doc["error"].update(http_status=exc.status, request_id=exc.request_id)
        ctx.out.document(doc)
    return status


def _usage_context(args: list[str]) -> Context:
    """A context for reporting a usage error, in JSON when the arguments asked for it."""
    json_asked = any(
        a in ("--output=json", "-ojson") or (a in ("-o", "--output") and b == "json")
        for a, b in zip(args, [*args[1:], ""], strict=True)
    )
    return Context(argparse.Namespace(output="json" if json_asked else "text"))


async def _run(handler: Handler, ctx: Context, ns: argparse.Namespace) -> int:
    try:
        return await handler(ctx, ns)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await ctx.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``createos-sandbox``); returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] and args[0] in _PASSTHROUGH:
        return _PASSTHROUGH[args[0]](args[1:])
    ctx: Context | None = None
    try:
        ns = build_parser().parse_args(args)
        fixup = getattr(ns, "fixup", None)
        if fixup is not None:
            fixup(ns)  # options written after NAME in `exec NAME [opts] -- CMD`
    except CliError as mistake:  # nothing parsed: look for -o json by hand
        return _report(_usage_context(args), mistake)
    try:
        ctx = Context(ns)
        return anyio.run(_run, ns.handler, ctx, ns)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BaseException as raised:  # every failure is one line, never a traceback
        exc = _leaf(raised)
        if isinstance(exc, KeyboardInterrupt):
            return INTERRUPTED
        if isinstance(exc, BrokenPipeError):
            # The reader went away (``| head``): stop quietly, like other Unix tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        if isinstance(exc, SystemExit):
            raise exc from None
        if os.environ.get("CREATEOS_CLI_DEBUG") == "1":
            raise
        if not isinstance(exc, Exception):
            raise
        if not isinstance(exc, CreateosError | CliError | OSError | ValueError | TypeError):
            exc = CliError(f"unexpected {type(exc).__name__}: {exc}")
        return _report(ctx, exc)
