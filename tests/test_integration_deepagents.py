"""The LangChain Deep Agents backend on the emulator: real commands and files, sync and async,
and the ``createos`` provider found through the ``deepagents_code.sandbox_providers`` entry point.

The emulator runs on the test's event loop, so the sync methods (which block their thread) are
called from a worker thread (``to_thread``). deepagents is an optional extra: without it these
tests skip (fail in CI, where CREATEOS_REQUIRE_EXTRAS=1).
"""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from _extras import need

need("deepagents.backends.sandbox", "langchain")

from deepagents.backends.protocol import SandboxBackendProtocol  # noqa: E402

from createos_sandbox_async.integrations.core import SandboxGoneError  # noqa: E402
from createos_sandbox_async.integrations.deepagents import (  # noqa: E402
    CreateosSandbox,
    CreateosSandboxProvider,
)
from createos_sandbox_async.local import LocalServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GROUP = "deepagents_code.sandbox_providers"


def _options(emulator: LocalServer) -> dict[str, Any]:
    return {"api_key": emulator.api_key, "base_url": emulator.base_url}


@pytest.fixture
def entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> importlib.metadata.EntryPoint:
    """The ``createos`` entry point, from a dist-info made of pyproject.toml's declaration.

    The package may be installed from another checkout; this makes the entry point under test
    the one this tree declares.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["entry-points"][GROUP]
    info = tmp_path / "createos_sandbox_async_ep-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: createos-sandbox-async-ep\n")
    lines = [f"[{GROUP}]"] + [f"{name} = {value}" for name, value in declared.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = [ep for ep in importlib.metadata.entry_points(group=GROUP) if ep.name == "createos"]
    assert found
    assert {ep.value for ep in found} == {
        "createos_sandbox_async.integrations.deepagents:CreateosSandboxProvider"
    }
    return found[0]


@pytest.fixture
async def backend(emulator: LocalServer) -> AsyncIterator[CreateosSandbox]:
    sb = CreateosSandbox(session_options=_options(emulator), output_limit=2000)
    try:
        yield sb
    finally:
        await sb.adestroy()
        await anyio.to_thread.run_sync(sb.close)


@pytest.mark.anyio
async def test_provider_through_the_entry_point(
    emulator: LocalServer, entry_point: importlib.metadata.EntryPoint
) -> None:
    # What deepagents-code's SandboxRegistry.create_provider does: entry.load()()
    provider = entry_point.load()()
    assert isinstance(provider, CreateosSandboxProvider)
    provider = entry_point.load()(**_options(emulator))
    backend = await provider.aget_or_create(sandbox_id=None)
    try:
        assert isinstance(backend, SandboxBackendProtocol)
        sid = backend.id
        assert sid
        res = await backend.aexecute("echo hi > f.txt && cat f.txt && pwd")
        assert (res.exit_code, res.output) == (0, "hi\n/workspace\n")
        # reattach by id: the same files
        again = await provider.aget_or_create(sandbox_id=sid)
        try:
            assert again.id == sid
            [down] = await again.adownload_files(["/workspace/f.txt"])
            assert (down.content, down.error) == (b"hi\n", None)
        finally:
            await anyio.to_thread.run_sync(again.close)
    finally:
        await anyio.to_thread.run_sync(backend.close)
    await provider.adelete(sandbox_id=sid)
    sandbox = None
    async with emulator.session() as session:
        sandbox = await session.sandboxes.get(sid)
        assert str(sandbox.status) in ("destroying", "destroyed")
    with pytest.raises(SandboxGoneError):
        await provider.aget_or_create(sandbox_id=sid)


@pytest.mark.anyio
async def test_execute_exit_code_output_and_truncation(backend: CreateosSandbox) -> None:
    res = await anyio.to_thread.run_sync(partial(backend.execute, "echo out; echo err >&2; exit 3"))
    assert (res.exit_code, res.output, res.truncated) == (3, "out\nerr\n", False)
    res = await backend.aexecute("head -c 50000 /dev/zero | tr '\\0' a; echo; echo END")
    assert res.exit_code == 0 and res.truncated
    assert res.output.startswith("a" * 900) and res.output.endswith("END\n")
    assert "bytes cut" in res.output and len(res.output) < 2200


@pytest.mark.anyio
async def test_timeout_kills_the_command(backend: CreateosSandbox) -> None:
    res = await backend.aexecute("echo started; sleep 30; echo never", timeout=1)
    assert res.exit_code == 124
    assert "started" in res.output and "never" not in res.output and "timed out" in res.output
    ps = await backend.aexecute("ps -eo args")
    assert "sleep 30" not in ps.output


@pytest.mark.anyio
async def test_files_round_trip_sync_and_async(backend: CreateosSandbox) -> None:
    data = bytes(range(256)) * 10
    up = await anyio.to_thread.run_sync(
        backend.upload_files,
        [("/workspace/bin.dat", data), ("/workspace/new/t.txt", b"x"), ("rel.txt", b"x")],
    )
    assert [(r.path, r.error) for r in up] == [
        ("/workspace/bin.dat", None),
        ("/workspace/new/t.txt", None),
        ("rel.txt", "invalid_path"),  # the protocol: relative paths are invalid
    ]
    down = await anyio.to_thread.run_sync(
        backend.download_files,
        ["/workspace/bin.dat", "/workspace/new/t.txt", "/workspace/missing", "rel.txt"],
    )
    assert [(d.content, d.error) for d in down] == [
        (data, None),
        (b"x", None),
        (None, "file_not_found"),
        (None, "invalid_path"),
    ]
    up = await backend.aupload_files([("/workspace/a.txt", b"A")])
    assert up[0].error is None
    [d, dirr] = await backend.adownload_files(["/workspace/a.txt", "/workspace"])
    assert (d.content, dirr.error) == (b"A", "is_directory")
    # BaseSandbox's derived file tools run on top of execute/upload
    assert "A" in (await backend.aread("/workspace/a.txt")).file_data["content"]  # type: ignore[index]


@pytest.mark.anyio
async def test_bad_input_is_a_readable_error(emulator: LocalServer) -> None:
    sb = CreateosSandbox(session_options=_options(emulator))
    try:
        for bad in (
            backend_call(sb, 42),
            backend_call(sb, "echo", timeout=-1),
            backend_call(sb, "   "),
        ):
            res = await bad
            assert res.exit_code is None and res.output.startswith("Error: invalid input")
            assert "Traceback" not in res.output
        [up] = await sb.aupload_files([("/workspace/x", "not bytes")])  # type: ignore[list-item]
        assert up.error == "invalid_path"
    finally:
        await sb.adestroy()
        await anyio.to_thread.run_sync(sb.close)
    bad_key = CreateosSandbox(
        session_options={**_options(emulator), "api_key": "sk-secret-wrong-123"}
    )
    try:
        res = await bad_key.aexecute("echo hi")
        assert res.exit_code is None and res.output.startswith("Error:")
        assert "secret" not in res.output and "Traceback" not in res.output
    finally:
        await anyio.to_thread.run_sync(bad_key.close)
    with pytest.raises(ValueError, match="working_dir"):
        CreateosSandbox(working_dir="rel")


def backend_call(sb: CreateosSandbox, command: Any, **kw: Any) -> Any:
    return sb.aexecute(command, **kw)


@pytest.mark.anyio
async def test_cancelled_execute_kills_the_command_and_the_sandbox_stays(
    backend: CreateosSandbox,
) -> None:
    await backend.aexecute("true")
    with anyio.move_on_after(2) as scope:
        await backend.aexecute("echo $$ > /workspace/pid; exec sleep 60")
    assert scope.cancelled_caught
    # the command dies (bounded wait: the kill travels through the service)
    alive = "1"
    for _ in range(40):
        res = await backend.aexecute(
            'kill -0 "$(cat /workspace/pid)" 2>/dev/null && echo 1 || echo 0'
        )
        alive = res.output.strip()
        if alive == "0":
            break
        await anyio.sleep(0.25)
    assert alive == "0"
    # reattachable by id from a new backend
    options = backend._loop._options  # the same emulator
    other = CreateosSandbox(sandbox_id=backend.id, session_options=options)
    try:
        res = await other.aexecute("cat /workspace/pid >/dev/null && echo ok")
        assert (res.exit_code, res.output) == (0, "ok\n")
    finally:
        await anyio.to_thread.run_sync(other.close)


def test_no_io_at_construction() -> None:
    # an unreachable service: building the backend and the provider does nothing yet
    sb = CreateosSandbox(session_options={"api_key": "k", "base_url": "http://127.0.0.1:9"})
    sb.close()
    assert CreateosSandboxProvider().metadata is None or sys.modules.get("deepagents_code")
