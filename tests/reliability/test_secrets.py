"""Secrets suite (issue 10): a unique API key, env value and access token, every channel watched.

One representative session runs twice: against the emulator, and against a hostile server that
echoes every request header and body value (and the token it minted) into every field, header
and error body of its answers, for every error status and for malformed successes. Captured:
DEBUG logs of ``createos_sandbox_async``, all three hooks, repr and str of every public object
the session touched, every attribute of every error (args, ``__cause__``, ``__context__``,
``__notes__``, recursively), the pickle of every error, and the CLI's output. None of the
secrets may appear in any of it.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import pytest
from _emulator import require_bwrap
from _servers import run_app
from aiohttp import web

from createos_sandbox_async import (
    APIError,
    AsyncSession,
    CommandError,
    CreateosError,
    Hooks,
    RetryPolicy,
)

pytestmark = pytest.mark.anyio

KEY = f"sk_rel_{secrets.token_hex(12)}"
ENV_VALUE = f"envval-{secrets.token_hex(10)}"
TOKEN = f"skp_sb_{secrets.token_hex(12)}"  # the hostile server's minted token
FAST = RetryPolicy(max_retries=1, base=0.0, cap=0.0, jitter=False)
ERROR_STATUSES = ["400", "401", "403", "404", "409", "422", "429", "500", "503", "502-html"]
MALFORMED_OK = ["200-html", "200-wrong-shape"]


# -- capture ------------------------------------------------------------------------------------


def every_text(
    obj: Any,
    depth: int = 0,
    seen: set[int] | None = None,
    in_error: bool = False,
    tally: collections.Counter[str] | None = None,
) -> list[str]:
    """repr and str of ``obj``; for errors also every arg, attribute, note, cause and context
    (recursively) and the pickle. Containers are walked; so are the fields of models held by
    an error (a returned model's fields are the caller's data: only its repr is a channel).
    ``tally`` counts what was walked, for RELIABILITY.md."""
    seen = set() if seen is None else seen
    tally = collections.Counter() if tally is None else tally
    if id(obj) in seen or depth > 10:
        return []
    seen.add(id(obj))
    tally["objects"] += 1
    texts = [repr(obj), str(obj)]
    children: list[Any] = []
    if isinstance(obj, BaseException):
        in_error = True
        tally["errors"] += 1
        if isinstance(obj, CreateosError):  # ours must pickle; aiohttp's own errors need not
            tally["pickles"] += 1
            texts.append(repr(pickle.dumps(obj)))
            texts += every_text(pickle.loads(pickle.dumps(obj)), depth + 1, seen, True, tally)
        children += [*obj.args, obj.__cause__, obj.__context__]
        children += list(getattr(obj, "__notes__", []))
        children += list(getattr(obj, "exceptions", []))
        children += list(vars(obj).values())
        tally["error attributes"] += len(children)
    elif isinstance(obj, Mapping):
        children += [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children += list(obj)
    elif in_error and attrs.has(type(obj)):  # e.g. CommandError.result (handles such as a
        children += [getattr(obj, a.name) for a in attrs.fields(type(obj))]  # session: repr)
    for child in children:
        if child is not None:
            texts += every_text(child, depth + 1, seen, in_error, tally)
    return texts


class Capture:
    """Everything a secret could leave through: hook events, objects touched, errors raised."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.objects: list[Any] = []
        self.errors: list[BaseException] = []
        self.walked: collections.Counter[str] = collections.Counter()

    def hooks(self) -> Hooks:
        return Hooks(
            on_request=self.events.append,
            on_response=self.events.append,
            on_retry=self.events.append,
        )

    def see(self, *objs: Any) -> None:
        self.objects.extend(objs)

    async def fails(self, call: Callable[[], Awaitable[Any]]) -> BaseException | None:
        """Run ``call``; keep what it returned or raised (only SDK errors are expected)."""
        try:
            self.see(await call())
        except (CreateosError, ValueError) as exc:
            self.errors.append(exc)
            return exc
        return None

    def blob(self, caplog: pytest.LogCaptureFixture, *extra: str) -> str:
        texts = [caplog.text, *(r.getMessage() for r in caplog.records), *extra]
        for item in [*self.events, *self.objects, *self.errors]:
            texts += every_text(item, tally=self.walked)
        return "\n".join(texts)


