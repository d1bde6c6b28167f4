"""The ``Sandbox`` handle and ``session.sandboxes``: create, look up, list, and drive the lifecycle.

A handle is cheap: an id, the last view the server sent, and a reference to the session's
transport. Commands, files, processes and the desktop live in their own modules and are imported
lazily, so this module stays small and importing the package stays fast.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import attrs

from ._convert import structure
from ._pagination import Pager
from ._validate import check_bool, check_int, check_seconds, check_str, check_text
from .errors import APITimeoutError, CreateosError, NotFoundError
from .models import (
    Bandwidth,
    DestroyResult,
    DiskAttachment,
    EgressView,
    NetworkEntry,
    ResizeResult,
    SandboxDisk,
    SandboxStatus,
    SandboxView,
    view_from_create,
)

if TYPE_CHECKING:
    from datetime import timedelta

    from ._reap import ReapResult
    from ._transport import Transport
    from .computer import Computer
    from .exec import ExecResult, ExecStream
    from .files import Files
    from .processes import Processes
    from .resources.access_tokens import SandboxAccessToken
    from .session import AsyncSession

__all__ = ["Sandbox", "SandboxStateError", "Sandboxes"]

logger = logging.getLogger("createos_sandbox_async")

_STATUSES = frozenset(s.value for s in SandboxStatus)
# Waiting for these fails fast on the states listed (WIRE §9).
_FAIL_FAST: dict[str, frozenset[str]] = {
    "running": frozenset({"error", "failed", "destroying", "destroyed"}),
    "paused": frozenset({"error", "failed", "destroying", "destroyed"}),
    "destroyed": frozenset({"error", "failed"}),
}
_TERMINAL = frozenset({"destroyed", "failed"})

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENVS = 64
MAX_ENV_VALUE_BYTES = 4096
MAX_ENV_TOTAL_BYTES = 65536
AUTO_PAUSE_MIN = 60
AUTO_PAUSE_MAX = 86400

#: How long ``async with sandbox`` may spend destroying it on exit, even when cancelled.
DESTROY_ON_EXIT_TIMEOUT = 30.0


class SandboxStateError(CreateosError):
    """The sandbox is in a state that makes the operation impossible.

    For example waiting for ``running`` on a sandbox that ``failed``, or a preview URL without
    ingress. ``status`` is the state seen.
    """

    def __init__(self, message: str, *, sandbox_id: str, status: str | None) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id
        self.status = status


# -- validation (before any network call; messages name the argument, never a value) ---------------


def _check_str_list(name: str, value: object) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of str")
    out = list(value)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__}")
    return out


def check_envs(name: str, envs: object) -> dict[str, str]:
    """Env map rules of WIRE §10. Messages name keys, never values (values may be secrets)."""
    if not isinstance(envs, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str")
    if len(envs) > MAX_ENVS:
        raise ValueError(f"{name}: at most {MAX_ENVS} entries allowed, got {len(envs)}")
    total = 0
    out: dict[str, str] = {}
    for key, value in envs.items():
        if not isinstance(key, str) or not _ENV_KEY.match(key):
            raise ValueError(f"{name}: invalid key {key!r} (must match ^[A-Za-z_][A-Za-z0-9_]*$)")
        if not isinstance(value, str):
            raise TypeError(f"{name}[{key!r}] must be a str, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError(f"{name}[{key!r}] must not contain NUL characters")
        size = len(check_text(f"{name}[{key!r}]", value).encode())
        if size > MAX_ENV_VALUE_BYTES:
            raise ValueError(
                f"{name}[{key!r}]: value is {size} bytes, the limit is {MAX_ENV_VALUE_BYTES}"
            )
        total += size
        out[key] = value
    if total > MAX_ENV_TOTAL_BYTES:
        raise ValueError(f"{name}: values total {total} bytes, the limit is {MAX_ENV_TOTAL_BYTES}")
    return out


def _check_auto_pause(name: str, value: object) -> int:
    seconds = check_int(name, value)
    if not AUTO_PAUSE_MIN <= seconds <= AUTO_PAUSE_MAX:
        raise ValueError(
            f"{name} must be between {AUTO_PAUSE_MIN} and {AUTO_PAUSE_MAX} seconds, got {seconds}"
        )
    return seconds


def check_remote_path(path: object, argument: str = "path") -> str:
    """The one guest path check (files, mounts, cwd): absolute, no ``..``, no NUL (WIRE §12)."""
    if not isinstance(path, str):
        raise TypeError(f"{argument} must be a str guest path, got {type(path).__name__}")
    if not path.startswith("/"):
        raise ValueError(f"{argument} must be an absolute guest path starting with '/': {path!r}")
    if ".." in path.split("/"):
        raise ValueError(f"{argument} must not contain a '..' segment: {path!r}")
    if "\x00" in path:
        raise ValueError(f"{argument} must not contain a NUL character")
    return check_text(argument, path)


def _check_sub_path(name: str, value: object) -> str:
    sub = check_str(name, value, allow_empty=True)
    if sub.startswith("/") or ".." in sub.split("/"):
        raise ValueError(f"{name} must be relative and must not contain '..', got {sub!r}")
    return sub


def _network_entry(name: str, value: object) -> dict[str, str]:
    if isinstance(value, NetworkEntry):
        value = value.id
    elif isinstance(value, Mapping):
        value = value.get("id")
    return {"id": check_str(name, value)}


def _disk_entry(name: str, value: object) -> dict[str, str]:
    disk_id: object
    mount_path: object
    sub_path: object
    if isinstance(value, DiskAttachment):
        disk_id, mount_path, sub_path = value.disk_id, value.mount_path, value.sub_path
    elif isinstance(value, Mapping):
        disk_id, mount_path = value.get("disk_id"), value.get("mount_path")
        sub_path = value.get("sub_path")
    else:
        raise TypeError(f"{name} must be a DiskAttachment or a mapping")
    entry = {
        "disk_id": check_str(f"{name}.disk_id", disk_id),
        "mount_path": check_remote_path(mount_path, f"{name}.mount_path"),
    }
    if sub_path:
        entry["sub_path"] = _check_sub_path(f"{name}.sub_path", sub_path)
    return entry


def _status_arg(name: str, status: object) -> str:
    if not isinstance(status, str):
        raise TypeError(f"{name} must be a sandbox status str, got {type(status).__name__}")
    value = str(status.value if isinstance(status, SandboxStatus) else status)
    if value not in _STATUSES:
        raise ValueError(f"{name} must be one of {sorted(_STATUSES)}, got {value!r}")
    return value


def id_segment(name: str, value: object) -> str:
    """An id or name as one URL path segment (WIRE §3): a non-blank str, quoted."""
    return quote(check_str(name, value), safe="")


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
            body["ssh_pubkeys"] = _check_str_list("ssh_pubkeys", ssh_pubkeys)
        if egress is not None:
            body["egress"] = _check_str_list("egress", egress)
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
            body["auto_pause_after_seconds"] = _check_auto_pause(
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
        target = _status_arg("status", status)
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
        from . import exec as _exec

        return _exec.ExecStream(
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
        from .resources.access_tokens import SandboxAccessToken

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
        body = {"egress": None if rules is None else _check_str_list("rules", rules)}
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
        key_list = _check_str_list("keys", keys)
        if not key_list:
            raise ValueError("keys must not be empty")
        data = await self._transport.request(
            "POST", self._base + "/ssh-pubkeys", json={"keys": key_list}, timeout=timeout
        )
        if not isinstance(data, dict) or not isinstance(data.get("count"), int):
            from .errors import ProtocolError

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
            body["sub_path"] = _check_sub_path("sub_path", sub_path)
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


# -- session.sandboxes ---------------------------------------------------------------------------


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
            params["status"] = _status_arg("status", status)
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
        from ._reap import reap

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


def build_create_body(
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
) -> dict[str, Any]:
    """Validate create arguments (WIRE §10) and build the JSON body, omitting unset fields."""
    body: dict[str, Any] = {"shape": check_str("shape", shape)}
    if rootfs is not None:
        body["rootfs"] = check_str("rootfs", rootfs)
    if name is not None:
        body["name"] = check_str("name", name)
    if disk_mib is not None:
        body["disk_mib"] = check_int("disk_mib", disk_mib, 0)
    if ssh_pubkeys is not None:
        body["ssh_pubkeys"] = _check_str_list("ssh_pubkeys", ssh_pubkeys)
    if envs is not None:
        body["envs"] = check_envs("envs", envs)
    if ingress_enabled is not None:
        body["ingress_enabled"] = check_bool("ingress_enabled", ingress_enabled)
    if networks is not None:
        if isinstance(networks, str) or not isinstance(networks, Iterable):
            raise TypeError("networks must be a list of network ids or names")
        body["networks"] = [_network_entry(f"networks[{i}]", n) for i, n in enumerate(networks)]
    if disks is not None:
        if isinstance(disks, str) or not isinstance(disks, Iterable):
            raise TypeError("disks must be a list of DiskAttachment")
        body["disks"] = [_disk_entry(f"disks[{i}]", d) for i, d in enumerate(disks)]
    if egress is not None:
        body["egress"] = _check_str_list("egress", egress)
    if auto_pause_after_seconds is not None:
        body["auto_pause_after_seconds"] = _check_auto_pause(
            "auto_pause_after_seconds", auto_pause_after_seconds
        )
    if host_id is not None:
        body["host_id"] = check_str("host_id", host_id)
    if region is not None:
        body["region"] = check_str("region", region)
    if node_selector is not None:
        if not isinstance(node_selector, Mapping):
            raise TypeError("node_selector must be a mapping of str to str")
        for key, value in node_selector.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("node_selector must be a mapping of str to str")
        body["node_selector"] = dict(node_selector)
    return body
