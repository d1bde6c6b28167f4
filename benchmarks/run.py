"""Run every benchmark driver on every workload against one fake server; print and write ratios.

    .venv/bin/python benchmarks/run.py            # full run (~10-15 min), writes RESULTS.md + PNG
    .venv/bin/python benchmarks/run.py --quick    # ~1 min smoke run, writes into a temp dir

Method: the fake API (``_fakeserver.py``) runs in its own process pinned to the last CPU; each
(driver, workload) runs in a fresh client process pinned to the other CPU(s), time-boxed, after a
warm-up. Rounds are interleaved (every round runs every workload for every driver, in a rotated
order) so that noise from other load on the machine spreads over all drivers; each round's figure
is divided by raw aiohttp's figure of the same round, and medians are reported. Every run is
verified twice: the driver checks each operation's output (stdout, event counts, byte counts) and
the harness checks the server's own counters against what the driver claims.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRIVERS_DIR = HERE / "drivers"
WORK = HERE / ".work"
sys.path.insert(0, str(HERE))

from _fakeserver import FakeServer, cpu_plan, stream_frames  # noqa: E402

MiB = 1 << 20
PY_SDK_VERSION = "0.1.3"
TS_SDK_VERSION = "0.7.1"


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # exec | lifecycle | stream | upload | download | download_to | idle | inflight
    concurrency: int
    size: int = 0
    label: str = ""
    recipe: str = "uniform"  # streams: see _fakeserver.RECIPES
    chunk: int = 0  # streams: HTTP chunk size (0: the server's 64 KiB writes)

    @property
    def metric(self) -> tuple[str, str]:
        """(result key, unit) of the throughput figure for this workload."""
        return {
            "stream": ("frames_per_s", "frames/s"),
            "upload": ("mb_per_s", "MB/s"),
            "download": ("mb_per_s", "MB/s"),
            "download_to": ("mb_per_s", "MB/s"),
            "idle": ("kib_per_stream", "KiB/stream"),
            "inflight": ("kib_per_call", "KiB/call"),
        }.get(self.kind, ("ops_per_s", "ops/s"))

    @property
    def memory(self) -> bool:
        """A memory workload: its figure is RSS (lower is better), not throughput."""
        return self.kind in ("idle", "inflight")

    @property
    def warm(self) -> str:
        """The fake server's cache key for this stream body."""
        return f"{self.size}:{self.recipe}:{self.chunk}"


def workloads(quick: bool) -> list[Workload]:
    big = (4 if quick else 32) * MiB
    big_label = "4 MiB (quick)" if quick else "32 MiB"
    return [
        Workload("exec_c1", "exec", 1, label="buffered exec, c=1"),
        Workload("exec_c16", "exec", 16, label="buffered exec, c=16"),
        Workload("lifecycle_c8", "lifecycle", 8, label="create+exec+delete, c=8"),
        Workload("stream_1mib", "stream", 1, MiB, "exec stream 1 MiB (uniform)"),
        Workload("stream_32mib", "stream", 1, big, f"exec stream {big_label} (uniform)"),
        Workload("stream_real_1mib", "stream", 1, MiB, "exec stream 1 MiB (real)", "real"),
        Workload("stream_real_32mib", "stream", 1, big, f"exec stream {big_label} (real)", "real"),
        Workload(
            "stream_real_chunk128",
            "stream",
            1,
            MiB,
            "exec stream 1 MiB (real, 128 B chunks)",
            "real",
            128,
        ),
        Workload("upload_1mib_c4", "upload", 4, MiB, "upload 1 MiB, c=4"),
        Workload("download_8mib_c4", "download", 4, 8 * MiB, "download 8 MiB, c=4"),
        Workload("download_to_8mib", "download_to", 1, 8 * MiB, "download_to 8 MiB"),
        Workload(
            "download_to_64mib",
            "download_to",
            1,
            (16 if quick else 64) * MiB,
            "download_to 16 MiB (quick)" if quick else "download_to 64 MiB",
        ),
        Workload(
            "idle_1000",
            "idle",
            100 if quick else 1000,
            label="100 idle streams (quick)" if quick else "1,000 idle streams",
        ),
        Workload(
            "inflight_10000",
            "inflight",
            200 if quick else 10_000,
            label="200 buffered execs in flight (quick)"
            if quick
            else "10,000 buffered execs in flight",
        ),
    ]


@dataclass
class Driver:
    name: str
    label: str
    cmd: list[str]
    extra: dict[str, Any] = field(default_factory=dict)
    only: tuple[str, ...] = ()  # workload kinds; empty = all
    missing: str = ""  # why it cannot run here
    skip: tuple[str, ...] = ()  # workload kinds it has no operation for

    def runs(self, w: Workload) -> bool:
        return (not self.only or w.kind in self.only) and w.kind not in self.skip


