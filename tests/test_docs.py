"""The documentation cannot drift from the code: docs/*.md and README.md are checked here.

Every ```python block must compile (top-level ``await`` allowed) and its imports from
``createos_sandbox_async`` must resolve. A block preceded by an HTML comment (invisible when the
page is rendered) also runs against the emulator; docs/README.md explains this to readers:

- ``<!-- doctest: program -->``: a complete program, run by a child Python (warnings are errors)
  with CREATEOS_SANDBOX_BASE_URL / CREATEOS_SANDBOX_API_KEY pointing at a LocalServer, so code
  written for a real account (``AsyncSession()`` from the environment) runs unchanged;
- ``<!-- doctest: fragment -->``: top-level-``await`` code. A page's fragments run in order in one
  namespace that starts with ``server``, ``session`` and ``sb`` (a running sandbox), the way the
  pages introduce them; faults are cleared after each fragment;
- ``<!-- doctest: pytest -->``: a pytest module, written to a file and run by a child pytest.

Links between pages are checked too, and cli.md's command table against the parser.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest
from _emulator import require_bwrap

from createos_sandbox_async.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
KINDS = ("program", "fragment", "pytest")
MARKER = re.compile(r"<!--\s*doctest:\s*([\w-]+)\s*-->")
#: Seconds one fragment, program or pytest block may take (the bound of a hang, not a speed test).
BLOCK_DEADLINE = 60
#: Environment variables that would point a child process somewhere other than our emulator.
CONFIG_ENVS = ("CREATEOS_SANDBOX_API_KEY", "CREATEOS_API_KEY", "CREATEOS_SANDBOX_BASE_URL")


class Block(NamedTuple):
    page: Path
    line: int  # 1-based line of the opening fence
    kind: str | None
    source: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _parse(page: Path) -> tuple[list[Block], list[str]]:
    """The page's python blocks, and problems with its markers (unknown kind, no fence after)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        found = MARKER.fullmatch(line.strip())
        if found:
            kind = found.group(1)
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if kind not in KINDS:
                problems.append(f"{page.name}:{i + 1}: unknown doctest kind {kind!r}")
            elif following != "```python":
                problems.append(f"{page.name}:{i + 1}: marker not followed by a ```python fence")
            marker = kind
            i += 1
            continue
        if line.startswith("```"):
            language = line[3:].strip()
            end = i + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if language == "python":
                source = "\n".join(lines[i + 1 : end]) + "\n"
                blocks.append(Block(page, i + 1, marker, source))
            marker = None
            i = end + 1
            continue
        marker = None
        i += 1
    return blocks, problems


def _all_blocks() -> Iterator[Block]:
    for page in PAGES:
        yield from _parse(page)[0]


BLOCKS = list(_all_blocks())


def _params(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.where) for b in BLOCKS if b.kind == kind]


def _compile(block: Block) -> Any:
    return compile(block.source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _child_env(server: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENVS}
    env["CREATEOS_SANDBOX_BASE_URL"] = server.base_url
    env["CREATEOS_SANDBOX_API_KEY"] = server.api_key
    return env


# -- every block ----------------------------------------------------------------------------------


def test_the_pages_have_blocks_of_every_kind() -> None:
    kinds = {b.kind for b in BLOCKS}
    assert set(KINDS) <= kinds, f"no block of kind {set(KINDS) - kinds} found: parser broken?"
    assert len(BLOCKS) >= 30


def test_markers_are_well_formed() -> None:
    problems = [p for page in PAGES for p in _parse(page)[1]]
    assert problems == []


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where) for b in BLOCKS])
def test_block_compiles_and_its_imports_resolve(block: Block) -> None:
    _compile(block)
    tree = ast.parse(block.source, block.where)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "createos_sandbox_async":
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert alias.name == "*" or hasattr(module, alias.name), (
                    f"{block.where}: {node.module} has no {alias.name}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "createos_sandbox_async":
                    importlib.import_module(alias.name)


# -- runnable blocks ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.emulator(transition_delay=0.02)
@pytest.mark.parametrize("block", _params("program"))
async def test_program_runs(block: Block, emulator: Any, tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(block.source, encoding="utf-8")
    with anyio.fail_after(BLOCK_DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-W", "error", str(script)],
            cwd=tmp_path,
            env=_child_env(emulator),
            check=False,
        )
    assert done.returncode == 0, f"{block.where} failed:\n{done.stderr.decode(errors='replace')}"


def _fragment_pages() -> list[Any]:
    pages = sorted({b.page for b in BLOCKS if b.kind == "fragment"})
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in pages]


@pytest.mark.anyio
@pytest.mark.emulator(transition_delay=0.02)
@pytest.mark.parametrize("page", _fragment_pages())
async def test_page_fragments_run_in_order(
    page: Path, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # fragments may write local files
    fragments = [b for b in BLOCKS if b.page == page and b.kind == "fragment"]
    async with emulator.session() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sb:
            namespace: dict[str, Any] = {
                "__name__": "docs_fragment",
                "server": emulator,
                "session": session,
                "sb": sb,
            }
            for block in fragments:
                try:
                    with anyio.fail_after(BLOCK_DEADLINE):
                        result = eval(_compile(block), namespace)  # our own docs, nothing else
                        if inspect.iscoroutine(result):
                            await result
                except Exception as exc:
                    raise AssertionError(f"fragment {block.where} failed: {exc!r}") from exc
                finally:
                    emulator.faults.clear()


@pytest.mark.anyio
@pytest.mark.parametrize("block", _params("pytest"))
async def test_pytest_block_passes(block: Block, tmp_path: Path) -> None:
    require_bwrap()
    module = tmp_path / "test_from_docs.py"
    module.write_text(block.source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENVS}
    # pytest-asyncio (in [test]) warns, under -W error, that a directory without an ini file
    # leaves its loop scope unset; the blocks use anyio's plugin.
    argv = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    argv += ["-p", "no:asyncio"]
    with anyio.fail_after(BLOCK_DEADLINE):
        done = await anyio.run_process(
            [*argv, "--rootdir", str(tmp_path), str(module)], cwd=tmp_path, env=env, check=False
        )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"{block.where} failed:\n{out}"
    assert " passed" in out and "skipped" not in out, out


# -- links and the CLI table ----------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub-style heading ids: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_relative_links_resolve() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(index))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages - linked == set()


def test_cli_page_documents_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    usage = capsys.readouterr().out
    found = re.search(r"\{([a-z,]+)\}", usage)
    assert found, usage
    commands = set(found.group(1).split(","))
    table = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z]+)", table, flags=re.M))
    assert documented == commands
