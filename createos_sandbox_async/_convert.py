"""The one cattrs converter between wire JSON and the attrs models.

Tolerant by design: unknown keys are ignored, ``null`` counts as absent, an enum value this client
does not know is kept as a plain ``str`` (a new server status must not crash old clients), and ISO
8601 timestamps become timezone-aware ``datetime`` objects.
"""

from __future__ import annotations

import datetime as _dt
import enum
import types
import typing
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from ._secret import SecretStr
from .errors import ProtocolError

__all__ = ["converter", "structure", "unstructure"]

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=False)


def _parse_datetime(value: Any, _type: Any) -> _dt.datetime | None:
    """RFC 3339 text -> aware datetime; the server's nanoseconds are cut to microseconds."""
    if isinstance(value, _dt.datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    parsed: _dt.datetime | None
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        parsed = _parse_long_fraction(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed


def _parse_long_fraction(text: str) -> _dt.datetime | None:
    """Go servers send up to 9 fractional digits; fromisoformat wants at most 6."""
    dot = text.find(".")
    if dot < 0:
        return None
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    trimmed = text[: min(end, dot + 7)] + text[end:]
    try:
        return _dt.datetime.fromisoformat(trimmed)
    except ValueError:
        return None


converter.register_structure_hook(_dt.datetime, _parse_datetime)
converter.register_unstructure_hook(_dt.datetime, lambda d: d.isoformat())

# SecretStr: wrap on the way in, stay masked on the way out.
converter.register_structure_hook(SecretStr, lambda value, _type: SecretStr(str(value)))
converter.register_unstructure_hook(SecretStr, str)


def _enum_in_union(tp: Any) -> type[enum.Enum] | None:
    """The Enum class of ``SomeEnum | str`` (optionally ``| None``), else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(tp)
    if str not in args:
        return None
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


def _enum_or_str_hook(tp: Any) -> Any:
    enum_cls = _enum_in_union(tp)
    assert enum_cls is not None
    members = {m.value: m for m in enum_cls}

    def structure_enum(value: Any, _type: Any) -> Any:
        if value is None:
            return None
        member = members.get(value)
        return member if member is not None else str(value)

    return structure_enum


converter.register_structure_hook_factory(
    lambda t: _enum_in_union(t) is not None, _enum_or_str_hook
)


def _attrs_hook(cl: Any) -> Any:
    """Default attrs structuring, after dropping ``null`` values so field defaults apply."""
    inner = make_dict_structure_fn(cl, converter)

    def structure_attrs(value: Any, _type: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        return inner({k: v for k, v in value.items() if v is not None}, cl)

    return structure_attrs


converter.register_structure_hook_factory(attrs.has, _attrs_hook)


def structure(data: Any, cl: type[T]) -> T:
    """Wire JSON -> model; a body that cannot fit the model is a ``ProtocolError``.

    The error names the model and, for a missing field, the field; never a value.
    """
    try:
        return converter.structure(data, cl)
    except Exception as exc:
        # Never the converter's text: it quotes the offending value, and a server may put
        # anything there (an echoed key or env value). A missing field's name is ours, so safe.
        if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
            detail = f"missing field {exc.args[0]!r}"
        else:
            detail = f"a field has the wrong type or value ({type(exc).__name__})"
    # Raised outside the handler so the converter's exception is not kept as __context__.
    name = getattr(cl, "__name__", str(cl))
    raise ProtocolError(f"server response does not fit {name}: {detail}")


def unstructure(obj: Any) -> Any:
    """Model -> plain JSON-able data (datetimes as ISO text, enums as their values)."""
    return converter.unstructure(obj)
