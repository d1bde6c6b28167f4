#!/usr/bin/env python3
"""Bootstrap a local virtualenv and run the demo or the test suite.

Needs nothing but python3: ``python3 run.py demo`` or ``python3 run.py test [pytest args]``
(pytest under coverage, line and branch, subprocesses included; prints the report and total).
The first run creates ``.venv`` and installs the project (for the tests, with its test extras and
every framework adapter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".installed"


#: What each command needs: the demo only the package; the tests every optional adapter too,
#: so that none of their tests skips.
EXTRAS = {"demo": "", "test": "test,integrations"}


def ensure_venv(extras: str) -> None:
    """Create the venv and install the project with ``extras`` once (again when pyproject.toml
    changes). The stamp's first line lists the extras installed, the rest is pyproject.toml."""
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    if STAMP.exists():
        have, _, stamped = STAMP.read_bytes().partition(b"\n")
        if stamped == pyproject and set(extras.split(",")) <= set(have.decode().split(",")):
            return
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    print(f"installing createos-sandbox-async[{extras}] into .venv ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", target], check=True)
    STAMP.write_bytes(extras.encode() + b"\n" + pyproject)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print("usage: python3 run.py demo | test [pytest args]", file=sys.stderr)
        return 2
    ensure_venv(EXTRAS[argv[0]])
    os.chdir(ROOT)
    if argv[0] == "demo":
        cmd = [str(PY), "-m", "createos_sandbox_async", "demo", *argv[1:]]
        return subprocess.call(cmd)
    return run_tests(argv[1:])


def run_tests(pytest_args: list[str]) -> int:
    """pytest under coverage (line and branch, Python children included), then the total."""
    # An absolute data file: children started in another directory report to the same place.
    env = {**os.environ, "COVERAGE_FILE": str(ROOT / ".coverage")}
    coverage = [str(PY), "-m", "coverage"]
    subprocess.call([*coverage, "erase"], env=env)
    code = subprocess.call([*coverage, "run", "-m", "pytest", *pytest_args], env=env)
    subprocess.call([*coverage, "combine", "-q"], env=env)
    subprocess.call([*coverage, "report"], env=env)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
