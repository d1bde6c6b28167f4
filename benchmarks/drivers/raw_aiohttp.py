"""The floor: a minimal hand-written aiohttp client doing exactly the SDK's requests.

No retries, no models, no hooks: one pooled ``ClientSession``, ``json.dumps`` out, ``json.loads``
in, and for streams a line splitter over ``iter_any()`` with one ``json.loads`` per line (or
``orjson.loads`` when the job says ``"json": "orjson"``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import _common as c
import aiohttp


async def main(job: c.Job) -> dict[str, Any]:
    loads: Any = json.loads
    if job.json_lib == "orjson":
        import orjson

        loads = orjson.loads
    base = job.base_url
    jhdr = {"X-Api-Key": job.api_key, "Content-Type": "application/json"}
    ohdr = {"X-Api-Key": job.api_key, "Content-Type": "application/octet-stream"}
    auth = {"X-Api-Key": job.api_key}
    exec_url = base + job.path + "/exec"
    files_url = base + job.path + "/files"
    no_total = aiohttp.ClientTimeout(total=None, sock_connect=30)
    limit = max(100, job.concurrency)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))

    async def call(method: str, url: str, body: object) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        async with session.request(method, url, data=data, headers=jhdr) as r:
            raw = await r.read()
            if r.status // 100 != 2:
                raise RuntimeError(f"{method} {url}: {r.status} {raw[:200]!r}")
        env = json.loads(raw)
        if env.get("status") != "success":
            raise RuntimeError(f"not JSend success: {raw[:200]!r}")
        return env["data"]

    async def exec_once(url: str) -> None:
        data = await call("POST", url, {"cmd": c.EXEC_CMD, "args": c.EXEC_ARGS})
        res = data["result"]
        c.check_exec(res["stdout"], res["exit_code"])

    async def op_exec(t: c.Tally) -> None:
        await exec_once(exec_url)
        t.add()

    async def op_lifecycle(t: c.Tally) -> None:
        view = await call("POST", base + "/v1/sandboxes", {"shape": c.SHAPE, "rootfs": c.ROOTFS})
        path = base + "/v1/sandboxes/" + view["id"]
        await exec_once(path + "/exec")
        gone = await call("DELETE", path, None)
        if gone["status"] not in ("destroying", "destroyed"):
            raise AssertionError(gone)
        t.add()

    stream_body = json.dumps({"cmd": "bench", "args": job.stream_args(), "stream": True}).encode()

    async def op_stream(t: c.Tally) -> None:
        n_out = n_err = c_out = c_err = 0
        code = None
        wire = 0
        async with session.post(
            exec_url, params={"stream": "true"}, data=stream_body, headers=jhdr, timeout=no_total
        ) as r:
            if r.status != 200:
                raise RuntimeError(r.status)
            buf = b""
            async for chunk in r.content.iter_any():
                wire += len(chunk)
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if not line:
                        continue
                    frame = loads(line)
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
        events = c.check_stream(job, n_out, n_err, c_out, c_err, code)
        t.add(wire, events)

    payload = bytes(job.size if job.kind == "upload" else 0)

    async def op_upload(t: c.Tally) -> None:
        async with session.put(
            files_url, params={"path": "/workspace/up.bin"}, data=payload, headers=ohdr
        ) as r:
            raw = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{r.status} {raw[:200]!r}")
        t.add(len(payload))

    async def op_download(t: c.Tally) -> None:
        async with session.get(files_url, params={"path": f"/bench/{job.size}"}, headers=auth) as r:
            if r.status != 200:
                raise RuntimeError(r.status)
            data = await r.read()
        if len(data) != job.size:
            raise AssertionError(f"downloaded {len(data)} bytes, want {job.size}")
        t.add(len(data))

    idle_body = json.dumps({"cmd": "bench", "args": ["idle"], "stream": True}).encode()

    async def open_idle() -> aiohttp.ClientResponse:
        r = await session.post(
            exec_url, params={"stream": "true"}, data=idle_body, headers=jhdr, timeout=no_total
        )
        if r.status != 200:
            raise RuntimeError(r.status)
        return r

    async def close_idle(r: aiohttp.ClientResponse) -> None:
        r.close()

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
        await session.close()


if __name__ == "__main__":
    job = c.load_job()
    if job.raw.get("uvloop"):
        import uvloop

        c.emit(uvloop.run(main(job)))
    else:
        c.emit(asyncio.run(main(job)))
