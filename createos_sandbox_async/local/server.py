"""LocalServer: start and stop the emulator inside your own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import stat
import tempfile
from collections.abc import Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._host import remove_tree
from .app import Emulator, build_app
from .faults import Faults
from .runtime import DEFAULT_MAX_PROCESSES, ISOLATIONS, Runtime

if TYPE_CHECKING:
    from .. import AsyncSession

_STATE_PREFIX = "createos-local-"
_OWNER_FILE = "owner.pid"  # the emulator process that owns a state directory


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_admin_token(token: str | None, api_key: str | None) -> str | None:
    """An admin token fit for an HTTP header and distinct from the API key, or None (random)."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"admin_token must be a str, got {type(token).__name__}")
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("admin_token must be non-empty printable ASCII without spaces")
    if token == api_key:
        raise ValueError("admin_token must differ from api_key: tenants must not hold it")
    return token


class LocalServer:
    """The CreateOS Sandbox API on this machine, commands run for real under bubblewrap.

    State lives in memory plus one temporary directory, both gone after exit; every sandbox
    process is killed on exit. Use it with ``async with`` (or ``start()`` / ``stop()``).

    Isolation needs Linux with bubblewrap (``bwrap``), ``nsenter`` and ``setpriv``. Elsewhere
    (macOS, Windows, a container without user namespaces) ``isolation="none"`` runs every command
    directly on this machine, as your user, with your files and network, and logs a warning on
    every start: only for code you trust.

    Args:
        host: Where to listen; a non-loopback address needs ``allow_remote``.
        port: The port; 0 picks a free one (read ``base_url`` after start).
        isolation: ``"bubblewrap"``, or ``"none"`` for no isolation at all (see above).
        heartbeat_interval: Seconds between heartbeat frames on idle exec and process streams.
        transition_delay: How long transitional states (creating, pausing, resuming, forking,
            destroying) stay visible.
        api_key: The default account's key (default: a random one).
        auto_pause_scale: Multiplies auto-pause timeouts (tests use e.g. 0.001: 60 s -> 60 ms).
        allow_remote: Allow a non-loopback ``host``: anyone who can reach the port can run
            commands.
        state_dir: Parent of the temporary state directory (default: /dev/shm when it is a
            roomy tmpfs, else the system temp dir).
        detached_buffered_exec: Let a buffered (non-stream) exec run to its end when its client
            disconnects, as a service might (WIRE §11 promises the kill on disconnect for
            streams only); by default the emulator kills it, like a stream's.
        max_processes: Processes (and threads) one sandbox may run at once, where cgroups
            allow enforcing it.
        admin_token: Opens the fault-control routes under ``/__createos/`` to other processes
            (loopback only; see docs/fault-control.md). Default: a random one, read it from
            ``admin_token``; it must differ from ``api_key``.

    Raises:
        ValueError: A bad argument, or a non-loopback ``host`` without ``allow_remote``.
        TypeError: ``max_processes`` or ``detached_buffered_exec`` has the wrong type.
        IsolationUnavailableError: On start, bubblewrap is missing or cannot create namespaces
            here; the message says how to install it or opt out.

    Example:
        ```python
        async with LocalServer() as server, server.session() as session:
            sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
            async with sb:
                print((await sb.exec("uname", ["-a"])).stdout)
        ```
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        isolation: str = "bubblewrap",
        heartbeat_interval: float = 5.0,
        transition_delay: float = 0.0,
        api_key: str | None = None,
        auto_pause_scale: float = 1.0,
        allow_remote: bool = False,
        state_dir: str | None = None,
        detached_buffered_exec: bool = False,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        admin_token: str | None = None,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        if not is_loopback(host) and not allow_remote:
            raise ValueError(
                f"host {host!r} is not a loopback address; the emulator runs arbitrary commands "
                "for anyone who can reach it - pass allow_remote=True to bind it anyway"
            )
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0, got {heartbeat_interval!r}")
        if transition_delay < 0:
            raise ValueError(f"transition_delay must be >= 0, got {transition_delay!r}")
        if auto_pause_scale <= 0:
            raise ValueError(f"auto_pause_scale must be > 0, got {auto_pause_scale!r}")
        if isinstance(max_processes, bool) or not isinstance(max_processes, int):
            raise TypeError(f"max_processes must be an int, got {type(max_processes).__name__}")
        if max_processes < 1:
            raise ValueError(f"max_processes must be >= 1, got {max_processes!r}")
        self._max_processes = max_processes
        self._host = host
        self._port = port
        self._isolation = isolation
        self._heartbeat = heartbeat_interval
        self._transition = transition_delay
        self._auto_pause_scale = auto_pause_scale
        if not isinstance(detached_buffered_exec, bool):
            raise TypeError("detached_buffered_exec must be a bool")
        self._detached_exec = detached_buffered_exec
        self._wanted_key = api_key
        self._admin_token = check_admin_token(admin_token, api_key)
        self._state_parent = state_dir
        self._emu: Emulator | None = None
        self._runner: web.AppRunner | None = None
        self._state_dir: str | None = None
        self._api_key: str | None = None
        self.port = 0

    def __repr__(self) -> str:
        where = self.base_url if self._runner is not None else "not started"
        return f"LocalServer({where}, isolation={self._isolation!r})"

    # ------------------------------------------------------------------ properties

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>` (IPv6 hosts are bracketed)."""
        self._require()
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The default tenant's API key."""
        self._require()
        assert self._api_key is not None
        return self._api_key

    @property
    def admin_token(self) -> str:
        """The token of the fault-control routes (`Authorization: Bearer <it>`); not an API key."""
        return self._require().admin_token

    @property
    def faults(self) -> Faults:
        """Fault injection for tests (see createos_sandbox_async.local.faults)."""
        return self._require().faults

    @property
    def state_dir(self) -> str:
        """The temporary directory holding every sandbox's files (removed on exit)."""
        self._require()
        assert self._state_dir is not None
        return self._state_dir

    @property
    def isolation(self) -> str:
        """``"bubblewrap"`` or ``"none"``, as given."""
        return self._isolation

    @property
    def enforced_limits(self) -> frozenset[str]:
        """Which per-sandbox limits hold on this machine: "file_size" always, "processes" and
        "memory" where the emulator could make cgroups (see docs/emulator.md)."""
        return self._require().runtime.enforced

    def _require(self) -> Emulator:
        if self._emu is None:
            raise RuntimeError("LocalServer is not running: use `async with LocalServer() as s:`")
        return self._emu

    def add_tenant(self) -> str:
        """Create another account and return its API key (its sandboxes are invisible to others).

        Returns:
            The new account's API key.

        Raises:
            RuntimeError: The server is not running.
        """
        return self._require().add_tenant()

    def request_count(self, method: str | None = None, path: str = "*") -> int:
        """How many requests arrived, optionally filtered by method and path.

        Args:
            method: Only this method (``"POST"``); None counts every method.
            path: An ``fnmatch`` pattern on the path without the query (``*`` also matches
                ``/``).

        Returns:
            The count since the server started.

        Raises:
            RuntimeError: The server is not running.

        Example:
            ```python
            assert server.request_count("POST", "/v1/sandboxes") == 1
            ```
        """
        return self._require().request_count(method, path)

    def session(self, **kw: Any) -> AsyncSession:
        """An ``AsyncSession`` pointed at this server with the default account's key.

        Args:
            **kw: ``AsyncSession`` keyword arguments (``retry=``, ``timeout=``, ...).

        Returns:
            A new session; close it (``async with``) before the server stops.

        Raises:
            RuntimeError: The server is not running.
        """
        from .. import AsyncSession  # lazy: the emulator never imports the client otherwise

        kw.setdefault("api_key", self.api_key)
        kw.setdefault("base_url", self.base_url)
        return AsyncSession(**kw)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Probe isolation, bind the port, and serve. ``async with`` calls it.

        Raises:
            IsolationUnavailableError: bubblewrap is missing or cannot create namespaces here.
            OSError: The port cannot be bound.
            RuntimeError: Already started.
        """
        if self._emu is not None:
            raise RuntimeError("LocalServer already started")
        parent = self._state_parent or _fast_tmp() or tempfile.gettempdir()
        state_dir = await asyncio.to_thread(_new_state_dir, parent)
        runtime: Runtime | None = None
        try:
            runtime = Runtime(self._isolation, state_dir, max_processes=self._max_processes)
            await runtime.probe()
            await asyncio.to_thread(runtime.setup_cgroups)
            emu = Emulator(
                runtime,
                heartbeat_interval=self._heartbeat,
                transition_delay=self._transition,
                auto_pause_scale=self._auto_pause_scale,
                detached_buffered_exec=self._detached_exec,
                admin_token=self._admin_token,
            )
            self._api_key = emu.add_tenant(self._wanted_key)
            runner = web.AppRunner(
                build_app(emu), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
            )
            await runner.setup()
            try:
                site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
                await site.start()
                # runner.addresses, not the site's server object: under uvloop that is uvloop's
                # own Server class, not asyncio.base_events.Server.
                port = int(runner.addresses[0][1])
            except BaseException:
                await runner.cleanup()
                raise
        except BaseException:
            if runtime is not None:
                runtime.close()
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        self.port = port
        self._state_dir = state_dir
        self._runner = runner
        self._emu = emu

    async def stop(self) -> None:
        """Stop serving, kill every sandbox process, remove the state directory.

        Idempotent; ``async with`` calls it on exit.
        """
        emu, runner, state_dir = self._emu, self._runner, self._state_dir
        if emu is None:
            return
        emu.closing = True
        try:
            # Kill every sandbox first: handlers waiting on commands then finish on their own,
            # so closing the HTTP side below is quick.
            for sb in emu.sandboxes.values():
                if sb.auto_pause_timer is not None:
                    sb.auto_pause_timer.cancel()
                for proc in sb.processes.values():
                    proc.kill()
            boxes = [sb.runtime for sb in emu.sandboxes.values() if sb.runtime is not None]
            await asyncio.gather(*(b.stop() for b in boxes), return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
        finally:
            for task in list(emu.background):
                task.cancel()
            if emu.background:
                await asyncio.gather(*emu.background, return_exceptions=True)
            boxes = [sb.runtime for sb in emu.sandboxes.values() if sb.runtime is not None]
            await asyncio.gather(*(b.stop() for b in boxes), return_exceptions=True)
            # Every command is dead by now; wait (bounded) until asyncio has collected each one,
            # so none outlives the event loop.
            waits: list[Awaitable[object]] = [
                p.proc.wait()
                for sb in emu.sandboxes.values()
                for p in sb.processes.values()
                if p.proc is not None
            ]
            waits += [p.settled() for sb in emu.sandboxes.values() for p in sb.processes.values()]
            waits += list(emu.reaping)
            if waits:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 10)
            # Last: whatever still sits in a sandbox's cgroup (a daemon with isolation "none")
            await asyncio.to_thread(emu.runtime.close)
            if state_dir is not None:
                await asyncio.to_thread(remove_tree, state_dir)
            self._emu = None
            self._runner = None
            self._state_dir = None

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _new_state_dir(parent: str) -> str:
    """This emulator's state directory (after sweeping those of dead emulators)."""
    _sweep_stale(parent)
    state_dir = tempfile.mkdtemp(prefix=_STATE_PREFIX, dir=parent)
    try:
        os.chmod(state_dir, 0o711)  # the sandbox user may traverse it, never list it
        os.mkdir(os.path.join(state_dir, "sandboxes"), 0o711)
        os.mkdir(os.path.join(state_dir, "logs"), 0o700)
        with open(os.path.join(state_dir, _OWNER_FILE), "w") as fh:
            fh.write(str(os.getpid()))
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    return state_dir


def _sweep_stale(parent: str) -> None:
    """Remove state directories left by emulators that died without cleaning up (SIGKILL, OOM):
    under /dev/shm they hold memory until reboot. Only this user's real directories whose
    recorded process is gone; anything else is left alone."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(_STATE_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)  # never follow a link planted in a shared directory
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            with open(os.path.join(path, _OWNER_FILE)) as fh:
                pid = int(fh.read())
        except (OSError, ValueError):
            continue
        if pid > 0 and not os.path.exists(f"/proc/{pid}"):
            remove_tree(path)


def _fast_tmp() -> str | None:
    """Where sandbox trees go: $CREATEOS_LOCAL_STATE_DIR, else /dev/shm when it is a tmpfs with
    room (creating a sandbox writes dozens of small files; on a busy disk that dominates create
    latency), else the system temp dir."""
    env = os.environ.get("CREATEOS_LOCAL_STATE_DIR")
    if env:
        return env
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    if st.f_bavail * st.f_frsize >= 2 * 1024**3 and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None
