"""Shared fixtures. Tests run on asyncio (aiohttp needs it) through anyio's pytest plugin.

Helpers shared between test files live in ``tests/_*.py`` and are imported by module name
(``from _emulator import Client``); this file holds fixtures only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _emulator import start_emulator

from createos_sandbox_async.local import LocalServer


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
