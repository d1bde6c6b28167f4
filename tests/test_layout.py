"""The package's layout rules (issue 13), checked on the source: module sizes and import cycles.

No client module over 600 lines; no import cycle among the client modules, neither at import time
nor through the imports made inside functions (only ``if TYPE_CHECKING:`` imports may go both
ways). The emulator (``local/``) and the command line are laid out on their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import createos_sandbox_async

ROOT = Path(createos_sandbox_async.__file__).parent
PKG = "createos_sandbox_async"
MAX_LINES = 600
# Laid out on their own (the emulator; the CLI; the agent-framework adapters).
OUTSIDE = ("local", "cli", "integrations", "mcp")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[0] in OUTSIDE:
            continue
        parts = [PKG, *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Package modules ``module`` imports when run, at any depth, except under TYPE_CHECKING."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.update(subs if len(subs) == len(node.names) else [target, *subs])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return (found & known) - {module}


def test_no_client_module_is_over_600_lines() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert len(sizes) > 20
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_no_module_of_the_package_is_over_600_lines() -> None:
    """The emulator, the CLI and the adapters too (issue 13's measure covers the package)."""
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert any(name.startswith("local/") for name in sizes)
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_no_import_cycle_among_client_modules() -> None:
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(m, p, known) for m, p in modules.items()}
    assert graph[f"{PKG}.session"], "the parser found no imports"
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    assert cycles == []
