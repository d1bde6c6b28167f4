"""`python -m createos_sandbox_async.local`: run the emulator until Ctrl-C.

Prints the base URL and the API key to use (as shell exports) and the admin token of the
fault-control routes, binds to loopback only unless `--allow-remote` is given, and removes
every sandbox on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from .runtime import DEFAULT_MAX_PROCESSES, ISOLATIONS, IsolationUnavailableError
from .server import LocalServer, check_admin_token, is_loopback


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m createos_sandbox_async.local",
        description="Local CreateOS Sandbox API emulator (commands run for real in bubblewrap).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind; 0 = any free port")
    p.add_argument(
        "--isolation",
        choices=ISOLATIONS,
        default="bubblewrap",
        help="bubblewrap (default) or none (unsafe: commands run on this machine)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="use this API key for the default account instead of a random one",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="stream heartbeat period (default 5)",
    )
    p.add_argument(
        "--transition-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long pausing/resuming/... states stay visible (default 0)",
    )
    p.add_argument(
        "--detached-buffered-exec",
        action="store_true",
        help="a buffered exec whose client disconnects runs to its end (as a service might); "
        "by default it is killed, like a stream's command",
    )
    p.add_argument(
        "--max-processes",
        type=int,
        default=DEFAULT_MAX_PROCESSES,
        help="processes one sandbox may run at once, where cgroups allow enforcing it "
        f"(default {DEFAULT_MAX_PROCESSES})",
    )
    p.add_argument(
        "--admin-token",
        default=os.environ.get("CREATEOS_LOCAL_ADMIN_TOKEN") or None,
        help="token of the fault-control routes under /__createos/ (loopback only); default: "
        "$CREATEOS_LOCAL_ADMIN_TOKEN, else a random one, printed at start",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (anyone reaching it can run code)",
    )
    return p


async def _serve(args: argparse.Namespace) -> int:
    server = LocalServer(
        host=args.host,
        port=args.port,
        isolation=args.isolation,
        api_key=args.api_key,
        heartbeat_interval=args.heartbeat_interval,
        transition_delay=args.transition_delay,
        allow_remote=args.allow_remote,
        detached_buffered_exec=args.detached_buffered_exec,
        max_processes=args.max_processes,
        admin_token=args.admin_token,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"CreateOS Sandbox emulator listening on {server.base_url}", flush=True)
        print(f"export CREATEOS_SANDBOX_BASE_URL={server.base_url}", flush=True)
        print(f"export CREATEOS_SANDBOX_API_KEY={server.api_key}", flush=True)
        print(f"export CREATEOS_API_KEY={server.api_key}", flush=True)
        print(f"export CREATEOS_LOCAL_ADMIN_TOKEN={server.admin_token}", flush=True)
        print(
            f"Fault control (loopback only): {server.base_url}/__createos/faults "
            "with Authorization: Bearer $CREATEOS_LOCAL_ADMIN_TOKEN",
            flush=True,
        )
        print("Press Ctrl-C to stop (every sandbox is destroyed on exit).", flush=True)
        await stop.wait()
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"error: refusing to bind {args.host}: it is not a loopback address and the emulator "
            "runs arbitrary commands for anyone who can reach it. Pass --allow-remote to do it "
            "anyway.",
            file=sys.stderr,
        )
        return 2
    try:
        check_admin_token(args.admin_token, args.api_key)
    except ValueError as exc:
        print(f"error: --admin-token: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args))
    except IsolationUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"error: cannot start the emulator: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