def record(
    figures: Any,
    cap: Capture,
    caplog: pytest.LogCaptureFixture,
    searched: str,
    found: int,
    **extra: Any,
) -> None:
    """What one run looked through, and how often a secret was found in it (wanted: 0), for
    RELIABILITY.md; recorded before the assertions. Call after ``cap.blob`` (it counts)."""
    figures.row(
        {
            **extra,
            "log records": len(caplog.records),
            "hook events": len(cap.events),
            "public objects touched": len(cap.objects),
            "errors raised": len(cap.errors),
            "objects walked (repr, str)": cap.walked["objects"],
            "errors walked": cap.walked["errors"],
            "error args, attributes, notes, causes": cap.walked["error attributes"],
            "errors pickled and unpickled": cap.walked["pickles"],
            "text searched (KiB)": round(len(searched) / 1024),
            "secrets found": found,
        }
    )


def occurrences(text: str, *secret_values: str) -> int:
    return sum(text.count(value) for value in secret_values)


def assert_clean(blob: str, *secret_values: str) -> None:
    for value in secret_values:
        assert value not in blob, f"a secret ({value[:8]}...) leaked"


async def cli(base_url: str, key: str, *args: str) -> str:
    """The CLI's stdout and stderr, run with the key in the environment only."""
    env = dict(os.environ)
    env.update(CREATEOS_SANDBOX_API_KEY=key, CREATEOS_SANDBOX_BASE_URL=base_url)
    env.pop("CREATEOS_API_KEY", None)
    cmd = [sys.executable, "-m", "createos_sandbox_async", *args]
    with anyio.fail_after(60):
        proc = await anyio.run_process(cmd, env=env, check=False, input=b"", stderr=subprocess.PIPE)
    return proc.stdout.decode() + proc.stderr.decode()


# -- the emulator -------------------------------------------------------------------------------


async def test_emulator_session_leaks_no_secret(
    caplog: pytest.LogCaptureFixture, reliability_figures: Any
) -> None:
    require_bwrap()
    from createos_sandbox_async.local import LocalServer

    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    cap = Capture()
    envs = {"APP_SECRET": ENV_VALUE, "SHORT": "1"}
    tokens: list[str] = []
    async with LocalServer(api_key=KEY, heartbeat_interval=0.05, transition_delay=0.02) as server:
        async with server.session(hooks=cap.hooks()) as session:
            shapes = await session.shapes()
            cap.see(session, await session.whoami(), shapes, await session.health())
            sb = await session.sandboxes.create(shape=shapes[0].id, envs=envs)
            cap.see(sb, sb.data, await sb.refresh())
            script = 'printf %s "$APP_SECRET"'
            res = await sb.exec("sh", ["-c", script], env={"APP_SECRET": ENV_VALUE})
            assert res.stdout == ENV_VALUE  # the value really reached the command...
            cap.see(res)  # ...and is still absent from the result's repr
            failed = await cap.fails(  # the error's copy of the output loses this call's env
                lambda: sb.sh(
                    f'{script}; echo "$APP_SECRET" >&2; exit 3',
                    env={"APP_SECRET": ENV_VALUE},
                    check=True,
                )
            )
            assert isinstance(failed, CommandError) and failed.result.exit_code == 3
            assert isinstance(await cap.fails(lambda: sb.exec("true", env={"NEW": ENV_VALUE})),
                              APIError)  # fmt: skip
            bad_name = await cap.fails(
                lambda: session.sandboxes.create(shape=shapes[0].id, envs={"BAD-K": ENV_VALUE})
            )
            assert isinstance(bad_name, ValueError)
            async with sb.exec_stream("sh", ["-c", script], env={"APP_SECRET": ENV_VALUE}) as st:
                streamed = [event async for event in st]
                cap.see(st, *streamed)
            assert "".join(e.data for e in streamed if e.kind == "stdout") == ENV_VALUE
            proc = await sb.processes.create("sh", ["-c", script], env={"APP_SECRET": ENV_VALUE})
            cap.see(proc, await sb.processes.wait(proc))
            out = sb.processes.connect(proc)
            collected = await out.collect()
            assert collected[0] == ENV_VALUE.encode()
            cap.see(out)
            await sb.files.upload("/tmp/note.txt", b"not a secret")
            cap.see(await sb.files.download("/tmp/note.txt"))

            created = await sb.access_token.create()
            tokens.append(created.token.get_secret_value())
            cap.see(created, await sb.access_token.get())
            async with server.session(api_key=tokens[0], hooks=cap.hooks()) as delegated:
                mine = await delegated.sandboxes.get(sb.id)
                cap.see(delegated, mine, await mine.exec("true"))
                await cap.fails(delegated.whoami)
                await cap.fails(lambda: mine.access_token.rotate())
            rotated = await sb.access_token.rotate()
            tokens.append(rotated.token.get_secret_value())
            cap.see(rotated)
            async with server.session(api_key=tokens[0], hooks=cap.hooks()) as stale:
                assert isinstance(await cap.fails(lambda: stale.sandboxes.get(sb.id)), APIError)
            cap.see(await sb.access_token.revoke())
            assert isinstance(await cap.fails(lambda: session.sandboxes.get("sb_nope")), APIError)
            await sb.destroy()

        printed = [
            await cli(server.base_url, KEY, "whoami"),
            await cli(server.base_url, KEY, "create", "--env", f"APP_SECRET={ENV_VALUE}"),
        ]
        sid = printed[-1].strip().splitlines()[-1]
        assert sid.startswith("sb_"), printed
        printed += [
            await cli(server.base_url, KEY, "ls"),
            await cli(server.base_url, KEY, "exec", sid, "--", "true"),
            await cli(server.base_url, KEY, "exec", sid, "--", "sh", "-c", "exit 4"),
            await cli(server.base_url, tokens[1], "rm", "sb_nope", "--force"),
            await cli(server.base_url, KEY, "rm", sid, "--force"),
        ]
    blob = cap.blob(caplog, *printed)
    found = occurrences(blob, KEY, ENV_VALUE, *tokens)
    record(
        reliability_figures,
        cap,
        caplog,
        blob,
        found,
        server="emulator",
        **{"CLI runs": len(printed)},
    )
    assert any("request GET /v1/whoami" in r.getMessage() for r in caplog.records)
    assert len(cap.events) >= 40 and len(cap.errors) >= 6
    assert_clean(blob, KEY, ENV_VALUE, *tokens)


