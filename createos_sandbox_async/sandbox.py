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

    __slots__ = ("_base", "_session", "_transport", "data")

    def __init__(self, session: AsyncSession, data: SandboxView) -> None:
        self._session = session
        self._transport: Transport = session._transport
        self.data = data
        self._base = "/v1/sandboxes/" + quote(data.id, safe="")

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

        Every argument left None is inherited from the source.

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
        """Run a program to completion and return its output. No shell: see ``sh`` for one.

        With a deadline (``timeout=``, or an enclosing ``anyio.fail_after``/``move_on_after``)
        the command runs over the stream route so that giving up kills it; without one it is
        one buffered request. Resent only after 429 or 503 (the command did not start).

        Args:
            cmd: The program (``"python3"``, ``"/usr/bin/env"``), looked up in ``PATH``.
            args: Its arguments: a list of str (``"-la"`` alone is refused: ``["-la"]``).
            stdin: Input for the command, sent whole with the request (str, or UTF-8 bytes).
            env: Variables for this command; the service only lets it override variables
                declared in the sandbox's create-time ``envs``. Values are kept secret.
            timeout: Seconds for the whole call; the command is killed when it expires.
                Default: the session's request timeout, per attempt.
            check: Raise ``CommandError`` unless the command exited 0.

        Returns:
            An ``ExecResult``: ``stdout``, ``stderr``, ``exit_code``, ``exec_ms``, ``ok``.

        Raises:
            TypeError: ``cmd``, ``args``, ``stdin`` or ``env`` has the wrong type.
            ValueError: One of them has a wrong value (e.g. a bad env key).
            CommandError: ``check=True`` and the command failed; ``err.result`` holds the
                output.
            APITimeoutError: ``timeout`` expired (the exec is not sent again).
            ValidationError: The server refused the command (e.g. an env name not declared).
            NotFoundError: The sandbox is gone or not running.
            APIConnectionError: No answer (a POST is not resent after that).
            ProtocolError: The answer is off the wire format, or over 64 MiB.

        Example:
            ```python
            res = await sb.exec("python3", ["-c", "print(6 * 7)"], timeout=30)
            assert res.ok and res.stdout.strip() == "42"
            ```
        """
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
        """Run ``script`` with ``bash -lc``, for pipes, globs and ``&&``.

        Same as ``exec("bash", ["-lc", script], ...)``.

        Args:
            script: The shell script.
            stdin: Input for the script (str, or UTF-8 bytes).
            env: Variables for this command (see ``exec``).
            timeout: Seconds for the whole call; the script is killed when it expires.
            check: Raise ``CommandError`` unless the script exited 0.

        Returns:
            An ``ExecResult``.

        Raises:
            CommandError: ``check=True`` and the script failed.
            TypeError: An argument has the wrong type.
            ValueError: An argument has a wrong value.
            APIError: As for ``exec`` (``APITimeoutError``, ``NotFoundError``, ...).

        Example:
            ```python
            await sb.sh("cd /workspace && make test", check=True)
            ```
        """
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
        """Run a program and read its output as it is produced.

        Nothing is sent until the stream is entered with ``async with`` (or ``wait()``/``text()``
        is awaited). Leaving the block before the exit event closes the connection, and the
        server kills the command. A stream is sent once and never resent.

        Args:
            cmd: The program.
            args: Its arguments, a list of str.
            stdin: Input for the command, sent whole (str, or UTF-8 bytes).
            env: Variables for this command (see ``exec``).
            timeout: Seconds for the whole run; when it expires the command is killed and
                ``APITimeoutError`` raised. Default: none.
            idle_timeout: Seconds without a byte (heartbeats count) before
                ``StreamStalledError``. Default: the session's ``Timeouts.stream_idle`` (30 s).

        Returns:
            An ``ExecStream``: ``async with`` it, then ``async for event in stream``.

        Raises:
            TypeError: An argument has the wrong type (raised here, before anything is sent).
            ValueError: An argument has a wrong value.

        Example:
            ```python
            async with sb.exec_stream("bash", ["-c", "echo a; sleep 1; echo b"]) as stream:
                async for event in stream:
                    print(event.kind, event.data or event.exit_code)
            ```
        """
        from .exec import ExecStream

        return ExecStream(
            self, cmd, args, stdin=stdin, env=env, timeout=timeout, idle_timeout=idle_timeout
        )

    @property
    def files(self) -> Files:
        """Uploads and downloads: a ``Files``."""
        from .files import Files

        return Files(self)

    @property
    def processes(self) -> Processes:
        """Managed processes: a ``Processes``."""
        from .processes import Processes

        return Processes(self)

    @property
    def computer(self) -> Computer:
        """The desktop API: a ``Computer``."""
        from .computer import Computer

        return Computer(self)

    @property
    def access_token(self) -> SandboxAccessToken:
        """This sandbox's delegated access token: a ``SandboxAccessToken``."""
        return SandboxAccessToken(self)

    # -- network policy, keys, networks, disks (thin) --------------------------------------------

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
