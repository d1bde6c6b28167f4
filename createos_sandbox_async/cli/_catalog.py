"""Catalog and identity: ``whoami``, ``shapes``, ``rootfs``."""

from __future__ import annotations

import argparse

from ._common import OK, Context, Subparsers, add_command, jsonable


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    add_command(
        sub,
        common,
        "whoami",
        cmd_whoami,
        help="the identity behind the API key and its sandbox counts",
        example="createos-sandbox whoami --output json",
    )
    add_command(
        sub,
        common,
        "shapes",
        cmd_shapes,
        help="the machine sizes (no key needed)",
        example="createos-sandbox shapes",
    )
    add_command(
        sub,
        common,
        "rootfs",
        cmd_rootfs,
        help="the built-in images a sandbox can boot (no key needed; templates: template ls)",
        example="createos-sandbox rootfs --output json",
    )


async def cmd_whoami(ctx: Context, ns: argparse.Namespace) -> int:
    me = await ctx.session.whoami()
    ctx.out.document(me)
    ctx.out.text(f"user_id:\t{me.user_id}")
    stats = me.stats
    ctx.out.text(f"sandboxes:\t{stats.running} running, {stats.paused} paused, {stats.other} other")
    return OK


async def cmd_shapes(ctx: Context, ns: argparse.Namespace) -> int:
    shapes = await ctx.session.shapes()
    ctx.out.document(shapes)
    ctx.out.text("ID\tVCPU\tMEM_MIB\tDISK_MIB")
    for s in shapes:
        ctx.out.text(f"{s.id}\t{s.vcpu or ''}\t{s.mem_mib or ''}\t{s.default_disk_mib or ''}")
    return OK


async def cmd_rootfs(ctx: Context, ns: argparse.Namespace) -> int:
    catalog = await ctx.session.rootfs()
    ctx.out.document(catalog)
    described = {e.name: e for e in catalog.entries}
    for name in catalog.rootfs or tuple(described):
        entry = jsonable(described.get(name)) or {}
        notes = [entry.get("description") or ""]
        if name == catalog.default:
            notes.append("(default)")
        if entry.get("deprecated"):
            notes.append(f"(deprecated: use {entry.get('successor')})")
        ctx.out.text(f"{name}\t{' '.join(n for n in notes if n)}")
    return OK
