"""Shared fixtures. Tests run on asyncio (aiohttp needs it) through anyio's pytest plugin.

Helpers shared between test files live in ``tests/_*.py`` and are imported by module name
(``from _emulator import Client``); this file holds fixtures only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from _emulator import start_emulator

from createos_sandbox_async.local import LocalServer

# _leakcheck fails the run if it leaves a process behind; the package's own pytest plugin (also
# loaded through its pytest11 entry point once installed) serves the tests written as a user would.
pytest_plugins = ["_leakcheck", "createos_sandbox_async_pytest"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[LocalServer]:
    """A fresh emulator per test; ``@pytest.mark.emulator(**LocalServer kwargs)`` adjusts it
    (on a test, a class or a module's ``pytestmark``)."""
    marker = request.node.get_closest_marker("emulator")
    async with start_emulator(**(marker.kwargs if marker else {})) as server:
        yield server


@pytest.fixture(params=["openat2", "no-openat2"])
def fs_resolution(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run an emulator files test twice: with openat2(RESOLVE_IN_ROOT), and with the fallback
    for kernels without it (every path component opened with O_NOFOLLOW)."""
    from createos_sandbox_async.local import _fs

    saved = _fs._have_openat2[0]
    _fs._have_openat2[0] = request.param == "openat2"
    try:
        yield request.param
    finally:
        _fs._have_openat2[0] = saved
