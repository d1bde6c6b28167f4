#!/usr/bin/env python3
"""Print pip pins (`name==version`) for the oldest runtime dependencies pyproject.toml allows.

.ci/run installs them with the test extras and runs the suite, so every lower bound in
[project].dependencies is a tested claim. A dependency without a `>=` bound is an error.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_LOWER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*$")


def pins(pyproject: Path) -> list[str]:
    """`name==lower` for each dependency, in pyproject order."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        match = _LOWER.match(dep.split(";")[0].split(",")[0])
        if match is None:
            raise SystemExit(f"{pyproject}: dependency {dep!r} has no plain '>=' lower bound")
        out.append(f"{match[1]}=={match[2]}")
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(pins(root / (sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
