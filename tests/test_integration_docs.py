"""docs/integrations/*.md are checked like the other guide pages (tests/test_docs.py): every
```python block compiles, and a ``<!-- doctest: program -->`` block runs as a complete program in
a child Python (warnings are errors) whose CREATEOS_SANDBOX_* variables point at an emulator.

The pages need their framework: without the extra these tests skip (fail in CI, where
CREATEOS_REQUIRE_EXTRAS=1)."""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from _extras import need

from createos_sandbox_async.local import LocalServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "integrations").glob("*.md"))
#: Which extra each page needs, and the module that proves it is installed.
EXTRAS = {
    "pydantic-ai.md": ("pydantic_ai", "pydantic-ai"),
    "mcp.md": ("mcp", "mcp"),
    "openai-agents.md": ("agents.sandbox", "openai-agents"),
    "deepagents.md": ("deepagents.backends.sandbox", "langchain"),
}
MARKER = re.compile(r"<!--\s*doctest:\s*program\s*-->")
CONFIG_ENVS = ("CREATEOS_SANDBOX_API_KEY", "CREATEOS_API_KEY", "CREATEOS_SANDBOX_BASE_URL")


def blocks(page: Path) -> list[tuple[int, bool, str]]:
    """(line, runnable, source) of each ```python block of ``page``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip() != "```python":
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        runnable = i > 0 and bool(MARKER.fullmatch(lines[i - 1].strip()))
        found.append((i + 1, runnable, "\n".join(lines[i + 1 : end]) + "\n"))
    return found


def test_every_page_has_a_runnable_example() -> None:
    assert {p.name for p in PAGES} == set(EXTRAS)
    for page in PAGES:
        assert any(runnable for _, runnable, _ in blocks(page)), page.name


PROGRAMS = [
    pytest.param(page, source, id=f"{page.name}:{line}")
    for page in PAGES
    for line, runnable, source in blocks(page)
    if runnable
]


@pytest.mark.parametrize(("page", "source"), PROGRAMS)
def test_block_compiles(page: Path, source: str) -> None:
    ast.parse(source, str(page))


@pytest.mark.anyio
@pytest.mark.parametrize(("page", "source"), PROGRAMS)
async def test_program_runs(page: Path, source: str, emulator: LocalServer, tmp_path: Path) -> None:
    need(*EXTRAS[page.name])
    script = tmp_path / "program.py"
    script.write_text(source, encoding="utf-8")
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if k not in CONFIG_ENVS}
    env.update(
        CREATEOS_SANDBOX_BASE_URL=emulator.base_url,
        CREATEOS_SANDBOX_API_KEY=emulator.api_key,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-W", "error", str(script)], cwd=tmp_path, env=env, check=False
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert emulator.request_count("POST", "/v1/sandboxes") >= 1  # it really ran in a sandbox
    assert emulator.request_count("DELETE", "/v1/sandboxes/*") >= 1  # and cleaned up
