"""The ``Sandbox`` handle: drive one sandbox's lifecycle (``session.sandboxes`` creates them).

A handle is cheap: an id, the last view the server sent, and a reference to the session's
transport. Commands, files, processes and the desktop live in their own modules and are imported
lazily, so this module stays small and importing the package stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import attrs

from ._convert import structure
from ._requests import fork_body, status_arg
from ._sandbox_commands import SandboxCommands
from ._sandbox_network import SandboxNetwork
from ._validate import (
    check_auto_pause,
    check_bool,
    check_int,
    check_seconds,
)
from .errors import APITimeoutError, NotFoundError, SandboxStateError
from .models import (
    DestroyResult,
    ResizeResult,
    SandboxStatus,
    SandboxView,
)
from .resources.access_tokens import SandboxAccessToken

if TYPE_CHECKING:
    from .session import AsyncSession

__all__ = ["Sandbox", "SandboxStateError"]

logger = logging.getLogger("createos_sandbox_async")

# Waiting for these fails fast on the states listed (WIRE §9).
_FAIL_FAST: dict[str, frozenset[str]] = {
    "running": frozenset({"error", "failed", "destroying", "destroyed"}),
    "paused": frozenset({"error", "failed", "destroying", "destroyed"}),
    "destroyed": frozenset({"error", "failed"}),
}
_TERMINAL = frozenset({"destroyed", "failed"})

#: How long ``async with sandbox`` may spend destroying it on exit, even when cancelled.
DESTROY_ON_EXIT_TIMEOUT = 30.0


# -- the handle -----------------------------------------------------------------------------------


class Sandbox(SandboxCommands, SandboxNetwork):
    """A handle on one sandbox: its id, the last known view (``data``) and what you can do with it.

    Get one from ``session.sandboxes.create(...)``, ``get(id)``, ``by_ip(ip)`` or ``list()``;
    do not construct it yourself. A handle is cheap and holds no connection. Two handles on the
    same sandbox compare equal.

    ``async with sandbox:`` destroys it on exit, however the block exits: on an exception or a
    cancellation too (the destroy is shielded and bounded to 30 s). A failed destroy is raised
    when the block ended normally and logged as a warning when it ended with an exception.

    Attributes:
        data: The last view of the sandbox the server sent (a ``SandboxView``); methods that
            get a new view (``refresh``, ``pause``, ``update``, ...) replace it.

    Example:
        ```python
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sb:  # destroyed when the block ends
            res = await sb.exec("python3", ["-c", "print(1 + 1)"])
        ```
    """

    __slots__ = ("_session", "data")

    def __init__(self, session: AsyncSession, data: SandboxView) -> None:
        super().__init__(session._transport, "/v1/sandboxes/" + quote(data.id, safe=""))
        self._session = session
        self.data = data

    # -- identity ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The sandbox's id (``sb_...``)."""
        return self.data.id

    @property
    def status(self) -> SandboxStatus | str:
        """Status as of the last response (call ``refresh()`` for the current one).

        A ``SandboxStatus`` member, or the plain ``str`` for a state this version does not know;
        both compare equal to their text (``sb.status == "running"``).
        """
        return self.data.status

    @property
    def session(self) -> AsyncSession:
        """The ``AsyncSession`` this handle sends its requests through."""
        return self._session

    def __repr__(self) -> str:
        return f"<Sandbox {self.data.id} status={str(self.data.status)!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sandbox) and other.data.id == self.data.id

    def __hash__(self) -> int:
        return hash(self.data.id)

    def _set_view(self, data: object) -> None:
        self.data = structure(data, SandboxView)

    # -- context manager --------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Destroy on the way out, even when cancelled: shielded, bounded, never masking ``exc``."""
        failure: BaseException | None = None
        with anyio.move_on_after(DESTROY_ON_EXIT_TIMEOUT, shield=True) as scope:
            try:
                await self.destroy()
            except Exception as err:
                failure = err
        if scope.cancelled_caught and failure is None:
            failure = APITimeoutError(
                f"destroying sandbox {self.id} did not finish within {DESTROY_ON_EXIT_TIMEOUT} s"
            )
        if failure is None:
            return
        if exc is not None:
            logger.warning("could not destroy sandbox %s on exit: %s", self.id, failure)
            return
        raise failure

    # -- lifecycle --------------------------------------------------------------------------------

    async def refresh(self, *, timeout: float | None = None) -> Sandbox:
        """Fetch the current view (``GET /v1/sandboxes/{id}``) into ``data``.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            This handle, updated.

        Raises:
            NotFoundError: The sandbox no longer exists (or belongs to another account).
            APIError: Another error status (``APIConnectionError`` / ``APITimeoutError``: no
                answer).
        """
        self._set_view(await self._transport.request("GET", self._base, timeout=timeout))
        return self

    async def pause(
        self, *, wait: bool = False, wait_timeout: float = 120.0, timeout: float | None = None
    ) -> Sandbox:
        """Snapshot the sandbox and pause it (``running`` sandboxes only).

        Args:
            wait: Also wait until the sandbox is ``paused`` (see ``wait_until``); without it the
                call returns at once, usually in ``pausing``.
            wait_timeout: Seconds the wait may take.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            This handle, with the view the server sent (or the one the wait ended on).

        Raises:
            ValidationError: The sandbox is not running (409).
            SandboxStateError: While waiting, it reached a state it cannot leave for ``paused``.
            APITimeoutError: The request or the wait took too long.
            APIError: Another error status.

        Example:
            ```python
            await sb.pause(wait=True)
            clone = await sb.fork()
            ```
        """
        check_seconds("wait_timeout", wait_timeout)
        path = self._base + "/pause"
        self._set_view(await self._transport.request("POST", path, timeout=timeout))
        if wait:
            await self.wait_until("paused", timeout=wait_timeout)
        return self

    async def resume(
        self, *, wait: bool = False, wait_timeout: float = 120.0, timeout: float | None = None
    ) -> Sandbox:
        """Resume a ``paused`` sandbox (or retry one in ``error``).

        Args:
            wait: Also wait until the sandbox is ``running``; without it the call returns at
                once, usually in ``resuming``.
            wait_timeout: Seconds the wait may take.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            This handle, with the view the server sent (or the one the wait ended on).

        Raises:
            ValidationError: The sandbox is neither paused nor in error (409).
            PaymentRequiredError: The account has no credit.
            SandboxStateError: While waiting, it reached a state it cannot leave for ``running``.
            APITimeoutError: The request or the wait took too long.
            APIError: Another error status.
        """
        check_seconds("wait_timeout", wait_timeout)
        path = self._base + "/resume"
        self._set_view(await self._transport.request("POST", path, timeout=timeout))
        if wait:
            await self.wait_until("running", timeout=wait_timeout)
        return self

    async def fork(
        self,
        *,
        start_paused: bool | None = None,
        ssh_pubkeys: Sequence[str] | None = None,
        egress: Sequence[str] | None = None,
        ingress_enabled: bool | None = None,
        envs: Mapping[str, str] | None = None,
        bandwidth_quota_bytes: int | None = None,
        wait: bool = False,
        wait_timeout: float = 120.0,
        timeout: float | None = None,
        retry: bool = True,
    ) -> Sandbox:
        """Clone this ``paused`` sandbox into a new one; the source stays paused.

        Every argument left None is inherited from the source; those a create takes too are
        checked as ``CreateSandboxRequest`` checks them.

        Args:
            start_paused: Leave the child ``paused`` instead of resuming it.
            ssh_pubkeys: OpenSSH public keys for the child.
            egress: The child's egress allowlist (``[]`` allows everything).
            ingress_enabled: Public ingress for the child.
            envs: The child's environment (same rules as ``create``); values are secrets.
            bandwidth_quota_bytes: The child's bandwidth quota.
            wait: Also wait until the child is ``running`` (``paused`` with ``start_paused``).
            wait_timeout: Seconds the wait may take.
            timeout: Seconds for the request, retries included (default: the session's).
            retry: False never resends. Like ``create``, a fork is resent only after 429 or
                503, when the server provably did nothing.

        Returns:
            A handle on the child (a new id), usually in ``forking``/``resuming`` unless ``wait``.

        Raises:
            TypeError: An argument has the wrong type (checked before sending).
            ValueError: An argument has a wrong value, such as a bad env key.
            ValidationError: The source is not paused (409).
            PaymentRequiredError: The account has no credit.
            SandboxStateError: While waiting, the child failed.
            APIError: Another error status.

        Example:
            ```python
            await sb.pause(wait=True)
            child = await sb.fork(envs={"ROLE": "worker"}, wait=True)
            ```
        """
        check_seconds("wait_timeout", wait_timeout)
        body = fork_body(
            start_paused=start_paused,
            ssh_pubkeys=ssh_pubkeys,
            egress=egress,
            ingress_enabled=ingress_enabled,
            envs=envs,
            bandwidth_quota_bytes=bandwidth_quota_bytes,
        )
        path = self._base + "/fork"
        data = await self._transport.request("POST", path, json=body, timeout=timeout, retry=retry)
        child = Sandbox(self._session, structure(data, SandboxView))
        if wait:
            target = "paused" if start_paused else "running"
            await child.wait_until(target, timeout=wait_timeout)
        return child

    async def destroy(
        self, *, wait: bool = False, wait_timeout: float = 120.0, timeout: float | None = None
    ) -> DestroyResult:
        """Destroy the sandbox. Idempotent: an already destroyed or vanished one is not an error.

        Args:
            wait: Also wait until the sandbox is ``destroyed`` (the server may answer with
                ``destroying``).
            wait_timeout: Seconds the wait may take.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The id and the status the server reported (``destroyed`` for a vanished sandbox).

        Raises:
            APITimeoutError: The request or the wait took too long.
            APIError: An error status other than 404.
        """
        check_seconds("wait_timeout", wait_timeout)
        try:
            data = await self._transport.request("DELETE", self._base, timeout=timeout)
        except NotFoundError:
            result = DestroyResult(id=self.id, status=SandboxStatus.DESTROYED)
        else:
            result = structure(data, DestroyResult)
        self.data = attrs.evolve(self.data, status=result.status)
        if wait and result.status != "destroyed":
            await self.wait_until("destroyed", timeout=wait_timeout)
        return result

    async def resize(self, disk_mib: int, *, timeout: float | None = None) -> ResizeResult:
        """Grow the sandbox's disk to ``disk_mib`` MiB in total (it can only grow).

        Args:
            disk_mib: The new total size in MiB.
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The new size (``data.disk_mib`` is updated too).

        Raises:
            TypeError: ``disk_mib`` is not an int.
            ValueError: ``disk_mib`` is below 1.
            ValidationError: The size is not larger than today's, or the state forbids it.
            APIError: Another error status.
        """
        check_int("disk_mib", disk_mib, 1)
        data = await self._transport.request(
            "POST", self._base + "/resize", json={"disk_mib": disk_mib}, timeout=timeout
        )
        result = structure(data, ResizeResult)
        self.data = attrs.evolve(self.data, disk_mib=result.disk_mib)
        return result

    async def update(
        self,
        *,
        ingress_enabled: bool | None = None,
        auto_pause_after_seconds: int | None = None,
        disable_auto_pause: bool | None = None,
        timeout: float | None = None,
    ) -> Sandbox:
        """Change ingress or auto-pause (``PATCH``). Only the arguments given are sent.

        Args:
            ingress_enabled: Turn public ingress on or off (``False`` is sent, not skipped).
            auto_pause_after_seconds: Pause after this many idle seconds (60 to 86400).
            disable_auto_pause: True clears the auto-pause timeout (wins over the previous one).
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            This handle, with the new view.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: No argument given, or ``auto_pause_after_seconds`` out of range.
            ValidationError: The server refused the change.
            APIError: Another error status.

        Example:
            ```python
            await sb.update(ingress_enabled=True)
            print(sb.preview_url(8080))
            ```
        """
        body: dict[str, Any] = {}
        if ingress_enabled is not None:
            body["ingress_enabled"] = check_bool("ingress_enabled", ingress_enabled)
        if auto_pause_after_seconds is not None:
            body["auto_pause_after_seconds"] = check_auto_pause(
                "auto_pause_after_seconds", auto_pause_after_seconds
            )
        if disable_auto_pause is not None:
            body["disable_auto_pause"] = check_bool("disable_auto_pause", disable_auto_pause)
        if not body:
            raise ValueError(
                "update() needs at least one of ingress_enabled, auto_pause_after_seconds, "
                "disable_auto_pause"
            )
        data = await self._transport.request("PATCH", self._base, json=body, timeout=timeout)
        self._set_view(data)
        return self

    async def wait_until(
        self,
        status: SandboxStatus | str,
        *,
        timeout: float = 120.0,
        interval: float = 0.25,
        max_interval: float = 2.0,
    ) -> Sandbox:
        """Poll until the sandbox reaches ``status``; fail fast when it cannot get there.

        Args:
            status: The state to wait for (a ``SandboxStatus`` or its text, e.g. ``"paused"``).
            timeout: Seconds to wait in total.
            interval: Seconds between polls at first; after 5 s the interval grows x1.25 per
                poll, up to ``max_interval``.
            max_interval: The longest interval between polls.

        Returns:
            This handle, with the view in which it reached ``status``.

        Raises:
            SandboxStateError: It reached a state it cannot leave for ``status``: waiting for
                ``running`` or ``paused`` fails on ``error``, ``failed``, ``destroying`` and
                ``destroyed``; waiting for ``destroyed`` fails on ``error`` and ``failed``.
            NotFoundError: The sandbox vanished (except when waiting for ``destroyed``, which a
                vanished sandbox is).
            APITimeoutError: ``status`` was not reached within ``timeout``.
            ValueError: ``status`` is not a sandbox state, or a bad number of seconds.

        Example:
            ```python
            await sb.pause()
            await sb.wait_until("paused", timeout=60)
            ```
        """
        target = status_arg("status", status)
        check_seconds("timeout", timeout)
        check_seconds("interval", interval)
        fail_on = _FAIL_FAST.get(target, _TERMINAL - {target})
        loop_started = anyio.current_time()
        delay = interval
        with anyio.move_on_after(timeout) as scope:
            while True:
                try:
                    await self.refresh()
                except NotFoundError:
                    if target == "destroyed":
                        self.data = attrs.evolve(self.data, status=SandboxStatus.DESTROYED)
                        return self
                    raise
                current = str(self.data.status)
                if current == target:
                    return self
                if current in fail_on:
                    raise SandboxStateError(
                        f"sandbox {self.id} is {current!r}; it cannot become {target!r}",
                        sandbox_id=self.id,
                        status=current,
                    )
                await anyio.sleep(delay)
                if anyio.current_time() - loop_started >= 5.0:
                    delay = min(delay * 1.25, max_interval)
        assert scope.cancelled_caught
        raise APITimeoutError(
            f"sandbox {self.id} did not become {target!r} within {timeout} s "
            f"(last status {str(self.data.status)!r})"
        )

    def preview_url(self, port: int) -> str:
        """The public URL that reaches ``port`` inside the sandbox. Sends nothing.

        Args:
            port: A TCP port in the sandbox (1 to 65535).

        Returns:
            The URL, from the sandbox's ingress URL template.

        Raises:
            TypeError: ``port`` is not an int.
            ValueError: ``port`` is out of range.
            SandboxStateError: Ingress is off (``update(ingress_enabled=True)`` turns it on).
        """
        check_int("port", port)
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        template = self.data.ingress_url_template
        if not self.data.ingress_enabled or not template:
            raise SandboxStateError(
                f"sandbox {self.id} has no ingress URL; call update(ingress_enabled=True) first",
                sandbox_id=self.id,
                status=str(self.data.status),
            )
        return template.replace("<port>", str(port))

    @property
    def access_token(self) -> SandboxAccessToken:
        """This sandbox's delegated access token: a ``SandboxAccessToken``."""
        return SandboxAccessToken(self)