def _module_version(python: str, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def official_python() -> str | None:
    """The official SDK's interpreter: ours under .work, else the conformance suite's."""
    for venv in (WORK / "pyofficial", ROOT / "tests" / "conformance" / ".venv-official"):
        py = venv / "bin" / "python"
        if py.exists() and _module_version(str(py), "createos-sandbox"):
            return str(py)
    return None


def official_node_modules() -> str | None:
    for nm in (WORK / "node" / "node_modules", ROOT / "tests" / "conformance" / "node_modules"):
        if (nm / "@nodeops-createos" / "sandbox" / "package.json").exists():
            return str(nm)
    return None


def setup_official() -> None:
    """Install the official SDKs into benchmarks/.work (gitignored), at the tested versions."""
    WORK.mkdir(exist_ok=True)
    venv = WORK / "pyofficial"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            *(str(venv / "bin" / "python"), "-m", "pip", "install", "-q"),
            *("--disable-pip-version-check", f"createos-sandbox=={PY_SDK_VERSION}"),
        ],
        check=True,
    )
    node = WORK / "node"
    node.mkdir(exist_ok=True)
    if not (node / "package.json").exists():
        (node / "package.json").write_text('{"private": true, "type": "module"}\n')
    subprocess.run(
        [
            *("npm", "install", "--no-audit", "--no-fund", "--loglevel=error"),
            f"@nodeops-createos/sandbox@{TS_SDK_VERSION}",
        ],
        cwd=node,
        check=True,
    )


def drivers() -> list[Driver]:
    py = sys.executable
    d = str(DRIVERS_DIR)
    out = [
        Driver("raw_aiohttp", "raw aiohttp (floor)", [py, f"{d}/raw_aiohttp.py"], {"json": "json"}),
        Driver(
            "raw_aiohttp_orjson",
            "raw aiohttp + orjson",
            [py, f"{d}/raw_aiohttp.py"],
            {"json": "orjson"},
            only=("stream",),
        ),
        Driver(
            "raw_httpx",
            "raw httpx AsyncClient",
            [py, f"{d}/raw_httpx.py"],
            skip=("download_to", "inflight"),
        ),
        Driver("sdk", "our SDK (stdlib json)", [py, f"{d}/sdk.py"], {"json": "json"}),
        Driver(
            "sdk_orjson",
            "our SDK + orjson (speed extra)",
            [py, f"{d}/sdk.py"],
            {"json": "orjson"},
            only=("stream", "exec"),
        ),
        Driver(
            "sdk_uvloop",
            "our SDK on uvloop",
            [py, f"{d}/sdk.py"],
            {"json": "json", "uvloop": True},
        ),
    ]
    for drv in out:
        if drv.name.endswith("orjson") and not _importable("orjson"):
            drv.missing = "orjson not installed (pip install -e '.[bench]')"
        if drv.name == "raw_httpx" and not _importable("httpx"):
            drv.missing = "httpx not installed (pip install -e '.[bench]')"
        if drv.name == "sdk_uvloop" and not _importable("uvloop"):
            drv.missing = "uvloop not installed (pip install -e '.[bench]')"
    if not (ROOT / "createos_sandbox_async" / "exec.py").exists():
        for drv in out:
            if drv.name.startswith("sdk"):
                drv.missing = "createos_sandbox_async.exec not written yet"
    opy = official_python()
    out.append(
        Driver(
            "official_py",
            f"official Python SDK {PY_SDK_VERSION} (threads)",
            [opy or "python3", f"{d}/official_py.py"],
            missing="" if opy else "not installed (benchmarks/run.py --setup)",
            skip=("download_to", "inflight"),  # 10,000 threads
        )
    )
    nm = official_node_modules()
    out.append(
        Driver(
            "official_ts",
            f"official TS SDK {TS_SDK_VERSION} (node)",
            ["node", f"{d}/official_ts.mjs"],
            {"node_modules": nm},
            missing="" if nm else "not installed (benchmarks/run.py --setup)",
            skip=("download_to", "inflight"),
        )
    )
    return out


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- running one measurement


def expected_counts(w: Workload, res: dict[str, Any]) -> dict[str, int]:
    """What the server must have counted for the operations the driver reports."""
    n = res["ops"] + res.get("warm_ops", 0)
    if w.kind == "exec":
        return {"exec": n}
    if w.kind == "lifecycle":
        return {"create": n, "exec": n, "delete": n}
    if w.kind == "stream":
        return {"stream": n}
    if w.kind == "upload":
        return {"upload": n, "upload_bytes": n * w.size}
    if w.kind in ("download", "download_to"):
        return {"download": n, "download_bytes": n * w.size}
    if w.kind == "inflight":  # the warm-up is a plain exec, the measured calls are held
        return {"hold": res["ops"], "exec": res.get("warm_ops", 0)}
    return {"idle_open": n, "idle_closed": n}


