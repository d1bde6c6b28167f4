"""Catalog and identity: who am I, which shapes, root filesystems and hosts exist, is the API up.

Shapes and hosts are paginated lists but small; they are returned as complete lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._convert import structure
from .._pagination import Pager
from ..errors import APIError, ProtocolError
from ..models import Health, Host, Readiness, RootfsCatalog, Shape, WhoAmI

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["health", "hosts", "ready", "rootfs", "shapes", "whoami"]


async def whoami(transport: Transport, timeout: float | None = None) -> WhoAmI:
    """Identity behind the API key (``GET /v1/whoami``)."""
    return structure(await transport.request("GET", "/v1/whoami", timeout=timeout), WhoAmI)


async def shapes(transport: Transport, timeout: float | None = None) -> list[Shape]:
    """Every sandbox shape (open route: sent without the key)."""

    def convert(item: Any) -> Shape:
        return structure(item, Shape)

    pager = Pager(
        transport, "/v1/shapes", convert, legacy_keys=("shapes",), auth=False, timeout=timeout
    )
    return await pager.to_list()


async def rootfs(transport: Transport, timeout: float | None = None) -> RootfsCatalog:
    """The built-in root filesystem catalog (open route, not paginated)."""
    data = await transport.request("GET", "/v1/rootfs", auth=False, timeout=timeout)
    return structure(data, RootfsCatalog)


async def hosts(transport: Transport, timeout: float | None = None) -> list[Host]:
    """Worker hosts (administrator projection: ordinary keys may get ``PermissionDeniedError``)."""

    def convert(item: Any) -> Host:
        return structure(item, Host)

    return await Pager(transport, "/v1/hosts", convert, timeout=timeout).to_list()


async def health(transport: Transport, timeout: float | None = None) -> Health:
    """Liveness (``GET /healthz``, no credentials)."""
    data = await transport.request("GET", "/healthz", auth=False, timeout=timeout)
    return structure(data, Health)


async def ready(transport: Transport, timeout: float | None = None) -> Readiness:
    """Readiness: 200 -> ready, 503 -> not ready (returned, not raised; never retried)."""
    try:
        data = await transport.request("GET", "/readyz", auth=False, retry=False, timeout=timeout)
    except APIError as err:
        if err.status != 503:
            raise
        body = err.body
        inner = body.get("data") if isinstance(body, dict) else None
        if isinstance(inner, dict):
            view = structure(inner, Readiness)
            return Readiness(
                ready=False,
                reason=view.reason or err.message,
                scheduler_last_ok_ms_ago=view.scheduler_last_ok_ms_ago,
            )
        return Readiness(ready=False, reason=err.message)
    except ProtocolError:
        return Readiness(ready=True)  # a 200 with a body we cannot read still means ready
    if not isinstance(data, dict):
        return Readiness(ready=True)
    return structure({"ready": True, **data}, Readiness)
