"""The ``Sandbox`` handle's network, key and disk methods: egress, bandwidth, SSH keys, networks,
disks.

Thin calls, one request each, kept apart from the lifecycle in ``sandbox``; ``Sandbox`` inherits
them, and the API reference lists them on its page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._convert import structure
from ._pagination import Pager
from ._resource import Resource
from ._validate import (
    check_int,
    check_remote_path,
    check_str,
    check_str_list,
    check_sub_path,
    id_segment,
)
from .errors import ProtocolError
from .models import Bandwidth, EgressView, SandboxDisk

__all__ = ["SandboxNetwork"]


class SandboxNetwork(Resource):
    """What a sandbox handle does about its network policy, keys, networks and disks."""

    __slots__ = ()

    async def get_egress(self, *, timeout: float | None = None) -> tuple[str, ...]:
        """The egress allowlist: where the sandbox may connect to.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The rules (hosts, CIDRs); empty means everything is allowed.

        Raises:
            APIError: An error status.
        """
        data = await self._transport.request("GET", self._base + "/egress", timeout=timeout)
        return structure(data, EgressView).egress

    async def set_egress(
        self, rules: Sequence[str] | None, *, timeout: float | None = None
    ) -> tuple[str, ...]:
        """Replace the egress allowlist.

        Args:
            rules: The new rules; ``None`` or ``[]`` allows everything.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The rules now in force.

        Raises:
            TypeError: ``rules`` is not a list of str.
            ValidationError: The server refused a rule.
            APIError: Another error status.
        """
        body = {"egress": None if rules is None else check_str_list("rules", rules)}
        path = self._base + "/egress"
        data = await self._transport.request("PUT", path, json=body, timeout=timeout)
        return structure(data, EgressView).egress

    async def bandwidth(self, *, timeout: float | None = None) -> Bandwidth:
        """The sandbox's bandwidth quota and usage.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            Quota and usage counters, in bytes.

        Raises:
            APIError: An error status.
        """
        data = await self._transport.request("GET", self._base + "/bandwidth", timeout=timeout)
        return structure(data, Bandwidth)

    async def recharge_bandwidth(
        self, add_bytes: int, *, timeout: float | None = None
    ) -> Bandwidth:
        """Add ``add_bytes`` to the bandwidth quota (uses account credit).

        Args:
            add_bytes: Bytes to add (at least 1).
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            Quota and usage after the recharge.

        Raises:
            TypeError: ``add_bytes`` is not an int.
            ValueError: ``add_bytes`` is below 1.
            PaymentRequiredError: The account has no credit.
            APIError: Another error status.
        """
        check_int("add_bytes", add_bytes, 1)
        data = await self._transport.request(
            "POST",
            self._base + "/bandwidth/recharge",
            json={"add_bytes": add_bytes},
            timeout=timeout,
        )
        return structure(data, Bandwidth)

    async def add_ssh_pubkeys(self, keys: Sequence[str], *, timeout: float | None = None) -> int:
        """Add OpenSSH public keys to the sandbox.

        Args:
            keys: One or more public keys (``"ssh-ed25519 AAAA..."``).
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            How many keys the sandbox has now, after de-duplication.

        Raises:
            TypeError: ``keys`` is not a list of str.
            ValueError: ``keys`` is empty.
            ValidationError: The server refused a key.
            ProtocolError: The answer has no key count.
            APIError: Another error status.
        """
        key_list = check_str_list("keys", keys)
        if not key_list:
            raise ValueError("keys must not be empty")
        data = await self._transport.request(
            "POST", self._base + "/ssh-pubkeys", json={"keys": key_list}, timeout=timeout
        )
        if not isinstance(data, dict) or not isinstance(data.get("count"), int):
            raise ProtocolError("POST ssh-pubkeys: response has no integer 'count'")
        return int(data["count"])

    async def attach_network(self, network_id: str, *, timeout: float | None = None) -> None:
        """Join a private network (``running`` sandboxes only).

        Args:
            network_id: The network's id (see ``session.networks``).
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValidationError: The sandbox is not running, or is already a member.
            NotFoundError: No such network.
            APIError: Another error status.
        """
        body = {"id": check_str("network_id", network_id)}
        path = self._base + "/networks"
        await self._transport.request("POST", path, json=body, timeout=timeout)

    async def detach_network(self, network_id: str, *, timeout: float | None = None) -> None:
        """Leave a private network.

        Args:
            network_id: The network's id.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            NotFoundError: No such network, or the sandbox is not a member.
            APIError: Another error status.
        """
        seg = id_segment("network_id", network_id)
        await self._transport.request("DELETE", self._base + "/networks/" + seg, timeout=timeout)

    async def list_disks(self, *, timeout: float | None = None) -> list[SandboxDisk]:
        """Disks mounted in this sandbox, with their mount status.

        Args:
            timeout: Seconds for each page's request (default: the session's).

        Returns:
            One entry per mount.

        Raises:
            APIError: An error status.
        """

        def convert(item: Any) -> SandboxDisk:
            return structure(item, SandboxDisk)

        pager = Pager(
            self._transport,
            self._base + "/disks",
            convert,
            legacy_keys=("disks",),
            timeout=timeout,
        )
        return await pager.to_list()

    async def attach_disk(
        self,
        disk_id: str,
        mount_path: str,
        *,
        sub_path: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Mount a registered disk at ``mount_path`` (``running`` sandboxes only).

        Args:
            disk_id: The disk's id (``disk_...``) or name (see ``session.disks``).
            mount_path: An absolute guest path, without ``..``.
            sub_path: Mount only this relative directory of the bucket.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``mount_path`` is not absolute or holds ``..``, or ``sub_path`` is not
                relative.
            ValidationError: The sandbox is not running, or the path is taken (409).
            NotFoundError: No such disk.
            APIError: Another error status.
        """
        body: dict[str, str] = {
            "disk_id": check_str("disk_id", disk_id),
            "mount_path": check_remote_path(mount_path, "mount_path"),
        }
        if sub_path:
            body["sub_path"] = check_sub_path("sub_path", sub_path)
        await self._transport.request("POST", self._base + "/disks", json=body, timeout=timeout)

    async def detach_disk(
        self, disk_id: str, mount_path: str, *, timeout: float | None = None
    ) -> None:
        """Unmount one mount of a disk.

        Args:
            disk_id: The disk's id (``disk_...``), not its name.
            mount_path: Where it is mounted.
            timeout: Seconds for the request, retries included (default: the session's).

        Raises:
            ValueError: ``mount_path`` is not an absolute guest path.
            NotFoundError: No such disk or mount.
            APIError: Another error status.
        """
        seg = id_segment("disk_id", disk_id)
        path = check_remote_path(mount_path, "mount_path")
        await self._transport.request(
            "DELETE", self._base + "/disks/" + seg, params={"mount_path": path}, timeout=timeout
        )