def run_one(
    server: FakeServer,
    drv: Driver,
    w: Workload,
    duration: float,
    client_cpus: set[int] | None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": server.api_key,
        "sandbox_id": server.sandbox_id,
        "workload": w.name,
        "kind": w.kind,
        "concurrency": w.concurrency,
        "duration": duration,
        "warmup": 1,
        "size": w.size,
        **drv.extra,
    }
    if w.kind == "stream":
        job["expect"] = dataclasses.asdict(stream_frames(w.size, w.recipe)[1])
        job["recipe"], job["chunk"] = w.recipe, w.chunk
    server.wait_quiet()
    before = server.stats()
    server_cpu0 = server.cpu_seconds()

    def pin() -> None:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)

    rec: dict[str, Any] = {"driver": drv.name, "workload": w.name, "ok": False}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [*drv.cmd, json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=180,
            preexec_fn=pin,
            cwd=str(DRIVERS_DIR),
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        rec["error"] = "driver timed out after 180 s"
        return rec
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        rec["error"] = f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
        return rec
    res = json.loads(lines[-1])
    rec.update(res)
    rec["process_s"] = time.monotonic() - t0
    want = expected_counts(w, res)
    # Idle streams are closed by the client just before it exits: give the server a moment.
    deadline = time.monotonic() + 15
    while True:
        after = server.stats()
        got = {k: after[k] - before[k] for k in want}
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    rec["server_cpu_s"] = server.cpu_seconds() - server_cpu0
    if got != want:
        rec["error"] = f"server counted {got}, driver claims {want}"
        return rec
    if w.kind == "stream":
        expect = stream_frames(w.size, w.recipe)[1]
        per = expect.frames
        if res["events"] != res["ops"] * per:
            rec["error"] = f"frames {res['events']} != {res['ops']} streams x {per}"
            return rec
        # Output delivered to the consumer (stdout + stderr characters), not wire bytes.
        rec["output_mb_per_s"] = res["ops"] * expect.output_chars / res["wall_s"] / 1e6
    if res["ops"] < 1:
        rec["error"] = "no operation completed"
        return rec
    rec["ok"] = True
    derive(rec)
    return rec


def derive(rec: dict[str, Any]) -> None:
    wall, ops = rec["wall_s"], rec["ops"]
    rec["ops_per_s"] = ops / wall
    rec["events_per_s"] = rec["events"] / wall
    rec["frames_per_s"] = rec["events"] / wall  # streams report wire frames consumed
    rec["mb_per_s"] = rec["bytes"] / wall / 1e6
    rec["cpu_us_per_op"] = rec["cpu_s"] / ops * 1e6
    if "rss_per_stream_kib" in rec:
        rec["kib_per_stream"] = rec["rss_per_stream_kib"]
        rec["rss_growth_mib"] = rec["rss_per_stream_kib"] * ops / 1024
    if "rss_per_call_kib" in rec:
        rec["kib_per_call"] = rec["rss_per_call_kib"]
        rec["rss_growth_mib"] = rec["rss_per_call_kib"] * ops / 1024
    rec["server_busy"] = rec["server_cpu_s"] / wall if wall else 0.0
    rec["client_share"] = rec["cpu_s"] / wall if wall else 0.0
    rec["faults_per_op"] = rec.get("minor_faults", 0) / ops


# ---------------------------------------------------------------- summarising


BASELINE = "raw_aiohttp"


def summarise(records: list[dict[str, Any]], wls: list[Workload], drvs: list[Driver]) -> dict:
    """Medians per (workload, driver) and medians of per-round ratios to raw aiohttp."""
    out: dict[str, dict[str, Any]] = {}
    for w in wls:
        key, _unit = w.metric
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for r in records:
            if r["workload"] == w.name and r["ok"]:
                by_round.setdefault(r["round"], {})[r["driver"]] = r
        per: dict[str, Any] = {}
        for d in drvs:
            rows = [rr[d.name] for rr in by_round.values() if d.name in rr]
            if not rows:
                continue
            ratios = [
                rr[d.name][key] / rr[BASELINE][key]
                for rr in by_round.values()
                if d.name in rr and BASELINE in rr and rr[BASELINE][key]
            ]
            cpu_ratios = [
                rr[d.name]["cpu_us_per_op"] / rr[BASELINE]["cpu_us_per_op"]
                for rr in by_round.values()
                if d.name in rr and BASELINE in rr and rr[BASELINE]["cpu_us_per_op"]
            ]
            per[d.name] = {
                "n": len(rows),
                "value": statistics.median(r[key] for r in rows),
                "cpu_us_per_op": statistics.median(r["cpu_us_per_op"] for r in rows),
                "peak_rss_mib": statistics.median(r["peak_rss_kib"] for r in rows) / 1024,
                "server_busy": statistics.median(r["server_busy"] for r in rows),
                "client_share": statistics.median(r["client_share"] for r in rows),
                "faults_per_op": statistics.median(r["faults_per_op"] for r in rows),
                "rss_growth_mib": statistics.median(r.get("rss_growth_mib", 0) for r in rows),
                "ratio": statistics.median(ratios) if ratios else None,
                "ratio_min": min(ratios) if ratios else None,
                "ratio_max": max(ratios) if ratios else None,
                "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else None,
            }
        out[w.name] = per
    return out


def pair_ratio(
    records: list[dict[str, Any]], workload: str, a: str, b: str, key: str
) -> float | None:
    """Median over rounds of a[key] / b[key] (same round, same workload)."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["workload"] == workload and r["ok"]:
            by_round.setdefault(r["round"], {})[r["driver"]] = r
    vals = [
        rr[a][key] / rr[b][key] for rr in by_round.values() if a in rr and b in rr and rr[b][key]
    ]
    return statistics.median(vals) if vals else None


_STREAMS = (
    ("stream_1mib", "1 MiB uniform"),
    ("stream_32mib", "32 MiB uniform"),
    ("stream_real_1mib", "1 MiB real"),
    ("stream_real_32mib", "32 MiB real"),
    ("stream_real_chunk128", "1 MiB real, 128 B chunks"),
)
#: Frames consumed and output delivered: per workload both are fixed per stream, so their
#: ratios agree; both are listed because the targets are stated in both.
_STREAM_KEYS = (("frames_per_s", "frames/s"), ("output_mb_per_s", "output MB/s"))


@dataclass(frozen=True)
class Target:
    """``a``'s ``key`` over ``b``'s (same round), or ``a``'s own figure when ``b`` is empty."""

    text: str
    workload: str
    a: str
    b: str
    key: str
    bound: float
    lower_is_better: bool = False
    unit: str = "x"  # how the measured figure is shown: a ratio, or e.g. " MiB"


#: Workload and driver name of the emulator latency record (benchmarks/emulator_latency.py).
EMULATOR = "emulator_latency"


def emulator_record(runs: int) -> dict[str, Any] | None:
    """p50/p90 of the local emulator's create and exec (and a bare spawn), or None when it cannot
    run here (no bubblewrap). Measured after the client/server rounds, on its own."""
    cmd = [sys.executable, str(HERE / "emulator_latency.py"), "--runs", str(runs), "--json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"emulator latency not measured: {exc}", flush=True)
        return None
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"emulator latency not measured: {tail[:200]}", flush=True)
        return None
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return {"driver": EMULATOR, "workload": EMULATOR, "ok": True, "round": 0, **figures}


TARGETS = [
    Target(
        "CPU per buffered exec (c=16) <= 1.15x raw aiohttp",
        "exec_c16",
        "sdk",
        BASELINE,
        "cpu_us_per_op",
        1.15,
        True,
    ),
    Target(
        "CPU per buffered exec (c=1) <= 1.15x raw aiohttp",
        "exec_c1",
        "sdk",
        BASELINE,
        "cpu_us_per_op",
        1.15,
        True,
    ),
    Target(
        "buffered exec ops/s (c=16) >= 5x official Python SDK",
        "exec_c16",
        "sdk",
        "official_py",
        "ops_per_s",
        5.0,
    ),
    Target(
        "buffered exec ops/s (c=16) >= 2x official TS SDK",
        "exec_c16",
        "sdk",
        "official_ts",
        "ops_per_s",
        2.0,
    ),
    *(
        Target(
            f"stream {unit} ({label}) >= 2x raw aiohttp, both stdlib json",
            name,
            "sdk",
            BASELINE,
            key,
            2.0,
        )
        for name, label in _STREAMS
        for key, unit in _STREAM_KEYS
    ),
    *(
        Target(
            f"stream frames/s ({label}), both with orjson >= 1.0x raw aiohttp",
            name,
            "sdk_orjson",
            "raw_aiohttp_orjson",
            "frames_per_s",
            1.0,
        )
        for name, label in _STREAMS
    ),
    Target(
        "stream frames/s (32 MiB real) >= 3x official TS SDK",
        "stream_real_32mib",
        "sdk_orjson",
        "official_ts",
        "frames_per_s",
        3.0,
    ),
    Target(
        "upload MB/s (1 MiB, c=4) >= 1.0x raw aiohttp",
        "upload_1mib_c4",
        "sdk",
        BASELINE,
        "mb_per_s",
        1.0,
    ),
    Target(
        "download MB/s (8 MiB, c=4, into memory) >= 1.0x raw aiohttp",
        "download_8mib_c4",
        "sdk",
        BASELINE,
        "mb_per_s",
        1.0,
    ),
    Target(
        "download_to MB/s (8 MiB, into a file) >= 1.0x raw aiohttp",
        "download_to_8mib",
        "sdk",
        BASELINE,
        "mb_per_s",
        1.0,
    ),
    Target(
        "download_to MB/s (64 MiB, into a file) >= 1.0x raw aiohttp",
        "download_to_64mib",
        "sdk",
        BASELINE,
        "mb_per_s",
        1.0,
    ),
    Target(
        "RSS per in-flight buffered exec (10,000 through one session) <= 1.2x raw aiohttp",
        "inflight_10000",
        "sdk",
        BASELINE,
        "kib_per_call",
        1.2,
        True,
    ),
    Target(
        "emulator: buffered exec of `true`, p50 <= 2.5 ms",
        EMULATOR,
        EMULATOR,
        "",
        "exec_p50_ms",
        2.5,
        True,
        " ms",
    ),
    Target(
        "emulator: create, p50 <= 10 ms",
        EMULATOR,
        EMULATOR,
        "",
        "create_p50_ms",
        10.0,
        True,
        " ms",
    ),
    Target(
        "RSS growth with 1,000 open exec streams <= 24 MiB",
        "idle_1000",
        "sdk",
        "",
        "rss_growth_mib",
        24.0,
        True,
        " MiB",
    ),
]


def own_value(records: list[dict[str, Any]], workload: str, a: str, key: str) -> float | None:
    """Median over rounds of one driver's own figure."""
    vals = [r[key] for r in records if r["workload"] == workload and r["ok"] and r["driver"] == a]
    return statistics.median(vals) if vals else None


def check_targets(records: list[dict[str, Any]]) -> list[tuple[Target, float | None, str]]:
    out = []
    for t in TARGETS:
        if t.b:
            v = pair_ratio(records, t.workload, t.a, t.b, t.key)
        else:
            v = own_value(records, t.workload, t.a, t.key)
        if v is None:
            verdict = "n/a"
        elif (v <= t.bound) if t.lower_is_better else (v >= t.bound):
            verdict = "met"
        else:
            verdict = "MISSED"
        out.append((t, v, verdict))
    return out


# ---------------------------------------------------------------- reporting


def machine_info() -> dict[str, str]:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory"] = f"{int(f.readline().split()[1]) // 1024} MiB"
    except OSError:
        pass
    return info


def versions(drvs: list[Driver]) -> dict[str, str]:
    py = sys.executable
    v = {name: _module_version(py, name) for name in ("aiohttp", "httpx", "uvloop", "orjson")}
    v["createos-sandbox-async"] = _module_version(py, "createos-sandbox-async")
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "createos_sandbox_async"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
        v["createos-sandbox-async"] += (
            f" (git {rev}{', plus uncommitted SDK edits' if dirty else ''})"
        )
    except OSError:
        pass
    opy = official_python()
    if opy:
        v["createos-sandbox (official Python)"] = _module_version(opy, "createos-sandbox")
        v["httpx (official Python's venv)"] = _module_version(opy, "httpx")
    nm = official_node_modules()
    if nm:
        for pkg, label in (("@nodeops-createos/sandbox", "official TS"), ("undici", "undici")):
            p = Path(nm) / pkg / "package.json"
            if p.exists():
                v[f"{pkg} ({label})"] = json.loads(p.read_text())["version"]
        try:
            v["node"] = subprocess.run(
                ["node", "--version"], capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            pass
    return {k: val for k, val in v.items() if val}


def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def render_markdown(
    summary: dict,
    records: list[dict[str, Any]],
    wls: list[Workload],
    drvs: list[Driver],
    meta: dict[str, Any],
    plot_name: str | None,
) -> str:
    names = {d.name: d.label for d in drvs}
    out = ["# Benchmark results", ""]
    out.append(
        f"Run {meta['date']}, mode `{meta['mode']}`: {meta['rounds']} interleaved rounds, "
        f"{meta['duration']} s per measurement, {meta['elapsed_s']:.0f} s in all. "
        "Regenerate with `.venv/bin/python benchmarks/run.py` (see README.md)."
    )
    emu = next((r for r in records if r["driver"] == EMULATOR), None)
    if emu is not None:
        when = meta.get("emulator_measured", "after the rounds")
        out.append("")
        out.append(
            f"Emulator latency ({when}, {emu['runs']} runs each, raw aiohttp against a "
            f"`LocalServer` under bubblewrap; `benchmarks/emulator_latency.py`): create p50 "
            f"{emu['create_p50_ms']:.2f} ms (p90 {emu['create_p90_ms']:.2f}), "
            f"buffered exec of `true` p50 {emu['exec_p50_ms']:.2f} ms (p90 "
            f"{emu['exec_p90_ms']:.2f}), streamed `echo hi` p50 "
            f"{emu['exec_stream_p50_ms']:.2f} ms; "
            f"a bare spawn of `true` p50 {emu['spawn_p50_ms']:.2f} ms, `GET /healthz` p50 "
            f"{emu['healthz_p50_ms']:.2f} ms."
        )
    out += ["", "## Targets (ratios measured in this run)", ""]
    out.append(
        "`measured` is the target's own figure (median of per-round ratios; for a bound in MiB "
        "the median of the figure itself). `by CPU` restates "
        "a throughput target as client CPU per operation (b's CPU / a's CPU: higher is better), "
        "which other load on the shared machine disturbs far less than wall-clock throughput."
    )
    out += ["", "| target | measured | verdict | by CPU | verdict by CPU |"]
    out.append("| --- | --- | --- | --- | --- |")
    for t, v, verdict in check_targets(records):
        by_cpu, cpu_verdict = "", ""
        if not t.lower_is_better:
            c = pair_ratio(records, t.workload, t.b, t.a, "cpu_us_per_op")
            by_cpu = f"{c:.3f}x" if c is not None else "–"
            cpu_verdict = "n/a" if c is None else ("met" if c >= t.bound else "MISSED")
        shown = f"{v:.3f}{t.unit}" if v is not None else "–"
        out.append(f"| {t.text} | {shown} | {verdict} | {by_cpu} | {cpu_verdict} |")
    rss = {
        w.label: summary.get(w.name, {}).get("sdk", {}).get("peak_rss_mib")
        for w in wls
        if w.kind == "download_to"
    }
    if rss and all(v is not None for v in rss.values()):
        shown_rss = ", ".join(f"{k}: {v:.0f} MiB" for k, v in rss.items())
        out += ["", f"Our SDK's peak RSS by file size (flat = streamed to disk): {shown_rss}."]
    growth = [
        f"{w.label}: "
        + ", ".join(
            f"{names[d]} {per[d]['rss_growth_mib']:.1f} MiB" for d in (BASELINE, "sdk") if d in per
        )
        for w in wls
        if w.memory and (per := summary.get(w.name, {}))
    ]
    if growth:
        out += ["", "Client RSS growth with everything open (medians): " + "; ".join(growth) + "."]
    out += ["", "## Ratio to raw aiohttp per workload", ""]
    out.append(
        "Median over rounds of (driver / raw aiohttp in the same round). Throughput: higher is "
        "better; CPU per operation, KiB per idle stream and KiB per in-flight call: lower is "
        "better."
    )
    out.append("")
    shown = [d for d in drvs if any(d.name in summary.get(w.name, {}) for w in wls)]
    out.append("| workload | metric | " + " | ".join(names[d.name] for d in shown) + " |")
    out.append("| --- | --- |" + " --- |" * len(shown))
    for w in wls:
        per = summary.get(w.name, {})
        _, unit = w.metric
        cells = [fmt(per[d.name]["ratio"]) if d.name in per else "" for d in shown]
        out.append(f"| {w.label} | {unit} | " + " | ".join(cells) + " |")
        if not w.memory:
            cells = [fmt(per[d.name]["cpu_ratio"]) if d.name in per else "" for d in shown]
            out.append(f"| {w.label} | CPU/op | " + " | ".join(cells) + " |")
    if plot_name:
        out += ["", f"![throughput ratio to raw aiohttp per workload]({plot_name})"]
    out += ["", "## Absolute figures (medians)", ""]
    out.append(
        "Noisy by nature: the machine was shared with other work. `ratio` range is min–max over "
        "rounds. `client CPU share` is the client's CPU time over wall time (well under 1.0 for a "
        "CPU-bound workload means other processes took the core). `server busy` is the fake "
        "server's CPU time over wall time (near 1.0 = its core was saturated and the server, not "
        "the client, set the pace)."
    )
    for w in wls:
        per = summary.get(w.name, {})
        if not per:
            continue
        _, unit = w.metric
        out += ["", f"### {w.label}", ""]
        out.append(
            f"| driver | {unit} | ratio (range) | CPU µs/op | CPU ratio | peak RSS MiB | "
            "page faults/op | client CPU share | server busy | rounds |"
        )
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for d in drvs:
            if d.name not in per:
                continue
            s = per[d.name]
            rng = (
                f"{fmt(s['ratio'])} ({fmt(s['ratio_min'])}–{fmt(s['ratio_max'])})"
                if s["ratio"] is not None
                else "–"
            )
            out.append(
                f"| {names[d.name]} | {fmt(s['value'], 1)} | {rng} | {fmt(s['cpu_us_per_op'], 1)} "
                f"| {fmt(s['cpu_ratio'])} | {s['peak_rss_mib']:.0f} | {s['faults_per_op']:.0f} "
                f"| {s['client_share']:.2f} "
                f"| {s['server_busy']:.2f} | {s['n']} |"
            )
    skipped = [d for d in drvs if d.missing]
    failed = [r for r in records if not r["ok"]]
    if skipped or failed:
        out += ["", "## Not measured", ""]
        out += [f"- {names[d.name]}: {d.missing}" for d in skipped]
        out += [
            f"- round {r['round']} {r['driver']} / {r['workload']}: {r.get('error', '?')[:300]}"
            for r in failed
        ]
    out += ["", "## Machine and versions", ""]
    out += [f"- {k}: {v}" for k, v in meta["machine"].items()]
    out += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    out += [f"- driver environment: {k}={v}" for k, v in meta.get("env", {}).items()]
    out += ["", "## Method", ""]
    out += [line.strip() for line in METHOD.strip().splitlines()]
    return "\n".join(out) + "\n"


METHOD = """
- Server: `benchmarks/_fakeserver.py`, aiohttp's low-level server on uvloop in its own process,
  pinned to the last CPU; every body is precomputed bytes (streams are sent in 64 KiB writes, or
  pre-encoded 128-byte HTTP chunks for `stream_real_chunk128`; the
  exec result is a constant, uploads are counted and discarded). Its CPU use is recorded per run.
- Clients: one fresh process per (driver, workload, round), pinned to the remaining CPU(s), so
  start-up, imports and peak RSS are per workload. After one untimed warm-up operation per worker,
  `concurrency` workers (asyncio tasks; threads for the synchronous official Python SDK; promises
  for node) repeat the operation until the time box closes. CPU = the client process's user+system
  time (`os.times()`, node's `process.cpuUsage()`) over the timed part.
- Work is identical and checked: buffered exec returns `"2\\n"` and exit 0; lifecycle is create,
  exec, delete; streams follow a recipe (`uniform`: ~100-byte lines, 5% stderr, 0.5% heartbeats;
  `real`: 40-120 character log lines, stdout and stderr in runs, escapes and UTF-8, heartbeats)
  and every driver counts the characters of each stream, the stdout/stderr alternations and the
  exit code, which must match the recipe exactly (events may join frames: streams are reported in
  wire frames/s and output MB/s); downloads check the byte count; the harness compares the
  server's own counters (requests, streams, bytes) with what each driver reports.
- Raw aiohttp is the floor: one `ClientSession`, `json.dumps` / `json.loads`, streams split with
  `bytes.split` over `iter_any()`, heartbeats dropped by a bytes compare, one `json.loads` per
  line. Raw httpx: `AsyncClient`, `response.json()`, `aiter_lines()`.
- Official Python SDK: its own venv, one `Client` shared by a thread pool of the same concurrency,
  httpx pool sized to the concurrency. Official TS SDK: node, its default undici pool (32
  connections per origin); for the idle-stream workload it is given node's global `fetch` because
  its pool would queue all but 32 of the streams.
- Idle streams: open N exec streams at once (each gets one heartbeat, then silence), measure the
  client's RSS with all open minus before, divide by N, close all; the server checks that all N
  opened and closed.
- Calls in flight: start N buffered execs at once through one session; the server holds each
  until the client, told on a side connection that all N arrived, has read its RSS (from /proc,
  no tracemalloc); growth over N is the figure; then all are released and checked.
- Ratios are per round (same workload, same round) and the median over rounds is reported.
- Two effects to keep in mind when reading wall-clock ratios on a loaded machine. (1) The
  scheduler gives a process with many runnable threads (the official Python SDK's thread pool,
  node's helper threads) a larger share of the client CPU than a one-threaded asyncio client,
  so wall-clock ratios flatter the threaded clients; `client CPU share` in the tables shows it,
  and the `by CPU` column of the targets compares client CPU per operation instead. (2) glibc
  trims and regrows the heap around multi-MiB buffers depending on the heap's layout, which
  shows up as page faults per operation in the download rows; `--env
  MALLOC_MMAP_THRESHOLD_=67108864 --env MALLOC_TRIM_THRESHOLD_=268435456` takes it out.
"""


def plot(summary: dict, wls: list[Workload], drvs: list[Driver], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [
        d
        for d in drvs
        if d.name != BASELINE and any(d.name in summary.get(w.name, {}) for w in wls)
    ]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 9.5), sharex=True)
    width = 0.8 / max(len(shown), 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, d in enumerate(shown):
        color = colors[i % len(colors)]
        for ax, metric in ((top, "ratio"), (bottom, "cpu_ratio")):
            xs, ys = [], []
            for j, w in enumerate(wls):
                s = summary.get(w.name, {}).get(d.name)
                val = s[metric] if s else None
                if metric == "cpu_ratio" and w.memory:
                    val = None
                if val:
                    if metric == "ratio" and w.memory:
                        val = 1 / val  # memory: "how many times leaner", higher is better
                    xs.append(j + (i - (len(shown) - 1) / 2) * width)
                    ys.append(val)
            ax.bar(xs, ys, width, label=d.label, color=color)
    for ax in (top, bottom):
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.grid(axis="y", which="both", alpha=0.25)
    top.set_ylabel("throughput / raw aiohttp\n(log, higher is better)")
    bottom.set_ylabel("client CPU per op / raw aiohttp\n(log, lower is better)")
    top.set_title("Median per-round ratio to a hand-written raw aiohttp client (= 1.0)")
    top.legend(fontsize=8, ncol=2)
    bottom.set_xticks(range(len(wls)))
    bottom.set_xticklabels(
        [w.label + ("\n(top: raw RSS / driver RSS)" if w.memory else "") for w in wls],
        rotation=20,
        ha="right",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def print_table(summary: dict, wls: list[Workload], drvs: list[Driver]) -> None:
    shown = [d for d in drvs if any(d.name in summary.get(w.name, {}) for w in wls)]
    head = f"{'workload':<20} {'metric':<10}" + "".join(f"{d.name[:13]:>14}" for d in shown)
    print(head)
    for w in wls:
        per = summary.get(w.name, {})
        row = f"{w.name:<20} {'x raw':<10}"
        row += "".join(f"{fmt(per[d.name]['ratio']) if d.name in per else '':>14}" for d in shown)
        print(row)
        if not w.memory:
            row = f"{'':<20} {'cpu x raw':<10}"
            row += "".join(
                f"{fmt(per[d.name]['cpu_ratio']) if d.name in per else '':>14}" for d in shown
            )
            print(row)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="~1 min smoke run, one short round")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per measurement (default 1.5)")
    ap.add_argument("--out", help="output directory (default: benchmarks/, quick: a temp dir)")
    ap.add_argument("--drivers", help="comma-separated driver names (default: all available)")
    ap.add_argument("--workloads", help="comma-separated workload names (default: all)")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite RESULTS.md and the plot from the results.json in --out (no measuring)",
    )
    ap.add_argument(
        "--emulator-only",
        action="store_true",
        help="measure only the emulator's latency into the results.json in --out, then rewrite",
    )
    ap.add_argument("--setup", action="store_true", help="install the official SDKs first")
    ap.add_argument("--no-setup", action="store_true", help="never install the official SDKs")
    ap.add_argument(
        "--require", default="", help="comma-separated drivers that must run (else exit 1)"
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set in every driver's environment, e.g. MALLOC_TRIM_THRESHOLD_=268435456",
    )
    ns = ap.parse_args(argv)
    if ns.render_only or ns.emulator_only:
        return render_only(Path(ns.out) if ns.out else HERE, emulator=ns.emulator_only)
    quick = ns.quick
    rounds = ns.rounds or (1 if quick else 5)
    duration = ns.duration or (0.15 if quick else 1.5)
    if ns.setup or (
        not quick and not ns.no_setup and not (official_python() and official_node_modules())
    ):
        print("installing the official SDKs into benchmarks/.work ...", flush=True)
        try:
            setup_official()
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"  setup failed ({exc}); those drivers will be skipped", flush=True)
    out_dir = (
        Path(ns.out) if ns.out else (Path(tempfile.mkdtemp(prefix="bench-")) if quick else HERE)
    )
    out_dir.mkdir(parents=True, exist_ok=True)

    wls = workloads(quick)
    if ns.workloads:
        pick = set(ns.workloads.split(","))
        wls = [w for w in wls if w.name in pick]
    drvs = drivers()
    if ns.drivers:
        pick = set(ns.drivers.split(",")) | {BASELINE}
        drvs = [d for d in drvs if d.name in pick]
    for d in drvs:
        if d.missing:
            print(f"skipping {d.name}: {d.missing}", flush=True)
    required = [r for r in ns.require.split(",") if r]
    missing_required = [d.name for d in drvs if d.name in required and d.missing]
    if missing_required:
        print(f"required drivers cannot run: {missing_required}", file=sys.stderr)
        return 1
    runnable = [d for d in drvs if not d.missing]
    extra_env = dict(kv.split("=", 1) for kv in ns.env)

    server_cpus, client_cpus = cpu_plan()
    print(
        f"server on CPUs {sorted(server_cpus or [])}, clients on {sorted(client_cpus or [])}; "
        f"{rounds} round(s) x {len(wls)} workloads x {len(runnable)} drivers, {duration} s each",
        flush=True,
    )
    _raise_nofile()
    records: list[dict[str, Any]] = []
    t_start = time.monotonic()
    sizes = tuple(sorted({w.warm for w in wls if w.kind == "stream"}))
    for w in wls:
        if w.kind == "stream":
            stream_frames(w.size, w.recipe)
    with FakeServer(server_cpus=server_cpus, warm_sizes=sizes) as server:
        for rnd in range(rounds):
            for wi, w in enumerate(wls):
                todo = [d for d in runnable if d.runs(w)]
                shift = (rnd + wi) % len(todo)
                for d in todo[shift:] + todo[:shift]:
                    rec = run_one(server, d, w, duration, client_cpus, extra_env)
                    rec["round"] = rnd
                    records.append(rec)
                    status = "ok " if rec["ok"] else "ERR"
                    key = w.metric[0]
                    shown = fmt(rec.get(key), 1) if rec["ok"] else rec.get("error", "")[:200]
                    print(f"  r{rnd} {w.name:<18} {d.name:<20} {status} {shown}", flush=True)
    if not ns.workloads or EMULATOR in ns.workloads.split(","):
        emu = emulator_record(20 if quick else 200)
        if emu is not None:
            records.append(emu)
            print(
                f"  emulator: create p50 {emu['create_p50_ms']:.2f} ms, exec p50 "
                f"{emu['exec_p50_ms']:.2f} ms (spawn p50 {emu['spawn_p50_ms']:.2f} ms)",
                flush=True,
            )
    elapsed = time.monotonic() - t_start
    summary = summarise(records, wls, runnable)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if quick else "full",
        "rounds": rounds,
        "duration": duration,
        "elapsed_s": elapsed,
        "machine": machine_info(),
        "versions": versions(runnable),
        "env": extra_env,
    }
    plot_path = out_dir / "results.png"
    plotted = plot(summary, wls, runnable, plot_path)
    if not plotted:
        print(f"matplotlib not installed: {plot_path.name} not updated", flush=True)
    md = render_markdown(summary, records, wls, drvs, meta, plot_path.name if plotted else None)
    (out_dir / "RESULTS.md").write_text(md)
    (out_dir / "results.json").write_text(
        json.dumps({"meta": meta, "records": records, "summary": summary}, indent=1)
    )
    print()
    print_table(summary, wls, runnable)
    print()
    for t, v, verdict in check_targets(records):
        print(f"{verdict:>7}  {fmt(v)}{t.unit}  {t.text}")
    print(f"\nwrote {out_dir / 'RESULTS.md'} in {elapsed:.0f} s")
    bad = [r for r in records if not r["ok"]]
    return 1 if bad else 0


