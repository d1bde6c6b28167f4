"""The ``detached_buffered_exec`` switch: a buffered exec whose client disconnects runs to its end
(as a service that does not kill on disconnect would), yet the emulator's stop still kills it."""

from __future__ import annotations

import asyncio

import aiohttp
import anyio
import pytest
from _emulator import Client, pids_with_argv, require_bwrap

from createos_sandbox_async.local import LocalServer
from createos_sandbox_async.local.__main__ import _parser

pytestmark = pytest.mark.anyio


async def _disconnect_after_start(client: Client, sid: str, script: str) -> None:
    """POST a buffered exec, wait (bounded) until the command runs, then drop the connection."""
    task = asyncio.ensure_future(client.sh(sid, script))
    try:
        with anyio.fail_after(20):
            while (await client.sh(sid, "test -e /tmp/started"))["exit_code"] != 0:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("detached", [True, False])
async def test_a_disconnected_buffered_exec_runs_on_only_when_detached(detached: bool) -> None:
    require_bwrap()
    async with (
        LocalServer(detached_buffered_exec=detached) as server,
        aiohttp.ClientSession(server.base_url) as http,
    ):
        client = Client(http, server.api_key)
        sid = (await client.create())["id"]
        await _disconnect_after_start(client, sid, "touch /tmp/started; sleep 0.3; touch /tmp/done")
        check = "for i in $(seq 300); do test -e /tmp/done && exit 0; sleep 0.02; done; exit 1"
        done = (await client.sh(sid, check))["exit_code"] == 0
    assert done is detached


async def test_stop_kills_a_detached_exec() -> None:
    require_bwrap()
    argv = ("sleep", "317")  # a unique command line to find on the host
    async with (
        LocalServer(detached_buffered_exec=True) as server,
        aiohttp.ClientSession(server.base_url) as http,
    ):
        client = Client(http, server.api_key)
        sid = (await client.create())["id"]
        await _disconnect_after_start(client, sid, "touch /tmp/started; exec sleep 317")
        assert pids_with_argv(*argv)  # still running without its client
        with anyio.fail_after(30):
            await server.stop()
    with anyio.fail_after(10):
        while pids_with_argv(*argv):
            await anyio.sleep(0.02)


def test_cli_flag() -> None:
    assert _parser().parse_args(["--detached-buffered-exec"]).detached_buffered_exec is True
    assert _parser().parse_args([]).detached_buffered_exec is False
