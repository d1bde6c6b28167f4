"""Routes for account resources and sandbox policies: access tokens, egress, bandwidth, SSH keys,
networks, disks and templates. Mostly bookkeeping: emulated sandboxes have no network at all, so
egress rules, overlay networks and S3 disks are recorded and reported, not enforced."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _ids
from ._bodies import parse_attachment, validate_egress, validate_keys
from ._http import (
    dumps,
    fail,
    json_body,
    ok,
    opt_bool,
    opt_int,
    opt_str,
    opt_str_list,
    page,
    query_bool,
    query_int,
)
from .faults import StreamEnded
from .state import AccessToken, Disk, Network, Template

if TYPE_CHECKING:
    from .app import Emulator

_DISK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_FROM = re.compile(
    r"^FROM\s+(?:--platform=\S+\s+)?([a-z0-9][a-z0-9._/-]*(?::[\w.-]+)?)"
    r"(?:\s+AS\s+\S+)?\s*$",
    re.IGNORECASE,
)


def register(app: web.Application, emu: Emulator) -> None:
    """Add the resource routes to the application."""
    h = _Handlers(emu)
    r = app.router
    sb = "/v1/sandboxes/{id}"
    r.add_post(sb + "/ssh-pubkeys", h.add_keys)
    r.add_get(sb + "/egress", h.get_egress)
    r.add_put(sb + "/egress", h.put_egress)
    r.add_get(sb + "/bandwidth", h.get_bandwidth)
    r.add_post(sb + "/bandwidth/recharge", h.recharge)
    r.add_post(sb + "/networks", h.attach_network)
    r.add_delete(sb + "/networks/{network_id}", h.detach_network)
    r.add_get(sb + "/disks", h.list_sandbox_disks)
    r.add_post(sb + "/disks", h.attach_disk)
    r.add_delete(sb + "/disks/{disk}", h.detach_disk)
    r.add_post(sb + "/access-token", h.create_token)
    r.add_get(sb + "/access-token", h.get_token)
    r.add_delete(sb + "/access-token", h.delete_token)
    r.add_post(sb + "/access-token/rotate", h.rotate_token)
    r.add_get("/v1/networks", h.list_networks)
    r.add_post("/v1/networks", h.create_network)
    r.add_get("/v1/networks/{network_id}", h.get_network)
    r.add_delete("/v1/networks/{network_id}", h.delete_network)
    r.add_get("/v1/disks", h.list_disks)
    r.add_post("/v1/disks", h.create_disk)
    r.add_get("/v1/disks/{disk}", h.get_disk)
    r.add_patch("/v1/disks/{disk}", h.rotate_disk)
    r.add_delete("/v1/disks/{disk}", h.delete_disk)
    r.add_get("/v1/templates", h.list_templates)
    r.add_post("/v1/templates", h.create_template)
    r.add_get("/v1/templates/{template_id}", h.get_template)
    r.add_delete("/v1/templates/{template_id}", h.delete_template)
    r.add_get("/v1/templates/{template_id}/logs", h.template_logs)


class _Handlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _owner(self, request: web.Request) -> str:
        return self.emu.tenant(request).user_id

    # ------------------------------------------------------------- keys, egress, bandwidth

    async def add_keys(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        body = await json_body(request)
        keys = opt_str_list(body, "keys")
        if not keys:
            fail(400, "keys must be a non-empty list", fields={"keys": "required"})
        for key in validate_keys(keys):
            if key not in sb.ssh_pubkeys:
                sb.ssh_pubkeys.append(key)
        return ok({"count": len(sb.ssh_pubkeys)})

    async def get_egress(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        return ok({"id": sb.id, "egress": list(sb.egress or [])})

    async def put_egress(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        body = await json_body(request, required=False)
        sb.egress = validate_egress(opt_str_list(body, "egress")) or None
        return ok({"id": sb.id, "egress": list(sb.egress or [])})

    async def get_bandwidth(self, request: web.Request) -> web.StreamResponse:
        return ok(self.emu.live(request).bandwidth_view())

    async def recharge(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)  # ownership before anything else: foreign ids are 404
        body = await json_body(request)
        add = opt_int(body, "add_bytes")
        if add is None or add < 1:
            fail(400, "add_bytes must be a positive integer", fields={"add_bytes": "must be >= 1"})
        if sb.bandwidth_quota >= 0:
            sb.bandwidth_quota += add
        return ok(sb.bandwidth_view())

    # ------------------------------------------------------------- networks

    async def attach_network(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        body = await json_body(request)
        ref = opt_str(body, "id", required=True)
        assert ref is not None
        net = self.emu.network_by_ref(sb.owner, ref)
        if sb.status != "running":
            fail(409, f"sandbox {sb.id} must be running to attach a network (status {sb.status})")
        if net.id not in sb.networks:
            sb.networks.append(net.id)
            net.members.append(sb.id)
        return ok({"ok": True})

    async def detach_network(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        net_id = request.match_info["network_id"]
        net = self.emu.network_by_ref(sb.owner, net_id)
        if net.id not in sb.networks:
            fail(404, f"sandbox {sb.id} is not attached to network {net_id}")
        sb.networks.remove(net.id)
        net.members.remove(sb.id)
        return ok({"ok": True})

    async def list_networks(self, request: web.Request) -> web.StreamResponse:
        owner = self._owner(request)
        rows = [
            n.view(detail=False, sandboxes=self.emu.sandboxes)
            for n in self.emu.networks.values()
            if n.owner == owner
        ]
        return page(request, rows)

    async def create_network(self, request: web.Request) -> web.StreamResponse:
        owner = self._owner(request)
        body = await json_body(request)
        name = opt_str(body, "name", required=True)
        assert name is not None
        if any(n.owner == owner and n.name == name for n in self.emu.networks.values()):
            fail(409, f"a network named {name!r} already exists", fields={"name": "taken"})
        net = Network(id=_ids.new_id("net"), owner=owner, name=name)
        self.emu.networks[net.id] = net
        return ok(net.view(detail=True, sandboxes=self.emu.sandboxes))

    async def get_network(self, request: web.Request) -> web.StreamResponse:
        net = self.emu.network_by_ref(self._owner(request), request.match_info["network_id"])
        return ok(net.view(detail=True, sandboxes=self.emu.sandboxes))

    async def delete_network(self, request: web.Request) -> web.StreamResponse:
        net = self.emu.network_by_ref(self._owner(request), request.match_info["network_id"])
        if net.members:
            fail(409, f"network {net.id} is in use by {len(net.members)} sandbox(es)")
        del self.emu.networks[net.id]
        return ok({"ok": True})

    # ------------------------------------------------------------- disks

    async def list_sandbox_disks(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        rows = []
        for mount in sb.disks:
            disk = self.emu.disks.get(mount.disk_id)
            if disk is None:
                continue
            row: dict[str, Any] = {
                "disk_id": disk.id,
                "name": disk.name,
                "kind": "s3",
                "config": disk.config,
                "mount_path": mount.mount_path,
                "mount_status": mount.status,
            }
            if mount.sub_path:
                row["sub_path"] = mount.sub_path
            rows.append(row)
        return page(request, rows)

    async def attach_disk(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        body = await json_body(request)
        mount = parse_attachment(self.emu, sb.owner, body)
        if sb.status != "running":
            fail(409, f"sandbox {sb.id} must be running to attach a disk (status {sb.status})")
        if any(m.mount_path == mount.mount_path for m in sb.disks):
            fail(
                409,
                f"mount_path {mount.mount_path} is already in use",
                fields={"mount_path": "in use"},
            )
        sb.disks.append(mount)
        return ok({"id": sb.id})

    async def detach_disk(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        disk_id = request.match_info["disk"]
        mount_path = request.query.get("mount_path")
        if not mount_path:
            fail(400, "mount_path query parameter is required", fields={"mount_path": "required"})
        if sb.status in ("destroying", "destroyed", "failed"):
            fail(409, f"sandbox {sb.id} is {sb.status}")
        for mount in sb.disks:
            if mount.disk_id == disk_id and mount.mount_path == mount_path:
                sb.disks.remove(mount)
                return ok({"detached": True})
        fail(404, f"disk {disk_id} is not mounted at {mount_path}")

    async def list_disks(self, request: web.Request) -> web.StreamResponse:
        owner = self._owner(request)
        return page(request, [d.view() for d in self.emu.disks.values() if d.owner == owner])

    @staticmethod
    def _credentials(body: dict[str, Any]) -> dict[str, str]:
        creds = body.get("credentials")
        if not isinstance(creds, dict):
            fail(
                400,
                "credentials {access_key, secret_key} are required",
                fields={"credentials": "required"},
            )
        access = creds.get("access_key")
        secret = creds.get("secret_key")
        if not isinstance(access, str) or not access or not isinstance(secret, str) or not secret:
            fail(
                400,
                "credentials.access_key and credentials.secret_key must be non-empty",
                fields={"credentials": "empty key"},
            )
        return {"access_key": access, "secret_key": secret}

    async def create_disk(self, request: web.Request) -> web.StreamResponse:
        owner = self._owner(request)
        body = await json_body(request)
        name = opt_str(body, "name", required=True)
        assert name is not None
        if not _DISK_NAME.match(name):
            fail(400, "name must match ^[a-z0-9][a-z0-9-]{0,62}$", fields={"name": "invalid"})
        if (opt_str(body, "kind") or "s3") != "s3":
            fail(400, "kind must be 's3'", fields={"kind": "unsupported"})
        config = body.get("config")
        if not isinstance(config, dict):
            fail(400, "config {bucket, endpoint} is required", fields={"config": "required"})
        bucket = opt_str(config, "bucket", required=True)
        endpoint = opt_str(config, "endpoint", required=True)
        assert endpoint is not None
        if not endpoint.startswith(("http://", "https://")):
            fail(400, "config.endpoint must be an http(s) URL", fields={"config": "bad endpoint"})
        clean: dict[str, Any] = {"bucket": bucket, "endpoint": endpoint}
        region = opt_str(config, "region")
        if region:
            clean["region"] = region
        path_style = opt_bool(config, "use_path_style")
        if path_style is not None:
            clean["use_path_style"] = path_style
        creds = self._credentials(body)
        if any(d.owner == owner and d.name == name for d in self.emu.disks.values()):
            fail(409, f"a disk named {name!r} already exists", fields={"name": "taken"})
        disk = Disk(id=_ids.new_id("disk"), owner=owner, name=name, config=clean, credentials=creds)
        self.emu.disks[disk.id] = disk
        return ok(disk.view())

    async def get_disk(self, request: web.Request) -> web.StreamResponse:
        return ok(self.emu.disk_by_ref(self._owner(request), request.match_info["disk"]).view())

    async def rotate_disk(self, request: web.Request) -> web.StreamResponse:
        disk = self.emu.disk_by_ref(self._owner(request), request.match_info["disk"])
        body = await json_body(request)
        disk.credentials = self._credentials(body)
        return ok(disk.view())

    async def delete_disk(self, request: web.Request) -> web.StreamResponse:
        disk = self.emu.disk_by_ref(self._owner(request), request.match_info["disk"])
        for sb in self.emu.sandboxes.values():
            if sb.status != "destroyed" and any(m.disk_id == disk.id for m in sb.disks):
                fail(409, f"disk {disk.id} is attached to sandbox {sb.id}")
        del self.emu.disks[disk.id]
        return ok({"deleted": True})

    # ------------------------------------------------------------- access tokens

    async def create_token(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        if sb.access_token is not None:
            fail(409, f"sandbox {sb.id} already has an enabled access token; rotate it instead")
        token = AccessToken(token=_ids.secret("skp_sb_"), created_at=_ids.now())
        sb.access_token = token
        self.emu.tokens[token.token] = sb
        return ok({"token": token.token, "enabled": True, "created_at": _ids.iso(token.created_at)})

    async def get_token(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        if sb.access_token is None:
            return ok({"enabled": False})
        return ok(sb.access_token.metadata())

    async def delete_token(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.sandbox(request)
        if sb.access_token is not None:
            self.emu.tokens.pop(sb.access_token.token, None)
            sb.access_token = None
        return ok({"enabled": False})

    async def rotate_token(self, request: web.Request) -> web.StreamResponse:
        sb = self.emu.live(request)
        old = sb.access_token
        if old is None:
            fail(404, f"sandbox {sb.id} has no access token")
        self.emu.tokens.pop(old.token, None)
        token = AccessToken(
            token=_ids.secret("skp_sb_"), created_at=old.created_at, rotated_at=_ids.now()
        )
        sb.access_token = token
        self.emu.tokens[token.token] = sb
        return ok(
            {
                "token": token.token,
                "enabled": True,
                "created_at": _ids.iso(token.created_at),
                "rotated_at": _ids.iso(token.rotated_at),
            }
        )

    # ------------------------------------------------------------- templates

    def _template(self, request: web.Request) -> Template:
        owner = self._owner(request)
        ref = request.match_info["template_id"]
        for tpl in self.emu.templates.values():
            if tpl.owner == owner and ref in (tpl.id, tpl.name):
                return tpl
        fail(404, f"template {ref} not found")

    async def list_templates(self, request: web.Request) -> web.StreamResponse:
        owner = self._owner(request)
        return page(request, [t.view() for t in self.emu.templates.values() if t.owner == owner])

    async def create_template(self, request: web.Request) -> web.StreamResponse:
        owner = self._owner(request)
        body = await json_body(request)
        name = opt_str(body, "name", required=True)
        dockerfile = opt_str(body, "dockerfile", required=True)
        assert name is not None and dockerfile is not None
        base = opt_str(body, "base") or "devbox:1"
        lines = [ln.strip() for ln in dockerfile.splitlines()]
        steps = [ln for ln in lines if ln and not ln.startswith("#")]
        froms = [ln for ln in steps if ln.upper().startswith("FROM")]
        if len(froms) != 1 or not steps or steps[0] != froms[0] or not _FROM.match(froms[0]):
            fail(
                400,
                "dockerfile must start with a single FROM <image>",
                fields={"dockerfile": "single FROM required"},
            )
        if any(ln.split(None, 1)[0].upper() in ("COPY", "ADD") for ln in steps):
            fail(
                400,
                "COPY and ADD are not permitted in templates",
                fields={"dockerfile": "COPY/ADD not permitted"},
            )
        if any(t.owner == owner and t.name == name for t in self.emu.templates.values()):
            fail(409, f"a template named {name!r} already exists", fields={"name": "taken"})
        tpl = Template(
            id=_ids.new_id("tpl"), owner=owner, name=name, dockerfile=dockerfile, base=base
        )
        self.emu.templates[tpl.id] = tpl
        self.emu.spawn_background(self._build(tpl, steps))
        return ok(tpl.view())

    def _changed(self, tpl: Template) -> None:
        old = tpl.changed
        tpl.changed = asyncio.Event()
        old.set()

    async def _build(self, tpl: Template, steps: list[str]) -> None:
        """Pretend to build: one log line per step; a `RUN false` / `exit 1` step fails it."""
        pause = max(self.emu.transition_delay, 0.01)
        await asyncio.sleep(pause)
        tpl.status = "building"
        self._changed(tpl)
        failed = False
        for n, step in enumerate(steps, 1):
            await asyncio.sleep(pause)
            tpl.log.append(
                {
                    "ts": _ids.iso(_ids.now()),
                    "level": "info",
                    "line": f"Step {n}/{len(steps)} : {step}",
                    "attempt": 1,
                }
            )
            if step.upper().startswith("RUN") and re.search(
                r"(^|\s)(false|exit\s+[1-9])", step[3:]
            ):
                tpl.log.append(
                    {
                        "ts": _ids.iso(_ids.now()),
                        "level": "error",
                        "line": f"step {n} failed: exit status 1",
                        "attempt": 1,
                    }
                )
                failed = True
                break
            self._changed(tpl)
        tpl.status = "failed" if failed else "ready"
        if not failed:
            tpl.built_at = _ids.now()
            tpl.log.append(
                {
                    "ts": _ids.iso(_ids.now()),
                    "level": "info",
                    "line": "template ready",
                    "attempt": 1,
                }
            )
        self._changed(tpl)

    async def get_template(self, request: web.Request) -> web.StreamResponse:
        tpl = self._template(request)
        include = request.query.get("include")
        if include not in (None, "", "dockerfile"):
            fail(400, "include must be 'dockerfile'", fields={"include": "unknown"})
        return ok(tpl.view(include_dockerfile=include == "dockerfile"))

    async def delete_template(self, request: web.Request) -> web.StreamResponse:
        tpl = self._template(request)
        del self.emu.templates[tpl.id]
        return ok({"ok": True})

    async def template_logs(self, request: web.Request) -> web.StreamResponse:
        tpl = self._template(request)
        attempt = query_int(request, "attempt")
        if attempt is not None and attempt != 1:
            fail(404, f"template {tpl.id} has no build attempt {attempt}")
        if not query_bool(request, "follow"):
            text = "".join(entry["line"] + "\n" for entry in tpl.log)
            return web.Response(text=text, content_type="text/plain")
        resp, writer = await self.emu.open_stream(request)
        sent = 0
        try:
            while True:
                changed = tpl.changed
                while sent < len(tpl.log):
                    await writer.frame((dumps(tpl.log[sent]) + "\n").encode())
                    sent += 1
                if tpl.status in ("ready", "failed"):
                    await writer.final(
                        (dumps({"final": True, "status": tpl.status}) + "\n").encode()
                    )
                    await resp.write_eof()
                    break
                await changed.wait()
        except StreamEnded:
            pass
        return resp
