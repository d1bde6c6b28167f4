"""``to_dict``: any model of this SDK as plain JSON-able data, secrets left out.

For web apps and logs: ``json.dumps(to_dict(x))`` and FastAPI's ``jsonable_encoder`` accept the
result as it is. Rules: attrs models become dicts of their fields; datetimes ISO 8601 text;
enums their values; tuples, lists and sets lists; bytes base64 text; a ``Sandbox`` handle its
last known view (``sb.data``). Fields that hold a secret (a ``SecretStr``: access tokens, noVNC
credentials) are left out entirely, not masked. Env values never reach a model (a sandbox view
lists env names only), so none can leak through here.
"""

from __future__ import annotations

import base64
import datetime as _dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from ._resource_models import SecretStr

__all__ = ["to_dict"]


def to_dict(obj: object) -> dict[str, Any]:
    """A model (or a ``Sandbox``) as a dict of JSON-able values; secret fields left out.

    >>> from createos_sandbox_async import ExecResult
    >>> to_dict(ExecResult(stdout="hi\\n", stderr="", exit_code=0))
    {'stdout': 'hi\\n', 'stderr': '', 'exit_code': 0, 'exec_ms': None, 'error': None}
    """
    data = getattr(obj, "data", None) if not attrs.has(type(obj)) else None
    if data is not None and attrs.has(type(data)):
        obj = data  # a Sandbox handle: its view
    if not attrs.has(type(obj)):
        raise TypeError(f"to_dict takes a model of this SDK or a Sandbox, got {type(obj).__name__}")
    out = _value(obj)
    assert isinstance(out, dict)
    return out


def _is_secret(field: attrs.Attribute[Any]) -> bool:
    """A field typed ``SecretStr`` (or ``SecretStr | None``): left out even when None."""
    kind = field.type
    return "SecretStr" in (kind if isinstance(kind, str) else repr(kind))


def _value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return _value(value.value)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, SecretStr):
        raise AssertionError("unreachable: secret fields are skipped")  # pragma: no cover
    if attrs.has(type(value)):
        return {
            f.name: _value(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if not _is_secret(f) and not isinstance(getattr(value, f.name), SecretStr)
        }
    if isinstance(value, Mapping):
        return {str(k): _value(v) for k, v in value.items() if not isinstance(v, SecretStr)}
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple | set | frozenset):
        return [_value(v) for v in value if not isinstance(v, SecretStr)]
    raise TypeError(f"to_dict cannot represent a {type(value).__name__} value as JSON")
