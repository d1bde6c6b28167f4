"""Optional extras (agent frameworks, MCP, OpenTelemetry, ...) in tests.

Import by module name (``from _extras import need``). On a laptop without an extra its tests
skip; in CI (``CREATEOS_REQUIRE_EXTRAS=1``) a missing extra fails, so nothing skips silently
where the extras are installed. The minimum-versions job installs only ``[test]`` and leaves the
variable unset, so there these tests skip.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str, extra: str) -> ModuleType:
    """Import ``module`` or skip (laptop) / fail (CI) naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"{module} is not installed: pip install 'createos-sandbox-async[{extra}]' ({exc})"
        if os.environ.get("CREATEOS_REQUIRE_EXTRAS") == "1":
            pytest.fail(hint)
        pytest.skip(hint, allow_module_level=True)
