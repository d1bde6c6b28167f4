"""The ``Sandbox`` handle: drive one sandbox's lifecycle (``session.sandboxes`` creates them).

A handle is cheap: an id, the last view the server sent, and a reference to the session's
transport. Commands, files, processes and the desktop live in their own modules and are imported
lazily, so this module stays small and importing the package stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import attrs

from ._convert import structure
from ._pagination import Pager
from ._requests import status_arg
from ._validate import (
    check_auto_pause,
    check_bool,
    check_envs,
    check_int,
    check_remote_path,
    check_seconds,
    check_str,
    check_str_list,
    check_sub_path,
    id_segment,
)
from .errors import APITimeoutError, NotFoundError, ProtocolError, SandboxStateError
from .models import (
    Bandwidth,
    DestroyResult,
    EgressView,
    ResizeResult,
    SandboxDisk,
    SandboxStatus,
    SandboxView,
)
from .resources.access_tokens import SandboxAccessToken

if TYPE_CHECKING:
    from ._transport import Transport
    from .computer import Computer
    from .exec import ExecResult, ExecStream
    from .files import Files
    from .processes import Processes
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


# The hot path (``sb.exec``) skips the import machinery after the first call.
_run_exec: Callable[..., Awaitable[ExecResult]] | None = None


def _load_run_exec() -> Callable[..., Awaitable[ExecResult]]:
    global _run_exec
    from .exec import run_exec

    _run_exec = run_exec
    return run_exec


# -- the handle -----------------------------------------------------------------------------------


class Sandbox:
    """A handle on one sandbox: its id, the last known view (``data``) and what you can do with it.

    ``async with sandbox:`` destroys it on exit, however the block exits (shielded, bounded by
    ``DESTROY_ON_EXIT_TIMEOUT`` seconds).
    """

    __slots__ = ("_base", "_session", "_transport", "data")

    def __init__(self, session: AsyncSession, data: SandboxView) -> None:
        self._session = session
        self._transport: Transport = session._transport
        self.data = data
        self._base = "/v1/sandboxes/" + quote(data.id, safe="")

    # -- identity ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.data.id

    @property
    def status(self) -> SandboxStatus | str:
        """Status as of the last response (call ``refresh()`` for the current one)."""
        return self.data.status

    @property
    def session(self) -> AsyncSession:
        return self._session

    def _path(self, suffix: str = "") -> str:
        """``/v1/sandboxes/<quoted id><suffix>``: the prefix every sandbox route shares."""
        return self._base + suffix

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
        """Fetch the current view (``GET /v1/sandboxes/{id}``)."""
        self._set_view(await self._transport.request("GET", self._base, timeout=timeout))
        return self

    async def pause(
        self, *, wait: bool = False, wait_timeout: float = 120.0, timeout: float | None = None
    ) -> Sandbox:
        """Snapshot and pause (running only). Returns at once in ``pausing`` unless ``wait``.

        ``timeout`` bounds the request (as on every method); ``wait_timeout`` the wait.
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
        """Resume a paused (or ``error``) sandbox; returns in ``resuming`` unless ``wait``."""
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
        """Clone this paused sandbox; returns the child. Omitted fields inherit from the source.

        Like create, resent only on 429/503; ``retry=False`` never resends (``SandboxPool``).
        """
        check_seconds("wait_timeout", wait_timeout)
        body: dict[str, Any] = {}
        if start_paused is not None:
            body["start_paused"] = check_bool("start_paused", start_paused)
        if ssh_pubkeys is not None:
            body["ssh_pubkeys"] = check_str_list("ssh_pubkeys", ssh_pubkeys)
        if egress is not None:
            body["egress"] = check_str_list("egress", egress)
        if ingress_enabled is not None:
            body["ingress_enabled"] = check_bool("ingress_enabled", ingress_enabled)
        if envs is not None:
            body["envs"] = check_envs("envs", envs)
        if bandwidth_quota_bytes is not None:
            body["bandwidth_quota_bytes"] = check_int(
                "bandwidth_quota_bytes", bandwidth_quota_bytes
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
        """Destroy (idempotent: an already destroyed or vanished sandbox is not an error)."""
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
        """Grow the overlay disk to ``disk_mib`` MiB in total (grow only)."""
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
        """PATCH ingress / auto-pause. Only the arguments given are sent; ``False`` is sent."""
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

        Polls every ``interval`` s, growing x1.25 per poll after 5 s up to ``max_interval``.
        Waiting for running/paused fails on error, failed, destroying, destroyed; waiting for
        destroyed fails on error/failed (``SandboxStateError``). Too slow -> ``APITimeoutError``.
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
        """Public URL of ``port`` inside the sandbox (needs ``ingress_enabled``; WIRE §18)."""
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

    # -- commands, files, processes, desktop (other modules, imported lazily) ----------------------
    # Measured: exec, files, processes and computer add ~25 ms to `import createos_sandbox_async`
    # (~180 ms), so they load on first use. None of them imports this module at run time.

    async def exec(
        self,
        cmd: str,
        args: Sequence[str] | None = None,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Run a command to completion and return its output (see ``exec.run_exec``)."""
        run_exec = _run_exec or _load_run_exec()
        return await run_exec(self, cmd, args, stdin=stdin, env=env, timeout=timeout, check=check)

    async def sh(
        self,
        script: str,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Run ``script`` with ``bash -lc`` (pipes, globs, ``&&``); keywords as for ``exec``."""
        from .exec import run_sh

        return await run_sh(self, script, stdin=stdin, env=env, timeout=timeout, check=check)

    def exec_stream(
        self,
        cmd: str,
        args: Sequence[str] | None = None,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> ExecStream:
        """Run a command and iterate its output as it happens (``async with`` the result)."""
        from .exec import ExecStream

        return ExecStream(
            self, cmd, args, stdin=stdin, env=env, timeout=timeout, idle_timeout=idle_timeout
        )

    @property
    def files(self) -> Files:
        from .files import Files

        return Files(self)

    @property
    def processes(self) -> Processes:
        from .processes import Processes

        return Processes(self)

    @property
    def computer(self) -> Computer:
        """The desktop API (``computer.Computer``); imported on first use."""
        from .computer import Computer

        return Computer(self)

    @property
    def access_token(self) -> SandboxAccessToken:
        """This sandbox's delegated token (``resources.access_tokens.SandboxAccessToken``)."""
        return SandboxAccessToken(self)

    # -- network policy, keys, networks, disks (thin) --------------------------------------------

    async def get_egress(self, *, timeout: float | None = None) -> tuple[str, ...]:
        """The egress allowlist; empty means allow all."""
        data = await self._transport.request("GET", self._base + "/egress", timeout=timeout)
        return structure(data, EgressView).egress

    async def set_egress(
        self, rules: Sequence[str] | None, *, timeout: float | None = None
    ) -> tuple[str, ...]:
        """Replace the egress allowlist; ``None`` or ``[]`` allows all."""
        body = {"egress": None if rules is None else check_str_list("rules", rules)}
        path = self._base + "/egress"
        data = await self._transport.request("PUT", path, json=body, timeout=timeout)
        return structure(data, EgressView).egress

    async def bandwidth(self, *, timeout: float | None = None) -> Bandwidth:
        """Bandwidth quota and usage."""
        data = await self._transport.request("GET", self._base + "/bandwidth", timeout=timeout)
        return structure(data, Bandwidth)

    async def recharge_bandwidth(
        self, add_bytes: int, *, timeout: float | None = None
    ) -> Bandwidth:
        """Add ``add_bytes`` to the quota (credit-gated)."""
        check_int("add_bytes", add_bytes, 1)
        data = await self._transport.request(
            "POST",
            self._base + "/bandwidth/recharge",
            json={"add_bytes": add_bytes},
            timeout=timeout,
        )
        return structure(data, Bandwidth)

    async def add_ssh_pubkeys(self, keys: Sequence[str], *, timeout: float | None = None) -> int:
        """Add OpenSSH public keys; returns the total after de-duplication."""
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
        """Join a private network (running sandboxes only)."""
        body = {"id": check_str("network_id", network_id)}
        path = self._base + "/networks"
        await self._transport.request("POST", path, json=body, timeout=timeout)

    async def detach_network(self, network_id: str, *, timeout: float | None = None) -> None:
        """Leave a private network."""
        seg = id_segment("network_id", network_id)
        await self._transport.request("DELETE", self._base + "/networks/" + seg, timeout=timeout)

    async def list_disks(self, *, timeout: float | None = None) -> list[SandboxDisk]:
        """Disks mounted in this sandbox, with their mount status."""

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
        """Mount a registered disk at ``mount_path`` (running sandboxes only)."""
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
        """Unmount one mount of a disk (pass the ``disk_…`` id, not the name)."""
        seg = id_segment("disk_id", disk_id)
        path = check_remote_path(mount_path, "mount_path")
        await self._transport.request(
            "DELETE", self._base + "/disks/" + seg, params={"mount_path": path}, timeout=timeout
        )
