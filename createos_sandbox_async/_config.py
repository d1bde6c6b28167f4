"""Configuration: where to connect, with which key, and how long to wait.

Precedence is explicit argument > environment > default, so the same code runs against production
(env set by the deployment) and the local emulator (arguments from ``LocalServer``).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._validate import (
    attrs_check,
    check_int,
    check_non_negative_seconds,
    check_seconds,
    check_timeout,
)

DEFAULT_BASE_URL = "https://api.sb.createos.sh"
API_KEY_ENVS = ("CREATEOS_SANDBOX_API_KEY", "CREATEOS_API_KEY")
BASE_URL_ENV = "CREATEOS_SANDBOX_BASE_URL"


def _field(name: str, default: float | None) -> Any:
    """A Timeouts field checked like a call's ``timeout=`` (NaN, 0, negatives and bools fail,
    naming the field); ``inf`` means no bound and is stored as None."""

    def convert(value: object) -> float | None:
        seconds = check_timeout(name, value)
        return None if seconds == float("inf") else seconds

    return attrs.field(default=default, converter=convert)


@attrs.frozen
class Timeouts:
    """Deadlines in seconds (None or ``inf`` = no bound; stored as None).

    - ``connect``: opening a new TCP/TLS connection.
    - ``request``: the per-attempt bound of a buffered request without its own ``timeout=``:
      one attempt, from asking for a connection until the body is read (so it includes waiting
      for a free pooled connection). Every retry gets a fresh one.
    - ``total``: the whole-call bound of a buffered request without its own ``timeout=``: every
      attempt, backoff and ``Retry-After`` wait. None (the default): only ``request`` per
      attempt and the retry policy bound the call. A call's ``timeout=`` replaces both.
    - ``stream_idle``: longest silence on a streaming response; the server sends a heartbeat every
      5 s, so 30 s means "the server is gone", not "the command is slow".
    - ``pool``: waiting for a free connection from the pool plus connecting (aiohttp's ``connect``).
    """

    connect: float | None = _field("connect", 10.0)
    request: float | None = _field("request", 60.0)
    stream_idle: float | None = _field("stream_idle", 30.0)
    pool: float | None = _field("pool", None)
    total: float | None = _field("total", None)


@attrs.frozen
class Limits:
    """Connection pool size.

    Defaults match aiohttp's: 100 connections in total, no extra per-host bound (0 = unlimited; all
    traffic goes to one host anyway), idle keep-alive connections closed after 15 s.
    """

    max_connections: int = attrs.field(default=100, validator=attrs_check(check_int, minimum=0))
    max_connections_per_host: int = attrs.field(
        default=0, validator=attrs_check(check_int, minimum=0)
    )
    keepalive_expiry: float = attrs.field(
        default=15.0, validator=attrs_check(check_non_negative_seconds, finite=False)
    )


def coerce_timeouts(timeout: Timeouts | float | None) -> Timeouts:
    """Accept a ``Timeouts`` or a plain number (the per-attempt request deadline)."""
    if timeout is None:
        return Timeouts()
    if isinstance(timeout, Timeouts):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        kind = type(timeout).__name__
        raise TypeError(f"timeout must be a Timeouts, a number of seconds or None, got {kind}")
    return Timeouts(request=check_seconds("timeout", timeout))


def resolve_api_key(api_key: str | None) -> str | None:
    """Explicit argument > CREATEOS_SANDBOX_API_KEY > CREATEOS_API_KEY; blank counts as unset."""
    if api_key is not None:
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str, got {type(api_key).__name__}")
        if api_key.strip():
            return api_key.strip()
    for name in API_KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | None) -> tuple[str, str]:
    """Return (base URL without trailing '/', the name it came from) after validation."""
    source = "base_url"
    if base_url is None or not str(base_url).strip():
        env = os.environ.get(BASE_URL_ENV, "").strip()
        if env:
            base_url, source = env, BASE_URL_ENV
        else:
            base_url = DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"{source} must be an http:// or https:// URL, got scheme {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError(f"{source} has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(f"{source} must not contain userinfo (user:password@)")
    if parts.query or url.rstrip("/").endswith("?"):
        raise ValueError(f"{source} must not contain a query string")
    if parts.fragment or "#" in url:
        raise ValueError(f"{source} must not contain a fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{source} has an invalid port") from exc
    return url.rstrip("/"), source


def check_transport_security(base_url: str, source: str, api_key: str | None) -> None:
    """Refuse to send a key in clear text over the network; loopback (the emulator) is fine."""
    parts = urlsplit(base_url)
    if api_key and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise ValueError(
            f"{source} uses plain http:// to a non-loopback host; the API key would travel "
            "unencrypted. Use https://, or pass allow_insecure_http=True if you really mean it"
        )
