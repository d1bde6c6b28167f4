"""Argument checks shared by the client modules, run before anything is sent.

One rule for every public call: a value of the wrong type raises ``TypeError``, a value of the
right type that is out of range raises ``ValueError``. Messages name the argument and never
echo a value that may be secret (env values, command arguments).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

__all__ = [
    "AUTO_PAUSE_MAX",
    "AUTO_PAUSE_MIN",
    "MAX_ENVS",
    "MAX_ENV_TOTAL_BYTES",
    "MAX_ENV_VALUE_BYTES",
    "attrs_check",
    "check_args",
    "check_auto_pause",
    "check_bool",
    "check_cmd",
    "check_env",
    "check_envs",
    "check_int",
    "check_non_negative_seconds",
    "check_optional_seconds",
    "check_remote_path",
    "check_seconds",
    "check_str",
    "check_str_list",
    "check_sub_path",
    "check_text",
    "check_timeout",
    "id_segment",
]

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENVS = 64
MAX_ENV_VALUE_BYTES = 4096
MAX_ENV_TOTAL_BYTES = 65536
AUTO_PAUSE_MIN = 60
AUTO_PAUSE_MAX = 86400


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """An int (a bool is not a count), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: object, *, finite: bool = False) -> float:
    """A duration > 0 (NaN refused); ``finite=True`` refuses infinity too."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    if finite and math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def check_non_negative_seconds(name: str, value: object, *, finite: bool = True) -> float:
    """A wait of 0 seconds or more (0: no wait at all); NaN refused, and infinity when
    ``finite`` (a backoff that would sleep forever, or fail inside asyncio)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value >= 0 or (finite and math.isinf(value)):
        kind = "a finite number of seconds" if finite else "a number of seconds"
        raise ValueError(f"{name} must be {kind} >= 0, got {value!r}")
    return float(value)


def attrs_check(check: Callable[..., object], **options: Any) -> Callable[[Any, Any, Any], None]:
    """An attrs validator made of a check above, naming the field: configuration classes
    (``Limits``, ``RetryPolicy``) check their fields the way calls check their arguments."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        check(attribute.name, value, **options)

    return validate


def check_timeout(name: str, value: object) -> float | None:
    """A call's ``timeout=``: None (the session's default applies), ``inf`` (no bound at all), or
    a number of seconds > 0. NaN, 0, negatives and bools fail here, never deep in aiohttp or
    asyncio (an infinite timer handle raises ``OverflowError`` there)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(value).__name__}")
    if not value > 0:  # NaN compares False too
        raise ValueError(
            f"{name} must be > 0 seconds (or None, or inf for no bound), got {value!r}"
        )
    return float(value)


def check_text(name: str, value: str) -> str:
    """A str that can go on the wire: UTF-8 encodable (no lone surrogates such as "\\ud800").

    The message names the argument and the position, never the value (it may be a secret).
    """
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{name} cannot be encoded as UTF-8 (a lone surrogate at index {exc.start})"
            ) from None
    return value


def check_optional_seconds(name: str, value: object, *, finite: bool = False) -> float | None:
    """None (the default applies), or a duration as for :func:`check_seconds`."""
    return None if value is None else check_seconds(name, value, finite=finite)


def check_bool(name: str, value: object) -> bool:
    """Only True or False: a truthy string is far more often a mistake than a flag."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_str(name: str, value: object, *, allow_empty: bool = False) -> str:
    """A str; unless ``allow_empty``, one with something besides white space."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must not be empty")
    return check_text(name, value)


def check_cmd(cmd: object) -> str:
    """The program to run (exec and managed processes): no shell, so one non-empty word."""
    if not isinstance(cmd, str):
        raise TypeError(f"cmd must be a str (the program to run), got {type(cmd).__name__}")
    if not cmd:
        raise ValueError("cmd must not be empty")
    if "\x00" in cmd:
        raise ValueError("cmd must not contain NUL characters")
    return check_text("cmd", cmd)


