"""exec / sh / exec_stream over real sockets against a purpose-built misbehaving server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _fake_exec_api import (
    OK_RESULT,
    FakeExecAPI,
    fail_body,
    frames,
    hang,
    pool_state,
    result_body,
)
from _servers import Attempts
from aiohttp import web

from createos_sandbox_async import (
    AsyncSession,
    CommandError,
    ExecEvent,
    ExecResult,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    StreamInterruptedError,
    StreamStalledError,
)
from createos_sandbox_async.errors import APIConnectionError, APITimeoutError, ValidationError
from createos_sandbox_async.exec import NO_EXIT_CODE, ExecStream
from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

STREAM = (
    b'{"stdout":"1\\n"}\n'
    b'{"hb":true}\n'
    b'{"stderr":"w\xc3\xa9\\n"}\n'
    b'{"stdout":"2\\n"}\n'
    b'{"exit_code":0}\n'
)
STREAM_EVENTS = [
    ExecEvent("stdout", "1\n"),
    ExecEvent("stderr", "wé\n"),
    ExecEvent("stdout", "2\n"),
    ExecEvent("exit", "", 0),
]


@pytest.fixture
async def api() -> AsyncIterator[FakeExecAPI]:
    async with FakeExecAPI() as server:
        yield server


@pytest.fixture
def sent() -> Attempts:
    """The attempts the session sends, counted client-side (the server may not see them all)."""
    return Attempts()


@pytest.fixture
async def session(api: FakeExecAPI, sent: Attempts) -> AsyncIterator[AsyncSession]:
    async with api.session(hooks=sent.hooks) as s:
        yield s


@pytest.fixture
async def sb(api: FakeExecAPI, session: AsyncSession) -> Any:
    return await api.sandbox(session)


# ---------------------------------------------------------------- buffered exec


async def test_exec_returns_the_result_and_sends_a_minimal_body(api: FakeExecAPI, sb: Any) -> None:
    res = await sb.exec("python3", ["-c", "print(1+1)"])
    assert res == ExecResult("2\n", "", 0, 12.5, None)
    assert res.ok
    [req] = api.exec_requests()
    assert req.path == "/v1/sandboxes/sb_01TESTTESTTESTTESTTESTTEST/exec"
    assert req.query == {}
    assert req.body == {"cmd": "python3", "args": ["-c", "print(1+1)"]}


async def test_exec_sends_stdin_and_env_only_when_given(api: FakeExecAPI, sb: Any) -> None:
    await sb.exec("cat")
    await sb.exec("cat", [], stdin=b"hi \xc3\xa9", env={"TOKEN": "v"})
    await sb.exec("cat", stdin="", env={})
    bodies = [r.body for r in api.exec_requests()]
    assert bodies == [
        {"cmd": "cat"},
        {"cmd": "cat", "stdin": "hi é", "env": {"TOKEN": "v"}},
        {"cmd": "cat"},
    ]


async def test_sh_runs_bash_lc(api: FakeExecAPI, sb: Any) -> None:
    await sb.sh("echo $((1+1)) | cat")
    assert api.exec_requests()[0].body == {"cmd": "bash", "args": ["-lc", "echo $((1+1)) | cat"]}


@pytest.mark.parametrize(
    ("script", "exc"), [(None, TypeError), (["ls"], TypeError), (" ", ValueError)]
)
async def test_sh_names_a_bad_script_before_any_request(
    api: FakeExecAPI, sb: Any, script: Any, exc: type[Exception]
) -> None:
    with pytest.raises(exc, match="script"):
        await sb.sh(script)
    assert api.exec_requests() == []


async def test_check_raises_on_non_zero_exit_with_the_result(api: FakeExecAPI, sb: Any) -> None:
    api.buffered = [(200, result_body("out", "boom", 3))]
    res = await sb.exec("false")
    assert res.exit_code == 3 and not res.ok
    with pytest.raises(CommandError, match="exit code 3") as info:
        await sb.exec("false", check=True)
    assert info.value.result == ExecResult("out", "boom", 3, None, None)
    with pytest.raises(CommandError):
        res.check()


async def test_check_raises_on_agent_error_even_with_exit_zero(api: FakeExecAPI, sb: Any) -> None:
    api.buffered = [(200, result_body(exit_code=0, error='exec: "nope": not found'))]
    res = await sb.exec("nope")
    assert res.exit_code == 0 and res.error == 'exec: "nope": not found' and not res.ok
    with pytest.raises(CommandError, match="not found") as info:
        await sb.sh("nope", check=True)
    assert info.value.result.error == 'exec: "nope": not found'


async def test_missing_exit_code_means_zero_and_null_fields_are_empty(
    api: FakeExecAPI, sb: Any
) -> None:
    api.buffered = [(200, b'{"status":"success","data":{"result":{"stdout":null}}}')]
    assert await sb.exec("true") == ExecResult("", "", 0, None, None)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"success","data":{}}',
        b'{"status":"success","data":{"result":"x"}}',
        b'{"status":"success","data":{"result":{"exit_code":"0"}}}',
        b'{"status":"success","data":{"result":{"stdout":1}}}',
    ],
)
async def test_buffered_result_off_the_wire_format(api: FakeExecAPI, sb: Any, body: bytes) -> None:
    api.buffered = [(200, body)]
    with pytest.raises(ProtocolError):
        await sb.exec("true")


@pytest.mark.parametrize(("status", "cls"), [(429, RateLimitError), (503, ServerError)])
async def test_exec_is_resent_after_429_and_503_only_while_retries_last(
    api: FakeExecAPI, status: int, cls: type[Exception]
) -> None:
    api.buffered = [(status, fail_body("busy")), (200, OK_RESULT)]
    async with api.session(retry=RetryPolicy(base=0.0, jitter=False)) as session:
        sb = await api.sandbox(session)
        assert (await sb.exec("true")).stdout == "2\n"
        assert len(api.exec_requests()) == 2
    api.buffered = [(status, fail_body("busy"))]
    async with api.session(retry=RetryPolicy(max_retries=0)) as session:
        sb = await api.sandbox(session)
        with pytest.raises(cls):
            await sb.exec("true")
    assert len(api.exec_requests()) == 3


@pytest.mark.parametrize("status", [500, 502, 504, 408])
async def test_exec_is_never_resent_after_other_failures(
    api: FakeExecAPI, sb: Any, status: int
) -> None:
    api.buffered = [(status, fail_body("broken")), (200, OK_RESULT)]
    with pytest.raises(Exception) as info:
        await sb.exec("true")
    assert getattr(info.value, "status", None) == status
    assert len(api.exec_requests()) == 1


async def test_exec_is_never_resent_after_a_connection_reset(api: FakeExecAPI, sb: Any) -> None:
    api.buffered = [None, (200, OK_RESULT)]
    with pytest.raises(APIConnectionError):
        await sb.exec("true")
    assert len(api.exec_requests()) == 1


async def test_exec_timeout_is_not_resent(api: FakeExecAPI, sb: Any, sent: Attempts) -> None:
    """A deadline-bound exec runs over the stream route: timed out, it is not sent again, and its
    connection is closed (the service kills the command of a closed stream)."""

    async def never_ends(request: web.Request, resp: web.StreamResponse) -> None:
        await hang()

    api.stream = never_ends
    with pytest.raises(APITimeoutError):
        await sb.exec("sleep", ["100"], timeout=1.0)
    assert sent.of("POST", "/exec") == 1
    assert [r.query for r in api.exec_requests()] == [{"stream": "true"}]
    await api.wait_disconnect()


BAD_ARGS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"cmd": ""}, ValueError, "cmd"),
    ({"cmd": 5}, TypeError, "cmd"),
    ({"cmd": ["ls"]}, TypeError, "cmd"),
    ({"cmd": "ls", "args": "-la"}, TypeError, "args"),
    ({"cmd": "ls", "args": ["-l", 3]}, TypeError, r"args\[1\]"),
    ({"cmd": "ls", "args": 7}, TypeError, "args"),
    ({"cmd": "cat", "stdin": b"\xff\xfe"}, ValueError, "stdin"),
    ({"cmd": "cat", "stdin": 12}, TypeError, "stdin"),
    ({"cmd": "cat", "stdin": [b"a"]}, TypeError, "stdin"),
    ({"cmd": "env", "env": {"A": 1}}, TypeError, r"env\['A'\]"),
    ({"cmd": "env", "env": {"A=B": "x"}}, ValueError, "env key"),
    ({"cmd": "env", "env": ["A"]}, TypeError, "env"),
    ({"cmd": "ls", "timeout": 0}, ValueError, "timeout"),
    ({"cmd": "ls", "timeout": -1}, ValueError, "timeout"),
    ({"cmd": "ls", "timeout": "5"}, TypeError, "timeout"),
    ({"cmd": "ls", "check": "yes"}, TypeError, "check"),
]


@pytest.mark.parametrize(("kw", "exc", "match"), BAD_ARGS)
async def test_bad_arguments_fail_before_any_request(
    api: FakeExecAPI, sb: Any, kw: dict[str, Any], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        await sb.exec(**kw)
    assert api.exec_requests() == []


async def test_async_iterable_stdin_is_refused_with_a_reason(api: FakeExecAPI, sb: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    with pytest.raises(TypeError, match="cannot stream"):
        await sb.exec("cat", stdin=chunks())
    with pytest.raises(TypeError, match="cannot stream"):
        sb.exec_stream("cat", stdin=chunks())
    assert api.exec_requests() == []


async def test_env_values_never_appear_in_errors_or_reprs(api: FakeExecAPI, sb: Any) -> None:
    secret = "sk-live-SECRETVALUE"
    with pytest.raises(TypeError) as info:
        await sb.exec("env", env={"TOKEN": secret, "N": 3})
    assert secret not in str(info.value)
    stream = sb.exec_stream("env", ["--", secret], env={"TOKEN": secret})
    assert secret not in repr(stream)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"idle_timeout": 0}, "idle_timeout"), ({"max_line": 0}, "max_line"), ({"args": "x"}, "args")],
)
async def test_stream_arguments_checked_at_construction(
    api: FakeExecAPI, sb: Any, kw: dict[str, Any], match: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        ExecStream(sb, "ls", **kw)
    assert api.exec_requests() == []


# ---------------------------------------------------------------- streams


async def test_stream_yields_events_and_returns_the_connection(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(STREAM)

    api.stream = script
    async with sb.exec_stream("seq", ["2"]) as stream:
        events = [ev async for ev in stream]
    assert events == STREAM_EVENTS
    assert stream.exit_code == 0 and stream.heartbeats == 1 and stream.finished
    [req] = api.exec_requests()
    assert req.query == {"stream": "true"}
    assert req.body == {"cmd": "seq", "args": ["2"], "stream": True}
    assert pool_state(session) == (0, 1)  # read to the end: back in the pool
    await sb.exec("true")
    assert api.requests[-1].port == req.port  # ... and reused
    assert api.completed_streams == 1 and api.disconnects == 0


async def test_frames_split_at_every_byte_boundary(
    api: FakeExecAPI, sb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        for i in range(len(STREAM)):
            await resp.write(STREAM[i : i + 1])
            await asyncio.sleep(0)

    reads = 0
    real_read = ExecStream._read

    async def counting_read(self: ExecStream, content: Any) -> bytes:
        nonlocal reads
        reads += 1
        return await real_read(self, content)

    monkeypatch.setattr(ExecStream, "_read", counting_read)
    api.stream = script
    async with sb.exec_stream("seq", ["2"]) as stream:
        events = [ev async for ev in stream]
    assert events == STREAM_EVENTS
    assert reads > 10  # the client really saw the body in pieces


async def test_break_after_exit_event_still_reuses_the_connection(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(STREAM)

    api.stream = script
    async with sb.exec_stream("seq", ["2"]) as stream:
        async for ev in stream:
            if ev.kind == "exit":
                break
    assert pool_state(session) == (0, 1)


async def test_heartbeats_only_keep_the_stream_alive(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        for _ in range(30):
            await resp.write(b'{"hb":true}\n')
            await asyncio.sleep(0.05)
        await resp.write(b'{"exit_code":7}\n')

    api.stream = script
    async with sb.exec_stream("sleep", ["1"], idle_timeout=0.75) as stream:
        events = [ev async for ev in stream]
    assert events == [ExecEvent("exit", "", 7)]
    assert stream.heartbeats == 30


async def test_stall_raises_and_disconnects(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}')
        await hang()

    api.stream = script
    got: list[ExecEvent] = []
    with pytest.raises(StreamStalledError, match="nothing received"):
        async with sb.exec_stream("sleep", ["100"], idle_timeout=0.5) as stream:
            async for ev in stream:
                got.append(ev)
    assert got == [ExecEvent("stdout", "a")]
    await api.wait_disconnect()
    assert pool_state(session) == (0, 0)


async def test_total_timeout_kills_the_stream(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        while True:
            await resp.write(b'{"hb":true}\n')
            await asyncio.sleep(0.02)

    api.stream = script
    with pytest.raises(APITimeoutError, match=r"timeout=0\.3"):
        async with sb.exec_stream("sleep", ["100"], timeout=0.3, idle_timeout=5) as stream:
            await stream.wait()
    await api.wait_disconnect()


async def test_clean_eof_without_exit_is_interrupted(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}', b'{"stdout":"b"}')

    api.stream = script
    got: list[str] = []
    with pytest.raises(StreamInterruptedError, match="without an exit status"):
        async with sb.exec_stream("x") as stream:
            async for ev in stream:
                got.append(ev.data)
    assert "".join(got) == "ab"  # frames of one read may come as one event
    assert stream.exit_code is None


async def test_eof_in_the_middle_of_a_frame_is_interrupted(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(b'{"stdout":"a"}\n{"stdout":"b')

    api.stream = script
    with pytest.raises(StreamInterruptedError, match="middle of a frame"):
        async with sb.exec_stream("x") as stream:
            await stream.wait()


async def test_connection_cut_mid_body_is_interrupted(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}')
        assert request.transport is not None
        request.transport.abort()  # no terminating chunk
        await hang()

    api.stream = script
    with pytest.raises(StreamInterruptedError, match="broke"):
        async with sb.exec_stream("x") as stream:
            await stream.wait()
    assert pool_state(session) == (0, 0)


async def test_last_exit_frame_without_newline_is_accepted(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(b'{"stdout":"a"}\n{"exit_code":0}')

    api.stream = script
    async with sb.exec_stream("x") as stream:
        res = await stream.wait()
    assert res == ExecResult("a", "", 0)


async def test_a_20_mib_line_is_a_protocol_error_and_disconnects(
    api: FakeExecAPI, sb: Any, session: AsyncSession
) -> None:
    big = b'{"stdout":"' + b"x" * (20 * 1024 * 1024) + b'"}\n'

    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}')
        for i in range(0, len(big), 1 << 20):
            await resp.write(big[i : i + (1 << 20)])
        await frames(resp, b'{"exit_code":0}')

    api.stream = script
    with pytest.raises(ProtocolError, match="max_line"):
        async with sb.exec_stream("x") as stream:
            await stream.wait()
    assert pool_state(session) == (0, 0)
    # A larger bound accepts the same stream.
    async with ExecStream(sb, "x", max_line=32 * 1024 * 1024) as stream:
        res = await stream.wait()
    assert len(res.stdout) == 1 + 20 * 1024 * 1024 and res.exit_code == 0


async def test_invalid_json_is_a_protocol_error(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}', b"{not json}", b'{"exit_code":0}')

    api.stream = script
    got: list[ExecEvent] = []
    with pytest.raises(ProtocolError, match="line 2"):
        async with sb.exec_stream("x") as stream:
            async for ev in stream:
                got.append(ev)
    assert got == []  # the bad line poisoned its whole chunk before anything was yielded


async def test_multi_key_frame_is_split(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"exit_code":1,"stderr":"e","stdout":"o","hb":true}')

    api.stream = script
    async with sb.exec_stream("x") as stream:
        events = [ev async for ev in stream]
    assert events == [ExecEvent("stdout", "o"), ExecEvent("stderr", "e"), ExecEvent("exit", "", 1)]
    assert stream.heartbeats == 1


async def test_frames_after_the_exit_frame_are_ignored(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}', b'{"exit_code":0}', b'{"stdout":"late"}')

    api.stream = script
    async with sb.exec_stream("x") as stream:
        events = [ev async for ev in stream]
    assert events == [ExecEvent("stdout", "a"), ExecEvent("exit", "", 0)]


async def test_error_frame_without_exit_ends_cleanly(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"error":"exec: \\"nope\\": not found"}')

    api.stream = script
    async with sb.exec_stream("nope") as stream:
        events = [ev async for ev in stream]
    assert events == [ExecEvent("error", 'exec: "nope": not found')]
    assert stream.exit_code == NO_EXIT_CODE
    with pytest.raises(CommandError, match="not found"):
        (await stream.wait()).check()


async def test_error_frame_then_exit_frame(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"error":"boom"}', b'{"exit_code":127}')

    api.stream = script
    res = await sb.exec_stream("nope").wait()
    assert res == ExecResult("", "", 127, None, "boom")


async def test_404_to_stream_falls_back_to_buffered_exec(api: FakeExecAPI, sb: Any) -> None:
    api.stream_status = 404
    api.buffered = [(200, result_body("out\n", "err\n", 2))]
    async with sb.exec_stream("x", ["y"]) as stream:
        events = [ev async for ev in stream]
    assert events == [
        ExecEvent("stdout", "out\n"),
        ExecEvent("stderr", "err\n"),
        ExecEvent("exit", "", 2),
    ]
    assert stream.exit_code == 2
    first, second = api.exec_requests()
    assert first.query == {"stream": "true"} and second.query == {}
    assert second.body == {"cmd": "x", "args": ["y"]}


async def test_404_twice_is_not_found(api: FakeExecAPI, sb: Any) -> None:
    api.stream_status = 404
    api.buffered = [(404, fail_body("sandbox not found"))]
    with pytest.raises(NotFoundError):
        async with sb.exec_stream("x"):
            pass
    assert len(api.exec_requests()) == 2


async def test_other_stream_errors_are_raised_without_fallback(api: FakeExecAPI, sb: Any) -> None:
    api.stream_status = 503
    with pytest.raises(ServerError):
        async with sb.exec_stream("x"):
            pass
    assert len(api.exec_requests()) == 1  # a stream is never resent


async def test_wait_outside_async_with_and_text(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(STREAM)

    api.stream = script
    res = await sb.exec_stream("seq", ["2"]).wait()
    assert res == ExecResult("1\n2\n", "wé\n", 0, None, None)
    assert await sb.exec_stream("seq", ["2"]).text() == "1\n2\n"


async def test_wait_after_partial_iteration_returns_the_rest(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(STREAM)

    api.stream = script
    async with sb.exec_stream("seq", ["2"]) as stream:
        first = await stream.__anext__()
        res = await stream.wait()
    assert first == ExecEvent("stdout", "1\n")
    assert res == ExecResult("2\n", "wé\n", 0)


async def test_lines_reassembles_whole_lines_per_channel(api: FakeExecAPI, sb: Any) -> None:
    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(
            resp,
            b'{"stdout":"al"}',
            b'{"stderr":"E1\\nE"}',
            b'{"stdout":"pha\\nbe"}',
            b'{"stdout":"ta\\n\\ngam"}',
            b'{"stderr":"2\\n"}',
            b'{"stdout":"ma"}',
            b'{"exit_code":0}',
        )

    api.stream = script
    async with sb.exec_stream("x") as stream:
        lines = [(ev.kind, ev.data) async for ev in stream.lines()]
    assert lines == [
        ("stderr", "E1"),
        ("stdout", "alpha"),
        ("stdout", "beta"),
        ("stdout", ""),
        ("stderr", "E2"),
        ("stdout", "gamma"),
    ]
    assert stream.exit_code == 0


async def test_a_cancelled_pending_read_leaves_the_stream_usable(api: FakeExecAPI, sb: Any) -> None:
    go = asyncio.Event()

    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await frames(resp, b'{"stdout":"a"}')
        await go.wait()
        await frames(resp, b'{"stdout":"b"}', b'{"exit_code":0}')

    api.stream = script
    async with sb.exec_stream("x") as stream:
        assert await stream.__anext__() == ExecEvent("stdout", "a")
        with anyio.move_on_after(0.1) as scope:  # e.g. a keepalive timer around the read
            await stream.__anext__()
        assert scope.cancelled_caught
        go.set()
        rest = [ev async for ev in stream]
    assert rest == [ExecEvent("stdout", "b"), ExecEvent("exit", "", 0)]
    assert api.disconnects == 0 and api.completed_streams == 1


async def test_iterating_without_async_with_is_refused(api: FakeExecAPI, sb: Any) -> None:
    stream = sb.exec_stream("x")
    with pytest.raises(RuntimeError, match="async with"):
        await stream.__anext__()
    assert api.exec_requests() == []
    async with stream:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with stream:
            pass


async def test_stream_open_is_bounded_by_timeout(api: FakeExecAPI, sb: Any, sent: Attempts) -> None:
    api.stream_headers_hang = True
    with pytest.raises(APITimeoutError):
        async with sb.exec_stream("x", timeout=0.2):
            pass
    assert sent.of("POST", "/exec") == 1
    assert len(api.exec_requests()) <= 1


# ---------------------------------------------------------------- against the emulator


@pytest.fixture
async def emu_sb(emulator: LocalServer) -> AsyncIterator[Any]:
    async with emulator.session() as s:
        sb = await s.sandboxes.create(shape="s-1vcpu-256mb", envs={"TOKEN": "declared"})
        async with sb:
            yield sb


# Two tests written the way a user of the pytest plugin would (createos_sandbox_async_pytest).
@pytest.mark.createos(sandbox={"envs": {"TOKEN": "declared"}})
async def test_emulator_buffered_exec(createos_sandbox: Any) -> None:
    emu_sb = createos_sandbox
    res = await emu_sb.exec("python3", ["-c", "print(1+1)"])
    assert (res.stdout, res.stderr, res.exit_code, res.error) == ("2\n", "", 0, None)
    assert res.exec_ms is not None and res.exec_ms >= 0
    assert (await emu_sb.exec("cat", stdin="hé\nllo")).stdout == "hé\nllo"
    assert (await emu_sb.sh("echo $TOKEN", env={"TOKEN": "override"})).stdout == "override\n"
    with pytest.raises(ValidationError):
        await emu_sb.exec("true", env={"UNDECLARED": "x"})
    res = await emu_sb.sh("echo out; echo err >&2; exit 4")
    assert (res.stdout, res.stderr, res.exit_code) == ("out\n", "err\n", 4)
    with pytest.raises(CommandError) as info:
        await emu_sb.sh("exit 4", check=True)
    assert info.value.result.exit_code == 4
    with pytest.raises(CommandError, match="no such file") as info:
        await emu_sb.exec("/no/such/tool", check=True)
    assert info.value.result.error


async def test_emulator_stream_real_output(emu_sb: Any) -> None:
    script = "echo one; sleep 0.3; echo two >&2; printf 'no newline'; exit 3"
    async with emu_sb.exec_stream("bash", ["-c", script]) as stream:
        lines = [(ev.kind, ev.data) async for ev in stream.lines()]
    assert lines == [("stdout", "one"), ("stderr", "two"), ("stdout", "no newline")]
    assert stream.exit_code == 3
    assert stream.heartbeats >= 1  # 0.3 s of silence with a 0.05 s heartbeat


async def test_emulator_stream_events_arrive_before_the_command_ends(emu_sb: Any) -> None:
    # The command waits for a file that is created only after its first event was received.
    script = "echo ready; while [ ! -e /tmp/go ]; do sleep 0.01; done; echo done"
    async with emu_sb.exec_stream("bash", ["-c", script], timeout=30) as stream:
        first = await stream.__anext__()
        assert first == ExecEvent("stdout", "ready\n")
        await emu_sb.exec("touch", ["/tmp/go"])
        rest = [ev async for ev in stream]
    assert rest == [ExecEvent("stdout", "done\n"), ExecEvent("exit", "", 0)]


async def test_emulator_stream_error_event(emu_sb: Any) -> None:
    async with emu_sb.exec_stream("no-such-tool") as stream:
        events = [ev async for ev in stream]
    assert events[0].kind == "error" and events[0].data == stream.error
    assert "no-such-tool" in events[0].data
    assert stream.exit_code is not None  # the emulator's status, or NO_EXIT_CODE without one


async def test_emulator_stall_fault(createos_faults: Any, createos_sandbox: Any) -> None:
    emu_sb = createos_sandbox
    # The emulator holds the stream when the frame after `after_frames` is produced.
    createos_faults.stall(route="/v1/sandboxes/*/exec", after_frames=1)
    got: list[ExecEvent] = []
    with pytest.raises(StreamStalledError):
        async with emu_sb.exec_stream(
            "bash", ["-c", "echo a; sleep 0.2; echo b; sleep 30"], idle_timeout=1.5
        ) as s:
            async for ev in s:
                got.append(ev)
    assert got == [ExecEvent("stdout", "a\n")]


async def test_emulator_truncate_fault(emulator: LocalServer, emu_sb: Any) -> None:
    emulator.faults.truncate(route="/v1/sandboxes/*/exec", after_frames=1)
    with pytest.raises(StreamInterruptedError):
        await emu_sb.exec_stream("bash", ["-c", "echo a; echo b"]).wait()


async def test_emulator_404_to_stream_falls_back(emulator: LocalServer, emu_sb: Any) -> None:
    before = emulator.request_count("POST", "/v1/sandboxes/*/exec")
    emulator.faults.status(404, route="/v1/sandboxes/*/exec", times=1)
    async with emu_sb.exec_stream("bash", ["-c", "echo a; echo b >&2; exit 2"]) as stream:
        events = [ev async for ev in stream]
    assert events == [
        ExecEvent("stdout", "a\n"),
        ExecEvent("stderr", "b\n"),
        ExecEvent("exit", "", 2),
    ]
    assert emulator.request_count("POST", "/v1/sandboxes/*/exec") - before == 2


async def test_frames_of_one_write_come_as_one_event_per_run(api: FakeExecAPI, sb: Any) -> None:
    """Runs of stdout and stderr written at once: every byte of each stream, the order of the
    runs, the exit last and no heartbeat; consecutive frames of one stream joined (issue 14)."""
    body = (
        b'{"stdout":"a1\\n"}\n{"stdout":"a2\\n"}\n{"hb":true}\n{"stdout":"a3\\n"}\n'
        b'{"stderr":"e1\\n"}\n{"stderr":"e2\\n"}\n{"stdout":"b1\\n"}\n{"exit_code":7}\n'
    )

    async def script(request: web.Request, resp: web.StreamResponse) -> None:
        await resp.write(body)  # one write: one read on loopback

    api.stream = script
    async with sb.exec_stream("x") as stream:
        events = [ev async for ev in stream]
    glued: list[tuple[str, str]] = []
    for ev in events[:-1]:
        if glued and glued[-1][0] == ev.kind:
            glued[-1] = (ev.kind, glued[-1][1] + ev.data)
        else:
            glued.append((ev.kind, ev.data))
    assert glued == [("stdout", "a1\na2\na3\n"), ("stderr", "e1\ne2\n"), ("stdout", "b1\n")]
    assert events[-1] == ExecEvent("exit", "", 7) and stream.exit_code == 7
    assert stream.heartbeats == 1
    # One event per run (+ the exit), and at most one more where the heartbeat ended a decode
    # batch: 5 at most, where one event per frame made 7.
    assert len(events) <= len(glued) + stream.heartbeats + 1
