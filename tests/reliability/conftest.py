"""Fixtures of the standing reliability suite (issue 10), and how a test contributes figures.

Every file here proves one promise of RELIABILITY.md under attack. Besides passing or failing, a
test may record the figures that RELIABILITY.md prints (how many faults, loads, inputs, attacks
it tried and what came out) through the ``reliability_figures`` fixture::

    def test_something(reliability_figures):
        reliability_figures.section = "attacks"          # which table of RELIABILITY.md
        reliability_figures.set("traversal forms tried", 14)
        reliability_figures.add("requests refused", 1)    # counters add up
        reliability_figures.row({"attack": "fork bomb", "outcome": "contained"})  # a table row

Sections the report knows: ``faults``, ``load``, ``fuzz``, ``secrets``, ``attacks``, ``limits``
(any other name gets a generic table). The figures are written when the test ends, passed or not
(a failing or xfail test still reports what it saw, with ``outcome`` = passed/failed/xfailed), to
``$RELIABILITY_FIGURES_DIR/<test id>.json``; without that variable nothing is written, so an
ordinary ``pytest`` run is unaffected. ``tests/reliability/report.py`` sets it, runs this suite
and rewrites the figures section of RELIABILITY.md from those files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIGURES_ENV = "RELIABILITY_FIGURES_DIR"


class Figures:
    """Key/values and table rows one test reports for RELIABILITY.md."""

    def __init__(self, test_id: str, section: str) -> None:
        self.test_id = test_id
        self.section = section
        self.values: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []

    def set(self, key: str, value: Any) -> None:
        """Record ``key`` = ``value`` (JSON-serialisable), replacing an earlier value."""
        self.values[key] = value

    def add(self, key: str, amount: float = 1) -> None:
        """Add ``amount`` to the counter ``key`` (starts at 0)."""
        self.values[key] = self.values.get(key, 0) + amount

    def row(self, row: dict[str, Any]) -> None:
        """Append one row to this test's table (e.g. one attack and its outcome)."""
        self.rows.append(dict(row))

    def dump(self, outcome: str) -> dict[str, Any]:
        return {
            "test": self.test_id,
            "section": self.section,
            "outcome": outcome,
            "values": self.values,
            "rows": self.rows,
        }


def _default_section(path: str) -> str:
    name = Path(path).stem
    for key, section in (
        ("fault", "faults"),
        ("load", "load"),
        ("fuzz", "fuzz"),
        ("secret", "secrets"),
        ("attack", "attacks"),
        ("limit", "limits"),
    ):
        if key in name:
            return section
    return name.removeprefix("test_")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the figures fixture knows how the test ended."""
    report = yield
    setattr(item, f"_reliability_{report.when}", report)
    return report


def _outcome(item: pytest.Item) -> str:
    call = getattr(item, "_reliability_call", None)
    if call is None:
        return "not run"
    if hasattr(call, "wasxfail"):
        return "xfailed" if call.skipped else "xpassed"
    return str(call.outcome)


@pytest.fixture
def reliability_figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """Figures for RELIABILITY.md; written at teardown when $RELIABILITY_FIGURES_DIR is set."""
    figures = Figures(request.node.nodeid, _default_section(str(request.node.path)))
    yield figures
    directory = os.environ.get(FIGURES_ENV)
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-180:] + ".json"
    data = figures.dump(_outcome(request.node))
    Path(directory, name).write_text(json.dumps(data, indent=1, default=str))