# -- a hostile server ---------------------------------------------------------------------------


def _echoed(request: web.Request, body: bytes) -> list[str]:
    """Every value the request carried, the secrets first (headers are length-limited)."""
    values = [TOKEN]
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("env", "envs"):
            if isinstance(doc.get(key), dict):
                values += [str(v) for v in doc[key].values()]
    values += list(request.headers.values())
    values += [body.decode("utf-8", "replace")]
    return values


def hostile_app(state: dict[str, str]) -> web.Application:
    """Answers ``state["mode"]``: "ok" (benign), an error status, or a malformed 200."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = state["mode"]
        if mode == "ok":
            if request.path.endswith("/access-token"):
                return web.json_response(
                    {"status": "success", "data": {"token": TOKEN, "enabled": True}}
                )
            data = {"id": "sb_hostile", "status": "running"}
            return web.json_response({"status": "success", "data": data})
        values = _echoed(request, body)
        joined = " | ".join(values)
        line = joined.replace("\r", " ").replace("\n", " ")[:3000]
        headers = {
            "X-Request-Id": line,
            "X-Fc-Request-Id": line,
            "Retry-After": line[:200],
            "X-Echo": line,
            "Set-Cookie": f"session={line[:500]}",
            "WWW-Authenticate": f"Bearer realm={line[:500]}",
        }
        if mode in ("502-html", "200-html"):
            html = f"<html><body><h1>{joined}</h1></body></html>"
            headers["Content-Type"] = f"text/html; charset=utf-8; echo={line[:500]}"
            return web.Response(status=int(mode[:3]), text=html, headers=headers)
        if mode == "200-wrong-shape":
            return web.json_response({"status": "success", "data": values}, headers=headers)
        envelope = {
            "status": "fail" if mode < "500" else "error",
            "message": joined,
            "code": joined,
            "data": {"code": joined, "message": joined, "echo": values, line[:200]: values},
        }
        return web.json_response(envelope, status=int(mode), headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def operations(session: AsyncSession, delegated: AsyncSession, sb: Any) -> list[Any]:
    """The representative session: each call carries the key, the env value or the token."""
    env = {"APP_SECRET": ENV_VALUE, "SHORT": "1"}

    async def stream() -> list[Any]:
        async with sb.exec_stream("env", env=env) as st:
            return [event async for event in st]

    async def raw_data(method: str, path: str, **kw: Any) -> None:
        # An unmodelled route returns the server's data as it is (a hostile 200 echoes the
        # secrets into it): that is the caller's data, so it is not one of the watched channels.
        await session.request(method, path, **kw)

    return [
        session.whoami,
        session.shapes,  # an open route: no key sent, but the env-free answer is hostile too
        session.health,
        lambda: session.sandboxes.create(shape="s-1", envs=env),
        lambda: session.sandboxes.get("sb_hostile"),
        lambda: sb.exec("env", env=env),
        lambda: sb.sh("env", check=True),
        stream,
        lambda: sb.processes.create("env", env=env),
        lambda: sb.fork(envs=env),
        lambda: sb.files.upload("/tmp/f", b"data"),  # (a download's bytes are data: not here)
        sb.access_token.get,
        lambda: delegated.sandboxes.get("sb_hostile"),
        lambda: raw_data("GET", "/v1/metrics", headers={"X-Api-Key": TOKEN}),
        lambda: raw_data("POST", "/v1/raw", json={"envs": env, "other": 1}),
        sb.destroy,
    ]


async def test_hostile_server_echoing_everything_leaks_no_secret(
    caplog: pytest.LogCaptureFixture, reliability_figures: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="createos_sandbox_async")
    cap = Capture()
    state = {"mode": "ok"}
    async with run_app(hostile_app(state)) as base_url:
        async with (
            AsyncSession(KEY, base_url=base_url, retry=FAST, hooks=cap.hooks()) as session,
            AsyncSession(TOKEN, base_url=base_url, retry=FAST, hooks=cap.hooks()) as delegated,
        ):
            sb = await session.sandboxes.get("sb_hostile")
            minted = await sb.access_token.create()  # the session now knows TOKEN is secret
            assert minted.token.get_secret_value() == TOKEN
            cap.see(session, delegated, sb, minted)
            ops = operations(session, delegated, sb)
            for mode in ERROR_STATUSES + MALFORMED_OK:
                state["mode"] = mode
                for index, op in enumerate(ops):
                    raised = await cap.fails(op)
                    if mode == "404" and op is ops[-1]:
                        assert raised is None  # destroy: a 404 means already gone
                    elif mode in ERROR_STATUSES:
                        assert isinstance(raised, APIError), (mode, index, raised)
                        assert raised.status == int(mode[:3])
                    else:
                        assert raised is None or isinstance(raised, CreateosError), (mode, index)
        # A CLI process knows its key and the env values it sends, not the token the server
        # minted for another process (which the server echoes anyway): check what it knows.
        with_key: list[str] = []
        with_token: list[str] = []
        for mode in ("401", "422", "502-html"):
            state["mode"] = mode
            with_key += [
                await cli(base_url, KEY, "whoami"),
                await cli(base_url, KEY, "create", "--env", f"APP_SECRET={ENV_VALUE}"),
            ]
            with_token.append(await cli(base_url, TOKEN, "rm", "sb_hostile", "--force"))
    blob = cap.blob(caplog)
    printed = "\n".join(with_key), "\n".join(with_token)
    found = (
        occurrences(blob, KEY, ENV_VALUE, TOKEN)
        + occurrences(printed[0], KEY, ENV_VALUE)  # (the server echoes TOKEN to every CLI)
        + occurrences(printed[1], TOKEN)
    )
    record(
        reliability_figures,
        cap,
        caplog,
        blob + "".join(printed),
        found,
        server="hostile echo server",
        **{
            "answers x operations": f"{len(ERROR_STATUSES + MALFORMED_OK)} x {len(ops)}",
            "CLI runs": len(with_key + with_token),
        },
    )
    assert all("error:" in text for text in with_key + with_token), with_key + with_token
    assert_clean("\n".join(with_key), KEY, ENV_VALUE)
    assert_clean("\n".join(with_token), TOKEN)
    assert len(cap.errors) >= len(ops) * len(ERROR_STATUSES) - 1
    assert "[redacted]" in blob
    assert_clean(blob, KEY, ENV_VALUE, TOKEN)
