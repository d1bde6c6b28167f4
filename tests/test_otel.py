"""OpenTelemetry spans (createos_sandbox_async.otel), read back from the SDK's in-memory exporter:
one span per call and per stream, with the route template, status, retries, sandbox id and sizes,
and never a secret, even from a server that echoes secrets everywhere it can."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _extras import need
from _servers import API_KEY, error, ok, serve
from aiohttp import web

from createos_sandbox_async import AsyncSession, NotFoundError, ValidationError
from createos_sandbox_async.otel import ROUTES, instrument, route_template

pytestmark = pytest.mark.anyio

ENV_SECRET = "env-value-7d1f0c9e3b"


@pytest.fixture
def exporter() -> Iterator[Any]:
    need("opentelemetry.sdk.trace", "otel")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    yield InMemorySpanExporter()


@pytest.fixture
def provider(exporter: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


@pytest.fixture
async def session(createos_server: Any, provider: Any) -> AsyncIterator[AsyncSession]:
    s = AsyncSession(api_key=createos_server.add_tenant(), base_url=createos_server.base_url)
    async with instrument(s, tracer_provider=provider):
        yield s


def spans(exporter: Any) -> list[Any]:
    return list(exporter.get_finished_spans())


def test_route_templates_map_every_route_back_to_itself() -> None:
    values = {
        "{id}": "sb_01K9",
        "{ip}": "10.0.0.7",
        "{network_id}": "net_1",
        "{disk}": "disk_2",
        "{port}": "8080",
        "{process_id}": "proc_3",
        "{window_id}": "0x4",
        "{screen_id}": "1",
        "{template_id}": "tpl_5",
    }
    for template in ROUTES:
        path = template
        for name, value in values.items():
            path = path.replace(name, value)
        assert route_template(path) == template, path
    assert route_template("/v1/sandboxes/sb_1/computer/windows/current") == (
        "/v1/sandboxes/{id}/computer/windows/current"
    )
    assert route_template("/v1/not-a-route/secret-token") is None


async def test_calls_and_streams_are_spans_with_templates_ids_and_sizes(
    session: AsyncSession, exporter: Any
) -> None:
    sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
    async with sb:
        await sb.exec("echo", ["hi"])
        async with sb.exec_stream("bash", ["-c", "printf 12345"]) as stream:
            async for _event in stream:
                await sb.refresh()  # a call while the stream of the same task is open
        await sb.files.upload("/tmp/f", b"x" * 1000)
        assert len(await sb.files.download("/tmp/f")) == 1000
    by_name: dict[str, list[Any]] = {}
    for span in spans(exporter):
        by_name.setdefault(span.name, []).append(span)
    assert set(by_name) >= {
        "POST /v1/sandboxes",
        "POST /v1/sandboxes/{id}/exec",
        "GET /v1/sandboxes/{id}",
        "PUT /v1/sandboxes/{id}/files",
        "GET /v1/sandboxes/{id}/files",
        "DELETE /v1/sandboxes/{id}",
    }
    for span in spans(exporter):
        attrs = span.attributes
        assert span.kind.name == "CLIENT" and span.end_time is not None
        assert attrs["http.request.method"] == span.name.split()[0]
        assert attrs["url.template"] == span.name.split()[1]
        assert attrs["server.address"] == "127.0.0.1" and attrs["http.response.status_code"] == 200
        assert "error.type" not in attrs
        if attrs["url.template"].startswith("/v1/sandboxes/{id}"):
            assert attrs["createos.sandbox.id"] == sb.id
        assert sb.id not in span.name
    execs = by_name["POST /v1/sandboxes/{id}/exec"]
    assert sorted(s.attributes["createos.stream"] for s in execs) == [False, True]
    streamed = next(s for s in execs if s.attributes["createos.stream"])
    assert streamed.attributes["http.response.body.size"] > len("12345")  # NDJSON frames
    assert len(by_name["GET /v1/sandboxes/{id}"]) >= 1
    upload = by_name["PUT /v1/sandboxes/{id}/files"][0]
    assert upload.attributes["http.request.body.size"] == 1000


async def test_retries_are_counted_on_one_span_and_errors_are_marked(
    createos_server: Any, createos_faults: Any, session: AsyncSession, exporter: Any
) -> None:
    sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
    async with sb:
        createos_faults.status(503, route=f"/v1/sandboxes/{sb.id}", method="GET", times=2)
        exporter.clear()
        await sb.refresh()
        (span,) = spans(exporter)
        assert span.attributes["http.request.resend_count"] == 2
        assert span.attributes["http.response.status_code"] == 200
        assert span.status.is_ok
    exporter.clear()
    with pytest.raises(NotFoundError):
        await session.sandboxes.get("sb_missing")
    (span,) = spans(exporter)
    assert span.attributes["error.type"] == "NotFoundError"
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code.name == "ERROR" and not span.status.description


async def test_a_users_span_is_the_parent(
    session: AsyncSession, provider: Any, exporter: Any
) -> None:
    tracer = provider.get_tracer("user")
    with tracer.start_as_current_span("job") as job:
        await session.whoami()
    whoami = next(s for s in spans(exporter) if s.name == "GET /v1/whoami")
    assert whoami.parent is not None and whoami.parent.span_id == job.get_span_context().span_id


async def test_off_unless_instrumented(createos_server: Any, exporter: Any, provider: Any) -> None:
    from opentelemetry import trace

    # even with a global provider set, a session that was not instrumented emits nothing
    trace.set_tracer_provider(provider)
    async with AsyncSession(
        api_key=createos_server.api_key, base_url=createos_server.base_url
    ) as s:
        await s.whoami()
        assert spans(exporter) == []
        instrument(s)
        instrument(s)  # twice: still one span per call
        await s.whoami()
    assert [span.name for span in spans(exporter)] == ["GET /v1/whoami"]


async def test_no_secret_reaches_a_span_even_from_an_echoing_server(
    provider: Any, exporter: Any
) -> None:
    """The server puts the API key and env values in request ids, bodies and error messages."""

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        echoed = f"{request.headers.get('X-Api-Key')} {body.decode(errors='replace')}"
        headers = {"X-Request-Id": f"rid-{API_KEY}-{ENV_SECRET}"}
        if request.method == "POST" and request.path == "/v1/sandboxes":
            return ok({"id": "sb_1", "name": echoed[:50], "status": "running"}, headers=headers)
        return error(400, f"bad request: {echoed}", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serve(app) as srv, instrument(srv.session(), tracer_provider=provider) as s:
        sb = await s.sandboxes.create(shape="s-1vcpu-256mb", envs={"TOKEN": ENV_SECRET})
        with pytest.raises(ValidationError):
            await sb.exec("env", env={"TOKEN": ENV_SECRET})
        with pytest.raises(ValidationError):
            await s.request("POST", f"/v1/x/{ENV_SECRET}", json={"env": {"A": ENV_SECRET}})
    dumped = [s.to_json() for s in spans(exporter)]
    assert len(dumped) == 3
    for text in dumped:
        assert API_KEY not in text and ENV_SECRET not in text, text
    rids = [json.loads(t)["attributes"].get("createos.request_id") for t in dumped]
    assert all(rid and "[redacted]" in rid for rid in rids), rids
