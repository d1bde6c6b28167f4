"""``session.sandboxes``: create, get, look up by IP and list sandboxes.

The collection of a session, beside the other collections (templates, networks, disks); each
sandbox it returns is a ``sandbox.Sandbox`` handle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._convert import structure
from .._pagination import Pager
from .._requests import CreateSandboxRequest, status_arg
from .._resource import Resource
from .._validate import id_segment
from ..models import DiskAttachment, NetworkEntry, SandboxStatus, SandboxView, view_from_create
from ..sandbox import Sandbox

if TYPE_CHECKING:
    from datetime import timedelta

    from .._reap import ReapResult
    from ..session import AsyncSession

__all__ = ["Sandboxes"]


class Sandboxes(Resource):
    """``session.sandboxes``: create a sandbox, get one by id or IP, list them."""

    __slots__ = ("_session",)

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session._transport, "/v1/sandboxes")
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

        The arguments are those of ``CreateSandboxRequest``, which this builds (``create_from``
        takes one ready-made). Arguments are checked before anything is sent. A create is a
        POST: it is resent only when the server answered 429 or 503 (it provably did nothing).

        Args:
            shape: The machine size, e.g. ``"s-1vcpu-256mb"`` (see ``session.shapes()``).
            rootfs: The root filesystem, e.g. ``"devbox:1"`` or a template id (default: the
                catalog's default, see ``session.rootfs()``).
            name: A name, unique among your live sandboxes (default: generated).
            disk_mib: Disk size in MiB (default: the shape's).
            ssh_pubkeys: OpenSSH public keys allowed to log in.
            envs: Environment variables of every command (at most 64; keys like
                ``[A-Za-z_][A-Za-z0-9_]*``; 4 KiB per value, 64 KiB in total). Values are
                treated as secrets: never logged or put in an error message.
            ingress_enabled: Give the sandbox public URLs (``preview_url(port)``).
            networks: Private networks to join: ids or names, or ``NetworkEntry`` objects.
            disks: Disks to mount: ``DiskAttachment`` objects or mappings with ``disk_id``,
                ``mount_path`` and optionally ``sub_path``.
            egress: The egress allowlist (default: everything allowed).
            auto_pause_after_seconds: Pause after this many idle seconds (60 to 86400).
            host_id: Place on this worker host (administrators).
            region: Must equal the server's region when given.
            node_selector: Host labels the placement must match.
            timeout: Seconds for the whole call, resends included (default: the session's
                request timeout, per attempt).
            retry: False never resends (for callers with their own backoff, such as
                ``SandboxPool``).

        Returns:
            A handle on the new, running sandbox. Use it with ``async with`` to destroy it at
            the end.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: An argument has a wrong value (named in the message, never its value).
            ValidationError: The server refused the request (unknown shape or rootfs, a name
                in use, ...).
            PaymentRequiredError: The account has no credit.
            RateLimitError: 429 after every resend; ``retry_after`` says when to try again.
            ServerError: 5xx (503: no capacity) after the resends a POST is allowed.
            APIConnectionError: No answer (a create is never resent after that: it may exist).
            APITimeoutError: ``timeout`` expired.

        Example:
            ```python
            sb = await session.sandboxes.create(
                shape="s-1vcpu-256mb", envs={"API_TOKEN": "..."}, auto_pause_after_seconds=600
            )
            async with sb:
                ...
            ```
        """
        request = CreateSandboxRequest(
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
        return await self.create_from(request, timeout=timeout, retry=retry)

    async def create_from(
        self, request: CreateSandboxRequest, *, timeout: float | None = None, retry: bool = True
    ) -> Sandbox:
        """Create a sandbox from a ``CreateSandboxRequest`` (checked when it was built).

        The same call as ``create``, for arguments kept or passed around as one value.

        Args:
            request: The create arguments.
            timeout: Seconds for the whole call, resends included (default: the session's
                request timeout, per attempt).
            retry: False never resends.

        Returns:
            A handle on the new, running sandbox.

        Raises:
            TypeError: ``request`` is not a ``CreateSandboxRequest``.
            APIError: As for ``create``.

        Example:
            ```python
            request = CreateSandboxRequest(shape="s-1vcpu-256mb", egress=["pypi.org"])
            sandboxes = [await session.sandboxes.create_from(request) for _ in range(3)]
            ```
        """
        if not isinstance(request, CreateSandboxRequest):
            raise TypeError(f"request must be a CreateSandboxRequest, got {type(request).__name__}")
        data = await self._request("POST", json=request.to_wire(), timeout=timeout, retry=retry)
        view = view_from_create(data, ingress_enabled=bool(request.ingress_enabled))
        return Sandbox(self._session, structure(view, SandboxView))

    async def get(self, sandbox_id: str, *, timeout: float | None = None) -> Sandbox:
        """A handle on the sandbox with this id, with its current view.

        Args:
            sandbox_id: The sandbox's id.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The handle.

        Raises:
            NotFoundError: No such sandbox, or it belongs to another account.
            ValueError: ``sandbox_id`` is blank.
            APIError: Another error status.
        """
        data = await self._transport.request(
            "GET", self._item("sandbox_id", sandbox_id), timeout=timeout
        )
        return Sandbox(self._session, structure(data, SandboxView))

    async def by_ip(self, ip: str, *, timeout: float | None = None) -> Sandbox:
        """A handle on the sandbox whose private IP is ``ip``.

        Args:
            ip: A private IP address (``sb.data.ip`` of some sandbox).
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The handle.

        Raises:
            NotFoundError: None of your sandboxes has this IP.
            APIError: Another error status.
        """
        path = self._path("/by-ip/") + id_segment("ip", ip)
        data = await self._transport.request("GET", path, timeout=timeout)
        return Sandbox(self._session, structure(data, SandboxView))

    def list(
        self,
        status: SandboxStatus | str | None = None,
        limit: int | None = None,
        *,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> Pager[Sandbox]:
        """Iterate over your sandboxes; pages are fetched as you iterate.

        Nothing is sent until the first iteration. Use ``async for`` or ``await ....to_list()``.

        Args:
            status: Only sandboxes in this state (filtered by the server).
            limit: Yield at most this many sandboxes.
            page_size: Sandboxes per request (server default 50, at most 500).
            timeout: Seconds for each page's request (default: the session's).

        Returns:
            An async iterator of ``Sandbox`` handles.

        Raises:
            TypeError: ``status`` is not a str.
            ValueError: ``status`` is not a sandbox state.
            APIError: A page request failed (raised while iterating).

        Example:
            ```python
            async for sb in session.sandboxes.list(status="running"):
                print(sb.id, sb.data.name)
            ```
        """
        params: dict[str, object] = {}
        if status is not None:
            params["status"] = status_arg("status", status)
        session = self._session

        def convert(item: Any) -> Sandbox:
            return Sandbox(session, structure(item, SandboxView))

        return Pager(
            self._transport,
            self._base,
            convert,
            params=params,
            limit=limit,
            page_size=page_size,
            timeout=timeout,
        )

    async def reap(
        self,
        prefix: str | None = None,
        *,
        run_id: str | None = None,
        status: str | Sequence[str] | None = None,
        older_than: float | timedelta | None = None,
        match_all: bool = False,
        dry_run: bool = False,
        concurrency: int = 16,
    ) -> ReapResult:
        """Destroy the live sandboxes a crashed run left behind; see docs/crash-safety.md.

        Filters (all must hold): ``prefix`` (the name starts with it), ``run_id`` (a name of the
        ``naming`` convention with this run id), ``status`` (one or more live statuses),
        ``older_than`` (seconds or a timedelta since creation); or ``match_all=True``.
        ``dry_run=True`` destroys nothing and returns what would go; otherwise every match is
        destroyed (``concurrency`` at a time), failures reported per sandbox, never raised.
        """
        from .._reap import reap

        return await reap(
            self._session,
            prefix,
            run_id=run_id,
            status=status,
            older_than=older_than,
            match_all=match_all,
            dry_run=dry_run,
            concurrency=concurrency,
        )
