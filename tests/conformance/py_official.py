"""Drive the local emulator with the OFFICIAL Python SDK (`createos-sandbox`, import `createos`).

Runs under tests/conformance/.venv-official/bin/python, never under the project venv, so the
official SDK keeps its own pins. Configuration comes from the environment exactly as a user of
the official SDK would set it: CREATEOS_SANDBOX_BASE_URL and CREATEOS_API_KEY (the only key
variable this SDK reads). CREATEOS_OTHER_API_KEY, when set, is a second tenant's key.

Usage: python py_official.py [scenario ...]   (default: every scenario)
Exit status 0 = every assertion held; anything else = a mismatch (the message says which).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import createos
from createos import (
    APIError,
    Client,
    CommandError,
    CreateSandboxRequest,
    ExecOptions,
    ForkSandboxRequest,
    ListSandboxesOptions,
    ManagedProcessConnectOptions,
    ManagedProcessCreateRequest,
    ManagedProcessDeleteOptions,
    ManagedProcessWaitOptions,
    RequestOptions,
    RunCommandRequest,
    SandboxStatus,
)
from createos.models import (
    ExecStreamEventType,
    ManagedProcessConnectEventType,
    ManagedProcessKind,
    ManagedProcessSignal,
    ManagedProcessState,
    ManagedProcessStream,
    ManagedProcessWaitScope,
    PTYSize,
    WaitOptions,
)

SHAPE = "s-1vcpu-256mb"
ROOTFS = "devbox:1"
WAIT = WaitOptions(timeout=30.0)
SHORT = RequestOptions(timeout=30.0)


class Mismatch(AssertionError):
    """The emulator answered something the official SDK or WIRE.md does not accept."""


def check(cond: object, what: str, got: object = None) -> None:
    """Fail loudly with what was expected and what came back."""
    if not cond:
        raise Mismatch(f"{what} (got {got!r})")


def eq(got: object, want: object, what: str) -> None:
    if got != want:
        raise Mismatch(f"{what}: want {want!r}, got {got!r}")


def expect_status(status: int | set[int], fn: Callable[[], object], what: str) -> APIError:
    """Run fn and require an APIError with the given HTTP status (and a request id)."""
    allowed = {status} if isinstance(status, int) else status
    try:
        fn()
    except APIError as err:
        if err.status_code not in allowed:
            raise Mismatch(
                f"{what}: want HTTP {sorted(allowed)}, got {err.status_code}: {err}"
            ) from err
        check(err.request_id, f"{what}: X-Request-Id header on the error response", err.headers)
        return err
    raise Mismatch(f"{what}: want HTTP {sorted(allowed)}, the call succeeded")


def client(key: str | None = None) -> Client:
    # No base_url / api_key argument: the SDK must pick both up from the environment.
    return Client(key) if key is not None else Client()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@contextmanager
def sandbox(c: Client, **fields: Any) -> Iterator[createos.SandboxInstance]:
    """Create a sandbox and destroy it afterwards (destroy errors are ignored: cleanup only)."""
    req = CreateSandboxRequest(shape=SHAPE, rootfs=ROOTFS, **fields)
    sb = c.create_sandbox(req, RequestOptions(timeout=60.0))
    try:
        yield sb
    finally:
        try:
            sb.destroy()
        except Exception:
            pass


def run(sb: createos.SandboxInstance, cmd: str, *args: str, **kw: Any) -> Any:
    return sb.run_command(
        RunCommandRequest(command=cmd, arguments=list(args)), ExecOptions(timeout=30.0, **kw)
    )


def bash(sb: createos.SandboxInstance, script: str, **kw: Any) -> Any:
    return run(sb, "bash", "-c", script, **kw)


# --------------------------------------------------------------------------- scenarios


def scenario_catalog(c: Client) -> None:
    """Open routes, identity, auth failures."""
    eq(c.base_url, os.environ["CREATEOS_SANDBOX_BASE_URL"].rstrip("/"), "base URL from env")
    eq(c.health().up, True, "GET /healthz up")
    eq(c.readiness().ready, True, "GET /readyz ready")
    shapes = c.list_shapes()
    by_id = {s.id: s for s in shapes}
    check(SHAPE in by_id, f"GET /v1/shapes lists {SHAPE}", sorted(by_id))
    check(
        by_id[SHAPE].vcpu >= 1 and by_id[SHAPE].memory_mib >= 1, "shape vcpu/mem_mib", by_id[SHAPE]
    )
    rootfs = c.list_root_file_systems()
    check(ROOTFS in rootfs.root_file_systems, f"GET /v1/rootfs lists {ROOTFS}", rootfs)
    check(rootfs.default, "GET /v1/rootfs has a default", rootfs)
    me = c.who_am_i()
    check(me.user_id, "GET /v1/whoami user_id", me)
    check(me.stats.total >= 0, "whoami stats", me.stats)
    # Open routes work without any key (the SDK sends none on them).
    anon = Client("")
    eq(anon.health().up, True, "healthz without a key")
    check(SHAPE in {s.id for s in anon.list_shapes()}, "shapes without a key", None)
    # A wrong key is a 401, with a JSend body the SDK can read a message from.
    bad = Client("definitely-not-a-key")
    err = expect_status(401, bad.who_am_i, "whoami with an unknown key")
    check(err.body.startswith(b"{"), "401 body is JSON (JSend)", err.body[:200])
    expect_status(401, lambda: bad.list_sandboxes(), "list with an unknown key")
    # WIRE §4.7 / §6: JSON bodies are labelled application/json; every response has X-Request-Id.
    raw = c._transport.request_raw("GET", "/v1/sandboxes", params={"limit": 1})
    raw.close()
    ctype = raw.headers.get("content-type", "")
    check(ctype.startswith("application/json"), "success Content-Type application/json", ctype)
    check(raw.headers.get("x-request-id"), "X-Request-Id on a success response", dict(raw.headers))
    expect_status(404, lambda: c._transport.request("GET", "/v1/no-such-route"), "unknown route")


def scenario_sandboxes(c: Client) -> None:
    """Create, get, list (filters, limit), tenant isolation, delete, destroyed rows."""
    name = unique("conf-py")
    sb = c.create_sandbox(
        CreateSandboxRequest(
            shape=SHAPE, rootfs=ROOTFS, name=name, environment_variables={"FOO": "bar"}
        ),
        RequestOptions(timeout=60.0),
    )
    destroyed = False
    try:
        created = sb.data
        eq(created.status, SandboxStatus.RUNNING, "create returns status running (synchronous)")
        check(created.id, "create returns an id", created)
        eq(created.name, name, "create echoes name")
        eq(created.shape, SHAPE, "create echoes shape")
        eq(created.rootfs, ROOTFS, "create echoes rootfs")
        check(created.ip_address, "create returns ip", created)
        check(created.vcpu >= 1 and created.memory_mib >= 1, "create vcpu/mem_mib", created)
        check(created.disk_mib > 0, "create disk_mib (0 = shape default, never 0 back)", created)

        got = c.get_sandbox(created.id)
        view = got.data
        eq(view.id, created.id, "GET id")
        eq(view.status, SandboxStatus.RUNNING, "GET status")
        eq(view.name, name, "GET name")
        eq(view.shape, SHAPE, "GET shape")
        eq(view.ingress_enabled, False, "GET ingress_enabled")
        check(view.created_at is not None, "GET created_at", view)
        eq(view.environment_variables, ["FOO"], "GET envs = declared NAMES only")
        check(view.destroyed_at is None, "destroyed_at absent on a live sandbox", view)
        by_ip = c.get_sandbox_by_ip(created.ip_address)
        eq(by_ip.id, created.id, "GET by-ip")
        expect_status(404, lambda: c.get_sandbox_by_ip("192.0.2.77"), "GET by-ip unknown ip")

        ids = [s.id for s in c.list_sandboxes()]
        check(created.id in ids, "list contains the new sandbox", ids)
        eq(len(ids), len(set(ids)), "list has no duplicates")
        running = [
            s.id for s in c.list_sandboxes(ListSandboxesOptions(status=SandboxStatus.RUNNING))
        ]
        check(created.id in running, "list status=running contains it", running)
        paused = [s.id for s in c.list_sandboxes(ListSandboxesOptions(status=SandboxStatus.PAUSED))]
        check(created.id not in paused, "list status=paused does not contain it", paused)
        eq(len(c.list_sandboxes(ListSandboxesOptions(limit=1))), 1, "list limit=1 returns one")
        stats = c.who_am_i().stats
        check(stats.running >= 1 and stats.total >= stats.running, "whoami counts it", stats)

        # Create validation (WIRE §10): 400 for bad bodies, 409 for a duplicate live name.
        def create(**kw: Any) -> Any:
            return c.create_sandbox(CreateSandboxRequest(**{"shape": SHAPE, **kw}), SHORT)

        expect_status(409, lambda: create(name=name), "duplicate name among live sandboxes")
        expect_status(400, lambda: create(shape=""), "empty shape")
        expect_status(400, lambda: create(shape="no-such-shape"), "unknown shape")
        expect_status(400, lambda: create(rootfs="no-such-rootfs:9"), "unknown rootfs")
        expect_status(400, lambda: create(environment_variables={"1BAD": "x"}), "bad env key")
        expect_status(400, lambda: create(auto_pause_after_seconds=59), "auto-pause below 60")
        expect_status(400, lambda: create(region="mars-1"), "region mismatch")
        expect_status(
            400,
            lambda: c._transport.request(
                "POST", "/v1/sandboxes", body={"shape": SHAPE, "bandwidth_quota_bytes": 1}
            ),
            "non-zero bandwidth_quota_bytes",
        )

        expect_status(404, lambda: c.get_sandbox("sb_00000000000000000000000000"), "GET unknown id")
        other = os.environ.get("CREATEOS_OTHER_API_KEY")
        if other:
            o = client(other)
            expect_status(404, lambda: o.get_sandbox(created.id), "GET another tenant's sandbox")
            check(
                created.id not in [s.id for s in o.list_sandboxes()],
                "another tenant's list does not show it",
                None,
            )
            # The SDK's own handle, bound to the other tenant's transport, as a user would hold it.
            foreign = createos.SandboxInstance(o._transport, view)
            expect_status(404, lambda: run(foreign, "true"), "exec in another tenant's sandbox")
            expect_status(404, foreign.destroy, "DELETE another tenant's sandbox")
            expect_status(404, foreign.pause, "pause another tenant's sandbox")

        sb.destroy()
        destroyed = True
        check(
            sb.status in {SandboxStatus.DESTROYING, SandboxStatus.DESTROYED},
            "DELETE returns destroying|destroyed",
            sb.status,
        )
        sb.wait_until_destroyed(WAIT)
        after = c.get_sandbox(created.id).data
        eq(after.status, SandboxStatus.DESTROYED, "destroyed row stays readable")
        check(after.destroyed_at is not None, "destroyed_at set", after)
        sb.destroy()  # idempotent
        eq(sb.status, SandboxStatus.DESTROYED, "repeated DELETE returns destroyed")
        gone = [
            s.id for s in c.list_sandboxes(ListSandboxesOptions(status=SandboxStatus.DESTROYED))
        ]
        check(created.id in gone, "list status=destroyed contains it", gone)
        expect_status(404, lambda: run(sb, "true"), "exec on a destroyed sandbox")
        expect_status(
            404,
            lambda: c._transport.request("DELETE", "/v1/sandboxes/sb_00000000000000000000000000"),
            "DELETE unknown id",
        )
    finally:
        if not destroyed:
            try:
                sb.destroy()
            except Exception:
                pass


def scenario_exec(c: Client) -> None:
    """Buffered exec, stdin/env, errors, shell(), streamed exec (frames, order, exit)."""
    with sandbox(c, environment_variables={"FOO": "bar"}) as sb:
        r = run(sb, "echo", "hello", "world")
        eq(r.result.standard_output, "hello world\n", "exec stdout")
        eq(r.result.standard_error, "", "exec stderr")
        eq(r.result.exit_code, 0, "exec exit_code")
        eq(r.result.error_message, "", "exec error absent")
        check(r.execution_milliseconds >= 0, "exec_ms", r.execution_milliseconds)

        r = bash(sb, "echo out; echo err >&2; exit 3")
        eq(
            (r.result.standard_output, r.result.standard_error, r.result.exit_code),
            ("out\n", "err\n", 3),
            "non-zero exit is a 200 with the code",
        )
        r = run(sb, "cat", standard_input="line1\nline2")
        eq(r.result.standard_output, "line1\nline2", "exec stdin")
        eq(run(sb, "printenv", "FOO").result.standard_output, "bar\n", "create-time env")
        r = run(sb, "printenv", "FOO", environment_variables={"FOO": "override"})
        eq(r.result.standard_output, "override\n", "per-exec env override of a declared key")
        expect_status(
            400,
            lambda: run(sb, "true", environment_variables={"NOPE": "1"}),
            "exec env with an undeclared key",
        )
        r = run(sb, "/definitely/not/a/binary")
        check(r.result.exit_code != 0 or r.result.error_message, "missing binary fails", r.result)
        r = bash(sb, "head -c 300000 /dev/zero | tr '\\0' x")
        eq(len(r.result.standard_output), 300000, "large buffered stdout length")
        r = bash(sb, "printf 'h\\xc3\\xa9llo \\xe2\\x82\\xac\\n'")
        eq(r.result.standard_output, "héllo €\n", "UTF-8 stdout")
        eq(sb.shell("echo ok").result.standard_output, "ok\n", "shell() success")
        try:
            sb.shell("exit 5")
        except CommandError as err:
            eq(err.response.result.exit_code, 5, "shell() CommandError exit code")
        else:
            raise Mismatch("shell('exit 5') did not raise CommandError")
        eq(
            bash(sb, "echo $0; id -u >/dev/null && echo fine").result.standard_output,
            "bash\nfine\n",
            "bash available in the rootfs",
        )

        # ---- streaming
        script = "echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c; exit 4"
        with sb.stream_command(
            RunCommandRequest(command="bash", arguments=["-c", script]), ExecOptions(timeout=30.0)
        ) as stream:
            events = list(stream)
        kinds = [e.type for e in events if e.type != ExecStreamEventType.HEARTBEAT]
        eq(kinds[-1], ExecStreamEventType.EXIT, "stream ends with the exit frame")
        eq(kinds.count(ExecStreamEventType.EXIT), 1, "exactly one exit frame")
        eq(events[-1].exit_code, 4, "stream exit code")
        out = "".join(e.data for e in events if e.type == ExecStreamEventType.STDOUT)
        err_ = "".join(e.data for e in events if e.type == ExecStreamEventType.STDERR)
        eq((out, err_), ("a\nc\n", "b\n"), "stream stdout/stderr contents")
        check(ExecStreamEventType.ERROR not in kinds, "no error frame", kinds)

        with sb.stream_command(
            RunCommandRequest(command="cat"), ExecOptions(timeout=30.0, standard_input="piped\n")
        ) as stream:
            events = list(stream)
        eq(
            "".join(e.data for e in events if e.type == ExecStreamEventType.STDOUT),
            "piped\n",
            "stream with stdin",
        )
        eq(events[-1].exit_code, 0, "stream stdin exit")

        with sb.stream_command(
            RunCommandRequest(command="printenv", arguments=["FOO"]),
            ExecOptions(timeout=30.0, environment_variables={"FOO": "s"}),
        ) as s:
            events = list(s)
        eq(
            "".join(e.data for e in events if e.type == ExecStreamEventType.STDOUT),
            "s\n",
            "stream with env override",
        )

        with sb.stream_command(
            RunCommandRequest(command="seq", arguments=["1", "30000"]), ExecOptions(timeout=30.0)
        ) as stream:
            events = list(stream)
        want = "".join(f"{i}\n" for i in range(1, 30001))
        eq(
            "".join(e.data for e in events if e.type == ExecStreamEventType.STDOUT),
            want,
            "large streamed stdout reassembles exactly",
        )

        # Heartbeats: the wrapper runs the emulator with a short heartbeat interval.
        with sb.stream_command(
            RunCommandRequest(command="sleep", arguments=["1"]), ExecOptions(timeout=30.0)
        ) as stream:
            events = list(stream)
        hbs = sum(1 for e in events if e.type == ExecStreamEventType.HEARTBEAT)
        check(hbs >= 1, "heartbeat frames during a silent 1 s command", hbs)
        eq(events[-1].type, ExecStreamEventType.EXIT, "heartbeats then exit")

        with sb.stream_command(
            RunCommandRequest(command="/definitely/not/a/binary"), ExecOptions(timeout=30.0)
        ) as stream:
            events = list(stream)
        terminal = [
            e for e in events if e.type in (ExecStreamEventType.EXIT, ExecStreamEventType.ERROR)
        ]
        check(terminal, "stream of a missing binary ends with exit or error", events)
        check(
            terminal[-1].type == ExecStreamEventType.ERROR or terminal[-1].exit_code != 0,
            "missing binary reported as failure",
            terminal,
        )

        # WIRE §11: a client that goes away mid-stream gets its command killed (bounded poll).
        marker = f"conf-marker-{secrets.token_hex(3)}"
        pattern = f"[{marker[0]}]{marker[1:]}"  # matches the command, never pgrep itself
        loop = RunCommandRequest(
            command="bash", arguments=["-c", "while :; do echo tick; sleep 0.02; done", marker]
        )
        with sb.stream_command(loop, ExecOptions(timeout=30.0)) as stream:
            for ev in stream:
                if ev.type == ExecStreamEventType.STDOUT:
                    break
            eq(run(sb, "pgrep", "-f", pattern).result.exit_code, 0, "streamed command runs")
        # Leaving the block closed the response: the SDK dropped the connection.
        polls = 0
        while run(sb, "pgrep", "-f", pattern).result.exit_code != 1:
            polls += 1
            check(polls < 300, "command killed after the client disconnected", polls)
        print(f"  disconnect -> command gone after {polls} extra poll(s)")

        # Streaming on a non-running sandbox is a 404 before any frame.
        sb.pause()
        sb.wait_until_paused(WAIT)

        def open_stream() -> None:
            with sb.stream_command(RunCommandRequest(command="true"), ExecOptions(timeout=30.0)):
                pass

        expect_status(404, open_stream, "stream exec on a paused sandbox")
        expect_status(404, lambda: run(sb, "true"), "buffered exec on a paused sandbox")
        expect_status(
            404,
            lambda: sb.processes.create(ManagedProcessCreateRequest(command="true")),
            "process create on a paused sandbox",
        )


def scenario_files(c: Client) -> None:
    """Upload / download round trips, exec sees the files and the other way round, errors."""
    with sandbox(c) as sb:
        blob = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, every byte value
        sb.files.upload("/workspace/conf/deep/blob.bin", blob, SHORT)  # parents auto-created
        with sb.files.download("/workspace/conf/deep/blob.bin", SHORT) as dl:
            ctype = dl.headers.get("content-type", "")
            data = dl.read()
        eq(len(data), len(blob), "download length")
        check(data == blob, "download bytes equal upload", None)
        check(ctype.startswith("application/octet-stream"), "download Content-Type", ctype)
        r = bash(
            sb,
            "f=/workspace/conf/deep/blob.bin; wc -c < $f; head -c 4 $f | od -An -tx1",
        )
        eq(
            r.result.standard_output.split(),
            [str(len(blob)), "00", "01", "02", "03"],
            "exec sees the uploaded file",
        )

        sb.files.upload("/tmp/hello.txt", b"first version, longer", SHORT)
        sb.files.upload("/tmp/hello.txt", b"second", SHORT)
        with sb.files.download("/tmp/hello.txt", SHORT) as dl:
            eq(dl.read(), b"second", "upload overwrites (truncates)")
        sb.files.upload("/tmp/empty", b"", SHORT)
        with sb.files.download("/tmp/empty", SHORT) as dl:
            eq(dl.read(), b"", "empty file round trip")

        bash(sb, "mkdir -p /tmp/made && printf 'from exec\\n' > /tmp/made/by-exec.txt")
        with sb.files.download("/tmp/made/by-exec.txt", SHORT) as dl:
            eq(dl.read(), b"from exec\n", "download sees a file written by exec")

        def download(path: str) -> bytes:
            with sb.files.download(path, SHORT) as dl:
                return dl.read()

        expect_status(404, lambda: download("/tmp/does-not-exist"), "download a missing file")
        expect_status(400, lambda: download("relative/path"), "download a relative path")
        expect_status(400, lambda: download("/tmp/../etc/passwd"), "download a path with ..")
        expect_status(400, lambda: sb.files.upload("relative.txt", b"x", SHORT), "upload relative")
        expect_status(400, lambda: sb.files.upload("/tmp/a/../b", b"x", SHORT), "upload with ..")
        # Symlink escape: a link created inside the sandbox must resolve inside the sandbox.
        bash(sb, "ln -sf /etc /tmp/etc-link")
        try:
            got = download("/tmp/etc-link/hostname")
        except APIError:
            pass  # refused: fine
        else:
            r = run(sb, "cat", "/etc/hostname")
            eq(
                got.decode(errors="replace"),
                r.result.standard_output,
                "symlinked download resolves inside the sandbox (same as exec sees)",
            )
        missing = c._transport.request_raw  # raw route errors are JSend too
        resp = missing(
            "GET", "/v1/sandboxes/sb_00000000000000000000000000/files", params={"path": "/tmp/x"}
        )
        try:
            eq(resp.status_code, 404, "files on an unknown sandbox")
            check(
                resp.headers.get("content-type", "").startswith("application/json"),
                "file error is JSON",
                resp.headers.get("content-type"),
            )
        finally:
            resp.close()


def scenario_lifecycle(c: Client) -> None:
    """Pause, resume, fork (child, start_paused), illegal transitions."""
    with sandbox(c, environment_variables={"FOO": "src"}) as sb, c_cleanup(c) as extra:
        sb.files.upload("/workspace/state.txt", b"before pause", SHORT)
        expect_status(409, sb.resume, "resume a running sandbox")
        expect_status(409, lambda: sb.fork(), "fork a running sandbox")
        sb.pause()
        check(
            sb.status in {SandboxStatus.PAUSING, SandboxStatus.PAUSED},
            "pause returns pausing|paused",
            sb.status,
        )
        sb.wait_until_paused(WAIT)
        eq(c.get_sandbox(sb.id).status, SandboxStatus.PAUSED, "GET after pause")
        check(c.get_sandbox(sb.id).data.paused_at is not None, "paused_at set", None)
        expect_status(409, sb.pause, "pause a paused sandbox")
        expect_status(404, lambda: sb.files.upload("/tmp/x", b"x", SHORT), "upload while paused")

        child = sb.fork()
        extra.append(child)
        check(child.id and child.id != sb.id, "fork returns the CHILD view (new id)", child.id)
        check(
            child.status in {SandboxStatus.FORKING, SandboxStatus.RESUMING, SandboxStatus.RUNNING},
            "fork child status",
            child.status,
        )
        eq(child.data.forked_from, sb.id, "child forked_from")
        child.wait_until_running(WAIT)
        eq(c.get_sandbox(sb.id).status, SandboxStatus.PAUSED, "source stays paused after fork")
        eq(
            run(child, "cat", "/workspace/state.txt").result.standard_output,
            "before pause",
            "child sees the source's files",
        )
        bash(child, "echo child-only > /workspace/child.txt")

        paused_child = sb.fork(ForkSandboxRequest(start_paused=True))
        extra.append(paused_child)
        paused_child.wait_until_paused(WAIT)
        eq(paused_child.data.forked_from, sb.id, "start_paused child forked_from")

        # Fork overrides (WIRE §10): envs/egress replace, explicit ingress_enabled false kept.
        over = sb.fork(
            ForkSandboxRequest(
                environment_variables={"FOO": "child"},
                egress_rules=["example.com:443"],
                ingress_enabled=False,
            )
        )
        extra.append(over)
        over.wait_until_running(WAIT)
        eq(over.data.egress_rules, ["example.com:443"], "fork egress override")
        eq(over.data.ingress_enabled, False, "fork ingress_enabled:false")
        eq(run(over, "printenv", "FOO").result.standard_output, "child\n", "fork envs override")

        sb.resume()
        check(
            sb.status in {SandboxStatus.RESUMING, SandboxStatus.RUNNING},
            "resume returns resuming|running",
            sb.status,
        )
        sb.wait_until_running(WAIT)
        check(sb.data.last_resumed_at is not None, "last_resumed_at set after resume", sb.data)
        eq(
            run(sb, "cat", "/workspace/state.txt").result.standard_output,
            "before pause",
            "files survive pause/resume",
        )
        eq(
            bash(sb, "test -e /workspace/child.txt && echo yes || echo no").result.standard_output,
            "no\n",
            "child writes do not leak into the source",
        )

        # A process started before pause keeps running after resume (SIGSTOP/SIGCONT).
        # WIRE §11: detach with `nohup setsid ... &`; the process outlives its exec call.
        bash(sb, "nohup setsid sleep 300 >/dev/null 2>&1 & echo $! > /tmp/bg.pid")
        alive = "kill -0 $(cat /tmp/bg.pid) 2>/dev/null && echo alive || echo gone"
        eq(bash(sb, alive).result.standard_output, "alive\n", "detached process outlives exec")
        sb.pause()
        sb.wait_until_paused(WAIT)
        sb.resume()
        sb.wait_until_running(WAIT)
        eq(bash(sb, alive).result.standard_output, "alive\n", "detached process survives pause")

        for s in (child, paused_child, over):
            s.destroy()
            s.wait_until_destroyed(WAIT)
        expect_status(409, child.resume, "resume a destroyed sandbox")


@contextmanager
def c_cleanup(c: Client) -> Iterator[list[createos.SandboxInstance]]:
    """Collect extra sandboxes made inside a scenario and destroy them at the end."""
    made: list[createos.SandboxInstance] = []
    try:
        yield made
    finally:
        for s in made:
            try:
                s.destroy()
            except Exception:
                pass


def collect(stream: Any, limit: float = 20.0) -> list[Any]:
    """Read a process connect stream to its exit frame (bounded by the request timeout)."""
    events = []
    deadline = time.monotonic() + limit
    for ev in stream:
        events.append(ev)
        if ev.type == ManagedProcessConnectEventType.EXIT:
            break
        if time.monotonic() > deadline:
            raise Mismatch("process connect stream did not reach an exit frame")
    return events


def scenario_processes(c: Client) -> None:
    """Managed processes: pipes, input, connect/replay with seq, wait, signal, PTY, delete."""
    with sandbox(c) as sb:
        procs = sb.processes
        eq(procs.list(), [], "no processes in a fresh sandbox")
        p = procs.create(
            ManagedProcessCreateRequest(
                command="bash",
                arguments=["-c", "echo one; read x; echo got:$x; echo e >&2; exit 7"],
                working_directory="/tmp",
            )
        )
        check(p.process_id, "process_id", p)
        eq(p.kind, ManagedProcessKind.PROCESS, "pipe process kind")
        check(
            p.state in {ManagedProcessState.STARTING, ManagedProcessState.RUNNING},
            "new process state",
            p.state,
        )
        check(p.pid > 0, "pid", p.pid)
        eq(p.command, "bash", "cmd echoed")
        check(p.created_at is not None, "created_at", p)
        seq = procs.input(p.process_id, "hi\n")
        check(isinstance(seq, int) and seq >= 0, "input_seq", seq)
        opts = ManagedProcessConnectOptions(timeout=20.0)
        with procs.connect(p.process_id, opts) as stream:
            events = collect(stream)
        data = [e for e in events if e.type == ManagedProcessConnectEventType.DATA]
        out = b"".join(e.data for e in data if e.stream == ManagedProcessStream.STDOUT)
        err = b"".join(e.data for e in data if e.stream == ManagedProcessStream.STDERR)
        eq((out, err), (b"one\ngot:hi\n", b"e\n"), "process output via connect")
        eq(events[-1].exit_code, 7, "exit frame exit_code")
        seqs = [e.sequence for e in data]
        eq(seqs, sorted(set(seqs)), "seq strictly increasing")
        check(seqs[0] >= 1, "seq starts at >= 1", seqs)
        # Replay from the middle: only frames after `after`, no gaps, no duplicates.
        with procs.connect(
            p.process_id, ManagedProcessConnectOptions(after_sequence=seqs[0], timeout=20.0)
        ) as stream:
            replay = collect(stream)
        eq(
            [e.sequence for e in replay if e.type == ManagedProcessConnectEventType.DATA],
            seqs[1:],
            "connect after=N replays exactly the frames with seq > N",
        )
        eq(replay[-1].type, ManagedProcessConnectEventType.EXIT, "replay ends with exit")
        done = procs.wait(
            p.process_id,
            ManagedProcessWaitOptions(
                scope=ManagedProcessWaitScope.TREE, wait_timeout=10.0, timeout=20.0
            ),
        )
        eq(
            (done.state, done.exit_code, done.leader_exited, done.tree_exited),
            (ManagedProcessState.EXITED, 7, True, True),
            "wait view after exit",
        )
        check(done.finished_at is not None, "finished_at", done)
        eq(done.output.newest_sequence, seqs[-1], "output.newest_seq")
        check(done.output.oldest_sequence <= seqs[0], "output.oldest_seq", done.output)
        check(done.output.bytes >= len(out) + len(err), "output.bytes", done.output)
        got = procs.get(p.process_id)
        eq((got.process_id, got.exit_code), (p.process_id, 7), "GET process")
        check(p.process_id in [x.process_id for x in procs.list()], "list has it", None)

        # stdin close ends `cat`.
        cat = procs.create(ManagedProcessCreateRequest(command="cat"))
        procs.input_bytes(cat.process_id, b"\x00\xffbin\n")
        procs.close_standard_input(cat.process_id)
        with procs.connect(cat.process_id, opts) as stream:
            events = collect(stream)
        eq(
            b"".join(e.data for e in events if e.type == ManagedProcessConnectEventType.DATA),
            b"\x00\xffbin\n",
            "binary input echoed back by cat (base64 both ways)",
        )
        eq(events[-1].exit_code, 0, "cat exits 0 after stdin close")

        # Signals and wait with a budget that elapses before exit.
        sl = procs.create(ManagedProcessCreateRequest(command="sleep", arguments=["300"]))
        early = procs.wait(sl.process_id, ManagedProcessWaitOptions(wait_timeout=0.2, timeout=20.0))
        eq(early.leader_exited, False, "wait returns before exit when the budget elapses")
        procs.signal(sl.process_id, ManagedProcessSignal.TERMINATE)
        fin = procs.wait(sl.process_id, ManagedProcessWaitOptions(wait_timeout=10.0, timeout=20.0))
        eq(fin.leader_exited, True, "SIGTERM ends sleep")
        check(
            fin.signal == "SIGTERM" or fin.exit_code not in (None, 0),
            "signal exit recorded",
            (fin.signal, fin.exit_code),
        )
        expect_status(
            400,
            lambda: sb._transport.request(
                "POST", procs._path(sl.process_id, "/signal"), body={"signal": "SIGBOGUS"}
            ),
            "unknown signal name",
        )

        # Delete a running process tree.
        tree = procs.create(
            ManagedProcessCreateRequest(
                command="bash", arguments=["-c", "sleep 300 & sleep 300; wait"]
            )
        )
        gone = procs.delete(
            tree.process_id, ManagedProcessDeleteOptions(grace_period=0.5, timeout=20.0)
        )
        eq(gone.process_id, tree.process_id, "DELETE returns the final view")
        eq((gone.leader_exited, gone.tree_exited), (True, True), "DELETE kills the whole tree")
        expect_status(404, lambda: procs.get("definitely-not-a-process"), "unknown process id")

        # PTY with neither cmd nor size: the SDK sends {"pty": {}}; a login shell starts.
        sh = procs.create(ManagedProcessCreateRequest(pty=PTYSize()))
        eq(sh.kind, ManagedProcessKind.PTY, "bare pty kind")
        procs.input(sh.process_id, "exit 0\n")
        fin = procs.wait(sh.process_id, ManagedProcessWaitOptions(wait_timeout=10.0, timeout=20.0))
        eq((fin.leader_exited, fin.exit_code), (True, 0), "bare pty shell exits on input")

        expect_status(
            400,
            lambda: sb._transport.request(
                "POST", procs._path(), body={"pty": {"rows": 0, "cols": 40}}
            ),
            "explicit 0-row PTY (openapi PTYSize minimum 1)",
        )

        # PTY: a shell with a terminal.
        pty = procs.create(
            ManagedProcessCreateRequest(command="bash", pty=PTYSize(rows=24, cols=80))
        )
        eq(pty.kind, ManagedProcessKind.PTY, "pty kind")
        procs.resize(pty.process_id, PTYSize(rows=40, cols=100))
        procs.input(pty.process_id, "stty size; echo $((6*7)); exit 3\n")
        with procs.connect(pty.process_id, opts) as stream:
            events = collect(stream)
        data = [e for e in events if e.type == ManagedProcessConnectEventType.DATA]
        check(
            data and all(e.stream == ManagedProcessStream.PTY for e in data),
            "pty output is on stream 'pty'",
            {e.stream for e in data},
        )
        text = b"".join(e.data for e in data).decode(errors="replace")
        check("42" in text, "pty shell ran the input", text[-300:])
        check("40 100" in text, "pty resize took effect (stty size)", text[-300:])
        eq(events[-1].exit_code, 3, "pty exit code")
        # Processes outlive a client disconnect: start, drop a connect mid-way, still running.
        bg = procs.create(
            ManagedProcessCreateRequest(
                command="bash", arguments=["-c", "echo start; read x; echo after:$x"]
            )
        )
        with procs.connect(bg.process_id, opts) as stream:
            first = next(stream)
            while first.type != ManagedProcessConnectEventType.DATA:
                first = next(stream)
        procs.input(bg.process_id, "z\n")
        with procs.connect(
            bg.process_id, ManagedProcessConnectOptions(after_sequence=first.sequence, timeout=20.0)
        ) as stream:
            events = collect(stream)
        eq(
            b"".join(e.data for e in events if e.type == ManagedProcessConnectEventType.DATA),
            b"after:z\n",
            "process survives a dropped connect and resumes after seq",
        )
        eq(events[-1].exit_code, 0, "bg exit")

        # scope=leader vs tree (WIRE §13): the leader exits at once, its orphan keeps the tree
        # (and the inherited stdout/stderr pipes) alive.
        orphan = procs.create(
            ManagedProcessCreateRequest(command="bash", arguments=["-c", "sleep 30 & exit 0"])
        )
        check(orphan.pid > 0, "pid of a process whose leader exits at once", orphan.pid)
        lead = procs.wait(
            orphan.process_id,
            ManagedProcessWaitOptions(
                scope=ManagedProcessWaitScope.LEADER, wait_timeout=5.0, timeout=20.0
            ),
        )
        eq(
            (lead.leader_exited, lead.tree_exited, lead.exit_code),
            (True, False, 0),
            "wait scope=leader returns when the leader exits, tree still alive",
        )
        gone = procs.delete(orphan.process_id, ManagedProcessDeleteOptions(timeout=20.0))
        eq(gone.tree_exited, True, "DELETE ends the orphaned tree")


def scenario_tokens(c: Client) -> None:
    """Per-sandbox access tokens (WIRE §16): plaintext once, drives only its own sandbox."""
    with sandbox(c) as sb, sandbox(c) as other:
        eq(sb.get_access_token().enabled, False, "no token yet")
        made = sb.create_access_token()
        check(made.token and made.enabled and made.created_at, "token created", made.enabled)
        expect_status(409, sb.create_access_token, "second token while one is enabled")
        meta = sb.get_access_token()
        eq(meta.enabled, True, "token enabled")
        check(meta.token_hint and made.token not in meta.token_hint, "hint, never the token", None)
        delegated = sb.with_access_token(made.token)
        eq(run(delegated, "echo", "via-token").result.standard_output, "via-token\n", "token execs")
        eq(delegated.refresh().id, sb.id, "token reads its own sandbox")
        foreign = createos.SandboxInstance(delegated._transport, other.data)
        expect_status({403, 404}, lambda: run(foreign, "true"), "token on another sandbox")
        expect_status(403, delegated.get_access_token, "token cannot manage tokens")
        rotated = sb.rotate_access_token()
        check(rotated.token and rotated.token != made.token, "rotate returns a new token", None)
        expect_status(401, lambda: run(delegated, "true"), "old token revoked by rotate")
        eq(sb.disable_access_token().enabled, False, "DELETE disables")
        expect_status(
            401, lambda: run(sb.with_access_token(rotated.token), "true"), "disabled token"
        )
        eq(sb.disable_access_token().enabled, False, "DELETE again still succeeds")
        expect_status(404, sb.rotate_access_token, "rotate with no token")


def scenario_faults(c: Client) -> None:
    """Only with the faults tests/test_conformance.py arms (FAULT_PLAN there), in this order."""
    eq(bool(c.who_am_i().user_id), True, "whoami after a 503 with Retry-After: 0 (retried)")
    c.list_sandboxes()  # connection reset before headers: a GET, retried
    with sandbox(c) as sb:  # POST create answered 429 first: retried (the server did not run it)
        eq(c.get_sandbox(sb.id).id, sb.id, "GET after an nginx-style HTML 502 (retried)")
        err = expect_status(500, lambda: run(sb, "true"), "exec POST 500 (never retried)")
        check(err.body.startswith(b"{"), "injected 500 carries a JSend body", err.body[:200])
        script = "echo one; sleep 0.3; echo two"
        with sb.stream_command(
            RunCommandRequest(command="bash", arguments=["-c", script]), ExecOptions(timeout=30.0)
        ) as stream:
            events = list(stream)
        kinds = [e.type for e in events if e.type != ExecStreamEventType.HEARTBEAT]
        eq(kinds, [ExecStreamEventType.STDOUT], "truncated stream: output, then EOF, no exit")
        eq(
            [e.data for e in events if e.type == ExecStreamEventType.STDOUT],
            ["one\n"],
            "truncated stream output",
        )
        blob = secrets.token_bytes(65536)
        sb.files.upload("/tmp/slow.bin", blob, SHORT)
        with sb.files.download("/tmp/slow.bin", SHORT) as dl:
            check(dl.read() == blob, "slow (dribbled) download reassembles", None)
        eq(run(sb, "echo", "ok").result.standard_output, "ok\n", "exec works after the faults")


SCENARIOS: dict[str, Callable[[Client], None]] = {
    "catalog": scenario_catalog,
    "sandboxes": scenario_sandboxes,
    "exec": scenario_exec,
    "files": scenario_files,
    "lifecycle": scenario_lifecycle,
    "processes": scenario_processes,
    "tokens": scenario_tokens,
    "faults": scenario_faults,
}


def main(argv: list[str]) -> int:
    names = argv or [n for n in SCENARIOS if n != "faults"]  # faults needs armed faults
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    print(
        f"official createos-sandbox {createos.__version__} against "
        f"{os.environ.get('CREATEOS_SANDBOX_BASE_URL')}"
    )
    failed = 0
    with client() as c:
        for name in names:
            start = time.monotonic()
            try:
                SCENARIOS[name](c)
            except Exception:
                failed += 1
                print(f"FAIL {name}", flush=True)
                traceback.print_exc()
            else:
                print(f"ok   {name} ({time.monotonic() - start:.1f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
