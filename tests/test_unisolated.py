"""The emulator on a machine without bubblewrap, as docs/quickstart.md describes it.

``LocalServer()`` refuses to start there; ``LocalServer(isolation="none")`` starts, logs a
warning, and the SDK works against it as usual (exec, files), with commands running directly on
the host. The demo picks that mode by itself and says so. Each test hides ``bwrap`` from ``PATH``,
so they hold whether or not the machine running them has it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from createos_sandbox_async.local import IsolationUnavailableError, LocalServer

pytestmark = pytest.mark.anyio

LOGGER = "createos_sandbox_async.local"


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``PATH`` as it was, minus ``bwrap``: one directory of links to every other program."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for entry in os.environ.get("PATH", "").split(os.pathsep)[:64]:
        if not entry or not os.path.isdir(entry):
            continue
        for name in os.listdir(entry)[:5000]:
            source = os.path.join(entry, name)
            link = bin_dir / name
            if name != "bwrap" and not link.exists() and os.access(source, os.X_OK):
                link.symlink_to(source)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


async def test_without_bubblewrap_the_default_refuses_to_start(
    no_bwrap: Path, tmp_path: Path
) -> None:
    with pytest.raises(IsolationUnavailableError) as info:
        async with LocalServer(state_dir=str(tmp_path)):
            pass
    assert 'isolation="none"' in str(info.value)  # the way out is named


async def test_unisolated_warns_and_the_sdk_runs_commands_and_moves_files(
    no_bwrap: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    host_file = tmp_path / "on-the-host.txt"
    host_file.write_text("host data")
    async with LocalServer(isolation="none", state_dir=str(tmp_path)) as server:
        warnings = [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and "isolation='none'" in r.getMessage()
        ]
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
        assert "trusted code" in warnings[0].getMessage()
        assert server.isolation == "none"
        async with server.session() as session:
            sb = await session.sandboxes.create(shape="s-1vcpu-256mb", envs={"WHO": "unisolated"})
            async with sb:
                res = await sb.exec("bash", ["-c", 'echo "hi from $WHO"'], check=True)
                assert res.stdout == "hi from unisolated\n"

                payload = bytes(range(256)) * 64
                await sb.files.upload("/workspace/data.bin", payload)
                assert await sb.files.download("/workspace/data.bin") == payload
                res = await sb.exec("sha256sum", ["../workspace/data.bin"], check=True)
                assert len(res.stdout.split()[0]) == 64

                # Unisolated means it: a command reads the host's files at their host path.
                res = await sb.exec("cat", [str(host_file)], check=True)
                assert res.stdout == "host data"


async def test_the_demo_falls_back_to_unisolated_and_says_so(
    no_bwrap: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from createos_sandbox_async._demo import run_demo

    assert await run_demo(n_items=2, isolation="auto") == 0
    out, err = capsys.readouterr()
    assert "bubblewrap is not installed" in err and "WITHOUT isolation" in err
    assert "2 ok, 0 failed" in out
