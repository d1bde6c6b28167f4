"""Run the reliability suite and rewrite the figures section of RELIABILITY.md.

    .venv/bin/python tests/reliability/report.py [extra pytest args]

Runs ``pytest tests/reliability`` with ``RELIABILITY_FIGURES_DIR`` set (see conftest.py: each test
writes what it tried and saw there), then replaces everything between the ``figures:start`` and
``figures:end`` markers of RELIABILITY.md with tables built from those files and the JUnit report.
Exits with pytest's status; the figures are written either way (a failing run is a figure too).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "RELIABILITY.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
COMMAND = ".venv/bin/python tests/reliability/report.py"

SHORT = {
    "ok": "ok",
    "APIConnectionError": "conn",
    "APITimeoutError": "timeout",
    "StreamStalledError": "stalled",
    "StreamInterruptedError": "interrupted",
    "RateLimitError": "429",
    "ServerError": "5xx",
    "ProtocolError": "protocol",
    "caller_deadline": "caller deadline",
    "hung": "HUNG",
}


def run_suite(figures: Path, junit: Path, extra: list[str]) -> tuple[int, float]:
    env = {**os.environ, "RELIABILITY_FIGURES_DIR": str(figures)}
    cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", f"--junitxml={junit}", *extra]
    started = time.perf_counter()
    status = subprocess.call(cmd, cwd=ROOT, env=env)
    return status, time.perf_counter() - started


def load_figures(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def junit_counts(junit: Path) -> dict[str, Counter]:
    """Per test file: passed / failed / xfailed / skipped / errors."""
    out: dict[str, Counter] = defaultdict(Counter)
    if not junit.exists():
        return out
    for case in ET.parse(junit).iter("testcase"):
        name = (case.get("classname") or "").split(".")
        module = next((part for part in name if part.startswith("test_")), "?") + ".py"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            out[module]["failed"] += 1
        elif "error" in kinds:
            out[module]["errors"] += 1
        elif "skipped" in kinds:
            skipped = kinds["skipped"]
            xfail = skipped.get("type") == "pytest.xfail"
            out[module]["xfailed" if xfail else "skipped"] += 1
        else:
            out[module]["passed"] += 1
    return out


class Counter(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


def _cell(row: dict[str, Any]) -> str:
    outcome = SHORT.get(row["outcome"], row["outcome"])
    text = f"{outcome} ×{row['requests']}"
    if row.get("memory_growth_mib") is not None:
        text += f" {row['memory_growth_mib']:.0f}MiB"
    if row["problems"]:
        text = f"**✗ {text}**"
    return text


def faults_section(records: list[dict[str, Any]]) -> list[str]:
    rows = [row for r in records if r["section"] == "faults" for row in r["rows"]]
    if not rows:
        return ["No fault matrix figures in this run."]
    ops = list(dict.fromkeys(r["operation"] for r in rows))
    faults = list(dict.fromkeys(r["fault"] for r in rows))
    by = {(r["operation"], r["fault"]): r for r in rows}
    broken = [r for r in rows if r["problems"]]
    lines = [
        f"{len(rows)} cells ({len(ops)} operations × {len(faults)} faults); "
        f"{len(rows) - len(broken)} kept every promise, {len(broken)} did not "
        f"({sum(1 for r in broken if r.get('known_issue'))} of them known, marked xfail).",
        "",
        "Each cell: outcome and requests the server received (×n); memory growth for the "
        "gzip bomb and the 50 MB line. **✗** = a broken promise (listed below the table).",
        "",
        "| fault | " + " | ".join(ops) + " |",
        "|---|" + "---|" * len(ops),
    ]
    for fault in faults:
        cells = [_cell(by[(op, fault)]) if (op, fault) in by else "" for op in ops]
        lines.append(f"| {fault} | " + " | ".join(cells) + " |")
    if broken:
        lines += ["", "Broken cells:", ""]
        for r in broken:
            why = f" — {r['known_issue']}" if r.get("known_issue") else " — **not known**"
            lines.append(f"- {r['operation']} × {r['fault']}: {'; '.join(r['problems'])}{why}")
    return lines


def columns_section(records: list[dict[str, Any]], section: str, head: str) -> list[str]:
    """One column per row (headed by its ``head`` value), one line per figure: for a few runs
    with many figures each (load, secrets)."""
    rows = [row for r in records if r["section"] == section for row in r["rows"]]
    if not rows:
        return [f"No {section} figures in this run."]
    keys = list(dict.fromkeys(k for row in rows for k in row if k != head))
    lines = [
        "| | " + " | ".join(str(r.get(head, "")) for r in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(r.get(key, "")) for r in rows) + " |")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return " → ".join(str(v) for v in value)
    return str(value)


def values_section(records: list[dict[str, Any]], section: str) -> list[str]:
    """Key/values summed over tests, then every row as a table (for fuzz, secrets, attacks...)."""
    mine = [r for r in records if r["section"] == section]
    if not mine:
        return [f"No {section} figures in this run."]
    lines: list[str] = []
    values = [(r["test"].split("::")[-1], k, v) for r in mine for k, v in r["values"].items()]
    if values:
        lines += ["| what | figure | test outcome |", "|---|---|---|"]
        outcome = {r["test"].split("::")[-1]: r["outcome"] for r in mine}
        for test, key, value in values:
            lines.append(f"| {key} | {_fmt(value)} | {outcome[test]} |")
        numbers = [v for _, _, v in values if isinstance(v, int | float)]
        if section == "fuzz" and numbers:
            lines += ["", f"{sum(numbers)} generated inputs in all."]
    rows = [row for r in mine for row in r["rows"]]
    if rows:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += [""] if lines else []  # (no blank line doubled under the heading)
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in rows:
            lines.append("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
    return lines


def render(
    records: list[dict[str, Any]], counts: dict[str, Counter], status: int, wall: float
) -> str:
    import aiohttp

    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    totals = Counter()
    for c in counts.values():
        for k, v in c.items():
            totals[k] += v
    lines = [
        START,
        "",
        f"Last run: {when}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}; {wall:.0f} s; pytest exit status {status}. "
        f"Regenerate with `{COMMAND}`.",
        "",
        "| test file | passed | failed | xfailed (known, strict) | skipped | errors |",
        "|---|---|---|---|---|---|",
    ]
    for module in sorted(counts):
        c = counts[module]
        lines.append(
            f"| {module} | {c['passed']} | {c['failed']} | {c['xfailed']} | {c['skipped']} "
            f"| {c['errors']} |"
        )
    lines.append(
        f"| **all** | {totals['passed']} | {totals['failed']} | {totals['xfailed']} "
        f"| {totals['skipped']} | {totals['errors']} |"
    )
    sections = [
        ("Faults × operations", faults_section(records)),
        ("Load held", columns_section(records, "load", "server")),
        ("Inputs fuzzed", values_section(records, "fuzz")),
        ("Secrets", columns_section(records, "secrets", "server")),
        ("Attacks tried", values_section(records, "attacks")),
        ("Emulator limits", values_section(records, "limits")),
    ]
    known = {"faults", "load", "fuzz", "secrets", "attacks", "limits"}
    for extra in sorted({r["section"] for r in records} - known):
        sections.append((extra, values_section(records, extra)))
    for title, body in sections:
        lines += ["", f"### {title}", "", *body]
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        figures, junit = Path(tmp, "figures"), Path(tmp, "junit.xml")
        status, wall = run_suite(figures, junit, argv)
        records = load_figures(figures) if figures.exists() else []
        block = render(records, junit_counts(junit), status, wall)
    text = DOC.read_text()
    if START not in text or END not in text:
        print(f"{DOC} has no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + block + tail)
    print(f"figures of {len(records)} tests written to {DOC}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
