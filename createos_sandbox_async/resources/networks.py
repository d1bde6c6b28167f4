"""Private overlay networks of the account (``session.networks``; WIRE §17).

Attaching a sandbox to a network is done on the sandbox handle; this class manages the networks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._convert import structure
from .._pagination import Pager
from .._resource import Resource
from .._resource_models import Network

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["Networks"]


class Networks(Resource):
    """Private overlay networks of the account: ``session.networks``.

    Sandboxes join with ``create(networks=[...])`` or ``sb.attach_network(id)``.
    """

    __slots__ = ()

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport, "/v1/networks")

    def __repr__(self) -> str:
        return "Networks()"

    async def create(self, name: str, *, timeout: float | None = None) -> Network:
        """Create a network; sandboxes in it reach each other by name.

        Args:
            name: The network's name.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The network.

        Raises:
            ValidationError: A bad or taken name.
            PaymentRequiredError: The account has no credit.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        data = await self._transport.request(
            "POST", self._base, json={"name": name}, timeout=timeout
        )
        return structure(data, Network)

    def list(
        self,
        *,
        limit: int | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> Pager[Network]:
        """Every network of the account (with ``member_count``), fetched lazily page by page.

        Args:
            limit: Yield at most this many.
            page_size: Networks per request.
            timeout: Seconds for each page's request (default: the session's).

        Returns:
            An async iterator of ``Network``.
        """

        def convert(item: Any) -> Network:
            return structure(item, Network)

        return Pager(
            self._transport,
            self._base,
            convert,
            limit=limit,
            page_size=page_size,
            timeout=timeout,
        )

    async def get(self, network_id: str, *, timeout: float | None = None) -> Network:
        """One network with its ``members``.

        Args:
            network_id: The network's id.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The network.

        Raises:
            NotFoundError: No such network.
        """
        data = await self._transport.request(
            "GET", self._item("network_id", network_id), timeout=timeout
        )
        return structure(data, Network)

    async def delete(self, network_id: str, *, timeout: float | None = None) -> None:
        """Delete a network.

        ``ValidationError`` (409) while it has members, also for a few seconds after they were
        destroyed: retry after a short delay.

        Args:
            network_id: The network's id.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValidationError: It still has members.
            NotFoundError: No such network.
        """
        await self._transport.request(
            "DELETE", self._item("network_id", network_id), timeout=timeout
        )
