"""Fuzzing the decoders with hypothesis (issue 10: "never another exception type, never a hang").

The NDJSON splitter and the exec frame decoder are pure: they are called directly with any
chunking of valid streams (the values must come out exactly) and of garbage (values or one
``ProtocolError``). The JSend decoder is fuzzed both as functions (``make_api_error``,
``_response.decode_jsend``) and end to end through a real aiohttp server answering any status
with any body; pagination likewise (``parse_page``, then a ``Pager`` walking any page sequence a
server serves). Every run is deterministic (``derandomize=True``) and moderate in size.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _servers import run_app
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from createos_sandbox_async import AsyncSession, RetryPolicy, Timeouts
from createos_sandbox_async._exec_wire import ExecEvent, FrameParser
from createos_sandbox_async._ndjson import EXEC_HEARTBEAT, NDJSONDecoder
from createos_sandbox_async._pagination import Pager, parse_page
from createos_sandbox_async._response import decode_jsend
from createos_sandbox_async.errors import APIError, CreateosError, ProtocolError, make_api_error

pytestmark = pytest.mark.timeout(600)


def fuzz(examples: int) -> settings:
    """Deterministic, moderate, no per-example deadline (2-core CI under load)."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- strategies ------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(_text, json_values, max_size=5)


def _split(raw: bytes, cuts: list[float]) -> list[bytes]:
    """``raw`` cut at the given fractions of its length (duplicates: empty chunks dropped)."""
    points = sorted({0, len(raw), *(int(c * len(raw)) for c in cuts)})
    return [raw[a:b] for a, b in itertools.pairwise(points)]


chunk_cuts = st.lists(st.floats(0, 1), max_size=12)


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


@contextmanager
def counted(figures: Any, name: str) -> Iterator[Counter]:
    """Count the examples a property ran and report them under ``name``."""
    counter = Counter()
    yield counter
    figures.section = "fuzz"
    figures.set(name, counter.n)


def _decode_all(decoder: NDJSONDecoder, chunks: list[bytes], pops: list[int]) -> list[Any]:
    """Feed chunks through push/pop with varying batch sizes, then finish."""
    out: list[Any] = []
    for i, chunk in enumerate(chunks):
        decoder.push(chunk)
        limit = pops[i % len(pops)] if pops else 256
        while decoder.queued:
            out += decoder.pop(limit)
    out += decoder.finish()
    return out


# -- NDJSON splitter -------------------------------------------------------------------------------


def test_ndjson_any_chunking_gives_back_exactly_the_values(reliability_figures: Any) -> None:
    with counted(reliability_figures, "NDJSON streams, valid, any chunking") as seen:

        @fuzz(400)
        @given(
            values=st.lists(json_objects, max_size=12),
            noise=st.lists(st.sampled_from([b"", b"hb", b"blank", b"crlf", b"sse"]), max_size=12),
            cuts=chunk_cuts,
            pops=st.lists(st.integers(1, 8), max_size=3),
            trailing_newline=st.booleans(),
        )
        def check(
            values: list[Any],
            noise: list[bytes],
            cuts: list[float],
            pops: list[int],
            trailing_newline: bool,
        ) -> None:
            seen()
            lines: list[bytes] = []
            for i, value in enumerate(values):
                extra = noise[i] if i < len(noise) else b""
                if extra == b"hb":
                    lines.append(EXEC_HEARTBEAT)
                elif extra == b"blank":
                    lines.append(b"")
                elif extra == b"sse":
                    lines.append(b": keep-alive")
                line = json.dumps(value).encode()
                lines.append(line + b"\r" if extra == b"crlf" else line)
            raw = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
            chunks = _split(raw, cuts)
            assert _decode_all(NDJSONDecoder(), chunks, pops) == values
            decoder = NDJSONDecoder()
            fed = [v for chunk in chunks for v in decoder.feed(chunk)] + decoder.finish()
            assert fed == values

        check()


