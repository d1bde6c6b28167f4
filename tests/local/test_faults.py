"""server.faults: each injected fault does what it says, for the requests it matches, N times."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from _emulator import Client

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


async def test_status_faults_with_retry_after_times_and_matching(
    server: LocalServer, client: Client
) -> None:
    limited = server.faults.status(
        429, route="/v1/sandboxes", method="POST", retry_after=2, times=2
    )
    for _ in range(2):
        async with client.http.post(
            "/v1/sandboxes", headers=client.headers(), json={"shape": "s-1vcpu-256mb"}
        ) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "2"
            assert resp.headers["X-Request-Id"]
            assert (await resp.json())["status"] == "fail"
    assert limited.hits == 2 and not limited.active
    status, _ = await client.call("GET", "/v1/sandboxes")  # other method: untouched
    assert status == 200
    created = await client.create()  # spent: the third POST goes through
    assert created["status"] == "running"
    assert server.request_count("POST", "/v1/sandboxes") == 3
    assert len((await client.ok("GET", "/v1/sandboxes"))["data"]) == 1  # faults did not create

    server.faults.status(503, route="/v1/sandboxes/*")
    status, body = await client.call("GET", f"/v1/sandboxes/{created['id']}")
    assert status == 503 and body["status"] == "error"
    server.faults.status(500)
    status, _ = await client.call("GET", "/healthz")
    assert status == 500


async def test_html_and_custom_bodies(server: LocalServer, client: Client) -> None:
    server.faults.status(502, html=True)
    async with client.http.get("/v1/whoami", headers=client.headers()) as resp:
        assert resp.status == 502 and resp.content_type == "text/html"
        assert "<html>" in await resp.text()
    server.faults.status(418, body=b"short and stout")
    async with client.http.get("/v1/whoami", headers=client.headers()) as resp:
        assert resp.status == 418 and await resp.read() == b"short and stout"
    server.faults.status(400, body={"status": "fail", "data": "bare string"})
    status, body = await client.call("GET", "/v1/whoami")
    assert status == 400 and body == {"status": "fail", "data": "bare string"}
    forever = server.faults.status(503, route="/readyz", times=None)
    for _ in range(3):
        assert (await client.call("GET", "/readyz"))[0] == 503
    assert forever.hits == 3
    server.faults.clear()
    assert (await client.call("GET", "/readyz"))[0] == 200
    with pytest.raises(ValueError, match="times"):
        server.faults.status(500, times=0)


async def test_reset_before_and_after_headers(server: LocalServer, client: Client) -> None:
    # POST: aiohttp's client transparently retries an idempotent request once on a dropped
    # connection, which would hide the reset from this test.
    before = server.faults.reset(route="/v1/sandboxes", method="POST")
    with pytest.raises(aiohttp.ClientError):
        await client.call("POST", "/v1/sandboxes", json={"shape": "s-1vcpu-256mb"})
    assert before.hits == 1
    after = server.faults.reset(route="/v1/sandboxes", method="POST", after_headers=True)
    with pytest.raises(aiohttp.ClientError):
        async with client.http.post(
            "/v1/sandboxes", headers=client.headers(), json={"shape": "s-1vcpu-256mb"}
        ) as resp:
            assert resp.status == 200  # the status line arrived...
            await resp.read()  # ...the body never does
    assert after.hits == 1
    assert (await client.ok("GET", "/v1/sandboxes"))["data"] == []  # the handler never ran
    assert (await client.create())["status"] == "running"  # both rules are spent


async def _stream(client: Client, sid: str, script: str) -> aiohttp.ClientResponse:
    return await client.http.post(
        f"/v1/sandboxes/{sid}/exec?stream=true",
        headers=client.headers(),
        json={"cmd": "bash", "args": ["-c", script]},
    )


async def test_truncate_ends_the_stream_before_the_exit_frame(
    server: LocalServer, client: Client
) -> None:
    sid = (await client.create())["id"]
    server.faults.truncate(route="/v1/sandboxes/*/exec", after_frames=1)
    resp = await _stream(client, sid, "echo a; sleep 0.05; echo b; sleep 0.05; echo c")
    lines = [json.loads(line) for line in (await resp.read()).splitlines()]
    frames = [f for f in lines if "hb" not in f]
    assert frames == [{"stdout": "a\n"}]  # clean EOF, no exit_code
    server.faults.truncate(route="/v1/sandboxes/*/exec", after_frames=99)
    resp = await _stream(client, sid, "echo only")
    frames = [f for f in map(json.loads, (await resp.read()).splitlines()) if "hb" not in f]
    assert frames == [{"stdout": "only\n"}]  # fewer frames than after_frames: still no exit


async def test_stall_stops_everything_but_keeps_the_connection(
    server: LocalServer, client: Client
) -> None:
    sid = (await client.create())["id"]
    server.faults.stall(route="/v1/sandboxes/*/exec", after_frames=1)
    resp = await _stream(client, sid, "echo first; sleep 0.2; echo second; sleep 30")
    assert json.loads(await resp.content.readline()) == {"stdout": "first\n"}
    # heartbeats come every 0.05 s normally; a stalled stream sends none for many intervals
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(resp.content.readline(), 0.5)
    assert resp.connection is not None or resp.closed is False
    resp.close()


async def test_slow_dribbles_the_body_out(server: LocalServer, client: Client) -> None:
    handle = server.faults.slow(route="/v1/shapes", delay=0.01, chunk_size=16)
    reads = 0
    async with client.http.get("/v1/shapes") as resp:
        body = b""
        async for chunk in resp.content.iter_any():
            reads += 1
            body += chunk
    data = json.loads(body)
    assert data["status"] == "success" and data["data"]["data"]
    assert reads >= len(body) // 16 // 2  # arrived in many small pieces, intact
    assert handle.hits == 1
    sid = (await client.create())["id"]
    server.faults.slow(route="/v1/sandboxes/*/exec", delay=0.001, chunk_size=3)
    resp = await _stream(client, sid, "echo hello")
    frames = [f for f in map(json.loads, (await resp.read()).splitlines()) if "hb" not in f]
    assert frames == [{"stdout": "hello\n"}, {"exit_code": 0}]


async def test_faults_apply_to_file_downloads(server: LocalServer, client: Client) -> None:
    sid = (await client.create())["id"]
    payload = b"z" * 100_000
    await client.ok("PUT", f"/v1/sandboxes/{sid}/files", params={"path": "/tmp/z"}, data=payload)
    server.faults.truncate(route="/v1/sandboxes/*/files", method="GET", after_frames=0)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.http.get(
            f"/v1/sandboxes/{sid}/files", params={"path": "/tmp/z"}, headers=client.headers()
        ) as resp:
            assert resp.status == 200
            await resp.read()
    async with client.http.get(
        f"/v1/sandboxes/{sid}/files", params={"path": "/tmp/z"}, headers=client.headers()
    ) as resp:
        assert await resp.read() == payload
