"""The API reference site (mkdocs.yml, docs/reference/) cannot silently leave a name out.

``mkdocs build --strict`` (in .ci/run) fails on a reference to a name that does not exist; these
tests catch the opposite, cheaply and without mkdocs installed: a public name the reference does
not render, a reference that goes through a private module, a page missing from the nav.
"""

from __future__ import annotations

import re
from pathlib import Path

import createos_sandbox_async
import createos_sandbox_async.local

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^::: (\S+)\s*$", re.M)


def _directives() -> set[str]:
    found: set[str] = set()
    for page in (DOCS / "reference").glob("*.md"):
        found.update(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return found


def test_every_public_name_has_a_reference_entry() -> None:
    rendered = _directives()
    wanted = {f"createos_sandbox_async.{n}" for n in createos_sandbox_async.__all__}
    wanted |= {f"createos_sandbox_async.local.{n}" for n in createos_sandbox_async.local.__all__}
    wanted.discard("createos_sandbox_async.__version__")
    assert sorted(wanted - rendered) == []


def test_the_reference_names_public_paths_only() -> None:
    private = [d for d in _directives() if any(p.startswith("_") for p in d.split("."))]
    assert private == []


def test_every_docs_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.md)\s*$", config, flags=re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert len(nav) >= 10, "nav not found in mkdocs.yml: parser broken?"
    assert sorted(pages - nav) == [] and sorted(nav - pages) == []


def test_readme_links_are_absolute_so_they_work_on_the_package_index() -> None:
    # PyPI renders README.md without the repository around it: a relative link is a dead link.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    relative = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t]
    assert relative == []
