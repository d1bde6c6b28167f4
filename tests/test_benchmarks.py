"""The benchmark suite's quick mode runs end to end and every driver did verified work.

Counts, never speed: the harness already checks each operation's output in the driver and the
fake server's own counters against the driver's claims; this test runs ``benchmarks/run.py
--quick`` once and asserts on the JSON it writes. The official SDK drivers run when their installs
are present (``tests/conformance/setup.sh`` or ``benchmarks/run.py --setup``) and are skipped, not
failed, when they are not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
ALWAYS = {"raw_aiohttp", "sdk"}  # need nothing beyond the project's own install
KINDS = {
    "exec_c1": 1,
    "exec_c16": 16,
    "lifecycle_c8": 8,
    "stream_1mib": 1,
    "stream_32mib": 1,
    "stream_real_1mib": 1,
    "stream_real_32mib": 1,
    "stream_real_chunk128": 1,
    "upload_1mib_c4": 4,
    "download_8mib_c4": 4,
    "download_to_8mib": 1,
    "download_to_64mib": 1,
    "idle_1000": 100,  # quick mode opens 100
    "inflight_10000": 200,  # quick mode holds 200
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--no-setup", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    data["_out"] = out
    data["_stdout"] = proc.stdout
    return data


def test_every_run_verified(quick_run: dict[str, Any]) -> None:
    records = quick_run["records"]
    bad = [(r["driver"], r["workload"], r.get("error")) for r in records if not r["ok"]]
    assert bad == []
    ran = {(r["driver"], r["workload"]) for r in records}
    for driver in ALWAYS:
        for workload in KINDS:
            assert (driver, workload) in ran


def test_counts_match_the_recipe(quick_run: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _fakeserver import stream_frames
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for r in quick_run["records"]:
        w = r["workload"]
        if w == "emulator_latency":  # latencies, not counts: test_report_written checks them
            continue
        assert r["ops"] >= 1
        if w.startswith("stream_"):
            size = (4 if w.endswith("32mib") else 1) << 20
            recipe = "real" if "_real_" in w else "uniform"
            # drivers report wire frames consumed (a client may join frames into fewer events)
            assert r["events"] == r["ops"] * stream_frames(size, recipe)[1].frames
        elif w == "upload_1mib_c4":
            assert r["bytes"] == r["ops"] << 20
        elif w in ("download_8mib_c4", "download_to_8mib"):
            assert r["bytes"] == r["ops"] * (8 << 20)
        elif w == "download_to_64mib":  # 16 MiB in quick mode
            assert r["bytes"] == r["ops"] * (16 << 20)
        elif w in ("idle_1000", "inflight_10000"):
            assert r["ops"] == KINDS[w]
        if w == "inflight_10000":
            # one plain exec warms the session, then all calls were held at once and measured
            assert r["warm_ops"] == 1
            assert r["kib_per_call"] > 0
        elif w != "idle_1000":
            # every worker finished its warm-up operation
            assert r["warm_ops"] == KINDS[w]


def test_report_written(quick_run: dict[str, Any]) -> None:
    md = (quick_run["_out"] / "RESULTS.md").read_text()
    assert "## Targets" in md
    assert "| buffered exec, c=16 | ops/s |" in md
    summary = quick_run["summary"]
    assert summary["exec_c16"]["raw_aiohttp"]["ratio"] == 1.0
    assert summary["exec_c16"]["sdk"]["ratio"] is not None
    # the scale targets of issue 14 are in the targets table with a measured figure
    targets = ["RSS per in-flight buffered exec", "RSS growth with 1,000 open exec streams"]
    if shutil.which("bwrap"):  # and so are the emulator's, measured after the rounds
        targets += ["emulator: buffered exec of `true`", "emulator: create"]
        [emu] = [r for r in quick_run["records"] if r["workload"] == "emulator_latency"]
        assert emu["runs"] == 20 and 0 < emu["spawn_p50_ms"] <= emu["spawn_p90_ms"]
        assert "Emulator latency (after the rounds, 20 runs each" in md
    for target in targets:
        row = next(line for line in md.splitlines() if line.startswith(f"| {target}"))
        assert "| n/a |" not in row, row
