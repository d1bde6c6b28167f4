"""OpenTelemetry spans for every API call and stream of a session (the ``otel`` extra).

Off unless you ask::

    from createos_sandbox_async import AsyncSession
    from createos_sandbox_async.otel import instrument

    session = instrument(AsyncSession())        # spans through the global tracer provider

One CLIENT span per call (all its retries included) and per stream (from the request until the
stream is closed), named ``"{method} {route template}"``, e.g. ``"POST /v1/sandboxes/{id}/exec"``.
Attributes follow the OpenTelemetry HTTP client conventions where they exist:
``http.request.method``, ``url.template``, ``server.address``, ``server.port``,
``http.response.status_code`` (of the last attempt), ``http.request.resend_count`` (retries,
when any), ``http.request.body.size`` / ``http.response.body.size`` (when known; a stream's is
the bytes read), ``error.type`` (the exception's class name, or the status code); and
``createos.sandbox.id``, ``createos.stream``, ``createos.request_id``.

Never in a span: the raw path (ids are in ``url.template``'s place holders; the sandbox id is its
own attribute), headers, query strings, bodies, exception messages. The request id comes from
the transport, which redacts secrets a server might echo into it.

Built on the session's hooks (``Hooks``): ``on_request`` opens the span of a call's first attempt,
``on_response`` / ``on_retry`` fill it in, ``on_complete`` ends it. Hooks run in the calling task,
so the open spans of a task are kept in a context variable (a stack: a call made while a stream
of the same task is open is its own span).
"""

from __future__ import annotations

import contextvars
import weakref
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ._transport import CompleteEvent, Hooks, RequestEvent, ResponseEvent, RetryEvent

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from .session import AsyncSession

__all__ = ["instrument", "route_template"]

_SCOPE: Final = "createos_sandbox_async"
_INSTRUMENTED: weakref.WeakSet[AsyncSession] = weakref.WeakSet()

#: Every route of the API (openapi.yaml), as templates.
ROUTES: Final = frozenset(
    {
        "/healthz",
        "/readyz",
        "/v1/whoami",
        "/v1/shapes",
        "/v1/rootfs",
        "/v1/hosts",
        "/v1/metrics",
        "/v1/metrics/timeseries",
        "/v1/sandboxes",
        "/v1/sandboxes/by-ip/{ip}",
        "/v1/sandboxes/{id}",
        "/v1/templates",
        "/v1/templates/{template_id}",
        "/v1/templates/{template_id}/logs",
        "/v1/networks",
        "/v1/networks/{network_id}",
        "/v1/disks",
        "/v1/disks/{disk}",
        "/self/pause",
        "/self/delete",
        *(
            "/v1/sandboxes/{id}/" + tail
            for tail in [
                "pause",
                "resume",
                "fork",
                "resize",
                "ssh-pubkeys",
                "egress",
                "bandwidth",
                "bandwidth/recharge",
                "networks",
                "networks/{network_id}",
                "disks",
                "disks/{disk}",
                "exec",
                "files",
                "access-token",
                "access-token/rotate",
                "metrics",
                "tunnel/{port}",
                "shell",
                "shell-ws",
                "processes",
                "processes/{process_id}",
                "processes/{process_id}/connect",
                "processes/{process_id}/input",
                "processes/{process_id}/stdin/close",
                "processes/{process_id}/resize",
                "processes/{process_id}/signal",
                "processes/{process_id}/wait",
                "computer/screenshot",
                "computer/screen",
                "computer/cursor",
                "computer/clipboard",
                "computer/open",
                "computer/launch",
                "computer/mouse/move",
                "computer/mouse/click",
                "computer/mouse/scroll",
                "computer/mouse/drag",
                "computer/mouse/down",
                "computer/mouse/up",
                "computer/keyboard/type",
                "computer/keyboard/press",
                "computer/keyboard/down",
                "computer/keyboard/up",
                "computer/windows",
                "computer/windows/current",
                "computer/windows/{window_id}",
                "computer/windows/{window_id}/geometry",
                "computer/windows/{window_id}/focus",
                "computer/windows/{window_id}/move",
                "computer/windows/{window_id}/resize",
                "computer/windows/{window_id}/maximize",
                "computer/windows/{window_id}/minimize",
                "computer/windows/{window_id}/restore",
                "computer/screens",
                "computer/screens/{screen_id}",
                "computer/screens/{screen_id}/connect",
                "computer/screens/{screen_id}/resize",
            ]
        ),
    }
)
#: A segment after one of these is a path parameter (unless it is a literal route segment).
_PARAM_AFTER: Final = {
    "sandboxes": "{id}",
    "by-ip": "{ip}",
    "networks": "{network_id}",
    "disks": "{disk}",
    "tunnel": "{port}",
    "processes": "{process_id}",
    "windows": "{window_id}",
    "screens": "{screen_id}",
    "templates": "{template_id}",
}
_LITERAL_AFTER: Final = {"sandboxes": {"by-ip"}, "windows": {"current"}}


