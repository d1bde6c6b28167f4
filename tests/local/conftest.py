"""Fixtures for the emulator's own tests: a server per test and a raw aiohttp client (the emulator
is tested over the wire, independently of the SDK). Helpers: tests/_emulator.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from _emulator import Client

from createos_sandbox_async.local import LocalServer


@pytest.fixture
def server(emulator: LocalServer) -> LocalServer:
    """The emulator under test (the root conftest's ``emulator`` fixture, by its local name)."""
    return emulator


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(server.base_url) as session:
        yield Client(session, server.api_key)
