"""The incremental NDJSON decoder and the exec frame parser, fed by hand (no sockets here)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from createos_sandbox_async._exec_wire import ExecEvent, FrameParser
from createos_sandbox_async._ndjson import EXEC_HEARTBEAT, NDJSONDecoder
from createos_sandbox_async.errors import ProtocolError

LOADERS = [pytest.param(json.loads, id="stdlib"), pytest.param(None, id="default")]


def feed_all(dec: NDJSONDecoder, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for c in chunks:
        out.extend(dec.feed(c))
    out.extend(dec.finish())
    return out


def merged(events: list[ExecEvent]) -> list[ExecEvent]:
    """Consecutive stdout (stderr) events glued: what a stream means, whatever its batching."""
    out: list[ExecEvent] = []
    for ev in events:
        if out and ev.kind in ("stdout", "stderr") and out[-1].kind == ev.kind:
            out[-1] = ExecEvent(ev.kind, out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def parse(chunks: list[bytes], **kw: Any) -> tuple[list[ExecEvent], FrameParser]:
    p = FrameParser(**kw)
    events: list[ExecEvent] = []
    for c in chunks:
        events.extend(p.feed(c))
    events.extend(p.finish())
    return events, p


BODY = (
    b'{"stdout":"1\\n"}\n'
    b'{"hb":true}\n'
    b'{"stderr":"warn \xc3\xa9\\n"}\n'
    b'{"stdout":"a\\"b{\\"hb\\":true}"}\n'
    b'{"exit_code":3}\n'
)
EXPECTED = [
    ExecEvent("stdout", "1\n"),
    ExecEvent("stderr", "warn é\n"),
    ExecEvent("stdout", 'a"b{"hb":true}'),
    ExecEvent("exit", "", 3),
]


@pytest.mark.parametrize("loads", LOADERS)
def test_every_two_way_split_gives_the_same_values(loads: Any) -> None:
    whole = feed_all(NDJSONDecoder(loads=loads), [BODY])
    assert len(whole) == 4
    for cut in range(len(BODY) + 1):
        dec = NDJSONDecoder(loads=loads)
        assert feed_all(dec, [BODY[:cut], BODY[cut:]]) == whole, cut
        assert dec.heartbeats == 1


def test_one_byte_at_a_time() -> None:
    dec = NDJSONDecoder()
    values = feed_all(dec, [BODY[i : i + 1] for i in range(len(BODY))])
    assert values == feed_all(NDJSONDecoder(), [BODY])
    assert dec.heartbeats == 1


def test_events_from_a_stream_in_order() -> None:
    events, p = parse([BODY])
    assert events == EXPECTED
    assert p.exit_code == 3 and p.heartbeats == 1 and p.error is None


def test_heartbeats_never_reach_the_json_decoder() -> None:
    seen: list[bytes] = []

    def spy(b: bytes) -> Any:
        seen.append(b)
        return json.loads(b)

    dec = NDJSONDecoder(loads=spy)
    assert dec.feed(EXEC_HEARTBEAT + b"\n" + EXEC_HEARTBEAT + b"\n") == []
    assert dec.feed(b'{"stdout":"x"}\n' + EXEC_HEARTBEAT + b"\n") == [{"stdout": "x"}]
    assert dec.heartbeats == 3
    assert all(b"hb" not in s for s in seen)
    assert len(seen) == 1  # one decode for the whole chunk


def test_blank_sse_and_crlf_lines() -> None:
    body = (
        b"\n"
        b": keep-alive comment\n"
        b"event: message\n"
        b"id: 7\n"
        b"retry: 1000\n"
        b'data: {"stdout":"a"}\r\n'
        b"\r\n"
        b'data:{"stderr":"b"}\n'
        b"data: \n"
        b"   \n"
        b'data: {"hb":true}\n'
        b'{"exit_code":0}\r\n'
    )
    dec = NDJSONDecoder()
    assert feed_all(dec, [body]) == [{"stdout": "a"}, {"stderr": "b"}, {"exit_code": 0}]
    assert dec.heartbeats == 1


def test_last_line_without_newline_is_decoded_at_eof() -> None:
    dec = NDJSONDecoder()
    assert dec.feed(b'{"stdout":"a"}\n{"exit_code":0}') == [{"stdout": "a"}]
    assert dec.pending == len(b'{"exit_code":0}')
    assert dec.finish() == [{"exit_code": 0}]
    assert dec.finish() == []


def test_invalid_json_names_the_line_but_not_its_content() -> None:
    dec = NDJSONDecoder()
    with pytest.raises(ProtocolError, match="line 3") as info:
        dec.feed(b'{"stdout":"a"}\n{"stdout":"b"}\n{"stdout":"SECRET-VALUE\n')
    assert "SECRET" not in str(info.value)


def test_two_values_on_one_line_are_rejected() -> None:
    with pytest.raises(ProtocolError, match="line 2"):
        NDJSONDecoder().feed(b'{"stdout":"a"}\n{"stdout":"b"},{"stdout":"c"}\n')


def test_invalid_utf8_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="line 1"):
        NDJSONDecoder().feed(b'{"stdout":"\xff\xfe"}\n')


def test_truncated_last_line_at_eof_is_a_protocol_error() -> None:
    dec = NDJSONDecoder()
    assert dec.feed(b'{"stdout":"a"}\n{"stdo') == [{"stdout": "a"}]
    with pytest.raises(ProtocolError):
        dec.finish()


def test_line_bound_trips_before_the_line_is_buffered() -> None:
    dec = NDJSONDecoder(max_line=100)
    dec.feed(b"x" * 60)
    with pytest.raises(ProtocolError, match="max_line=100"):
        dec.feed(b"x" * 60)  # 120 pending bytes, no newline yet


def test_line_bound_on_a_complete_line_inside_one_chunk() -> None:
    dec = NDJSONDecoder(max_line=100)
    assert dec.feed(b'{"stdout":"' + b"y" * 80 + b'"}\n') == [{"stdout": "y" * 80}]
    with pytest.raises(ProtocolError, match="max_line=100"):
        dec.feed(b'{"stdout":"' + b"y" * 200 + b'"}\n{"exit_code":0}\n')


def test_line_bound_on_the_unfinished_tail_of_a_chunk() -> None:
    dec = NDJSONDecoder(max_line=100)
    with pytest.raises(ProtocolError, match="max_line=100"):
        dec.feed(b'{"stdout":"a"}\n' + b"z" * 101)


def test_a_line_of_exactly_max_line_is_fine() -> None:
    line = b'{"stdout":"' + b"q" * 87 + b'"}'
    assert len(line) == 100
    dec = NDJSONDecoder(max_line=100)
    assert feed_all(dec, [line[:50], line[50:] + b"\n"]) == [{"stdout": "q" * 87}]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_line_is_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_line"):
        NDJSONDecoder(max_line=bad)


def test_multi_key_frame_is_split_in_wire_order() -> None:
    frame = {"exit_code": 2, "error": "no such file", "stderr": "e", "stdout": "o", "hb": True}
    events, p = parse([json.dumps(frame).encode() + b"\n"])
    assert events == [
        ExecEvent("stdout", "o"),
        ExecEvent("stderr", "e"),
        ExecEvent("error", "no such file"),
        ExecEvent("exit", "", 2),
    ]
    assert p.heartbeats == 1 and p.error == "no such file" and p.exit_code == 2


def test_zero_values_mean_not_this_kind() -> None:
    body = (
        b'{"hb":false}\n{"stdout":""}\n{"stderr":null}\n{"error":""}\n'
        b'{"stdout":"x","exit_code":null}\n{"unknown":1}\n{}\n{"hb": true}\n{"exit_code":0}\n'
    )
    events, p = parse([body])
    assert events == [ExecEvent("stdout", "x"), ExecEvent("exit", "", 0)]
    assert p.heartbeats == 1  # the spaced heartbeat went through JSON and still counted


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"[1,2]", "not a JSON object"),
        (b"42", "not a JSON object"),
        (b'{"stdout":5}', "'stdout' is a int"),
        (b'{"stderr":["a"]}', "'stderr' is a list"),
        (b'{"exit_code":"0"}', "exit_code is a str"),
        (b'{"exit_code":true}', "exit_code is a bool"),
    ],
)
def test_frames_off_the_wire_format(line: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse([b'{"stdout":"ok"}\n' + line + b"\n"])


def test_error_frame_then_exit_frame() -> None:
    events, p = parse([b'{"error":"exec: not found"}\n{"exit_code":127}\n'])
    assert [e.kind for e in events] == ["error", "exit"]
    assert p.error == "exec: not found" and p.exit_code == 127


def test_exec_event_is_frozen_and_slotted() -> None:
    ev = parse([b'{"stdout":"x"}\n'])[0][0]
    assert type(ev) is ExecEvent  # built by the fast path, relabelled: no subclass leaks out
    assert ev == ExecEvent("stdout", "x", None)
    assert pickle.loads(pickle.dumps(ev)) == ev
    assert attrs.evolve(ev, data="y") == ExecEvent("stdout", "y")
    assert not hasattr(ev, "__dict__")
    with pytest.raises(AttributeError):
        ev.data = "y"  # type: ignore[misc]
    assert hash(ev) == hash(ExecEvent("stdout", "x"))


# ---------------------------------------------------------------- hypothesis

text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from('\n"\\{}'),
    min_size=1,
    max_size=40,
)
frame = st.one_of(
    st.tuples(st.just("stdout"), text),
    st.tuples(st.just("stderr"), text),
    st.tuples(st.just("hb"), st.just(True)),
)


def _encode(kind: str, value: object, style: int) -> bytes:
    obj = {kind: value}
    if style == 0:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    if style == 1:
        return json.dumps(obj, ensure_ascii=False).encode() + b"\r\n"
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.tuples(frame, st.integers(0, 2)), max_size=30),
    exit_code=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    batch=st.integers(1, 8),
)
def test_any_frames_cut_anywhere_parse_to_the_same_events(
    frames: list[tuple[tuple[str, object], int]], exit_code: int, cuts: list[int], batch: int
) -> None:
    body = b"".join(_encode(k, v, style) for (k, v), style in frames)
    body += _encode("exit_code", exit_code, 0)
    expected = [ExecEvent(k, v) for (k, v), _ in frames if k != "hb"]  # type: ignore[arg-type]
    expected.append(ExecEvent("exit", "", exit_code))
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    expected = merged([ev for ev in expected if ev.data or ev.kind == "exit"])
    events, p = parse(chunks)
    assert merged(events) == expected
    assert all(ev.data for ev in events if ev.kind != "exit")
    assert p.heartbeats == sum(1 for (k, _), _ in frames if k == "hb")
    assert p.exit_code == exit_code
    batched = FrameParser()
    events = []
    for c in chunks:
        batched.push(c)
        while batched.decoder.queued:
            events.extend(batched.pop(batch))
    events.extend(batched.finish())
    assert merged(events) == expected
    assert batched.heartbeats == p.heartbeats


def test_push_then_pop_in_batches_keeps_order_and_counts() -> None:
    lines = [json.dumps({"stdout": str(i)}).encode() for i in range(40)]
    body = b"\n".join([*lines[:4], EXEC_HEARTBEAT, *lines[4:]]) + b"\n"
    dec = NDJSONDecoder()
    cut = len(body) - 7
    complete = body.rfind(b"\n", 0, cut) + 1
    assert dec.push(body[:cut]) == complete == dec.queued  # bytes of whole lines, not decoded
    assert dec.pending == cut - complete
    got = dec.pop(1)
    pops = 1
    assert 0 < len(got) < 39 and dec.queued > 0
    dec.push(body[cut:])  # lines arriving before the queue is empty go behind it
    while dec.queued:
        got += dec.pop(1)
        pops += 1
    assert got == [{"stdout": str(i)} for i in range(40)]
    assert pops > 3  # batches, not one decode of everything
    assert dec.heartbeats == 1 and dec.pop() == [] and dec.finish() == []


@pytest.mark.parametrize("loads", LOADERS)
def test_heartbeat_lines_are_cut_out_wherever_they_are(loads: Any) -> None:
    hb = EXEC_HEARTBEAT
    a, b = b'{"stdout":"a"}', b'{"stdout":"b"}'
    not_hb = b'{"x":{"hb":true}}'  # contains the heartbeat bytes but is not a heartbeat line
    cases = [
        ([hb], []),
        ([hb, hb], []),
        ([hb, a], ["a"]),
        ([a, hb], ["a"]),
        ([a, hb, hb, b], ["a", "b"]),
        ([hb, a, hb, b, hb], ["a", "b"]),
        ([not_hb, hb, a], [{"x": {"hb": True}}, "a"]),
    ]
    for lines, want in cases:
        dec = NDJSONDecoder(loads=loads)
        got = dec.feed(b"\n".join(lines) + b"\n")
        assert [v.get("stdout", v) for v in got] == want, lines
        assert dec.heartbeats == lines.count(hb), lines


def test_batches_cut_between_lines_keep_line_numbers() -> None:
    good = [json.dumps({"stdout": "x" * i}).encode() for i in range(30)]
    dec = NDJSONDecoder()
    dec.push(b"\n".join([*good, EXEC_HEARTBEAT, b'{"stdout":x}']) + b"\n")
    got: list[Any] = []
    with pytest.raises(ProtocolError, match="line 32 "):
        while dec.queued:
            got += dec.pop(2)
    assert got == [{"stdout": "x" * i} for i in range(len(got))] and len(got) >= 20


def test_a_batch_of_events_stays_bounded_when_lines_get_shorter() -> None:
    # The decoder sizes batches in bytes from the lines seen so far: long lines, then short ones
    # make one oversized batch of frames, which the parser hands out as events in bounded parts.
    long = [json.dumps({"stdout": "L" * 2000}).encode() for _ in range(3)]
    short = [json.dumps({"stderr": str(i)}).encode() for i in range(3000)]
    p = FrameParser()
    p.push(b"\n".join([*long, *short, b'{"exit_code":0}']) + b"\n")
    events: list[ExecEvent] = []
    sizes = []
    while p.queued:
        batch = p.pop(100)
        sizes.append(len(batch))
        events += batch
    assert max(sizes) <= 200 and len(sizes) > 15
    assert "".join(e.data for e in events[1:-1]) == "".join(str(i) for i in range(3000))
    assert [e.kind for e in events[:2]] == ["stdout", "stderr"]
    assert events[-1] == ExecEvent("exit", "", 0) and p.exit_code == 0


def test_frames_of_one_read_merge_per_run_keeping_every_byte_and_the_order() -> None:
    # Runs of stdout and stderr, heartbeats among them, in one read: one event per run, each
    # run's text whole and in order, the interleaving kept, heartbeats gone, the exit last.
    runs = [("stdout", 5), ("stderr", 2), ("stdout", 1), ("stderr", 7), ("stdout", 3)]
    lines: list[bytes] = []
    want: list[ExecEvent] = []
    n = 0
    for kind, count in runs:
        texts = [f'{kind} {n + k} é\t"q"\n' for k in range(count)]
        n += count
        for k, text in enumerate(texts):
            lines.append(json.dumps({kind: text}).encode())
            if k == 1:
                lines.append(EXEC_HEARTBEAT)
        want.append(ExecEvent(kind, "".join(texts)))  # type: ignore[arg-type]
    lines.append(b'{"exit_code":4}')
    want.append(ExecEvent("exit", "", 4))
    events, p = parse([b"\n".join(lines) + b"\n"])
    assert merged(events) == want
    # Within one batch the merge is complete; heartbeats end a batch, so a run they split may
    # come as two events of the same kind, never more than one per heartbeat.
    assert len(events) <= len(want) + p.heartbeats
    assert p.heartbeats == sum(1 for _, c in runs if c > 1) and p.exit_code == 4


def test_merging_does_not_cross_an_exit_or_error_frame() -> None:
    body = b'{"stdout":"a"}\n{"error":"boom"}\n{"stdout":"b"}\n{"exit_code":1}\n{"stdout":"c"}\n'
    events, _ = parse([body])
    assert events[:4] == [
        ExecEvent("stdout", "a"),
        ExecEvent("error", "boom"),
        ExecEvent("stdout", "b"),
        ExecEvent("exit", "", 1),
    ]


def test_a_non_string_output_value_in_a_batch_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="'stdout' is a int"):
        parse([b'{"stdout":"a"}\n{"stdout":5}\n{"exit_code":0}\n'])
    with pytest.raises(ProtocolError, match="not a JSON object"):
        parse([b'{"stdout":"a"}\n[1]\n'])


def test_finish_decodes_queued_lines_and_the_unterminated_tail() -> None:
    dec = NDJSONDecoder()
    long = "a" * 300  # longer than a batch of one line is first assumed to be
    dec.push(b'{"stdout":"' + long.encode() + b'"}\n{"stdout":"b"}\n{"exit_code":0}')
    assert dec.pop(1) == [{"stdout": long}]
    assert dec.finish() == [{"stdout": "b"}, {"exit_code": 0}]


def test_bad_line_number_counts_heartbeats_and_earlier_chunks() -> None:
    dec = NDJSONDecoder()
    assert dec.feed(b'{"stdout":"a"}\n' + EXEC_HEARTBEAT + b"\n") == [{"stdout": "a"}]
    with pytest.raises(ProtocolError, match="line 4 "):
        dec.feed(EXEC_HEARTBEAT + b'\n{"stdout":x}\n')


def test_a_line_across_two_chunks_comes_first_and_the_second_chunk_is_not_copied() -> None:
    dec = NDJSONDecoder()
    dec.push(b'{"stdout":"a"}\n{"stdo')
    assert dec.pop(100) == [{"stdout": "a"}]
    second = b'ut":"b"}\n{"stdout":"c"}\n{"stdout":"d"}\n{"std'
    assert dec.push(second) == len(b'{"stdout":"b"}\n{"stdout":"c"}\n{"stdout":"d"}\n')
    assert dec._block is second  # queued in place: only the straddling line was joined
    assert dec.pop(100) == [{"stdout": "b"}]  # the straddling line, on its own
    assert dec.pop(100) == [{"stdout": "c"}, {"stdout": "d"}]
    assert dec.queued == 0 and dec.pending == 5
    assert dec.feed(b'err":"e"}\n') == [{"stderr": "e"}]


def test_a_straddling_line_counts_in_line_numbers_heartbeats_and_the_line_bound() -> None:
    dec = NDJSONDecoder()
    dec.push(b'{"stdout":"a"}\n' + EXEC_HEARTBEAT[:4])
    dec.pop(100)
    dec.push(EXEC_HEARTBEAT[4:] + b'\n{"stdout":"b"}\n{"stdout":x}\n')
    got: list[Any] = []
    with pytest.raises(ProtocolError, match="line 4 "):
        while dec.queued:
            got += dec.pop(100)
    assert got == [] and dec.heartbeats == 1  # the bad line poisons its batch, "b" included
    bounded = NDJSONDecoder(max_line=20)
    bounded.push(b'{"stdout":"' + b"y" * 8)
    with pytest.raises(ProtocolError, match="max_line=20"):
        bounded.push(b'yyyy"}\n{"stdout":"z"}\n')  # 25 bytes once joined
