"""``session.sandboxes``: create, get, look up by IP and list sandboxes.

The collection of a session, beside the other collections (templates, networks, disks); each
sandbox it returns is a ``sandbox.Sandbox`` handle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._convert import structure
from .._pagination import Pager
from .._requests import build_create_body, status_arg
from .._validate import id_segment
from ..models import DiskAttachment, NetworkEntry, SandboxStatus, SandboxView, view_from_create
from ..sandbox import Sandbox

if TYPE_CHECKING:
    from ..session import AsyncSession

__all__ = ["Sandboxes"]


class Sandboxes:
    """``session.sandboxes``: create, get, look up by IP and list."""

    __slots__ = ("_session",)

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create(
        self,
        *,
        shape: str,
        rootfs: str | None = None,
        name: str | None = None,
        disk_mib: int | None = None,
        ssh_pubkeys: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        ingress_enabled: bool | None = None,
        networks: Sequence[str | NetworkEntry | Mapping[str, str]] | None = None,
        disks: Sequence[DiskAttachment | Mapping[str, str]] | None = None,
        egress: Sequence[str] | None = None,
        auto_pause_after_seconds: int | None = None,
        host_id: str | None = None,
        region: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> Sandbox:
        """Create a sandbox; returns once it is running (the server holds the request until then).

        Arguments are checked before anything is sent. A create is a POST: it is resent only when
        the server answered 429 or 503 (it provably did nothing); ``retry=False`` never resends
        (for callers with their own backoff, such as ``SandboxPool``).
        """
        body = build_create_body(
            shape=shape,
            rootfs=rootfs,
            name=name,
            disk_mib=disk_mib,
            ssh_pubkeys=ssh_pubkeys,
            envs=envs,
            ingress_enabled=ingress_enabled,
            networks=networks,
            disks=disks,
            egress=egress,
            auto_pause_after_seconds=auto_pause_after_seconds,
            host_id=host_id,
            region=region,
            node_selector=node_selector,
        )
        data = await self._session._transport.request(
            "POST", "/v1/sandboxes", json=body, timeout=timeout, retry=retry
        )
        view = view_from_create(data, ingress_enabled=bool(ingress_enabled))
        return Sandbox(self._session, structure(view, SandboxView))

    async def get(self, sandbox_id: str, *, timeout: float | None = None) -> Sandbox:
        """The sandbox with this id (404 -> ``NotFoundError``, also for another tenant's id)."""
        path = "/v1/sandboxes/" + id_segment("sandbox_id", sandbox_id)
        data = await self._session._transport.request("GET", path, timeout=timeout)
        return Sandbox(self._session, structure(data, SandboxView))

    async def by_ip(self, ip: str, *, timeout: float | None = None) -> Sandbox:
        """The sandbox whose private IP is ``ip``."""
        path = "/v1/sandboxes/by-ip/" + id_segment("ip", ip)
        data = await self._session._transport.request("GET", path, timeout=timeout)
        return Sandbox(self._session, structure(data, SandboxView))

    def list(
        self,
        status: SandboxStatus | str | None = None,
        limit: int | None = None,
        *,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> Pager[Sandbox]:
        """Async iterator over your sandboxes, pages fetched lazily.

        ``status`` filters server-side; ``limit`` caps the number of sandboxes yielded;
        ``page_size`` is the per-request page size (server default 50, max 500).
        """
        params: dict[str, object] = {}
        if status is not None:
            params["status"] = status_arg("status", status)
        session = self._session

        def convert(item: Any) -> Sandbox:
            return Sandbox(session, structure(item, SandboxView))

        return Pager(
            session._transport,
            "/v1/sandboxes",
            convert,
            params=params,
            limit=limit,
            page_size=page_size,
            timeout=timeout,
        )
