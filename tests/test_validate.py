"""One rule for bad arguments across modules (``_validate``): a wrong type raises TypeError, a
wrong value ValueError; the message names the argument; nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _servers import serve
from aiohttp import web

from createos_sandbox_async import ExecStream, SandboxPool
from createos_sandbox_async.models import SandboxView
from createos_sandbox_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

Call = Callable[[Sandbox, Any], Any]

# (argument named in the message, call with a wrong type, call with a wrong value)
CASES: list[tuple[str, Call, Call]] = [
    (
        "max_concurrency",
        lambda sb, s: SandboxPool(s, shape="s", max_concurrency="4"),
        lambda sb, s: SandboxPool(s, shape="s", max_concurrency=0),
    ),
    (
        "backoff",
        lambda sb, s: SandboxPool(s, shape="s", backoff="1"),
        lambda sb, s: SandboxPool(s, shape="s", backoff=float("inf")),
    ),
    (
        "disk_mib",
        lambda sb, s: sb.resize("10"),
        lambda sb, s: sb.resize(0),
    ),
    (
        "interval",
        lambda sb, s: sb.wait_until("running", interval="1"),
        lambda sb, s: sb.wait_until("running", interval=0),
    ),
    (
        "count",
        lambda sb, s: sb.computer.mouse.click(count=True),
        lambda sb, s: sb.computer.mouse.click(count=0),
    ),
    (
        "pty rows",
        lambda sb, s: sb.processes.create(pty=("24", 80)),
        lambda sb, s: sb.processes.create(pty=(0, 80)),
    ),
    (
        "grace_ms",
        lambda sb, s: sb.processes.kill("p", grace_ms=1.5),
        lambda sb, s: sb.processes.kill("p", grace_ms=-1),
    ),
    (
        "idle_timeout",
        lambda sb, s: sb.processes.connect("p", idle_timeout="5"),
        lambda sb, s: sb.processes.connect("p", idle_timeout=0),
    ),
    (
        "chunk_size",
        lambda sb, s: sb.files.download_iter("/f", chunk_size=1.0),
        lambda sb, s: sb.files.download_iter("/f", chunk_size=0),
    ),
    (
        "attempt",
        lambda sb, s: s.templates.follow_logs("t", attempt="1"),
        lambda sb, s: s.templates.follow_logs("t", attempt=0),
    ),
    (
        "poll_interval",
        lambda sb, s: s.templates.wait("t", poll_interval=None),
        lambda sb, s: s.templates.wait("t", poll_interval=-1),
    ),
    (
        "max_line",
        lambda sb, s: ExecStream(sb, "ls", max_line="1"),
        lambda sb, s: ExecStream(sb, "ls", max_line=0),
    ),
    (
        "timeout",
        lambda sb, s: sb.exec("ls", timeout="1"),
        lambda sb, s: sb.exec("ls", timeout=float("nan")),
    ),
]


async def _call(fn: Call, sb: Sandbox, session: Any) -> None:
    result = fn(sb, session)
    if hasattr(result, "__await__"):
        await result


@pytest.mark.parametrize(("name", "wrong_type", "wrong_value"), CASES, ids=[c[0] for c in CASES])
async def test_wrong_type_is_type_error_wrong_value_is_value_error(
    name: str, wrong_type: Call, wrong_value: Call
) -> None:
    async with serve(web.Application()) as srv, srv.session() as session:
        sb = Sandbox(session, SandboxView(id="sb_v"))
        with pytest.raises(TypeError, match=name):
            await _call(wrong_type, sb, session)
        with pytest.raises(ValueError, match=name):
            await _call(wrong_value, sb, session)
    assert srv.count() == 0
