"""Command line: ``createos-sandbox`` (or ``python -m createos_sandbox_async``).

Subcommands mirror the SDK: ``demo``, ``local`` (the emulator), ``whoami``, ``shapes``,
``ls``, ``create``, ``exec``, ``sh``, ``rm``, ``upload``, ``download``. The API key comes from
the environment (``CREATEOS_SANDBOX_API_KEY`` / ``CREATEOS_API_KEY``) or ``--api-key`` and is
never printed; errors print the SDK's message, which never contains it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from ._convert import unstructure
from .errors import CreateosError


def _parser() -> argparse.ArgumentParser:
    """Build the argument parser; one sub-parser per command."""
    p = argparse.ArgumentParser(
        prog="createos-sandbox",
        description="Drive CreateOS Sandbox (or the local emulator) from a shell.",
    )
    p.add_argument("--api-key", help="API key (default: from the environment)")
    p.add_argument("--base-url", help="API base URL (default: CREATEOS_SANDBOX_BASE_URL or prod)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run a small batch against the local emulator (no account)")
    d.add_argument("--items", type=int, default=40, help="snippets in the batch (default 40)")
    d.add_argument("--isolation", choices=["auto", "bubblewrap", "none"], default="auto")

    sub.add_parser("local", help="run the local emulator (see --help of it)", add_help=False)
    sub.add_parser("whoami", help="identity behind the key")
    sub.add_parser("shapes", help="list sandbox shapes")

    ls = sub.add_parser("ls", help="list sandboxes")
    ls.add_argument("--status", help="filter by status, e.g. running")

    c = sub.add_parser("create", help="create a sandbox, print its id")
    c.add_argument("--shape", default="s-1vcpu-256mb")
    c.add_argument("--rootfs")
    c.add_argument("--name")
    c.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")

    e = sub.add_parser("exec", help="run a command, stream its output, exit with its code")
    e.add_argument("id")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (after --)")

    s = sub.add_parser("sh", help="run a bash script (bash -lc), stream its output")
    s.add_argument("id")
    s.add_argument("script")

    r = sub.add_parser("rm", help="destroy sandboxes")
    r.add_argument("ids", nargs="+")

    u = sub.add_parser("upload", help="upload a local file")
    u.add_argument("id")
    u.add_argument("local")
    u.add_argument("remote")

    g = sub.add_parser("download", help="download a file (atomically) to a local path")
    g.add_argument("id")
    g.add_argument("remote")
    g.add_argument("local")
    return p


def _print_json(value: Any) -> None:
    """Print models as JSON (datetimes as ISO strings)."""
    print(json.dumps(unstructure(value), indent=2, default=str))


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs to a dict, naming the bad one."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env: expected KEY=VALUE, got {key!r}")
        env[key] = value
    return env


async def _stream(sb: Any, cmd: str, args: list[str]) -> int:
    """Relay an exec stream to our stdout/stderr as it arrives; return the exit code."""
    async with sb.exec_stream(cmd, args) as stream:
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
    if code is None or code < 0:
        return 127 if stream.error else 1  # never started: the shell's "command not found"
    return int(code)


async def _run(ns: argparse.Namespace) -> int:
    """Dispatch one API command with a session that is always closed."""
    from .session import AsyncSession

    async with AsyncSession(ns.api_key, base_url=ns.base_url) as session:
        cmd = ns.command
        if cmd == "whoami":
            _print_json(await session.whoami())
        elif cmd == "shapes":
            _print_json(await session.shapes())
        elif cmd == "ls":
            async for sb in session.sandboxes.list(status=ns.status):
                print(f"{sb.id}\t{sb.status}\t{sb.data.name or ''}")
        elif cmd == "create":
            sb = await session.sandboxes.create(
                shape=ns.shape, rootfs=ns.rootfs, name=ns.name, envs=_parse_env(ns.env) or None
            )
            print(sb.id)
        elif cmd in ("exec", "sh"):
            sb = await session.sandboxes.get(ns.id)
            if cmd == "sh":
                return await _stream(sb, "bash", ["-lc", ns.script])
            argv = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
            if not argv:
                raise SystemExit("exec: give a command after the sandbox id, e.g. -- ls -la")
            return await _stream(sb, argv[0], argv[1:])
        elif cmd == "rm":
            for sid in ns.ids:
                sb = await session.sandboxes.get(sid)
                await sb.destroy()
                print(f"{sid}\tdestroyed")
        elif cmd == "upload":
            sb = await session.sandboxes.get(ns.id)
            await sb.files.upload(ns.remote, ns.local)
        elif cmd == "download":
            sb = await session.sandboxes.get(ns.id)
            await sb.files.download_to(ns.remote, ns.local)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["local"]:
        from .local.__main__ import main as local_main

        return int(local_main(args[1:]) or 0)
    ns = _parser().parse_args(args)
    try:
        if ns.command == "demo":
            from ._demo import run_demo

            return anyio.run(run_demo, ns.items, ns.isolation)
        return anyio.run(_run, ns)
    except CreateosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
