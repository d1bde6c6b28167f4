"""Sandbox lifecycle verbs: create, ls, get, edit, pause, resume, fork, rm."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from typing import Any

from createos_sandbox_async import AsyncSession, DiskAttachment, Sandbox, SandboxStatus

from ._common import (
    FAILED,
    OK,
    Context,
    Subparsers,
    add_command,
    error_message,
    exit_status,
    is_tty,
    parse_duration,
    parse_env,
    parse_on_off,
    read_pubkeys,
    require_force,
    resolve_sandbox,
    sandbox_doc,
    usage_error,
)

DEFAULT_SHAPE = "s-1vcpu-256mb"
#: What ``ls`` shows without --all/--status (as the official CLI: the ones that cost or resume).
ACTIVE = ("running", "paused", "pausing", "resuming", "forking")
STATUSES = tuple(SandboxStatus)  # the SDK's one list (WIRE §9)


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    c = add_command(
        sub,
        common,
        "create",
        cmd_create,
        help="create a sandbox and print its id (prompts on a terminal when given no flags)",
        example="createos-sandbox create --shape s-1vcpu-1gb --name box --env TOKEN=abc --ingress",
    )
    c.add_argument("--shape", help=f"machine size, see `shapes` (default: {DEFAULT_SHAPE})")
    c.add_argument("--name", help="friendly name (default: generated, e.g. silent-otter)")
    c.add_argument("--rootfs", help="image or ready template to boot (default: the service's)")
    c.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    c.add_argument("--disk-mib", type=int, help="disk size in MiB (default: the shape's)")
    c.add_argument(
        "--ssh-key", action="append", default=[], metavar="PATH", help="public key file; repeatable"
    )
    c.add_argument("--ingress", action="store_true", help="public HTTPS URL (default: off)")
    c.add_argument(
        "--egress",
        action="append",
        default=[],
        metavar="RULE",
        help="allowed destination host[:port], ip or cidr; repeatable (default: allow all)",
    )
    c.add_argument(
        "--auto-pause",
        metavar="DURATION",
        help="pause after this long idle, 1m..24h (default: never)",
    )
    c.add_argument(
        "--network", action="append", default=[], metavar="NAME|ID", help="join; repeatable"
    )
    c.add_argument(
        "--disk",
        action="append",
        default=[],
        metavar="NAME|ID:/MOUNT",
        help="mount a registered disk; repeatable",
    )

    ls = add_command(
        sub,
        common,
        "ls",
        cmd_ls,
        aliases=["list"],
        help="list sandboxes: id, status, name (default: active ones)",
        example="createos-sandbox ls --status paused --quiet | xargs createos-sandbox rm --force",
    )
    ls.add_argument("-a", "--all", action="store_true", help="every status, destroyed included")
    ls.add_argument("--status", choices=STATUSES, help="only this status")
    ls.add_argument("-q", "--quiet", action="store_true", help="ids only, one per line")

    g = add_command(
        sub,
        common,
        "get",
        cmd_get,
        help="show one sandbox (and its bandwidth)",
        example="createos-sandbox get box --output json",
    )
    g.add_argument("sandbox", help="id or name")

    e = add_command(
        sub,
        common,
        "edit",
        cmd_edit,
        help="change ingress, auto-pause, SSH keys or disk size of a sandbox",
        example="createos-sandbox edit box --ingress on --auto-pause 30m",
    )
    e.add_argument("sandbox", help="id or name")
    e.add_argument("--ingress", metavar="on|off", help="public HTTPS URL on or off")
    e.add_argument("--auto-pause", metavar="DURATION|off", help="idle time before pausing, or off")
    e.add_argument("--add-ssh-key", action="append", default=[], metavar="PATH", help="repeatable")
    e.add_argument("--disk-mib", type=int, help="grow the disk to this many MiB")

    for verb, handler, what, target in (
        ("pause", cmd_pause, "snapshot a running sandbox and stop it", "paused"),
        ("resume", cmd_resume, "start a paused sandbox again", "running"),
    ):
        p = add_command(
            sub, common, verb, handler, help=what, example=f"createos-sandbox {verb} box"
        )
        p.add_argument("sandbox", help="id or name")
        _wait_flags(p, target)

    f = add_command(
        sub,
        common,
        "fork",
        cmd_fork,
        help="clone a paused sandbox into a new one and print the new id",
        example="createos-sandbox fork box --paused",
    )
    f.add_argument("sandbox", help="id or name of a paused sandbox")
    f.add_argument("--paused", action="store_true", help="leave the fork paused (default: resume)")
    f.add_argument("--ssh-key", action="append", default=[], metavar="PATH", help="repeatable")
    f.add_argument("--egress", action="append", default=[], metavar="RULE", help="repeatable")
    _wait_flags(f, "running (or paused with --paused)")

    r = add_command(
        sub,
        common,
        "rm",
        cmd_rm,
        aliases=["delete", "destroy"],
        help="destroy sandboxes; goes on past a failure and exits non-zero at the end",
        example="createos-sandbox rm box sb_01J... --force",
    )
    r.add_argument("sandboxes", nargs="*", metavar="SANDBOX", help="ids or names")
    r.add_argument(
        "-f", "-y", "--force", "--yes", dest="force", action="store_true", help="do not ask"
    )
    r.add_argument(
        "--all",
        dest="reap",
        action="store_true",
        help="instead of SANDBOX: every live sandbox the filters below match; a dry run that "
        "only lists them unless --force (createos-sandbox rm --all --run-id 8f3a2c1d --force)",
    )
    r.add_argument("--prefix", help="with --all: names starting with this")
    r.add_argument("--run-id", help="with --all: names of this run (see docs/crash-safety.md)")
    r.add_argument("--status", action="append", help="with --all: only this status (repeatable)")
    r.add_argument(
        "--older-than", type=float, metavar="SECONDS", help="with --all: created this long ago"
    )


def _wait_flags(parser: argparse.ArgumentParser, target: str) -> None:
    parser.add_argument(
        "--no-wait", action="store_true", help=f"return at once (default: wait until {target})"
    )
    parser.add_argument(
        "--wait-timeout", type=float, default=120.0, metavar="SECONDS", help="(default: 120)"
    )


# -- create ---------------------------------------------------------------------------------------


def _disk_flags(raw: list[str]) -> list[DiskAttachment]:
    out = []
    for entry in raw:
        ref, sep, mount = entry.partition(":")
        if not sep or not ref or not mount.startswith("/"):
            usage_error(f"--disk: expected NAME|ID:/mount/path, got {entry!r}")
        out.append(DiskAttachment(disk_id=ref, mount_path=mount))
    return out


def _ask(question: str, default: str = "") -> str:
    shown = f" [{default}]" if default else ""
    try:
        answer = input(f"{question}{shown}: ").strip()
    except EOFError:
        raise KeyboardInterrupt from None
    return answer or default


async def _wizard(session: AsyncSession) -> dict[str, Any]:
    """The terminal prompt of ``create`` without flags: shape, name, image."""
    shapes = [s.id for s in await session.shapes()]
    print("shapes: " + ", ".join(shapes), file=sys.stderr)
    default = DEFAULT_SHAPE if DEFAULT_SHAPE in shapes or not shapes else shapes[0]
    shape = _ask("Shape", default)
    while shapes and shape not in shapes:
        shape = _ask(f"{shape!r} is not a shape; shape", default)
    fields: dict[str, Any] = {"shape": shape}
    name = _ask("Name (empty: generated)")
    if name:
        fields["name"] = name
    catalog = await session.rootfs()
    rootfs = _ask("Root filesystem", catalog.default or "")
    if rootfs and rootfs != catalog.default:
        fields["rootfs"] = rootfs
    return fields


async def cmd_create(ctx: Context, ns: argparse.Namespace) -> int:
    flags = [ns.shape, ns.name, ns.rootfs, ns.env, ns.disk_mib, ns.ssh_key, ns.ingress]
    flags += [ns.egress, ns.auto_pause, ns.network, ns.disk]
    fields: dict[str, Any] = {
        "shape": ns.shape or DEFAULT_SHAPE,
        "name": ns.name,
        "rootfs": ns.rootfs,
        "envs": parse_env(ns.env) or None,
        "disk_mib": ns.disk_mib,
        "ssh_pubkeys": read_pubkeys(ns.ssh_key) or None,
        "ingress_enabled": True if ns.ingress else None,
        "egress": ns.egress or None,
        "networks": ns.network or None,
        "disks": _disk_flags(ns.disk) or None,
    }
    if ns.auto_pause:
        fields["auto_pause_after_seconds"] = parse_duration(ns.auto_pause, "--auto-pause")
    if not any(flags) and not ctx.out.json and is_tty():
        try:
            fields = await _wizard(ctx.session)
        except KeyboardInterrupt:
            ctx.out.note("cancelled: no sandbox was created")
            return OK
    sb = await ctx.session.sandboxes.create(**{k: v for k, v in fields.items() if v is not None})
    if ctx.out.json:
        await sb.refresh()  # the create answer lacks created_at, envs...: document the full view
    ctx.out.document(sandbox_doc(sb, action="created"))
    ctx.out.text(sb.id)
    return OK


# -- ls / get -------------------------------------------------------------------------------------


_EPOCH = _dt.datetime.min.replace(tzinfo=_dt.UTC)


async def cmd_ls(ctx: Context, ns: argparse.Namespace) -> int:
    session = ctx.session
    if ns.status or ns.all:
        rows = [sb async for sb in session.sandboxes.list(status=ns.status)]
    else:
        rows = [sb for status in ACTIVE async for sb in session.sandboxes.list(status=status)]
    rows.sort(key=lambda sb: sb.data.created_at or _EPOCH, reverse=True)
    if ns.quiet:  # wins over --output, as in the official CLI: `ls -q | xargs ...`
        for sb in rows:
            print(sb.id)
        return OK
    ctx.out.document([sandbox_doc(sb) for sb in rows])
    for sb in rows:
        ctx.out.text(f"{sb.id}\t{sb.status}\t{sb.data.name or ''}")
    return OK


async def cmd_get(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    bandwidth = None
    if sb.status in ("running", "paused"):
        try:
            bandwidth = await sb.bandwidth()
        except Exception:  # a side counter; never fails the whole get
            bandwidth = None
    ctx.out.document(sandbox_doc(sb, bandwidth=bandwidth))
    view = sandbox_doc(sb)
    for key in ("id", "name", "status", "shape", "rootfs", "region", "ip", "vcpu", "mem_mib"):
        ctx.out.text(f"{key}:\t{'' if view[key] is None else view[key]}")
    ctx.out.text(f"disk_mib:\t{view['disk_mib']}")
    ingress = view["ingress_url_template"] or ("on" if view["ingress_enabled"] else "off")
    ctx.out.text(f"ingress:\t{ingress}")
    ctx.out.text(f"egress:\t{', '.join(view['egress']) or 'open (all outbound traffic allowed)'}")
    ctx.out.text(f"env keys:\t{', '.join(view['envs'])}")
    ctx.out.text(f"auto_pause_after_seconds:\t{view['auto_pause_after_seconds'] or 'off'}")
    ctx.out.text(f"created_at:\t{view['created_at'] or ''}")
    if view["forked_from"]:
        ctx.out.text(f"forked_from:\t{view['forked_from']}")
    if bandwidth is not None:
        ctx.out.text(f"bandwidth:\t{bandwidth.used_bytes} of {bandwidth.quota_bytes} bytes used")
    return OK


# -- edit / pause / resume / fork -----------------------------------------------------------------


async def cmd_edit(ctx: Context, ns: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if ns.ingress is not None:
        changes["ingress_enabled"] = parse_on_off(ns.ingress, "--ingress")
    if ns.auto_pause is not None:
        if ns.auto_pause.strip().lower() in ("off", "disable", "no", "false"):
            changes["disable_auto_pause"] = True
        else:
            changes["auto_pause_after_seconds"] = parse_duration(ns.auto_pause, "--auto-pause")
    keys = read_pubkeys(ns.add_ssh_key)
    if not changes and not keys and ns.disk_mib is None:
        usage_error("nothing to change: pass --ingress, --auto-pause, --add-ssh-key or --disk-mib")
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    extra: dict[str, Any] = {"action": "edited"}
    if changes:
        await sb.update(**changes)
    if keys:
        extra["ssh_keys_total"] = await sb.add_ssh_pubkeys(keys)
    if ns.disk_mib is not None:
        await sb.resize(ns.disk_mib)
    await sb.refresh()
    ctx.out.document(sandbox_doc(sb, **extra))
    ingress = sb.data.ingress_url_template or ("on" if sb.data.ingress_enabled else "off")
    ctx.out.text(
        f"{sb.id}\tingress={ingress}\tauto_pause={sb.data.auto_pause_after_seconds or 'off'}"
    )
    return OK


async def cmd_pause(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    await sb.pause(wait=not ns.no_wait, wait_timeout=ns.wait_timeout)
    ctx.out.document(sandbox_doc(sb, action="paused"))
    ctx.out.text(f"{sb.id}\t{sb.status}")
    return OK


async def cmd_resume(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    await sb.resume(wait=not ns.no_wait, wait_timeout=ns.wait_timeout)
    ctx.out.document(sandbox_doc(sb, action="resumed"))
    ctx.out.text(f"{sb.id}\t{sb.status}")
    return OK


async def cmd_fork(ctx: Context, ns: argparse.Namespace) -> int:
    keys = read_pubkeys(ns.ssh_key)
    source = await resolve_sandbox(ctx.session, ns.sandbox)
    child = await source.fork(
        start_paused=True if ns.paused else None,
        ssh_pubkeys=keys or None,
        egress=ns.egress or None,
        wait=not ns.no_wait,
        wait_timeout=ns.wait_timeout,
    )
    ctx.out.document(sandbox_doc(child, action="forked", source_id=source.id))
    ctx.out.text(child.id)
    return OK


# -- rm -------------------------------------------------------------------------------------------


async def _destroy_one(session: AsyncSession, ref: str) -> tuple[dict[str, Any], int]:
    """Destroy one sandbox; a failure is reported and returned, not raised."""
    sb: Sandbox | None = None
    try:
        sb = await resolve_sandbox(session, ref)
        result = await sb.destroy()
    except Exception as exc:  # rm goes on with the others
        print(f"error: {ref}: {error_message(exc)}", file=sys.stderr)
        doc = {"ref": ref, "id": sb.id if sb else None, "deleted": False}
        return {**doc, "status": None, "error": error_message(exc)}, exit_status(exc)
    return {"ref": ref, "id": sb.id, "deleted": True, "status": str(result.status)}, OK


async def cmd_rm(ctx: Context, ns: argparse.Namespace) -> int:
    refs = [r for r in (s.strip() for s in ns.sandboxes) if r]
    if ns.reap:
        if refs:
            usage_error("rm --all takes filters, not sandbox ids or names")
        return await _reap(ctx, ns)
    if ns.prefix or ns.run_id or ns.status or ns.older_than is not None:
        usage_error("--prefix, --run-id, --status and --older-than go with --all")
    if not refs:
        usage_error("give at least one sandbox id or name (see: createos-sandbox ls)")
    what = f"sandbox {refs[0]}" if len(refs) == 1 else f"{len(refs)} sandboxes"
    if not require_force(ns.force, what, f"createos-sandbox rm {refs[0]} --force"):
        ctx.out.note("cancelled: nothing was deleted")
        return OK
    results, statuses = [], []
    for ref in refs:
        doc, status = await _destroy_one(ctx.session, ref)
        results.append(doc)
        if status != OK:
            statuses.append(status)
        else:
            ctx.out.text(f"{doc['id']}\t{doc['status']}")
    failed = len(statuses)
    ctx.out.document(
        {"action": "deleted", "results": results, "deleted": len(refs) - failed, "failed": failed}
    )
    if not statuses:
        return OK
    return statuses[0] if len(refs) == 1 else FAILED


async def _reap(ctx: Context, ns: argparse.Namespace) -> int:
    """``rm --all``: what ``session.sandboxes.reap`` matches; destroyed only with --force."""
    filtered = bool(ns.prefix or ns.run_id or ns.status or ns.older_than is not None)
    try:
        result = await ctx.session.sandboxes.reap(
            ns.prefix,
            run_id=ns.run_id,
            status=ns.status,
            older_than=ns.older_than,
            match_all=not filtered,
            dry_run=not ns.force,
        )
    except (TypeError, ValueError) as exc:
        usage_error(str(exc))
    for line in result.lines():
        ctx.out.text(line)
    if result.dry_run:
        ctx.out.note(f"dry run: {len(result.matched)} would be destroyed; add --force to do it")
    ctx.out.document(
        {
            "action": "reap",
            "dry_run": result.dry_run,
            "results": [
                {
                    "id": o.id,
                    "name": o.name,
                    "status": o.status,
                    "action": o.action,
                    "error": o.error,
                }
                for o in result.outcomes
            ],
            "matched": len(result.matched),
            "destroyed": len(result.destroyed),
            "failed": len(result.failed),
        }
    )
    return OK if result.ok else FAILED
