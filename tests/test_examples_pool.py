"""examples/batch_eval.py runs against the emulator, both imported (``main``) and as a script."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest
from _emulator import require_bwrap

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "batch_eval.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("batch_eval", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["batch_eval"] = module  # attrs classes look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_batch_eval_classifies_every_snippet_and_leaves_nothing() -> None:
    require_bwrap()
    batch_eval = load_example()
    out = io.StringIO()
    summary = await batch_eval.main(50, concurrency=6, item_timeout=1.0, progress=False, out=out)
    # 50 snippets: #49 hangs, 7/17/27/37/47 crash, 3/13/23/33/43 print a wrong answer.
    assert summary.verdicts == {"pass": 39, "wrong": 5, "error": 5, "timeout": 1}
    assert [o.index for o in summary.outcomes] == list(range(50))
    assert summary.outcomes[49].verdict == "timeout"
    assert "ZeroDivisionError" in summary.outcomes[7].detail
    assert summary.sandboxes_left == 0
    text = out.getvalue()
    assert "50 snippets" in text and "timeout" in text and "0 left" in text


def test_batch_eval_runs_as_a_script() -> None:
    require_bwrap()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--items", "12", "--concurrency", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "12 snippets" in proc.stdout and "0 left" in proc.stdout
    assert "12/12 100%" in proc.stderr  # the progress bar (stderr is not a terminal: lines)


@pytest.mark.anyio
async def test_run_demo_is_what_the_readme_command_calls() -> None:
    require_bwrap()
    batch_eval = load_example()
    with anyio.fail_after(60):
        assert await batch_eval.run_demo(8, concurrency=4) == 0
