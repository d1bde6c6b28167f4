"""The one JSON picker: every body the client decodes or encodes goes through here.

``loads`` is orjson's when orjson is importable (the optional ``speed`` extra: about 2x faster
on the small objects of a stream), else the stdlib's; both take bytes and raise ``ValueError``
on bad JSON. ``dumps`` stays the stdlib encoder on purpose: orjson writes NaN as ``null``,
refuses ints beyond 64 bits and non-str keys, so a body would depend on what is installed.

Callers look the functions up as ``_json.loads`` at use (once per request or per stream, never
per line), so a benchmark can pin one decoder for the whole client by setting it here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any, Final

__all__ = ["dumps", "loads"]


def _pick_loads() -> Callable[[bytes], Any]:
    """orjson when installed (about 2x faster on small objects), else the stdlib decoder."""
    try:
        orjson: Any = importlib.import_module("orjson")
    except ImportError:
        return json.loads
    loads: Callable[[bytes], Any] = orjson.loads
    return loads


#: bytes in, objects out, ``ValueError`` on bad JSON.
loads: Callable[[bytes], Any] = _pick_loads()

#: One encoder for every body: ``json.dumps`` with options would build a new one per call.
dumps: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
