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
    limit = max(100, job.concurrency + 1)
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

    hb = b'{"hb":true}'

    async def op_stream(t: c.Tally) -> None:
        # As lean as a hand-written client gets: one split per network chunk, heartbeats
        # dropped by a bytes compare, one loads per line, a dict lookup or two per frame.
        c_out = c_err = switches = 0
        last_err = False
        code = None
        wire = 0
        async with session.post(
            exec_url, params={"stream": "true"}, data=stream_body, headers=jhdr, timeout=no_total
        ) as r:
            if r.status != 200:
                raise RuntimeError(r.status)
            tail = b""
            async for chunk in r.content.iter_any():
                wire += len(chunk)
                lines = (tail + chunk if tail else chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line == hb or not line:
                        continue
                    frame = loads(line)
                    s = frame.get("stdout")
                    if s is not None:
                        c_out += len(s)
                        if last_err:
                            switches += 1
                            last_err = False
                        continue
                    s = frame.get("stderr")
                    if s is not None:
                        c_err += len(s)
                        if not last_err:
                            switches += 1 if c_out else 0
                            last_err = True
                        continue
                    if "exit_code" in frame:
                        code = frame["exit_code"]
        frames = c.check_output(job, c_out, c_err, switches, code)
        t.add(wire, frames)

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

    async def op_download_to(t: c.Tally) -> None:
        n = 0
        async with session.get(files_url, params={"path": f"/bench/{job.size}"}, headers=auth) as r:
            if r.status != 200:
                raise RuntimeError(r.status)
            with open(target, "wb") as f:  # noqa: ASYNC230  # blocking, as a minimal client
                async for chunk in r.content.iter_any():
                    f.write(chunk)
                    n += len(chunk)
        if n != job.size:
            raise AssertionError(f"downloaded {n} bytes, want {job.size}")
        t.add(n)

    target = c.scratch_file(job)
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

    async def hold_once() -> None:
        data = await call("POST", exec_url, {"cmd": "bench", "args": ["hold"]})
        res = data["result"]
        c.check_exec(res["stdout"], res["exit_code"])

    async def warm_once() -> None:
        await exec_once(exec_url)

    ops = {
        "exec": op_exec,
        "lifecycle": op_lifecycle,
        "stream": op_stream,
        "upload": op_upload,
        "download": op_download,
        "download_to": op_download_to,
    }
    try:
        if job.kind == "idle":
            return await c.run_idle_async(job, open_idle, close_idle)
        if job.kind == "inflight":
            return await c.run_inflight_async(job, hold_once, warm_once)
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