def test_ndjson_garbage_gives_values_or_one_protocol_error(reliability_figures: Any) -> None:
    with counted(reliability_figures, "NDJSON streams, garbage bytes, any chunking") as seen:

        @fuzz(400)
        @given(
            raw=st.binary(max_size=600)
            | st.lists(
                st.sampled_from([b"{", b"}", b"\n", b'"', b"hb", b"data:", b"\r", b"1"])
            ).map(b"".join),
            cuts=chunk_cuts,
            max_line=st.integers(1, 64) | st.just(1 << 20),
        )
        def check(raw: bytes, cuts: list[float], max_line: int) -> None:
            seen()
            try:
                values = _decode_all(NDJSONDecoder(max_line=max_line), _split(raw, cuts), [3])
            except ProtocolError:
                return
            assert isinstance(values, list)

        check()


# -- exec frame decoder ------------------------------------------------------------------------

_frame_values = st.one_of(json_values, _text, st.integers(-300, 300), st.booleans())
frames = st.dictionaries(
    st.sampled_from(["stdout", "stderr", "hb", "error", "exit_code", "other"]),
    _frame_values,
    max_size=3,
)


def _parse(chunks: list[bytes], limit: int) -> tuple[list[ExecEvent], int | None]:
    """Events with consecutive output of one stream glued: the parser merges frames of one
    batch, so event boundaries (never the text or its order) depend on the chunking."""
    parser = FrameParser()
    events: list[ExecEvent] = []
    for chunk in chunks:
        parser.push(chunk)
        while parser.queued:
            events += parser.pop(limit)
    events += parser.finish()
    glued: list[ExecEvent] = []
    for ev in events:
        if glued and ev.kind in ("stdout", "stderr") and glued[-1].kind == ev.kind:
            glued[-1] = ExecEvent(ev.kind, glued[-1].data + ev.data)
        else:
            glued.append(ev)
    return glued, parser.exit_code


def test_exec_frames_any_chunking_same_events_or_one_protocol_error(
    reliability_figures: Any,
) -> None:
    with counted(reliability_figures, "exec frame streams, any frames, any chunking") as seen:

        @fuzz(400)
        @given(
            frame_list=st.lists(frames | json_values, max_size=10),
            cuts=chunk_cuts,
            limit=st.integers(1, 300),
        )
        def check(frame_list: list[Any], cuts: list[float], limit: int) -> None:
            seen()
            raw = b"".join(json.dumps(f).encode() + b"\n" for f in frame_list)
            try:
                whole = _parse([raw], 256)
            except ProtocolError:
                with pytest.raises(ProtocolError):
                    _parse(_split(raw, cuts), limit)
                return
            assert _parse(_split(raw, cuts), limit) == whole
            assert all(type(ev) is ExecEvent for ev in whole[0])

        check()


# -- JSend decoder ---------------------------------------------------------------------------------

envelopes = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"status": st.sampled_from(["success", "fail", "error", "other"])},
        optional={"data": json_values, "message": json_values, "code": json_values},
    ),
)
bodies = st.one_of(
    envelopes.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b"<html>502 Bad Gateway</html>"),
)


def test_make_api_error_maps_any_status_and_body_to_an_api_error(reliability_figures: Any) -> None:
    with counted(reliability_figures, "error responses, any status and body (functions)") as seen:

        @fuzz(500)
        @given(
            status=st.integers(100, 999),
            body=bodies,
            retry_after=st.none() | _text | st.sampled_from(["1", "1e309", "-5", "nan"]),
        )
        def check(status: int, body: bytes, retry_after: str | None) -> None:
            seen()
            err = make_api_error(
                status, body, method="GET", endpoint="/x", request_id=None, retry_after=retry_after
            )
            assert isinstance(err, APIError) and err.status == status
            assert isinstance(str(err), str) and isinstance(repr(err), str)
            ra = getattr(err, "retry_after", None)
            assert ra is None or ra >= 0

        check()


class _Headers:
    """The one attribute ``decode_jsend`` reads from a response: its headers."""

    headers: dict[str, str] = {"Content-Type": "application/json"}  # noqa: RUF012


def test_jsend_success_decoder_gives_data_or_one_protocol_error(reliability_figures: Any) -> None:
    with counted(reliability_figures, "2xx bodies, any JSON or bytes (functions)") as seen:

        @fuzz(500)
        @given(status=st.integers(200, 299), body=bodies)
        def check(status: int, body: bytes) -> None:
            seen()
            try:
                decode_jsend(status, body, "GET", "/x", _Headers())  # type: ignore[arg-type]
            except ProtocolError:
                pass

        check()


