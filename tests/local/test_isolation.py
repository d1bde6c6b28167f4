"""Isolation: a sandbox sees only its own tree and read-only system dirs, has no network and no
capabilities, and the files API cannot be led out of the tree through symlinks."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from _emulator import Client, host_exists

from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio


async def test_sandboxes_cannot_see_each_other_or_the_state_dir(
    server: LocalServer, client: Client
) -> None:
    a = (await client.create())["id"]
    b = (await client.create())["id"]
    await client.ok(
        "PUT", f"/v1/sandboxes/{a}/files", params={"path": "/root/secret.txt"}, data=b"only-for-a"
    )
    host_copy = os.path.join(server.state_dir, "sandboxes", a, "root", "secret.txt")
    assert host_exists(host_copy)  # where the emulator keeps it on the host
    probes = [
        "cat /root/secret.txt",
        f"cat {host_copy}",
        f"ls {server.state_dir}",
        f"cat /proc/1/root/../{a}/root/secret.txt",
        "find / -xdev -name secret.txt 2>/dev/null | grep . ",
    ]
    for probe in probes:
        res = await client.sh(b, probe)
        assert "only-for-a" not in res["stdout"], probe
        assert res["exit_code"] != 0 or not res["stdout"].strip(), (probe, res)
    # the host's private files are not there either
    res = await client.sh(b, "ls /work /home /etc/shadow /root/.ssh 2>&1; cat /etc/shadow")
    assert res["exit_code"] != 0
    assert "root:" not in res["stdout"]


async def test_no_network_and_no_capabilities(client: Client) -> None:
    sid = (await client.create())["id"]
    res = await client.exec(
        sid,
        "python3",
        "-c",
        "import socket\n"
        "for host, port in (('1.1.1.1', 53), ('127.0.0.1', 1), ('10.0.2.2', 80)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2)\n"
        "        print('connected', host)\n"
        "    except OSError as exc:\n"
        "        print('refused', host, exc.errno)\n",
    )
    assert "connected" not in res["stdout"]
    assert res["stdout"].count("refused") == 3
    res = await client.sh(sid, "ip -o link 2>/dev/null || cat /proc/net/dev")
    assert "eth" not in res["stdout"] and "ens" not in res["stdout"]
    res = await client.sh(sid, "grep CapEff /proc/self/status")
    assert res["stdout"].split()[1] == "0000000000000000"
    res = await client.sh(sid, "touch /usr/bin/evil")
    assert res["exit_code"] != 0 and not host_exists("/usr/bin/evil")
    res = await client.sh(sid, "mount -o remount,rw /usr")
    assert res["exit_code"] != 0
    if os.geteuid() == 0:  # bwrap --disable-userns: no nested user namespace to regain caps
        res = await client.sh(sid, "unshare -Ur true")
        assert res["exit_code"] != 0


@pytest.mark.usefixtures("fs_resolution")
async def test_symlinks_cannot_lead_the_files_api_out(server: LocalServer, client: Client) -> None:
    a = (await client.create())["id"]
    b = (await client.create())["id"]
    await client.ok(
        "PUT", f"/v1/sandboxes/{b}/files", params={"path": "/root/b-secret"}, data=b"b-only"
    )
    other = os.path.join(server.state_dir, "sandboxes", b, "root")
    outside = server.state_dir + "/escaped-marker"
    await client.sh(
        a,
        f"ln -s {other}/b-secret /root/abs-link; "
        f"ln -s ../../../../../../../../{other.lstrip('/')}/b-secret /root/rel-link; "
        f"ln -s {server.state_dir} /root/state; ln -s / /root/up; "
        "ln -s /proc/self/root /root/magic",
    )
    for path in (
        "/root/abs-link",
        "/root/rel-link",
        "/root/state/sandboxes",
        f"/root/magic{other}/b-secret",
        f"/root/up{other}/b-secret",
    ):
        status, body = await client.call("GET", f"/v1/sandboxes/{a}/files", params={"path": path})
        assert status in (400, 404), path
        assert body != b"b-only"
    # writes through a symlinked directory stay inside the sandbox's own tree
    status, _ = await client.call(
        "PUT", f"/v1/sandboxes/{a}/files", params={"path": "/root/state/escaped-marker"}, data=b"x"
    )
    assert not host_exists(outside)
    assert status == 400  # inside the sandbox that path is under /dev, a kernel filesystem
    await client.sh(a, "mkdir /root/inner; ln -s /root/inner /root/in-link")
    await client.ok(
        "PUT", f"/v1/sandboxes/{a}/files", params={"path": "/root/in-link/f"}, data=b"y"
    )
    assert (await client.exec(a, "cat", "/root/inner/f"))["stdout"] == "y"
    status, _ = await client.call(
        "PUT", f"/v1/sandboxes/{a}/files", params={"path": "/root/up/usr/bin/evil"}, data=b"x"
    )
    assert status == 400 and not host_exists("/usr/bin/evil")


@pytest.mark.usefixtures("fs_resolution")
async def test_a_fifo_cannot_hang_the_emulator(client: Client) -> None:
    # Opening a FIFO for reading blocks until a writer comes: done on the server's loop, one
    # sandbox would freeze every other client (this test then hangs until its timeout).
    sid = (await client.create())["id"]
    await client.sh(sid, "mkfifo /root/pipe")
    status, body = await client.call(
        "GET", f"/v1/sandboxes/{sid}/files", params={"path": "/root/pipe"}
    )
    assert status == 400 and "not a regular file" in body["data"]["message"]
    assert (await client.exec(sid, "echo", "still-serving"))["stdout"] == "still-serving\n"


@pytest.mark.usefixtures("fs_resolution")
@pytest.mark.parametrize("path", ["relative/x", "/a/../etc/passwd", "", "/root/.."])
async def test_bad_paths_are_400(client: Client, path: str) -> None:
    sid = (await client.create())["id"]
    for method in ("GET", "PUT"):
        status, body = await client.call(
            method, f"/v1/sandboxes/{sid}/files", params={"path": path}, data=b"x"
        )
        assert status == 400, (method, path, body)


@pytest.mark.usefixtures("fs_resolution")
async def test_files_round_trip_and_limits(client: Client) -> None:
    sid = (await client.create())["id"]
    payload = bytes(range(256)) * 4096  # 1 MiB of every byte value
    data = await client.ok(
        "PUT",
        f"/v1/sandboxes/{sid}/files",
        params={"path": "/workspace/deep/dir/blob.bin"},
        data=payload,
    )
    assert data == {"path": "/workspace/deep/dir/blob.bin", "bytes": len(payload)}
    async with client.http.get(
        f"/v1/sandboxes/{sid}/files",
        headers=client.headers(),
        params={"path": "/workspace/deep/dir/blob.bin"},
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/octet-stream"
        assert await resp.read() == payload
    res = await client.exec(sid, "sha256sum", "/workspace/deep/dir/blob.bin")
    assert res["stdout"].split()[0] == hashlib.sha256(payload).hexdigest()
    # files written by commands are what the API reads, and the other way round
    await client.sh(sid, "echo from-exec > /tmp/made-by-exec")
    async with client.http.get(
        f"/v1/sandboxes/{sid}/files", headers=client.headers(), params={"path": "/tmp/made-by-exec"}
    ) as resp:
        assert await resp.read() == b"from-exec\n"
    status, _ = await client.call(
        "GET", f"/v1/sandboxes/{sid}/files", params={"path": "/tmp/missing"}
    )
    assert status == 404
    status, _ = await client.call("GET", f"/v1/sandboxes/{sid}/files", params={"path": "/tmp"})
    assert status == 400


@pytest.mark.usefixtures("fs_resolution")
async def test_upload_over_the_limit_is_refused_before_reading(
    server: LocalServer, client: Client
) -> None:
    sid = (await client.create())["id"]
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"PUT /v1/sandboxes/{sid}/files?path=/tmp/huge HTTP/1.1\r\nHost: x\r\n"
        f"X-Api-Key: {server.api_key}\r\nContent-Length: 524288001\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"400"
    res = await client.exec(sid, "ls", "/tmp")
    assert "huge" not in res["stdout"]
