"""Verbs that need no account: ``local`` (the emulator), ``demo``; and ``mcp`` (the MCP server)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from ._common import USAGE, Context, Subparsers, add_command, usage_error


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    d = add_command(
        sub,
        common,
        "demo",
        cmd_demo,
        help="run a small batch against an in-process emulator (no account needed)",
        example="createos-sandbox demo --items 10",
    )
    d.add_argument("--items", type=int, default=40, help="snippets in the batch (default: 40)")
    d.add_argument(
        "--isolation",
        choices=["auto", "bubblewrap", "none"],
        default="auto",
        help="(default: auto)",
    )
    # These two parse their own arguments (main() hands them over before our parser runs);
    # they are registered so that --help lists them.
    sub.add_parser(
        "local",
        help="run the local emulator until Ctrl-C (options: local --help)",
        add_help=False,
    )
    sub.add_parser(
        "mcp",
        help="serve sandboxes to AI agents over MCP (needs the mcp extra; options: mcp --help)",
        add_help=False,
    )


async def cmd_demo(ctx: Context, ns: argparse.Namespace) -> int:
    if ctx.out.json:
        usage_error("demo prints a report for people: --output json does not apply")
    from createos_sandbox_async._demo import run_demo  # the demo ships in the package

    return await run_demo(ns.items, ns.isolation)


def run_local(argv: Sequence[str]) -> int:
    """``local``: the emulator's own command line (``python -m createos_sandbox_async.local``)."""
    from createos_sandbox_async.local.__main__ import main as local_main

    try:
        return int(local_main(list(argv)) or 0)
    except KeyboardInterrupt:
        return 130


def run_mcp(argv: Sequence[str]) -> int:
    """``mcp``: hand over to ``createos_sandbox_async.mcp.main`` (the optional MCP server)."""
    try:
        mcp_module = importlib.import_module("createos_sandbox_async.mcp")
    except ImportError:
        print(
            "error: the MCP server needs the mcp extra: pip install 'createos-sandbox-async[mcp]'",
            file=sys.stderr,
        )
        return USAGE
    entry: Any = getattr(mcp_module, "main", None)
    if entry is None:
        print("error: this install's createos_sandbox_async.mcp has no main()", file=sys.stderr)
        return USAGE
    try:
        return int(entry(list(argv)) or 0)
    except KeyboardInterrupt:
        return 130
