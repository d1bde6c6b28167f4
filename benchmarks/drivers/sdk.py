"""Our SDK (``createos_sandbox_async``) doing the same work as the raw clients.

Job options: ``"uvloop": true`` runs on uvloop; ``"json": "json"`` hides orjson before the SDK is
imported, so it decodes with the stdlib (the comparison the targets are stated in), ``"orjson"``
lets it pick orjson up as it does when the ``speed`` extra is installed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import _common as c

job = c.load_job()
if job.json_lib != "orjson":
    sys.modules["orjson"] = None  # type: ignore[assignment]  # the SDK falls back to stdlib json

from createos_sandbox_async import AsyncSession  # noqa: E402


async def main(job: c.Job) -> dict[str, Any]:
    session = AsyncSession(
        job.api_key, base_url=job.base_url, max_connections=max(100, job.concurrency + 1)
    )
    async with session:
        sb = await session.sandboxes.get(job.sandbox_id)

        async def op_exec(t: c.Tally) -> None:
            res = await sb.exec(c.EXEC_CMD, c.EXEC_ARGS)
            c.check_exec(res.stdout, res.exit_code)
            t.add()

        async def op_lifecycle(t: c.Tally) -> None:
            box = await session.sandboxes.create(shape=c.SHAPE, rootfs=c.ROOTFS)
            res = await box.exec(c.EXEC_CMD, c.EXEC_ARGS)
            c.check_exec(res.stdout, res.exit_code)
            gone = await box.destroy()
            if gone.status not in ("destroying", "destroyed"):
                raise AssertionError(gone)
            t.add()

        stream_args = job.stream_args()
        wire = job.expect.get("wire_bytes", 0)

        async def op_stream(t: c.Tally) -> None:
            c_out = c_err = switches = 0
            last = "stdout"
            async with sb.exec_stream("bench", stream_args) as stream:
                async for ev in stream:
                    kind = ev.kind
                    if kind == "stdout":
                        c_out += len(ev.data)
                    elif kind == "stderr":
                        c_err += len(ev.data)
                    else:
                        continue
                    if kind != last:
                        switches += 1
                        last = kind
            frames = c.check_output(job, c_out, c_err, switches, stream.exit_code)
            t.add(wire, frames)

        payload = bytes(job.size if job.kind == "upload" else 0)

        async def op_upload(t: c.Tally) -> None:
            await sb.files.upload("/workspace/up.bin", payload)
            t.add(len(payload))

        async def op_download(t: c.Tally) -> None:
            data = await sb.files.download(f"/bench/{job.size}")
            if len(data) != job.size:
                raise AssertionError(f"downloaded {len(data)} bytes, want {job.size}")
            t.add(len(data))

        target = c.scratch_file(job)

        async def op_download_to(t: c.Tally) -> None:
            n = await sb.files.download_to(f"/bench/{job.size}", target)
            if n != job.size:
                raise AssertionError(f"downloaded {n} bytes, want {job.size}")
            t.add(n)

        async def open_idle() -> Any:
            stream = sb.exec_stream("bench", ["idle"])
            await stream.__aenter__()
            return stream

        async def close_idle(stream: Any) -> None:
            await stream.aclose()

        async def hold_once() -> None:
            res = await sb.exec("bench", ["hold"])
            c.check_exec(res.stdout, res.exit_code)

        async def warm_once() -> None:
            res = await sb.exec(c.EXEC_CMD, c.EXEC_ARGS)
            c.check_exec(res.stdout, res.exit_code)

        ops = {
            "exec": op_exec,
            "lifecycle": op_lifecycle,
            "stream": op_stream,
            "upload": op_upload,
            "download": op_download,
            "download_to": op_download_to,
        }
        if job.kind == "idle":
            return await c.run_idle_async(job, open_idle, close_idle)
        if job.kind == "inflight":
            return await c.run_inflight_async(job, hold_once, warm_once)
        return await c.run_async(job, ops[job.kind])


if __name__ == "__main__":
    if job.raw.get("uvloop"):
        import uvloop

        c.emit(uvloop.run(main(job)))
    else:
        c.emit(asyncio.run(main(job)))
