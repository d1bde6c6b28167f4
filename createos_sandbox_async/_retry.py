"""When to send a request again, and how long to wait first (WIRE §7).

The rule that matters: a POST or PATCH is resent only when the server provably did not process it
(429, 503). Everything else about a create or an exec could double-bill or double-run.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import random
import time

import attrs

from ._validate import attrs_check, check_int, check_non_negative_seconds

__all__ = ["RetryPolicy", "parse_retry_after"]

#: Methods that can be sent twice without changing the outcome.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: Statuses retried for idempotent methods only.
_IDEMPOTENT_STATUSES = frozenset({408, 500, 502, 504})
#: Statuses retried for every method: the server did not process the request.
_ALWAYS_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds (fractions allowed) or an HTTP-date, >= 0."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@attrs.frozen
class RetryPolicy:
    """Which failures are retried and the backoff between attempts.

    ``delay = min(base * 2**attempt + random() * base, cap)`` (attempt 0 = first retry; the
    random part only with ``jitter``). A parsable ``Retry-After`` replaces the computed delay up
    to ``max_retry_after`` seconds; a server asking for longer gets no retry: the call raises its
    typed error (``retry_after`` set) at once rather than sleep for as long as a hostile or broken
    server says. ``retry_timeouts`` also retries idempotent requests whose attempt timed out.
    ``RetryPolicy(max_retries=0)`` turns retries off. A call's deadline bounds every wait too.
    """

    max_retries: int = attrs.field(default=2, validator=attrs_check(check_int, minimum=0))
    base: float = attrs.field(default=0.5, validator=attrs_check(check_non_negative_seconds))
    cap: float = attrs.field(default=30.0, validator=attrs_check(check_non_negative_seconds))
    jitter: bool = True
    retry_timeouts: bool = True
    max_retry_after: float = attrs.field(
        default=20.0, validator=attrs_check(check_non_negative_seconds)
    )

    def honours(self, retry_after: float | None) -> bool:
        """False when the server asked for a longer wait than this policy ever sleeps."""
        return retry_after is None or retry_after <= self.max_retry_after

    def retries_status(self, method: str, status: int) -> bool:
        """True when a response with ``status`` may be resent (method-aware, WIRE §7)."""
        if status in _ALWAYS_STATUSES:
            return True
        return status in _IDEMPOTENT_STATUSES and method in IDEMPOTENT_METHODS

    def retries_connection_error(self, method: str) -> bool:
        """True when a request that got no response may be resent: idempotent methods only."""
        return method in IDEMPOTENT_METHODS

    def retries_timeout(self, method: str) -> bool:
        """True when a timed-out attempt may be resent."""
        return self.retry_timeouts and method in IDEMPOTENT_METHODS

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return retry_after
        computed = self.base * 2.0**attempt
        if self.jitter:
            computed += random.random() * self.base
        return min(computed, self.cap)

    def parse_retry_after(self, value: str | None) -> float | None:
        """``Retry-After`` header -> seconds, or None when absent or unparsable."""
        return parse_retry_after(value)