def render_only(out_dir: Path, *, emulator: bool = False) -> int:
    """Regenerate the report from a previous run's results.json (same data, current text);
    ``emulator``: measure the emulator's latency now and put it in place of any earlier one."""
    data = json.loads((out_dir / "results.json").read_text())
    meta, records = data["meta"], data["records"]
    if emulator:
        emu = emulator_record(20 if meta["mode"] == "quick" else 200)
        if emu is None:
            return 1
        records = [r for r in records if r["driver"] != EMULATOR] + [emu]
        meta["emulator_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        data["records"] = records
        (out_dir / "results.json").write_text(json.dumps(data, indent=1))
    wls = workloads(meta["mode"] == "quick")
    drvs = drivers()
    ran = {r["driver"] for r in records}
    drvs = [d for d in drvs if d.name in ran]
    for d in drvs:
        d.missing = ""
    summary = summarise(records, wls, drvs)
    plot_path = out_dir / "results.png"
    plotted = plot(summary, wls, drvs, plot_path)
    md = render_markdown(summary, records, wls, drvs, meta, plot_path.name if plotted else None)
    (out_dir / "RESULTS.md").write_text(md)
    print(f"rewrote {out_dir / 'RESULTS.md'}")
    return 0


def _raise_nofile() -> None:
    """1,000 streams and 10,000 in-flight calls need more than the usual 1,024 descriptors, in
    the client and in the fake server alike; children inherit the limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


if __name__ == "__main__":
    sys.exit(main())