class Scripted:
    """An aiohttp server whose next answers a test sets before each request."""

    def __init__(self) -> None:
        self.answers: list[web.Response] = []
        self.served = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.served += 1
        if self.answers:
            return self.answers.pop(0)
        return web.json_response(
            {"status": "success", "data": {"data": [], "pagination": {"total": 0}}}
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def _run_against_server(body: Callable[[Scripted, AsyncSession, asyncio.Runner], None]) -> None:
    """Start one server and one session on a private loop; ``body`` runs the examples on it."""
    scripted = Scripted()
    with asyncio.Runner() as runner:
        cm = run_app(scripted.app())
        base_url = runner.run(cm.__aenter__())
        session = AsyncSession(
            "sk_fuzz",
            base_url=base_url,
            retry=RetryPolicy(max_retries=0),
            timeout=Timeouts(request=5.0, stream_idle=5.0),
        )
        try:
            body(scripted, session, runner)
        finally:
            runner.run(session.aclose())
            runner.run(cm.__aexit__(None, None, None))


statuses = st.integers(200, 599).filter(lambda s: s not in (204, 205, 304))


def test_any_status_and_body_over_the_wire_is_a_value_or_one_typed_error(
    reliability_figures: Any,
) -> None:
    with counted(
        reliability_figures, "HTTP responses, any status and body (over a socket)"
    ) as seen:

        def examples(scripted: Scripted, session: AsyncSession, runner: asyncio.Runner) -> None:
            @fuzz(150)
            @given(
                status=statuses,
                body=bodies,
                ctype=st.sampled_from(["application/json", "text/html", "application/x-ndjson"]),
            )
            def check(status: int, body: bytes, ctype: str) -> None:
                seen()
                scripted.answers.append(web.Response(status=status, body=body, content_type=ctype))

                async def call() -> None:
                    async with asyncio.timeout(10):  # never a hang
                        await session.request("GET", "/v1/fuzz")

                try:
                    runner.run(call())
                except CreateosError:
                    pass

            check()

        _run_against_server(examples)


# -- pagination ------------------------------------------------------------------------------------

pages = st.one_of(
    json_values,
    st.lists(json_values, max_size=4),
    st.fixed_dictionaries(
        {"data": st.lists(json_values, max_size=4) | json_values},
        optional={
            "pagination": st.fixed_dictionaries({"total": st.integers(-2, 20) | json_values})
            | json_values
        },
    ),
    st.dictionaries(
        st.sampled_from(["shapes", "templates", "disks", "x"]), json_values, max_size=2
    ),
)


def test_parse_page_any_json_gives_items_or_one_protocol_error(reliability_figures: Any) -> None:
    with counted(reliability_figures, "list pages, any JSON (functions)") as seen:

        @fuzz(500)
        @given(page=pages)
        def check(page: Any) -> None:
            seen()
            try:
                items, total = parse_page(page, ("shapes", "templates", "disks"), "/x")
            except ProtocolError:
                return
            assert isinstance(items, list)
            assert total is None or (isinstance(total, int) and total >= 0)

        check()


def test_pager_over_any_page_sequence_ends_with_items_or_one_typed_error(
    reliability_figures: Any,
) -> None:
    with counted(reliability_figures, "page sequences walked by a Pager (over a socket)") as seen:

        def examples(scripted: Scripted, session: AsyncSession, runner: asyncio.Runner) -> None:
            @fuzz(120)
            @given(sequence=st.lists(pages, min_size=1, max_size=5), typed=st.booleans())
            def check(sequence: list[Any], typed: bool) -> None:
                seen()
                scripted.answers = [
                    web.json_response({"status": "success", "data": page}) for page in sequence
                ]
                scripted.served = 0

                async def walk() -> list[Any]:
                    async with asyncio.timeout(10):  # never a hang
                        if typed:  # items converted to models: garbage must stay typed
                            return [sb async for sb in session.sandboxes.list()]
                        pager = Pager(session._transport, "/v1/things", lambda item: item)
                        return await pager.to_list()

                try:
                    items = runner.run(walk())
                except CreateosError:
                    return
                finally:
                    scripted.answers = []
                # a page sequence ends: never more requests than pages served plus the empty one
                assert scripted.served <= len(sequence) + 1
                assert isinstance(items, list)

            check()

        _run_against_server(examples)