def check_args(args: object) -> list[str]:
    """A list of str; a single string is refused (it would run as one argument, not a script)."""
    if args is None:
        return []
    if isinstance(args, str | bytes):
        raise TypeError(
            "args must be a list of str, not a single string (use sh() to run a shell script)"
        )
    if not isinstance(args, Sequence):
        raise TypeError(f"args must be a list of str, got {type(args).__name__}")
    out = list(args)
    for i, a in enumerate(out):
        if not isinstance(a, str):
            raise TypeError(f"args[{i}] must be a str, got {type(a).__name__}")
        if "\x00" in a:
            raise ValueError(f"args[{i}] must not contain NUL characters")
        check_text(f"args[{i}]", a)
    return out


def check_env(env: object) -> dict[str, str]:
    """Per-command variables. Names may appear in messages; values never do (often secrets)."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of str to str, got {type(env).__name__}")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key:
            raise TypeError("env keys must be non-empty str")
        if "=" in key or "\x00" in key:
            raise ValueError(f"env key {key!r} must not contain '=' or NUL")
        check_text("env key", key)
        if not isinstance(value, str):
            raise TypeError(f"env[{key!r}] must be a str, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError(f"env[{key!r}] must not contain NUL characters")
        check_text(f"env[{key!r}]", value)
        out[key] = value
    return out


# -- guest paths, ids, env maps and lists of the sandbox routes (WIRE §3, §10, §12) ---------------


def check_str_list(name: str, value: object) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of str")
    out = list(value)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__}")
    return out


def check_envs(name: str, envs: object) -> dict[str, str]:
    """Env map rules of WIRE §10. Messages name keys, never values (values may be secrets)."""
    if not isinstance(envs, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str")
    if len(envs) > MAX_ENVS:
        raise ValueError(f"{name}: at most {MAX_ENVS} entries allowed, got {len(envs)}")
    total = 0
    out: dict[str, str] = {}
    for key, value in envs.items():
        if not isinstance(key, str) or not _ENV_KEY.match(key):
            raise ValueError(f"{name}: invalid key {key!r} (must match ^[A-Za-z_][A-Za-z0-9_]*$)")
        if not isinstance(value, str):
            raise TypeError(f"{name}[{key!r}] must be a str, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError(f"{name}[{key!r}] must not contain NUL characters")
        size = len(check_text(f"{name}[{key!r}]", value).encode())
        if size > MAX_ENV_VALUE_BYTES:
            raise ValueError(
                f"{name}[{key!r}]: value is {size} bytes, the limit is {MAX_ENV_VALUE_BYTES}"
            )
        total += size
        out[key] = value
    if total > MAX_ENV_TOTAL_BYTES:
        raise ValueError(f"{name}: values total {total} bytes, the limit is {MAX_ENV_TOTAL_BYTES}")
    return out


def check_auto_pause(name: str, value: object) -> int:
    seconds = check_int(name, value)
    if not AUTO_PAUSE_MIN <= seconds <= AUTO_PAUSE_MAX:
        raise ValueError(
            f"{name} must be between {AUTO_PAUSE_MIN} and {AUTO_PAUSE_MAX} seconds, got {seconds}"
        )
    return seconds


def check_remote_path(path: object, argument: str = "path") -> str:
    """The one guest path check (files, mounts, cwd): absolute, no ``..``, no NUL (WIRE §12)."""
    if not isinstance(path, str):
        raise TypeError(f"{argument} must be a str guest path, got {type(path).__name__}")
    if not path.startswith("/"):
        raise ValueError(f"{argument} must be an absolute guest path starting with '/': {path!r}")
    if ".." in path.split("/"):
        raise ValueError(f"{argument} must not contain a '..' segment: {path!r}")
    if "\x00" in path:
        raise ValueError(f"{argument} must not contain a NUL character")
    return check_text(argument, path)


def check_sub_path(name: str, value: object) -> str:
    sub = check_str(name, value, allow_empty=True)
    if sub.startswith("/") or ".." in sub.split("/"):
        raise ValueError(f"{name} must be relative and must not contain '..', got {sub!r}")
    return sub


def id_segment(name: str, value: object) -> str:
    """An id or name as one URL path segment (WIRE §3): a non-blank str, quoted."""
    return quote(check_str(name, value), safe="")
