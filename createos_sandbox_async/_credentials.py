"""Which headers carry credentials, and the one place that filters and redacts them.

Caller headers that the server would read before ``X-Api-Key`` are dropped (WIRE §2); header
values that are secrets never reach a hook or a log line; a request's own secrets (env values in
its body, per-call credentials) are found here so that no route can forget them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .errors import REDACTED, redact_text

__all__ = [
    "CREDENTIAL_HEADERS",
    "SECRET_BODY_KEYS",
    "SECRET_HEADERS",
    "is_secret_header",
    "merge_headers",
    "redact_headers",
    "request_secrets",
]

#: Caller headers the server would read before X-Api-Key (WIRE §2): always dropped.
CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "x-auth-token",
        "x-access-token",
        "cookie",
        "proxy-authorization",
        "x-csrf-token",
    }
)
#: Header names whose values never reach a hook or a log line.
SECRET_HEADERS: Final = CREDENTIAL_HEADERS | {"x-api-key", "set-cookie"}
#: JSON body keys whose values are secrets of that request: ``envs`` (create, fork templates),
#: ``env`` (exec, processes). Their string values are scrubbed from whatever the answer produces.
SECRET_BODY_KEYS: Final = ("envs", "env")


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a credential, whatever the letter case of its name."""
    return name.lower() in SECRET_HEADERS


def merge_headers(
    base: Mapping[str, str], extra: Mapping[str, str], *, allow_key: bool
) -> dict[str, str]:
    """The one credential-header filter: ``extra`` laid over ``base``, names matched in any case.

    Credential headers of ``extra`` are dropped (the server would read them before X-Api-Key,
    WIRE §2), and so is ``X-Api-Key`` itself unless ``allow_key`` (a per-call key on an
    authenticated call: a delegated token).
    """
    merged = dict(base)
    for key, value in extra.items():
        lower = key.lower()
        if lower in CREDENTIAL_HEADERS or (lower == "x-api-key" and not allow_key):
            continue
        for existing in [k for k in merged if k.lower() == lower]:
            del merged[existing]
        merged[key] = value
    return merged


def request_secrets(
    base: tuple[str, ...], json: object, headers: Mapping[str, str] | None
) -> tuple[str, ...]:
    """The session's secrets plus this request's: env values in the body, per-call credentials.

    The transport finds them itself (rather than each resource passing them) so that no route,
    including ``session.request`` for unmodelled ones, can forget to.
    """
    extra: list[str] = []
    if type(json) is dict:
        for key in SECRET_BODY_KEYS:
            env = json.get(key)
            if isinstance(env, Mapping):
                extra.extend(v for v in env.values() if isinstance(v, str) and v)
    if headers:
        extra.extend(v for k, v in headers.items() if is_secret_header(k) and v)
    return base + tuple(extra) if extra else base


def redact_headers(headers: Mapping[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
    """Headers for a hook: credential names redacted in any case, and any value holding a secret."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        if is_secret_header(key) or (value and redact_text(value, secrets) != value):
            out[key] = REDACTED
        else:
            out[key] = value
    return out
