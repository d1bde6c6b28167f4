#!/usr/bin/env python3
"""Bootstrap a local virtualenv and run the demo or the test suite.

Needs nothing but python3: ``python3 run.py demo`` or ``python3 run.py test [pytest args]``
(pytest under coverage, line and branch, subprocesses included; prints the report and total).
The first run creates ``.venv`` and installs the project with its test extras.
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


def ensure_venv() -> None:
    """Create the venv and install the project once (again when pyproject.toml changes)."""
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    if STAMP.exists() and STAMP.read_bytes() == pyproject:
        return
    print("installing createos-sandbox-async[test] into .venv ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_bytes(pyproject)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print("usage: python3 run.py demo | test [pytest args]", file=sys.stderr)
        return 2
    ensure_venv()
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
