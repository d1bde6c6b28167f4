"""A hand-written ``httpx.AsyncClient`` client doing the same requests as the SDK.

What a user who skips every SDK and reaches for httpx would write: one pooled client, ``json=`` out,
``response.json()`` in, ``aiter_lines()`` plus ``json.loads`` per line for streams.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import _common as c
import httpx


async def main(job: c.Job) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=max(100, job.concurrency), max_keepalive_connections=None)
    client = httpx.AsyncClient(
        base_url=job.base_url,
        headers={"X-Api-Key": job.api_key},
        limits=limits,
        timeout=httpx.Timeout(60.0),
    )
    exec_path = job.path + "/exec"
    files_path = job.path + "/files"

    def data_of(r: httpx.Response) -> Any:
        if r.status_code // 100 != 2:
            raise RuntimeError(f"{r.request.method} {r.url}: {r.status_code} {r.text[:200]}")
        env = r.json()
        if env.get("status") != "success":
            raise RuntimeError(f"not JSend success: {r.text[:200]}")
        return env["data"]

    async def exec_once(path: str) -> None:
        r = await client.post(path, json={"cmd": c.EXEC_CMD, "args": c.EXEC_ARGS})
        res = data_of(r)["result"]
        c.check_exec(res["stdout"], res["exit_code"])

    async def op_exec(t: c.Tally) -> None:
        await exec_once(exec_path)
        t.add()

    async def op_lifecycle(t: c.Tally) -> None:
        body = {"shape": c.SHAPE, "rootfs": c.ROOTFS}
        view = data_of(await client.post("/v1/sandboxes", json=body))
        path = "/v1/sandboxes/" + view["id"]
        await exec_once(path + "/exec")
        gone = data_of(await client.delete(path))
        if gone["status"] not in ("destroying", "destroyed"):
            raise AssertionError(gone)
        t.add()

    stream_json = {"cmd": "bench", "args": job.stream_args(), "stream": True}
    no_read_timeout = httpx.Timeout(60.0, read=None)

    async def op_stream(t: c.Tally) -> None:
        n_out = n_err = c_out = c_err = 0
        code = None
        async with client.stream(
            "POST", exec_path, params={"stream": "true"}, json=stream_json, timeout=no_read_timeout
        ) as r:
            if r.status_code != 200:
                raise RuntimeError(r.status_code)
            async for line in r.aiter_lines():
                if not line:
                    continue
                frame = json.loads(line)
                if frame.get("hb"):
                    continue
                s = frame.get("stdout")
                if s:
                    n_out += 1
                    c_out += len(s)
                    continue
                s = frame.get("stderr")
                if s:
                    n_err += 1
                    c_err += len(s)
                    continue
                if "exit_code" in frame:
                    code = frame["exit_code"]
            wire = r.num_bytes_downloaded
        events = c.check_stream(job, n_out, n_err, c_out, c_err, code)
        t.add(wire, events)

    payload = bytes(job.size if job.kind == "upload" else 0)
    octet = {"Content-Type": "application/octet-stream"}

    async def op_upload(t: c.Tally) -> None:
        r = await client.put(
            files_path, params={"path": "/workspace/up.bin"}, content=payload, headers=octet
        )
        data_of(r)
        t.add(len(payload))

    async def op_download(t: c.Tally) -> None:
        r = await client.get(files_path, params={"path": f"/bench/{job.size}"})
        if r.status_code != 200:
            raise RuntimeError(r.status_code)
        if len(r.content) != job.size:
            raise AssertionError(f"downloaded {len(r.content)} bytes, want {job.size}")
        t.add(len(r.content))

    idle_json = {"cmd": "bench", "args": ["idle"], "stream": True}

    async def open_idle() -> httpx.Response:
        req = client.build_request(
            "POST", exec_path, params={"stream": "true"}, json=idle_json, timeout=no_read_timeout
        )
        r = await client.send(req, stream=True)
        if r.status_code != 200:
            raise RuntimeError(r.status_code)
        return r

    async def close_idle(r: httpx.Response) -> None:
        await r.aclose()

    ops = {
        "exec": op_exec,
        "lifecycle": op_lifecycle,
        "stream": op_stream,
        "upload": op_upload,
        "download": op_download,
    }
    try:
        if job.kind == "idle":
            return await c.run_idle_async(job, open_idle, close_idle)
        return await c.run_async(job, ops[job.kind])
    finally:
        await client.aclose()


if __name__ == "__main__":
    c.emit(asyncio.run(main(c.load_job())))
