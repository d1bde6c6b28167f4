"""Fault control over HTTP (/__createos/, local/admin.py): what another process sees, with plain
aiohttp. Auth (admin token only, loopback peers only), bad specs, clear, counts, and that the
admin routes are never counted or faulted themselves."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import aiohttp
import anyio
import pytest
from _emulator import Client
from _emuproc import emulator_process

from createos_sandbox_async.local import LocalServer
from createos_sandbox_async.local.admin import peer_is_loopback

pytestmark = pytest.mark.anyio


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def admin(
    server: LocalServer, method: str, path: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    """One admin call from a fresh client, as another process would make it."""
    kw.setdefault("headers", bearer(server.admin_token))
    async with (
        aiohttp.ClientSession(server.base_url) as http,
        http.request(method, "/__createos/" + path, **kw) as resp,
    ):
        return resp.status, await resp.json()


async def test_only_the_admin_token_opens_the_admin_routes(server: LocalServer) -> None:
    key = server.api_key
    assert server.admin_token != key and server.admin_token not in repr(server)
    refused = [
        {},
        bearer(key),  # a tenant's key never opens them
        {"X-Api-Key": key},
        bearer(server.admin_token + "x"),
        bearer(server.admin_token[:-1]),
        {"Authorization": f"Basic {server.admin_token}"},
        {"Authorization": server.admin_token},
        {"X-Api-Key": server.admin_token},
    ]
    for headers in refused:
        status, body = await admin(
            server, "POST", "faults", headers=headers, json={"kind": "reset"}
        )
        assert status == 401, headers
        assert body["status"] == "fail" and "admin token" in body["data"]["message"]
        assert server.admin_token not in str(body)
    status, body = await admin(server, "GET", "faults")
    assert (status, body["data"]) == (200, {"faults": []})  # nothing was added by the 401s
    # A lower-case scheme and the token given to LocalServer(admin_token=...) work too.
    status, _ = await admin(
        server, "GET", "faults", headers={"Authorization": f"bearer {server.admin_token}"}
    )
    assert status == 200
    assert server.request_count() == 0  # admin calls, refused or not, are never counted


async def test_a_given_admin_token_is_used_and_must_differ_from_the_api_key() -> None:
    with pytest.raises(ValueError, match="differ from api_key"):
        LocalServer(api_key="sk_local_same", admin_token="sk_local_same")
    with pytest.raises(ValueError, match="printable ASCII"):
        LocalServer(admin_token="two words")
    with pytest.raises(TypeError, match="admin_token must be a str"):
        LocalServer(admin_token=b"bytes")  # type: ignore[arg-type]
    async with LocalServer(admin_token="adm_test_fixed") as server:
        assert server.admin_token == "adm_test_fixed"
        status, _ = await admin(server, "GET", "faults", headers=bearer("adm_test_fixed"))
        assert status == 200


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (to be the client's source)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if peer_is_loopback(address) else address


async def test_a_non_loopback_peer_is_refused_even_with_the_token(server: LocalServer) -> None:
    source = _non_loopback_address()
    if source is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(server.base_url, connector=connector) as http:
        async with http.get("/__createos/faults", headers=bearer(server.admin_token)) as resp:
            assert resp.status == 403
            assert "loopback" in (await resp.json())["data"]["message"]
        async with http.post(
            "/__createos/faults", headers=bearer(server.admin_token), json={"kind": "reset"}
        ) as resp:
            assert resp.status == 403
        async with http.get("/healthz") as resp:  # the API itself still answers that peer
            assert resp.status == 200
    assert server.faults.known() == []


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # a dual-stack listener sees IPv4 clients like this
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("fe80::1%eth0", False),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
        ("localhost", False),  # peers are addresses, never names
    ],
)
def test_peer_is_loopback(remote: str | None, loopback: bool) -> None:
    assert peer_is_loopback(remote) is loopback


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "kind must be one of status, reset, stall, truncate, slow, got None"),
        ({"kind": "explode"}, "got 'explode'"),
        ({"kind": "status"}, "a status fault needs status"),
        ({"kind": "status", "status": 700}, "status must be an HTTP status code, got 700"),
        ({"kind": "status", "status": "500"}, "status must be an integer"),
        ({"kind": "status", "status": True}, "status must be an integer"),
        ({"kind": "status", "status": 500, "delay": 1}, "unknown field(s) delay for a status"),
        ({"kind": "status", "status": 500, "times": 0}, "times must be >= 1 or None"),
        ({"kind": "status", "status": 500, "times": 1.5}, "times must be an integer"),
        ({"kind": "status", "status": 500, "route": ""}, "route must be a non-empty string"),
        ({"kind": "status", "status": 500, "method": 5}, "method must be a string"),
        ({"kind": "status", "status": 500, "html": "yes"}, "html must be true or false"),
        ({"kind": "status", "status": 500, "body": 5}, "body must be a string or a JSON object"),
        ({"kind": "status", "status": 429, "retry_after": []}, "retry_after must be a number"),
        ({"kind": "reset", "after_headers": 1}, "after_headers must be true or false"),
        ({"kind": "stall", "after_frames": -1}, "after_frames must be >= 0"),
        ({"kind": "truncate", "after_frames": "2"}, "after_frames must be an integer"),
        ({"kind": "slow", "delay": -0.1}, "delay must be >= 0"),
        ({"kind": "slow", "chunk_size": 0}, "chunk_size must be >= 1"),
    ],
)
async def test_bad_fault_specs_are_400_with_a_clear_message(
    server: LocalServer, body: dict[str, Any], message: str
) -> None:
    status, answer = await admin(server, "POST", "faults", json=body)
    assert status == 400
    assert answer["status"] == "fail" and message in answer["data"]["message"]
    assert server.faults.known() == []  # nothing half-added


async def test_bodies_that_are_not_a_json_object_are_400(server: LocalServer) -> None:
    for data in (b"", b"not json", b"[1, 2]"):
        status, answer = await admin(
            server,
            "POST",
            "faults",
            data=data,
            headers={**bearer(server.admin_token), "Content-Type": "application/json"},
        )
        assert status == 400 and "JSON" in answer["data"]["message"]


async def test_a_fault_added_over_http_applies_counts_hits_and_can_be_read(
    server: LocalServer, client: Client
) -> None:
    sb = await client.create()
    exec_route = "/v1/sandboxes/*/exec"
    status, added = await admin(
        server,
        "POST",
        "faults",
        json={
            "kind": "status",
            "status": 429,
            "route": exec_route,
            "method": "post",
            "times": 2,
            "retry_after": 3,
        },
    )
    assert status == 201
    fault = added["data"]
    assert fault["id"].startswith("flt_")
    assert {k: fault[k] for k in ("kind", "route", "method", "times", "hits", "active")} == {
        "kind": "status",
        "route": exec_route,
        "method": "POST",
        "times": 2,
        "hits": 0,
        "active": True,
    }
    assert fault["status"] == 429 and fault["retry_after"] == 3
    for _ in range(2):
        async with client.http.post(
            f"/v1/sandboxes/{sb['id']}/exec", headers=client.headers(), json={"cmd": "true"}
        ) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "3"
    result = await client.exec(sb["id"], "echo", "through")  # spent: the third one runs
    assert result["stdout"] == "through\n"
    status, got = await admin(server, "GET", f"faults/{fault['id']}")
    assert status == 200 and got["data"]["hits"] == 2 and got["data"]["active"] is False
    status, listed = await admin(server, "GET", "faults")
    assert [f["id"] for f in listed["data"]["faults"]] == [fault["id"]]  # spent ones still listed

    status, counts = await admin(
        server, "GET", "requests", params={"method": "POST", "path": "*/exec"}
    )
    assert status == 200
    assert counts["data"] == {
        "count": 3,
        "requests": [{"method": "POST", "path": f"/v1/sandboxes/{sb['id']}/exec", "count": 3}],
    }
    status, everything = await admin(server, "GET", "requests")
    assert everything["data"]["count"] == server.request_count() == 4  # + the create
    status, cleared = await admin(server, "DELETE", "requests")
    assert (status, cleared["data"]) == (200, {"cleared": 4})
    assert server.request_count() == 0


async def test_delete_one_fault_and_clear_all(server: LocalServer, client: Client) -> None:
    _, first = await admin(
        server,
        "POST",
        "faults",
        json={"kind": "status", "status": 503, "route": "/v1/whoami", "times": None},
    )
    _, second = await admin(server, "POST", "faults", json={"kind": "reset", "route": "/v1/hosts"})
    assert (await client.call("GET", "/v1/whoami"))[0] == 503
    assert (await client.call("GET", "/v1/whoami"))[0] == 503  # times: null = until removed
    status, removed = await admin(server, "DELETE", f"faults/{first['data']['id']}")
    assert status == 200 and removed["data"]["hits"] == 2
    assert (await client.call("GET", "/v1/whoami"))[0] == 200
    status, missing = await admin(server, "GET", f"faults/{first['data']['id']}")
    assert status == 404 and "not found" in missing["data"]["message"]
    status, cleared = await admin(server, "DELETE", "faults")
    assert (status, cleared["data"]) == (200, {"cleared": 1})
    assert (await client.call("GET", "/v1/hosts"))[0] == 200  # the reset went with the clear
    assert (await admin(server, "GET", f"faults/{second['data']['id']}"))[0] == 404
    assert (await admin(server, "DELETE", "faults/flt_nope"))[0] == 404
    assert (await admin(server, "PUT", "faults"))[0] == 405
    assert (await admin(server, "GET", "nothing-here"))[0] == 404


async def test_admin_routes_are_never_faulted_or_counted(
    server: LocalServer, client: Client
) -> None:
    # Every request, any method, forever: still the admin routes answer, and are not counted.
    _, added = await admin(
        server, "POST", "faults", json={"kind": "status", "status": 503, "times": None}
    )
    server.faults.reset(route="/__createos/*", times=None)  # even one aimed at them
    assert (await client.call("GET", "/v1/whoami"))[0] == 503
    status, got = await admin(server, "GET", f"faults/{added['data']['id']}")
    assert status == 200 and got["data"]["hits"] == 1
    status, counts = await admin(server, "GET", "requests")
    assert counts["data"]["requests"] == [{"method": "GET", "path": "/v1/whoami", "count": 1}]
    assert server.request_count(path="/__createos/*") == 0
    assert (await admin(server, "DELETE", "faults"))[0] == 200
    assert (await client.call("GET", "/v1/whoami"))[0] == 200


async def test_path_spellings_do_not_cross_between_api_and_admin(
    server: LocalServer, client: Client
) -> None:
    """A tenant cannot reach an admin handler through /v1/.., nor the admin token a tenant one."""
    reader, writer = await _raw(server)
    try:
        for path, headers in (
            ("/v1/../__createos/faults", f"X-Api-Key: {server.api_key}"),
            ("/__createos/../v1/whoami", f"Authorization: Bearer {server.admin_token}"),
        ):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            assert status_line.split()[1] == b"404", (path, status_line)
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    finally:
        writer.close()


async def _raw(server: LocalServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def test_the_cli_prints_or_takes_the_admin_token() -> None:
    async with emulator_process() as emu:  # a random token, printed as an export line
        assert emu.admin_token.startswith("adm_local_") and emu.admin_token != emu.api_key
        async with (
            aiohttp.ClientSession(emu.base_url) as http,
            http.get("/__createos/faults", headers=bearer(emu.admin_token)) as resp,
        ):
            assert resp.status == 200
    async with emulator_process("--admin-token", "adm_cli_given") as emu:
        assert emu.admin_token == "adm_cli_given"
        async with aiohttp.ClientSession(emu.base_url) as http:
            async with http.post(
                "/__createos/faults",
                headers=bearer("adm_cli_given"),
                json={"kind": "status", "status": 500, "route": "/v1/whoami"},
            ) as resp:
                assert resp.status == 201
            async with http.get("/v1/whoami", headers={"X-Api-Key": emu.api_key}) as resp:
                assert resp.status == 500
    same = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "createos_sandbox_async.local",
            "--api-key",
            "k1",
            "--admin-token",
            "k1",
        ],
        check=False,
    )
    assert same.returncode == 2 and b"must differ from api_key" in same.stderr
