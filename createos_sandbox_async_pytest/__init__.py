"""pytest fixtures for code that uses createos-sandbox-async: a real emulator over real sockets.

Installed with the package and registered under the ``pytest11`` entry point, so the fixtures
are there in every pytest run; nothing starts until a test asks for one. Loading the plugin
imports only pytest and the standard library (not the SDK, not aiohttp, not the emulator):
that is why it is a top-level module of its own, outside ``createos_sandbox_async``.

Fixtures (docs/testing.md):

- ``createos_server``: a ``LocalServer`` running in a thread of its own, with its own event loop,
  shared by the whole session (one per distinct ``@pytest.mark.createos(...)`` option set);
- ``createos_session``: an ``AsyncSession`` on a fresh account of that server, per test;
- ``createos_sandbox``: a running sandbox of that session, destroyed after the test however it
  ended;
- ``createos_faults``: the server's ``Faults``, cleared before and after the test.

Async tests may run under anyio's pytest plugin (asyncio backend) or pytest-asyncio (any loop
scope). The server lives in its own thread, so its loop never meets the test's; the session and
the sandbox are created and closed on the loop the test itself runs on, whichever plugin owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pytest

if TYPE_CHECKING:
    from createos_sandbox_async import AsyncSession, Sandbox
    from createos_sandbox_async.local import Faults, LocalServer

__all__ = [
    "ServerOptions",
    "createos_faults",
    "createos_sandbox",
    "createos_server",
    "createos_session",
    "running_server",
]

T = TypeVar("T")

MARKER: Final = "createos"
#: ``LocalServer`` keywords the marker may set, and the defaults the plugin starts servers with.
SERVER_KEYWORDS: Final = frozenset(
    {
        "isolation",
        "heartbeat_interval",
        "transition_delay",
        "auto_pause_scale",
        "detached_buffered_exec",
        "max_processes",
    }
)
SERVER_DEFAULTS: Final[Mapping[str, Any]] = {"heartbeat_interval": 0.05}
#: Marker keywords that are not server options.
OTHER_KEYWORDS: Final = frozenset({"fresh", "sandbox"})
DEFAULT_SHAPE: Final = "s-1vcpu-256mb"
#: Bounds of starting and stopping a server thread (a hang, not a speed test).
START_TIMEOUT: Final = 120.0
STOP_TIMEOUT: Final = 60.0

_seq = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "createos(**options): options of the createos_* fixtures: LocalServer keywords "
        "(isolation, heartbeat_interval, transition_delay, auto_pause_scale, ...), "
        "fresh=True (a server of the test's own), sandbox={...} (create arguments of "
        "createos_sandbox)",
    )


# -- the server thread ---------------------------------------------------------------------------


class ServerOptions(tuple[tuple[str, Any], ...]):
    """Hashable ``LocalServer`` keywords: the key of a session-scoped server (equal = shared)."""

    __slots__ = ()

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> ServerOptions:
        return cls(sorted({**SERVER_DEFAULTS, **options}.items()))

    def __repr__(self) -> str:
        return ",".join(f"{k}={v!r}" for k, v in self) or "default"


class _ServerThread:
    """A ``LocalServer`` serving from its own event loop in a daemon thread.

    Its loop is never the test's, so one server can outlive any number of test loops (a
    pytest-asyncio function-scoped loop, anyio's runner) and serve them all.
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        self._options = dict(options)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: LocalServer | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="createos-local-server", daemon=True)

    def start(self) -> LocalServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"the emulator did not start within {START_TIMEOUT:.0f} s")
        if self._error is not None:
            raise self._error
        assert self._server is not None
        return self._server

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the emulator did not stop within {STOP_TIMEOUT:.0f} s")
        if self._error is not None and self._server is not None:
            raise self._error  # stopping failed

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from createos_sandbox_async.local import LocalServer

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = LocalServer(**self._options)
        await server.start()
        self._server = server
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[LocalServer]:
    """A ``LocalServer`` on a thread of its own for the duration of the block (sync code).

    For a ``createos_server`` of another scope::

        @pytest.fixture(scope="module")
        def createos_server():
            with running_server(heartbeat_interval=0.05) as server:
                yield server
    """
    runner = _ServerThread(options)
    server = runner.start()
    try:
        yield server
    finally:
        runner.stop()


# -- options -------------------------------------------------------------------------------------


