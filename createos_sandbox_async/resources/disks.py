"""S3-compatible disks registered on the account (``session.disks``; WIRE §17).

Credentials are write-only: they go to the server on ``create`` and ``rotate_credentials`` and are
never returned, stored on a model, or shown in a repr or an error message from this SDK. Mounting a
disk in a sandbox is done on the sandbox handle.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .._convert import structure
from .._pagination import Pager
from .._resource import Resource
from .._resource_models import Disk

if TYPE_CHECKING:
    from .._transport import Transport

__all__ = ["Disks"]

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _credentials(access_key: object, secret_key: object) -> dict[str, str]:
    """Check the keys without ever echoing them."""
    if not isinstance(access_key, str) or not access_key:
        raise ValueError("access_key must be a non-empty str")
    if not isinstance(secret_key, str) or not secret_key:
        raise ValueError("secret_key must be a non-empty str")
    return {"access_key": access_key, "secret_key": secret_key}


class Disks(Resource):
    """S3 buckets registered as disks that sandboxes mount: ``session.disks``.

    Any call may raise ``ServerError`` 503 "disks API not configured": a server setting, not a
    transient failure.
    """

    __slots__ = ()

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport, "/v1/disks")

    def __repr__(self) -> str:
        return "Disks()"

    async def create(
        self,
        name: str,
        *,
        bucket: str,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str | None = None,
        use_path_style: bool | None = None,
        timeout: float | None = None,
    ) -> Disk:
        """Register a bucket as a disk; the server checks it is reachable with these keys.

        Args:
            name: Lowercase letters, digits and ``-``, 1-63 characters, starting alphanumeric.
            bucket: The bucket's name.
            endpoint: The S3 endpoint URL.
            access_key: The access key id.
            secret_key: The secret key (a secret: never logged or shown in an error).
            region: The bucket's region.
            use_path_style: Address the bucket path-style instead of virtual-host style.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The disk.

        Raises:
            ValueError: A bad ``name`` or other argument.
            ValidationError: The bucket is not reachable with these keys, or the name is taken.
            ServerError: 503 when the server has no disks API configured.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"name must match ^[a-z0-9][a-z0-9-]{{0,62}}$ (lowercase, digits, '-'): {name!r}"
            )
        if not isinstance(bucket, str) or not bucket:
            raise ValueError("bucket must be a non-empty str")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        config: dict[str, Any] = {"bucket": bucket, "endpoint": endpoint}
        if region is not None:
            if not isinstance(region, str):
                raise TypeError("region must be a str")
            config["region"] = region
        if use_path_style is not None:
            if not isinstance(use_path_style, bool):
                raise TypeError("use_path_style must be a bool")
            config["use_path_style"] = use_path_style
        body = {
            "name": name,
            "kind": "s3",
            "config": config,
            "credentials": _credentials(access_key, secret_key),
        }
        data = await self._transport.request("POST", self._base, json=body, timeout=timeout)
        return structure(data, Disk)

    def list(
        self,
        *,
        limit: int | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> Pager[Disk]:
        """Every disk of the account, fetched lazily page by page.

        Args:
            limit: Yield at most this many.
            page_size: Disks per request.
            timeout: Seconds for each page's request (default: the session's).

        Returns:
            An async iterator of ``Disk``.
        """

        def convert(item: Any) -> Disk:
            return structure(item, Disk)

        return Pager(
            self._transport,
            self._base,
            convert,
            legacy_keys=("disks",),
            limit=limit,
            page_size=page_size,
            timeout=timeout,
        )

    async def get(self, disk: str, *, timeout: float | None = None) -> Disk:
        """One disk.

        Args:
            disk: Its id (``disk_...``) or name.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The disk.

        Raises:
            NotFoundError: No such disk.
        """
        return structure(
            await self._transport.request("GET", self._item("disk", disk), timeout=timeout), Disk
        )

    async def rotate_credentials(
        self, disk: str, *, access_key: str, secret_key: str, timeout: float | None = None
    ) -> Disk:
        """Replace the stored keys; running sandboxes pick them up on their next resume.

        Args:
            disk: Its id or name.
            access_key: The new access key id.
            secret_key: The new secret key.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The disk.

        Raises:
            NotFoundError: No such disk.
            ValidationError: The bucket is not reachable with the new keys.
        """
        body = {"credentials": _credentials(access_key, secret_key)}
        data = await self._transport.request(
            "PATCH", self._item("disk", disk), json=body, timeout=timeout
        )
        return structure(data, Disk)

    async def delete(self, disk: str, *, timeout: float | None = None) -> bool:
        """Forget a disk; the bucket's contents are untouched.

        Args:
            disk: Its id or name.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            True when the server says it deleted it.

        Raises:
            ValidationError: It is still mounted in a sandbox (409).
            NotFoundError: No such disk.
        """
        data = await self._transport.request("DELETE", self._item("disk", disk), timeout=timeout)
        return bool(data.get("deleted")) if isinstance(data, dict) else True
