"""Private overlay networks of the account (``session.networks``; WIRE §17).

Attaching a sandbox to a network is done on the sandbox handle; this class manages the networks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._convert import structure
from .._pagination import Pager
from .._resource_models import Network
from .._validate import id_segment

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["Networks"]


def _network_path(network_id: object) -> str:
    return "/v1/networks/" + id_segment("network_id", network_id)


class Networks:
    """Private overlay networks of the account: ``session.networks``.

    Sandboxes join with ``create(networks=[...])`` or ``sb.attach_network(id)``.
    """

    __slots__ = ("_transport",)

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return "Networks()"

    async def create(self, name: str) -> Network:
        """Create a network; sandboxes in it reach each other by name.

        Args:
            name: The network's name.

        Returns:
            The network.

        Raises:
            ValidationError: A bad or taken name.
            PaymentRequiredError: The account has no credit.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        data = await self._transport.request("POST", "/v1/networks", json={"name": name})
        return structure(data, Network)

    def list(self, *, limit: int | None = None, page_size: int | None = None) -> Pager[Network]:
        """Every network of the account (with ``member_count``), fetched lazily page by page.

        Args:
            limit: Yield at most this many.
            page_size: Networks per request.

        Returns:
            An async iterator of ``Network``.
        """

        def convert(item: Any) -> Network:
            return structure(item, Network)

        return Pager(self._transport, "/v1/networks", convert, limit=limit, page_size=page_size)

    async def get(self, network_id: str) -> Network:
        """One network with its ``members``.

        Args:
            network_id: The network's id.

        Returns:
            The network.

        Raises:
            NotFoundError: No such network.
        """
        data = await self._transport.request("GET", _network_path(network_id))
        return structure(data, Network)

    async def delete(self, network_id: str) -> None:
        """Delete a network.

        ``ValidationError`` (409) while it has members, also for a few seconds after they were
        destroyed: retry after a short delay.

        Args:
            network_id: The network's id.

        Raises:
            ValidationError: It still has members.
            NotFoundError: No such network.
        """
        await self._transport.request("DELETE", _network_path(network_id))