def _marker_options(node: pytest.Item | pytest.Collector | Any) -> dict[str, Any]:
    """The closest ``@pytest.mark.createos`` keywords of a test, checked."""
    get = getattr(node, "get_closest_marker", None)
    marker = get(MARKER) if get is not None else None
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
    unknown = set(marker.kwargs) - SERVER_KEYWORDS - OTHER_KEYWORDS
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}: unknown option(s) {sorted(unknown)}; known: "
            f"{sorted(SERVER_KEYWORDS | OTHER_KEYWORDS)}"
        )
    return dict(marker.kwargs)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A marked test gets the server of its options: ``createos_server`` parametrized by them.

    pytest keeps one session-scoped instance per distinct parameter (and orders the tests so
    that each option set starts once); ``fresh=True`` makes the parameter unique to the test.
    """
    if "createos_server" not in metafunc.fixturenames:
        return
    options = _marker_options(metafunc.definition)
    server = {k: v for k, v in options.items() if k in SERVER_KEYWORDS}
    if not server and not options.get("fresh"):
        return
    key = ServerOptions.of(server)
    if options.get("fresh"):
        key = ServerOptions((*key, ("_test", metafunc.definition.nodeid)))
    metafunc.parametrize("createos_server", [key], indirect=True, ids=[repr(key)], scope="session")


# -- the loop a test runs on ---------------------------------------------------------------------


def _test_loop(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[T]]], T]:
    """Run coroutines on the event loop the current test runs on, whichever plugin owns it.

    - anyio (``@pytest.mark.anyio``): the runner anyio's plugin runs the test in; a lease on it
      keeps it alive until this fixture's teardown;
    - pytest-asyncio (``@pytest.mark.asyncio`` or auto mode): the runner of the test's loop
      scope (``loop_scope=`` of its marker, else ``asyncio_default_test_loop_scope``).
    """
    if "anyio_backend" in request.fixturenames:
        from anyio.pytest_plugin import extract_backend_and_options, get_runner

        backend, backend_options = extract_backend_and_options(
            request.getfixturevalue("anyio_backend")
        )
        if backend != "asyncio":
            pytest.skip(f"createos fixtures need the asyncio backend (aiohttp), not {backend}")
        lease = get_runner(backend, backend_options)
        runner = lease.__enter__()
        request.addfinalizer(lambda: lease.__exit__(None, None, None))

        def run_anyio(fn: Callable[[], Awaitable[T]]) -> T:
            async def call() -> T:
                return await fn()

            return runner.run_fixture(call, {})

        return run_anyio
    node = request.node
    if request.config.pluginmanager.has_plugin("asyncio"):
        from pytest_asyncio import is_async_test

        if isinstance(node, pytest.Item) and is_async_test(node):
            marker = node.get_closest_marker("asyncio")
            kwargs = marker.kwargs if marker is not None else {}
            scope = kwargs.get("loop_scope") or kwargs.get("scope")
            scope = scope or request.config.getini("asyncio_default_test_loop_scope") or "function"
            aio_runner = request.getfixturevalue(f"_{scope}_scoped_runner")

            def run_asyncio(fn: Callable[[], Awaitable[T]]) -> T:
                async def call() -> T:
                    return await fn()

                result: T = aio_runner.run(call())
                return result

            return run_asyncio
    raise pytest.UsageError(
        f"{request.fixturename} needs an async test run on asyncio: mark it "
        "@pytest.mark.anyio (with an anyio_backend fixture returning 'asyncio') or "
        "@pytest.mark.asyncio (pytest-asyncio)"
    )


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def createos_server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """The emulator: one per session (per ``@pytest.mark.createos`` option set), on its own
    thread. Override this fixture to change its scope or options (see ``running_server``)."""
    options = dict(getattr(request, "param", ServerOptions.of({})))
    options.pop("_test", None)
    with running_server(**options) as server:
        yield server


@pytest.fixture
def createos_faults(createos_server: LocalServer) -> Iterator[Faults]:
    """``createos_server.faults``, empty at the start and cleared at the end of the test."""
    faults = createos_server.faults
    faults.clear()
    yield faults
    faults.clear()


@pytest.fixture
def createos_session(
    request: pytest.FixtureRequest, createos_server: LocalServer
) -> Iterator[AsyncSession]:
    """An ``AsyncSession`` on a fresh account of the server (it sees only its own sandboxes),
    with a fast retry backoff; closed on the test's loop after the test."""
    from createos_sandbox_async import AsyncSession, RetryPolicy

    run = _test_loop(request)
    session = AsyncSession(
        api_key=createos_server.add_tenant(),
        base_url=createos_server.base_url,
        retry=RetryPolicy(base=0.01, cap=0.1),
    )
    try:
        yield session
    finally:
        run(session.aclose)


@pytest.fixture
def createos_sandbox(
    request: pytest.FixtureRequest, createos_session: AsyncSession
) -> Iterator[Sandbox]:
    """A running sandbox, destroyed after the test whatever happened in it.

    ``@pytest.mark.createos(sandbox={...})`` passes create arguments (default shape
    ``s-1vcpu-256mb``); its name follows the ``naming`` convention (prefix ``pytest``).
    """
    from createos_sandbox_async import naming

    run = _test_loop(request)
    create = {"shape": DEFAULT_SHAPE, **_marker_options(request.node).get("sandbox", {})}
    create.setdefault("name", naming.sandbox_name("pytest", run_id=_RUN_ID, seq=next(_seq)))
    sandbox = run(lambda: createos_session.sandboxes.create(**create))
    try:
        yield sandbox
    finally:
        run(sandbox.destroy)


def _new_run_id() -> str:
    import secrets

    return secrets.token_hex(4)


#: One run id per pytest process: the names of its sandboxes share it.
_RUN_ID: Final = _new_run_id()
