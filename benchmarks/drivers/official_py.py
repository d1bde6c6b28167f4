"""The official synchronous Python SDK (``createos-sandbox``), on a thread pool of the same size.

Runs under its own virtualenv (``benchmarks/.work/pyofficial``) so its pins stay its own. One
``Client`` shared by all threads, as its docs suggest; its httpx pool is sized to the concurrency
(the default 100 connections would queue the 1,000 idle streams).
"""

from __future__ import annotations

from typing import Any

import _common as c
import httpx
from createos import Client, CreateSandboxRequest, RunCommandRequest
from createos.models import ExecStreamEventType


def main(job: c.Job) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=max(100, job.concurrency), max_keepalive_connections=None)
    pool = httpx.Client(
        limits=limits,
        timeout=httpx.Timeout(60.0, read=None),
    )
    client = Client(job.api_key, base_url=job.base_url, http_client=pool)
    sb = client.get_sandbox(job.sandbox_id)
    exec_req = RunCommandRequest(command=c.EXEC_CMD, arguments=list(c.EXEC_ARGS))

    def exec_once(handle: Any) -> None:
        res = handle.run_command(exec_req).result
        c.check_exec(res.standard_output, res.exit_code)

    def op_exec(t: c.Tally) -> None:
        exec_once(sb)
        t.add()

    def op_lifecycle(t: c.Tally) -> None:
        box = client.create_sandbox(CreateSandboxRequest(shape=c.SHAPE, rootfs=c.ROOTFS))
        exec_once(box)
        box.destroy()
        if str(box.status) not in ("destroying", "destroyed", "SandboxStatus.DESTROYED"):
            raise AssertionError(box.status)
        t.add()

    stream_req = RunCommandRequest(command="bench", arguments=job.stream_args())
    out_t, err_t = ExecStreamEventType.STDOUT, ExecStreamEventType.STDERR
    exit_t, hb_t = ExecStreamEventType.EXIT, ExecStreamEventType.HEARTBEAT

    def op_stream(t: c.Tally) -> None:
        n_out = n_err = c_out = c_err = 0
        code = None
        with sb.stream_command(stream_req) as stream:
            for ev in stream:
                kind = ev.type
                if kind is hb_t:
                    continue
                if kind is out_t:
                    n_out += 1
                    c_out += len(ev.data)
                elif kind is err_t:
                    n_err += 1
                    c_err += len(ev.data)
                elif kind is exit_t:
                    code = ev.exit_code
            wire = stream._response.num_bytes_downloaded
        events = c.check_stream(job, n_out, n_err, c_out, c_err, code)
        t.add(wire, events)

    payload = bytes(job.size if job.kind == "upload" else 0)

    def op_upload(t: c.Tally) -> None:
        sb.files.upload("/workspace/up.bin", payload)
        t.add(len(payload))

    def op_download(t: c.Tally) -> None:
        with sb.files.download(f"/bench/{job.size}") as stream:
            data = stream.read()
        if len(data) != job.size:
            raise AssertionError(f"downloaded {len(data)} bytes, want {job.size}")
        t.add(len(data))

    idle_req = RunCommandRequest(command="bench", arguments=["idle"])

    def open_idle() -> Any:
        return sb.stream_command(idle_req)

    def close_idle(stream: Any) -> None:
        stream.close()

    ops = {
        "exec": op_exec,
        "lifecycle": op_lifecycle,
        "stream": op_stream,
        "upload": op_upload,
        "download": op_download,
    }
    try:
        if job.kind == "idle":
            return c.run_idle_threads(job, open_idle, close_idle)
        return c.run_threads(job, ops[job.kind])
    finally:
        client.close()
        pool.close()


if __name__ == "__main__":
    c.emit(main(c.load_job()))