def route_template(path: str) -> str | None:
    """The API route a path belongs to (``/v1/sandboxes/{id}/exec``), or None for another."""
    segments = path.split("?", 1)[0].strip("/").split("/")
    out: list[str] = []
    for i, seg in enumerate(segments):
        prev = segments[i - 1] if i else ""
        is_param = prev in _PARAM_AFTER and seg not in _LITERAL_AFTER.get(prev, ())
        # "/v1/sandboxes/{id}/networks/{network_id}" yes, "/v1/networks" (i == 1) no
        out.append(_PARAM_AFTER[prev] if is_param and i >= 2 else seg)
    template = "/" + "/".join(out)
    return template if template in ROUTES else None


def _sandbox_id(path: str, template: str | None) -> str | None:
    if template is None or not template.startswith("/v1/sandboxes/{id}"):
        return None
    return path.split("/")[3]


class _Call:
    """The span of one call in flight, and what is known about it so far."""

    __slots__ = ("method", "path", "retries", "span", "status")

    def __init__(self, method: str, path: str, span: Span) -> None:
        self.method = method
        self.path = path
        self.span = span
        self.retries = 0
        self.status: int | None = None


class _Tracer:
    """The four hooks; the open calls of each task live in ``self._open``."""

    def __init__(self, provider: TracerProvider | None, base_url: str) -> None:
        from opentelemetry import trace

        from . import __version__

        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=provider)
        url = urlsplit(base_url)
        self._server: dict[str, Any] = {"server.address": url.hostname or ""}
        port = url.port or (443 if url.scheme == "https" else 80)
        self._server["server.port"] = port
        self._open: contextvars.ContextVar[tuple[_Call, ...]] = contextvars.ContextVar(
            "createos_otel_open", default=()
        )

    def hooks(self) -> Hooks:
        return Hooks(self.on_request, self.on_response, self.on_retry, self.on_complete)

    def _top(self, method: str, path: str) -> _Call | None:
        stack = self._open.get()
        if stack and stack[-1].method == method and stack[-1].path == path:
            return stack[-1]
        return None

    def on_request(self, event: RequestEvent) -> None:
        if event.attempt:
            return  # a resend of the call whose span is open
        from opentelemetry.trace import SpanKind

        template = route_template(event.path)
        attributes: dict[str, Any] = {"http.request.method": event.method, **self._server}
        if template is not None:
            attributes["url.template"] = template
        sandbox = _sandbox_id(event.path, template)
        if sandbox is not None:
            attributes["createos.sandbox.id"] = sandbox
        if event.body_size is not None:
            attributes["http.request.body.size"] = event.body_size
        name = event.method if template is None else f"{event.method} {template}"
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        self._open.set((*self._open.get(), _Call(event.method, event.path, span)))

    def on_response(self, event: ResponseEvent) -> None:
        call = self._top(event.method, event.path)
        if call is None:
            return
        call.status = event.status
        span = call.span
        span.set_attribute("http.response.status_code", event.status)
        if event.request_id:
            span.set_attribute("createos.request_id", event.request_id)
        if event.content_length is not None:
            span.set_attribute("http.response.body.size", event.content_length)

    def on_retry(self, event: RetryEvent) -> None:
        call = self._top(event.method, event.path)
        if call is not None:
            call.retries += 1
            call.span.set_attribute("http.request.resend_count", call.retries)

    def on_complete(self, event: CompleteEvent) -> None:
        call = self._top(event.method, event.path)
        if call is None:
            return
        self._open.set(self._open.get()[:-1])
        from opentelemetry.trace import Status, StatusCode

        span = call.span
        span.set_attribute("createos.stream", event.stream)
        if event.stream and event.received is not None:
            span.set_attribute("http.response.body.size", event.received)
        error = event.error
        if error is None and call.status is not None and call.status >= 400:
            error = str(call.status)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR))  # no description: messages stay out
        span.end()


def instrument(
    session: AsyncSession, *, tracer_provider: TracerProvider | None = None
) -> AsyncSession:
    """Emit spans for every call of ``session`` from now on; returns the session.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace.set_tracer_provider``).
    Needs ``opentelemetry-api`` (``pip install 'createos-sandbox-async[otel]'``). Calling it
    twice on a session is a no-op.
    """
    if session in _INSTRUMENTED:
        return session
    tracer = _Tracer(tracer_provider, session._transport.base_url)
    session._transport.add_hooks(tracer.hooks())
    _INSTRUMENTED.add(session)
    return session
