"""Account resources and sandbox policy: the ``network``, ``disk``, ``firewall`` and ``template``
groups (as far as the SDK models them)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from createos_sandbox_async import AsyncSession

from ._common import (
    FAILED,
    LOCAL_FILE,
    OK,
    CliError,
    Context,
    Subparsers,
    add_command,
    add_group,
    check_remote_path,
    error_message,
    exit_status,
    is_tty,
    jsonable,
    require_force,
    resolve_sandbox,
    usage_error,
)


def _force_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "-y", "--force", "--yes", dest="force", action="store_true", help="do not ask"
    )


async def _delete_each(
    ctx: Context,
    refs: list[str],
    force: bool,
    kind: str,
    delete: Callable[[str], Awaitable[object]],
) -> int:
    """Delete several things; go on past a failure, report each, exit non-zero at the end."""
    what = f"{kind} {refs[0]}" if len(refs) == 1 else f"{len(refs)} {kind}s"
    if not require_force(force, what, f"createos-sandbox {kind} rm {refs[0]} --force"):
        ctx.out.note("cancelled: nothing was deleted")
        return OK
    results: list[dict[str, Any]] = []
    statuses: list[int] = []
    for ref in refs:
        try:
            await delete(ref)
        except Exception as exc:  # go on with the others
            print(f"error: {ref}: {error_message(exc)}", file=sys.stderr)
            results.append({"ref": ref, "deleted": False, "error": error_message(exc)})
            statuses.append(exit_status(exc))
            continue
        results.append({"ref": ref, "deleted": True, "error": None})
        ctx.out.text(f"{ref}\tdeleted")
    failed = len(statuses)
    ctx.out.document(
        {
            "action": f"{kind}_deleted",
            "results": results,
            "deleted": len(refs) - failed,
            "failed": failed,
        }
    )
    if not statuses:
        return OK
    return statuses[0] if len(refs) == 1 else FAILED


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    _register_network(add_group(sub, "network", help="private networks between sandboxes"), common)
    _register_disk(add_group(sub, "disk", help="S3 buckets mounted into sandboxes"), common)
    _register_firewall(
        add_group(sub, "firewall", help="what a sandbox may reach (egress allowlist)"), common
    )
    _register_template(
        add_group(sub, "template", help="sandbox images built from a Dockerfile"), common
    )


# -- network --------------------------------------------------------------------------------------


def _register_network(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    c = add_command(
        sub,
        common,
        "create",
        network_create,
        help="create a network",
        example="createos-sandbox network create backend",
    )
    c.add_argument("name")
    add_command(
        sub,
        common,
        "ls",
        network_ls,
        aliases=["list"],
        help="list your networks",
        example="createos-sandbox network ls",
    )
    s = add_command(
        sub,
        common,
        "show",
        network_show,
        help="one network and its members",
        example="createos-sandbox network show backend",
    )
    s.add_argument("network", help="name or id")
    r = add_command(
        sub,
        common,
        "rm",
        network_rm,
        aliases=["delete"],
        help="delete networks (members are detached first)",
        example="createos-sandbox network rm backend --force",
    )
    r.add_argument("networks", nargs="+", metavar="NETWORK", help="names or ids")
    _force_flag(r)
    for verb, handler, what in (
        ("attach", network_attach, "join a running sandbox to a network"),
        ("detach", network_detach, "take a sandbox off a network"),
    ):
        a = add_command(
            sub,
            common,
            verb,
            handler,
            help=what,
            example=f"createos-sandbox network {verb} box backend",
        )
        a.add_argument("sandbox", help="id or name")
        a.add_argument("network", help="name or id")


async def network_create(ctx: Context, ns: argparse.Namespace) -> int:
    net = await ctx.session.networks.create(ns.name)
    ctx.out.document({"action": "network_created", **jsonable(net)})
    ctx.out.text(net.id)
    return OK


async def network_ls(ctx: Context, ns: argparse.Namespace) -> int:
    nets = [n async for n in ctx.session.networks.list()]
    ctx.out.document(nets)
    for n in nets:
        ctx.out.text(f"{n.id}\t{n.name}\t{n.member_count or 0}")
    return OK


async def network_show(ctx: Context, ns: argparse.Namespace) -> int:
    net = await ctx.session.networks.get(ns.network)
    ctx.out.document(net)
    ctx.out.text(f"{net.id}\t{net.name}")
    for m in net.members or ():
        ctx.out.text(f"  {m.sandbox_id}\t{m.status}\t{m.name or ''}\t{m.ip or ''}")
    return OK


async def network_rm(ctx: Context, ns: argparse.Namespace) -> int:
    session = ctx.session

    async def delete(ref: str) -> None:
        net = await session.networks.get(ref)
        for member in net.members or ():
            sb = await session.sandboxes.get(member.sandbox_id)
            await sb.detach_network(net.id)
        await session.networks.delete(net.id)

    return await _delete_each(ctx, ns.networks, ns.force, "network", delete)


async def network_attach(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    await sb.attach_network(ns.network)
    ctx.out.document({"action": "network_attached", "network": ns.network, "sandbox_id": sb.id})
    ctx.out.text(f"{sb.id}\tattached\t{ns.network}")
    return OK


async def network_detach(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    await sb.detach_network(ns.network)
    ctx.out.document({"action": "network_detached", "network": ns.network, "sandbox_id": sb.id})
    ctx.out.text(f"{sb.id}\tdetached\t{ns.network}")
    return OK


# -- disk -----------------------------------------------------------------------------------------


def _register_disk(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    c = add_command(
        sub,
        common,
        "create",
        disk_create,
        help="register an S3 bucket as a disk (keys: flags, or CREATEOS_DISK_ACCESS_KEY / "
        "CREATEOS_DISK_SECRET_KEY, or a prompt on a terminal)",
        example="createos-sandbox disk create data --bucket b --endpoint https://s3.amazonaws.com",
    )
    c.add_argument("name", help="lowercase letters, digits and '-'")
    c.add_argument("--bucket", required=True)
    c.add_argument("--endpoint", required=True, help="http(s) URL of the S3 service")
    c.add_argument("--access-key", help="(default: $CREATEOS_DISK_ACCESS_KEY)")
    c.add_argument("--secret-key", help="(default: $CREATEOS_DISK_SECRET_KEY; never printed)")
    c.add_argument("--region", help="(default: none)")
    c.add_argument("--path-style", action="store_true", help="path-style URLs (MinIO and co.)")
    add_command(
        sub,
        common,
        "ls",
        disk_ls,
        aliases=["list"],
        help="list your disks",
        example="createos-sandbox disk ls",
    )
    s = add_command(
        sub, common, "show", disk_show, help="one disk", example="createos-sandbox disk show data"
    )
    s.add_argument("disk", help="name or id")
    r = add_command(
        sub,
        common,
        "rm",
        disk_rm,
        aliases=["delete"],
        help="forget disks (detached from sandboxes first; buckets are untouched)",
        example="createos-sandbox disk rm data --force",
    )
    r.add_argument("disks", nargs="+", metavar="DISK", help="names or ids")
    _force_flag(r)
    a = add_command(
        sub,
        common,
        "attach",
        disk_attach,
        help="mount a disk in a running sandbox",
        example="createos-sandbox disk attach box data /mnt/data",
    )
    d = add_command(
        sub,
        common,
        "detach",
        disk_detach,
        help="unmount a disk from a sandbox",
        example="createos-sandbox disk detach box data /mnt/data",
    )
    for parser in (a, d):
        parser.add_argument("sandbox", help="id or name")
        parser.add_argument("disk", help="name or id")
        parser.add_argument("mount_path", help="absolute guest path")
    a.add_argument("--sub-path", help="mount only this folder of the bucket (default: all)")


def _secret(value: str | None, env: str, prompt: str) -> str:
    """A credential from the flag, the environment, or a hidden prompt on a terminal."""
    found = value or os.environ.get(env)
    if not found and is_tty():
        found = getpass.getpass(prompt + ": ")
    if not found:
        usage_error(f"give {prompt.lower()} with its flag or ${env}")
    return found


async def disk_create(ctx: Context, ns: argparse.Namespace) -> int:
    access = _secret(ns.access_key, "CREATEOS_DISK_ACCESS_KEY", "Access key")
    secret = _secret(ns.secret_key, "CREATEOS_DISK_SECRET_KEY", "Secret key")
    disk = await ctx.session.disks.create(
        ns.name,
        bucket=ns.bucket,
        endpoint=ns.endpoint,
        access_key=access,
        secret_key=secret,
        region=ns.region,
        use_path_style=True if ns.path_style else None,
    )
    ctx.out.document({"action": "disk_created", **jsonable(disk)})
    ctx.out.text(disk.id)
    return OK


async def disk_ls(ctx: Context, ns: argparse.Namespace) -> int:
    disks = [d async for d in ctx.session.disks.list()]
    ctx.out.document(disks)
    for d in disks:
        ctx.out.text(f"{d.id}\t{d.name}\t{d.kind}\t{d.config.bucket}")
    return OK


async def disk_show(ctx: Context, ns: argparse.Namespace) -> int:
    disk = await ctx.session.disks.get(ns.disk)
    ctx.out.document(disk)
    ctx.out.text(
        f"{disk.id}\t{disk.name}\t{disk.kind}\t{disk.config.bucket}\t{disk.config.endpoint}"
    )
    return OK


async def _detach_everywhere(session: AsyncSession, disk_id: str) -> None:
    """Unmount a disk from every running or paused sandbox (there is no reverse lookup)."""
    for status in ("running", "paused"):
        async for sb in session.sandboxes.list(status=status):
            for mount in await sb.list_disks():
                if mount.disk_id == disk_id:
                    await sb.detach_disk(disk_id, mount.mount_path)


async def disk_rm(ctx: Context, ns: argparse.Namespace) -> int:
    session = ctx.session

    async def delete(ref: str) -> None:
        disk = await session.disks.get(ref)
        await _detach_everywhere(session, disk.id)
        await session.disks.delete(disk.id)

    return await _delete_each(ctx, ns.disks, ns.force, "disk", delete)


async def disk_attach(ctx: Context, ns: argparse.Namespace) -> int:
    mount = check_remote_path(ns.mount_path, "mount path")
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    await sb.attach_disk(ns.disk, mount, sub_path=ns.sub_path)
    ctx.out.document(
        {"action": "disk_attached", "disk": ns.disk, "sandbox_id": sb.id, "mount_path": mount}
    )
    ctx.out.text(f"{sb.id}\tattached\t{ns.disk}\t{mount}")
    return OK


async def disk_detach(ctx: Context, ns: argparse.Namespace) -> int:
    mount = check_remote_path(ns.mount_path, "mount path")
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    disk = await ctx.session.disks.get(ns.disk)  # detach takes the disk_... id, not the name
    await sb.detach_disk(disk.id, mount)
    ctx.out.document(
        {"action": "disk_detached", "disk": ns.disk, "sandbox_id": sb.id, "mount_path": mount}
    )
    ctx.out.text(f"{sb.id}\tdetached\t{ns.disk}\t{mount}")
    return OK


# -- firewall -------------------------------------------------------------------------------------


def _register_firewall(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = add_command(
        sub,
        common,
        "show",
        firewall_show,
        help="the destinations a sandbox may reach (none listed: everything)",
        example="createos-sandbox firewall show box",
    )
    t = add_command(
        sub,
        common,
        "set",
        firewall_set,
        help="replace the allowlist: host[:port], ip[:port] or cidr[:port]",
        example="createos-sandbox firewall set box pypi.org github.com 1.1.1.1:53",
    )
    c = add_command(
        sub,
        common,
        "clear",
        firewall_clear,
        help="allow every destination again",
        example="createos-sandbox firewall clear box",
    )
    for parser in (s, t, c):
        parser.add_argument("sandbox", help="id or name")
    t.add_argument("rules", nargs="+", metavar="RULE", help="commas may separate rules too")
    _force_flag(c)  # accepted for the official CLI's sake; clearing does not ask


async def _show_rules(ctx: Context, sandbox_id: str, rules: tuple[str, ...], action: str) -> int:
    doc: dict[str, Any] = {"sandbox_id": sandbox_id, "rules": list(rules)}
    if action:
        doc["action"] = action
    ctx.out.document(doc)
    if not rules:
        ctx.out.text("open: all outbound traffic is allowed")
    for rule in rules:
        ctx.out.text(rule)
    return OK


async def firewall_show(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    return await _show_rules(ctx, sb.id, await sb.get_egress(), "")


async def firewall_set(ctx: Context, ns: argparse.Namespace) -> int:
    rules = [r.strip() for raw in ns.rules for r in raw.split(",") if r.strip()]
    if not rules:
        usage_error("give at least one rule (to allow everything: firewall clear)")
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    return await _show_rules(ctx, sb.id, await sb.set_egress(rules), "firewall_updated")


async def firewall_clear(ctx: Context, ns: argparse.Namespace) -> int:
    sb = await resolve_sandbox(ctx.session, ns.sandbox)
    return await _show_rules(ctx, sb.id, await sb.set_egress([]), "firewall_cleared")


# -- template -------------------------------------------------------------------------------------


def _register_template(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = add_command(
        sub,
        common,
        "submit",
        template_submit,
        aliases=["build", "create"],
        help="build an image from a Dockerfile and follow its log",
        example="createos-sandbox template submit rails -f Dockerfile",
    )
    s.add_argument("name")
    s.add_argument("-f", "--file", default="Dockerfile", help="(default: Dockerfile)")
    s.add_argument("--base", help="base rootfs (default: the service's)")
    s.add_argument("--no-follow", action="store_true", help="return once submitted")
    add_command(
        sub,
        common,
        "ls",
        template_ls,
        aliases=["list"],
        help="list your templates",
        example="createos-sandbox template ls",
    )
    sh = add_command(
        sub,
        common,
        "show",
        template_show,
        aliases=["get"],
        help="one template",
        example="createos-sandbox template show rails --dockerfile",
    )
    sh.add_argument("template", help="name or id")
    sh.add_argument("--dockerfile", action="store_true", help="include the Dockerfile")
    lg = add_command(
        sub,
        common,
        "logs",
        template_logs,
        help="the build log",
        example="createos-sandbox template logs rails --follow",
    )
    lg.add_argument("template", help="name or id")
    lg.add_argument("--follow", action="store_true", help="until the build ends")
    r = add_command(
        sub,
        common,
        "rm",
        template_rm,
        aliases=["delete"],
        help="delete templates",
        example="createos-sandbox template rm rails --force",
    )
    r.add_argument("templates", nargs="+", metavar="TEMPLATE", help="names or ids")
    _force_flag(r)


async def _follow(ctx: Context, template_id: str) -> tuple[list[str], str | None]:
    """Print (or collect) log lines until the final frame; returns them and the final status."""
    lines: list[str] = []
    status = None
    async with ctx.session.templates.follow_logs(template_id) as log:
        async for event in log:
            if event.final:
                status = event.status
            elif event.line is not None:
                lines.append(event.line.rstrip("\n"))
                ctx.out.text(lines[-1])
    return lines, status


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}", LOCAL_FILE) from None


async def template_submit(ctx: Context, ns: argparse.Namespace) -> int:
    dockerfile = _read_text(ns.file)
    templates = ctx.session.templates
    tpl = await templates.create(ns.name, dockerfile, base=ns.base)
    ctx.out.note(f"submitted template {tpl.name} ({tpl.id})")
    lines: list[str] = []
    if not ns.no_follow:
        lines, _ = await _follow(ctx, tpl.id)
        tpl = await templates.get(tpl.id)
    ctx.out.document({"action": "template_submitted", **jsonable(tpl), "log": lines})
    if ns.no_follow:
        ctx.out.text(tpl.id)
    if tpl.status == "failed":
        raise CliError(f"template {tpl.name} failed to build (see: template logs {tpl.name})")
    return OK


async def template_ls(ctx: Context, ns: argparse.Namespace) -> int:
    tpls = [t async for t in ctx.session.templates.list()]
    ctx.out.document(tpls)
    for t in tpls:
        ctx.out.text(f"{t.id}\t{t.name}\t{t.status}")
    return OK


async def template_show(ctx: Context, ns: argparse.Namespace) -> int:
    tpl = await ctx.session.templates.get(ns.template, include_dockerfile=ns.dockerfile)
    ctx.out.document(tpl)
    ctx.out.text(f"{tpl.id}\t{tpl.name}\t{tpl.status}\t{tpl.base or ''}")
    if tpl.dockerfile:
        ctx.out.text(tpl.dockerfile.rstrip("\n"))
    return OK


async def template_logs(ctx: Context, ns: argparse.Namespace) -> int:
    if ns.follow:
        lines, status = await _follow(ctx, ns.template)
        ctx.out.document({"template": ns.template, "status": status, "log": lines})
        if status == "failed":
            raise CliError(f"template {ns.template} failed to build")
        return OK
    text = await ctx.session.templates.logs(ns.template)
    ctx.out.document({"template": ns.template, "status": None, "log": text.splitlines()})
    if not ctx.out.json:
        sys.stdout.write(text)
    return OK


async def template_rm(ctx: Context, ns: argparse.Namespace) -> int:
    return await _delete_each(ctx, ns.templates, ns.force, "template", ctx.session.templates.delete)
