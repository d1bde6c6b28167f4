"""The command line, verb by verb, run as real subprocesses against one emulator per module.

Each test makes its own sandboxes (and names), so the tests share the emulator without seeing
each other's state. ``shell`` and the interactive ``create`` prompt need a pseudo-terminal: they
are in test_cli_shell.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _emulator import child_process, pids_with_argv, python_argv, start_emulator

from createos_sandbox_async import new_run_id, sandbox_name
from createos_sandbox_async.cli import main as cli_main
from createos_sandbox_async.cli._app import build_parser
from createos_sandbox_async.local import LocalServer

pytestmark = pytest.mark.anyio

SECRET = "s3cret-value-never-printed"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[LocalServer]:
    async with start_emulator(transition_delay=0.02) as emu:
        yield emu


@pytest.fixture
async def session(server: LocalServer) -> AsyncIterator[Any]:
    async with server.session() as s:
        yield s


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Run:
    """A finished CLI run: exit status, stdout, stderr (text)."""

    def __init__(self, proc: Any) -> None:
        self.code: int = proc.returncode
        self.out: str = proc.stdout.decode()
        self.err: str = proc.stderr.decode()

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<Run {self.code} out={self.out[-300:]!r} err={self.err[-300:]!r}>"


async def cli(
    server: LocalServer, *args: str, stdin: bytes | None = None, key: str | None = None
) -> Run:
    """``python -m createos_sandbox_async ARGS`` with the key in the environment only."""
    env = dict(os.environ)
    env.pop("CREATEOS_API_KEY", None)
    env.update(CREATEOS_SANDBOX_API_KEY=server.api_key if key is None else key)
    env.update(CREATEOS_SANDBOX_BASE_URL=server.base_url)
    if key == "":
        del env["CREATEOS_SANDBOX_API_KEY"]
    cmd = [sys.executable, "-m", "createos_sandbox_async", *args]
    # An empty pipe, not /dev/null: anyio 4.2 (the oldest allowed) has no stdin= in run_process.
    with anyio.fail_after(60):  # run_process kills the child when this deadline cancels it
        proc = await anyio.run_process(cmd, env=env, check=False, input=stdin or b"")
    run = Run(proc)
    assert server.api_key not in run.out + run.err
    assert "Traceback" not in run.err, run.err
    return run


async def _box(session: Any, **kw: Any) -> Any:
    return await session.sandboxes.create(shape="s-1vcpu-256mb", name=_name("box"), **kw)


# -- help, version, output ------------------------------------------------------------------------


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser that runs a handler (aliases share a parser: counted once)."""
    found = [parser] if "handler" in parser._defaults else []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                found += _leaves(child)
    return found


def test_every_verb_has_help_with_an_example_and_defaults() -> None:
    leaves = _leaves(build_parser())
    assert len(leaves) == 36
    for parser in leaves:
        assert parser.epilog and parser.epilog.startswith("example:\n  "), parser.prog
        assert "createos-sandbox " + parser.prog.split(" ", 1)[1] in parser.epilog
        assert "--output" in parser.format_help()
    create = next(p for p in leaves if p.prog.endswith(" create") and "--shape" in p.format_help())
    assert "(default: s-1vcpu-256mb)" in create.format_help()


async def test_version_and_usage_errors(server: LocalServer) -> None:
    from createos_sandbox_async import __version__

    version = await cli(server, "--version")
    assert (version.code, version.out.strip()) == (0, f"createos-sandbox {__version__}")
    unknown = await cli(server, "frobnicate")
    assert (
        unknown.code == 2 and unknown.err.startswith("error: ") and "invalid choice" in unknown.err
    )
    assert unknown.err.count("\n") == 1  # one line, not argparse's usage block
    missing = await cli(server, "get", "-o", "json")
    assert missing.code == 2 and missing.json()["error"]["exit_status"] == 2
    late = await cli(server, "exec", "box", "--bogus", "--", "true")
    assert late.code == 2 and "--bogus" in late.err


# -- create ---------------------------------------------------------------------------------------


async def test_create_with_every_flag(server: LocalServer, session: Any, tmp_path: Path) -> None:
    net = await session.networks.create(_name("net"))
    disk = await session.disks.create(
        _name("disk"), bucket="b", endpoint="http://127.0.0.1:9", access_key="a", secret_key="s"
    )
    key = tmp_path / "id.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxHNlRD7kq6U0XyFhpbvTjsfhNR0cw+Y1Tby0Ka7hX8 me\n"
    )
    name = _name("made")
    run = await cli(
        server, "create", "--shape", "s-1vcpu-512mb", "--name", name, "--rootfs", "devbox:1",
        "--env", f"TOKEN={SECRET}", "--disk-mib", "12000", "--ssh-key", str(key), "--ingress",
        "--egress", "pypi.org", "--auto-pause", "10m", "--network", net.name,
        "--disk", f"{disk.name}:/mnt/data", "--output", "json",
    )  # fmt: skip
    assert run.code == 0, run
    doc = run.json()
    assert doc["action"] == "created" and doc["name"] == name and doc["shape"] == "s-1vcpu-512mb"
    assert doc["envs"] == ["TOKEN"] and SECRET not in run.out + run.err
    assert (doc["ingress_enabled"], doc["egress"]) == (True, ["pypi.org"])
    assert (doc["auto_pause_after_seconds"], doc["disk_mib"]) == (600, 12000)
    sb = await session.sandboxes.get(doc["id"])
    assert [d.mount_path for d in await sb.list_disks()] == ["/mnt/data"]
    assert [m.sandbox_id for m in (await session.networks.get(net.id)).members or ()] == [sb.id]
    assert len(sb.data.ssh_pubkeys) == 1
    await sb.destroy()


async def test_create_text_prints_the_id_and_refuses_bad_flags_before_sending(
    server: LocalServer, tmp_path: Path
) -> None:
    made = await cli(server, "create")  # no flags, no terminal: no prompt, the default shape
    assert made.code == 0 and made.out.strip().startswith("sb_")
    before = server.request_count("POST", "/v1/sandboxes")
    bad_env = await cli(server, "create", "--env", "NOEQUALS")
    assert bad_env.code == 2 and "--env" in bad_env.err
    bad_pause = await cli(server, "create", "--auto-pause", "5s")
    assert bad_pause.code == 2 and "auto_pause" in bad_pause.err
    bad_duration = await cli(server, "create", "--auto-pause", "soon")
    assert bad_duration.code == 2 and "--auto-pause" in bad_duration.err
    no_key = await cli(server, "create", "--ssh-key", str(tmp_path / "missing.pub"))
    assert no_key.code == 12 and "missing.pub" in no_key.err
    bad_disk = await cli(server, "create", "--disk", "nomount")
    assert bad_disk.code == 2
    assert server.request_count("POST", "/v1/sandboxes") == before
    rejected = await cli(server, "create", "--shape", "s-99vcpu")
    assert (
        rejected.code == 7 and rejected.err.startswith("error: ") and rejected.err.count("\n") == 1
    )
    await cli(server, "rm", "--force", made.out.strip())


# -- ls / get -------------------------------------------------------------------------------------


async def test_ls_default_all_status_quiet(server: LocalServer, session: Any) -> None:
    running, paused, gone = await _box(session), await _box(session), await _box(session)
    await paused.pause(wait=True)
    await gone.destroy(wait=True)
    default = await cli(server, "ls")
    assert default.code == 0
    assert f"{running.id}\trunning\t{running.data.name}" in default.out
    assert paused.id in default.out and gone.id not in default.out
    assert gone.id in (await cli(server, "list", "--all")).out
    only = await cli(server, "ls", "--status", "paused", "--quiet")
    assert paused.id in only.out.split() and running.id not in only.out
    docs = (await cli(server, "ls", "-o", "json")).json()
    mine = {d["id"]: d for d in docs}
    assert mine[running.id]["status"] == "running" and set(mine[running.id]) >= {"name", "shape"}
    bad = await cli(server, "ls", "--status", "sleepy")
    assert bad.code == 2
    for sb in (running, paused):
        await sb.destroy()


async def test_get_resolves_names_like_the_official_cli(server: LocalServer, session: Any) -> None:
    name = _name("dup")
    old = await session.sandboxes.create(shape="s-1vcpu-256mb", name=name)
    await old.destroy(wait=True)
    new = await session.sandboxes.create(shape="s-1vcpu-256mb", name=name)
    by_name = await cli(server, "get", name, "--output", "json")
    assert by_name.code == 0 and by_name.json()["id"] == new.id  # the most recent one wins
    assert by_name.json()["bandwidth"]["id"] == new.id
    by_id = await cli(server, "get", old.id)
    assert by_id.code == 0 and "status:\tdestroyed" in by_id.out
    missing = await cli(server, "-o", "json", "get", "no-such-box")
    assert missing.code == 4 and missing.err.startswith("error: no sandbox named")
    assert missing.json()["error"]["exit_status"] == 4
    unknown_id = await cli(server, "get", "sb_NOPE", "-o", "json")
    assert unknown_id.code == 4 and unknown_id.json()["error"]["http_status"] == 404
    await new.destroy()


# -- edit / pause / resume / fork -----------------------------------------------------------------


async def test_edit(server: LocalServer, session: Any, tmp_path: Path) -> None:
    sb = await _box(session)
    key = tmp_path / "k.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJr0e3Y8Ue9gkK1yI5cPqU2jE0Ff0KkW7uFqzrVkP2b4 k\n"
    )
    run = await cli(
        server, "edit", sb.data.name, "--ingress", "on", "--auto-pause", "30m",
        "--add-ssh-key", str(key), "--disk-mib", "20480", "-o", "json",
    )  # fmt: skip
    assert run.code == 0, run
    doc = run.json()
    assert (doc["action"], doc["ingress_enabled"], doc["auto_pause_after_seconds"]) == (
        "edited",
        True,
        1800,
    )
    assert (doc["disk_mib"], doc["ssh_keys_total"]) == (20480, 1)
    off = await cli(server, "edit", sb.id, "--auto-pause", "off", "--ingress", "off")
    assert off.code == 0 and "ingress=off\tauto_pause=off" in off.out
    assert (await cli(server, "edit", sb.id)).code == 2
    assert (await cli(server, "edit", sb.id, "--ingress", "maybe")).code == 2
    shrink = await cli(server, "edit", sb.id, "--disk-mib", "100")
    assert shrink.code == 7
    await sb.destroy()


async def test_pause_resume_fork(server: LocalServer, session: Any) -> None:
    sb = await _box(session)
    name = sb.data.name
    running_fork = await cli(server, "fork", name)
    assert running_fork.code == 7 and "pause" in running_fork.err  # only paused ones fork
    paused = await cli(server, "pause", name, "-o", "json")
    assert paused.code == 0 and (paused.json()["action"], paused.json()["status"]) == (
        "paused",
        "paused",
    )
    again = await cli(server, "pause", name)
    assert again.code == 7
    kept = await cli(server, "fork", name, "--paused", "-o", "json")
    assert kept.code == 0 and kept.json()["status"] == "paused"
    assert kept.json()["source_id"] == sb.id
    child = await cli(server, "fork", sb.id)
    assert child.code == 0
    child_id = child.out.strip()
    assert (await session.sandboxes.get(child_id)).status == "running"
    resumed = await cli(server, "resume", name)
    assert resumed.code == 0 and resumed.out.strip() == f"{sb.id}\trunning"
    gone = await cli(server, "rm", "-f", sb.id, child_id, kept.json()["id"])
    assert gone.code == 0


# -- rm -------------------------------------------------------------------------------------------


async def test_rm_many_goes_past_failures(server: LocalServer, session: Any) -> None:
    a, b = await _box(session), await _box(session)
    refused = await cli(server, "rm", a.id)  # not a terminal and no --force
    assert refused.code == 2 and "--force" in refused.err
    assert (await session.sandboxes.get(a.id)).status == "running"
    run = await cli(server, "rm", a.data.name, "no-such-box", b.id, "--force", "-o", "json")
    assert run.code == 1, run
    doc = run.json()
    assert (doc["deleted"], doc["failed"]) == (2, 1)
    assert [r["deleted"] for r in doc["results"]] == [True, False, True]
    assert doc["results"][0]["id"] == a.id and "no-such-box" in doc["results"][1]["error"]
    assert "error: no-such-box:" in run.err
    for sb in (a, b):
        assert (await session.sandboxes.get(sb.id)).status in ("destroying", "destroyed")
    one_missing = await cli(server, "rm", "sb_NOPE", "--yes")
    assert one_missing.code == 4
    assert (await cli(server, "rm", "--force")).code == 2


async def test_rm_all_is_a_dry_run_until_forced_and_keeps_to_its_filters(
    server: LocalServer, session: Any
) -> None:
    """`rm --all --run-id`: lists a crashed run's sandboxes, destroys them only with --force."""
    run_id = new_run_id()
    ours = [
        await session.sandboxes.create(
            shape="s-1vcpu-256mb", name=sandbox_name("batch", run_id=run_id, seq=i)
        )
        for i in (1, 2)
    ]
    bystander = await _box(session)
    dry = await cli(server, "rm", "--all", "--run-id", run_id, "-o", "json")
    assert dry.code == 0, dry
    doc = dry.json()
    assert doc["dry_run"] is True and doc["matched"] == 2 and doc["destroyed"] == 0
    assert sorted(r["id"] for r in doc["results"]) == sorted(sb.id for sb in ours)
    for sb in [*ours, bystander]:
        assert (await session.sandboxes.get(sb.id)).status == "running"
    forced = await cli(server, "rm", "--all", "--run-id", run_id, "--force")
    assert forced.code == 0, forced
    assert sum(line.startswith("destroyed") for line in forced.out.splitlines()) == 2
    for sb in ours:
        assert (await session.sandboxes.get(sb.id)).status in ("destroying", "destroyed")
    assert (await session.sandboxes.get(bystander.id)).status == "running"
    assert (await cli(server, "rm", "--all", bystander.id)).code == 2
    assert (await cli(server, "rm", "--run-id", run_id)).code == 2


# -- exec -----------------------------------------------------------------------------------------


async def test_exec(server: LocalServer, session: Any, tmp_path: Path) -> None:
    sb = await _box(session, envs={"GREETING": "hello", "TOKEN": SECRET})
    name = sb.data.name
    ran = await cli(
        server, "exec", name, "--", "bash", "-c", 'echo "$GREETING"; echo err >&2; exit 3'
    )
    assert (ran.code, ran.out, ran.err) == (3, "hello\n", "err\n")
    implicit = await cli(server, "exec", sb.id, "uname", "-s")
    assert (implicit.code, implicit.out) == (0, "Linux\n")
    override = await cli(
        server, "exec", name, "--env", "GREETING=bye", "--", "printenv", "GREETING"
    )
    assert override.out == "bye\n"
    piped = await cli(server, "exec", name, "--", "tr", "a-z", "A-Z", stdin=b"piped in\n")
    assert piped.out == "PIPED IN\n"
    src = tmp_path / "in.txt"
    src.write_text("from a file\n")
    from_file = await cli(server, "exec", name, "--stdin", str(src), "--", "cat")
    assert from_file.out == "from a file\n"
    as_json = await cli(server, "exec", name, "-o", "json", "--", "sh", "-c", "echo out; exit 5")
    assert as_json.code == 5
    assert as_json.json() == {
        "sandbox_id": sb.id,
        "exit_code": 5,
        "stdout": "out\n",
        "stderr": "",
        "error": None,
    }
    hidden = await cli(server, "exec", name, "--", "sh", "-c", 'test -n "$TOKEN"')
    assert hidden.code == 0  # the value reached the command, and cli() saw it nowhere in output
    slow = await cli(server, "exec", name, "--timeout", "0.5", "--", "sleep", "30")
    assert slow.code == 11 and slow.err.startswith("error:")
    not_started = await cli(server, "exec", name, "--", "/no/such/binary")
    assert not_started.code == 127 and not_started.err.startswith("error:")
    assert (await cli(server, "exec", name)).code == 2
    assert (await cli(server, "exec", name, "--", "true", "--stdin", "x")).code == 0
    missing_file = await cli(server, "exec", name, "--stdin", str(tmp_path / "nope"), "--", "cat")
    assert missing_file.code == 12
    binary = await cli(server, "exec", name, "--", "cat", stdin=b"\xff\xfe")
    assert binary.code == 2 and "stdin" in binary.err
    missing = await cli(server, "exec", "sb_doesnotexist", "--", "true")
    assert missing.code == 4 and missing.err.startswith("error:")
    await sb.destroy()


async def test_exec_ctrl_c_kills_the_remote_command_and_exits_130(
    server: LocalServer, session: Any
) -> None:
    sb = await _box(session)
    env = dict(os.environ)
    env.update(CREATEOS_SANDBOX_API_KEY=server.api_key, CREATEOS_SANDBOX_BASE_URL=server.base_url)
    argv = python_argv(
        "-m",
        "createos_sandbox_async",
        "exec",
        sb.id,
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 4321",
    )
    async with child_process(argv, env=env, stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            seen = b""
            while b"started" not in seen:
                seen += await proc.stdout.receive()
        with anyio.fail_after(30):  # `exec sleep` runs right after the echo: wait for it
            while not pids_with_argv("sleep", "4321"):
                await anyio.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            assert await proc.wait() == 130
    with anyio.fail_after(30):  # the server kills the command when the stream goes away
        while pids_with_argv("sleep", "4321"):
            await anyio.sleep(0.05)
    await sb.destroy()


# -- push / pull ----------------------------------------------------------------------------------


async def test_push_and_pull(server: LocalServer, session: Any, tmp_path: Path) -> None:
    sb = await _box(session)
    name = sb.data.name
    src = tmp_path / "main.py"
    src.write_bytes(b"print('hi')\n")
    pushed = await cli(server, "push", name, str(src), "/workspace/main.py", "-o", "json")
    assert pushed.code == 0 and pushed.json()["bytes"] == src.stat().st_size
    assert await sb.files.download("/workspace/main.py") == src.read_bytes()
    blob = bytes(range(256)) * 64
    assert (await cli(server, "upload", name, "-", "/tmp/blob.bin", stdin=blob)).code == 0
    to_stdout = await anyio.run_process(
        [sys.executable, "-m", "createos_sandbox_async", "pull", name, "/tmp/blob.bin", "-"],
        env={**os.environ, "CREATEOS_SANDBOX_API_KEY": server.api_key,
             "CREATEOS_SANDBOX_BASE_URL": server.base_url},
        check=False,
    )  # fmt: skip
    assert (to_stdout.returncode, to_stdout.stdout) == (0, blob)
    dest = tmp_path / "copy.py"
    pulled = await cli(server, "download", name, "/workspace/main.py", str(dest))
    assert pulled.code == 0 and dest.read_bytes() == src.read_bytes()
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("A")
    assert (await cli(server, "push", name, str(tree), "/srv/tree")).code == 0
    assert await sb.files.download("/srv/tree/sub/a.txt") == b"A"

    no_local = await cli(server, "push", name, str(tmp_path / "nope"), "/x")
    assert no_local.code == 12 and "nope" in no_local.err
    relative = await cli(server, "push", name, str(src), "workspace/x")
    assert relative.code == 2 and "absolute" in relative.err
    dotdot = await cli(server, "pull", name, "/workspace/../etc/passwd", str(dest))
    assert dotdot.code == 2
    no_remote = await cli(server, "pull", name, "/workspace/missing", str(tmp_path / "m"))
    assert no_remote.code == 4 and not (tmp_path / "m").exists()
    no_dir = await cli(server, "pull", name, "/workspace/main.py", str(tmp_path / "no" / "f"))
    assert no_dir.code == 12
    json_stdout = await cli(server, "pull", name, "/workspace/main.py", "-", "-o", "json")
    assert json_stdout.code == 2
    await sb.destroy()


# -- catalog, identity, errors by class -----------------------------------------------------------


async def test_whoami_shapes_rootfs(server: LocalServer) -> None:
    me = await cli(server, "whoami", "-o", "json")
    assert me.code == 0 and set(me.json()) == {"user_id", "stats"}
    shapes = await cli(server, "shapes", key="")  # an open route: no key needed
    assert shapes.code == 0 and "s-1vcpu-256mb\t1\t256" in shapes.out
    assert any(
        s["id"] == "s-1vcpu-256mb" for s in (await cli(server, "shapes", "-o", "json")).json()
    )
    rootfs = await cli(server, "rootfs", "-o", "json")
    assert rootfs.code == 0 and rootfs.json()["default"] == "devbox:1"
    assert "(default)" in (await cli(server, "rootfs")).out
    no_key = await cli(server, "whoami", key="")
    assert no_key.code == 5 and no_key.err.startswith("error:")
    wrong_key = await cli(server, "ls", key="sk_wrong")
    assert wrong_key.code == 5


@pytest.mark.parametrize(("status", "expected"), [(402, 6), (403, 5), (429, 8), (500, 9), (422, 7)])
async def test_api_errors_map_to_documented_exit_statuses(
    server: LocalServer, status: int, expected: int
) -> None:
    route = f"/v1/networks/fault-{status}"
    server.faults.status(status, route=route, retry_after=0, times=None)
    try:
        run = await cli(server, "network", "show", f"fault-{status}", "-o", "json")
    finally:
        server.faults.clear()
    assert run.code == expected, run
    assert run.json()["error"]["http_status"] == status
    assert run.err.startswith("error:") and run.err.count("\n") == 1


async def test_unreachable_server_and_bad_base_url(server: LocalServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    gone = await cli(server, "--base-url", f"http://127.0.0.1:{port}", "ls")
    assert gone.code == 10 and gone.err.startswith("error:")
    bad = await cli(server, "ls", "--base-url", "ftp://example.com")
    assert bad.code == 2 and bad.err.startswith("error:")


# -- groups ---------------------------------------------------------------------------------------


async def test_network_group(server: LocalServer, session: Any) -> None:
    sb = await _box(session)
    net = _name("net")
    created = await cli(server, "network", "create", net, "-o", "json")
    assert created.code == 0 and created.json()["name"] == net
    assert (await cli(server, "network", "attach", sb.data.name, net)).code == 0
    shown = (await cli(server, "network", "show", net, "-o", "json")).json()
    assert [m["sandbox_id"] for m in shown["members"]] == [sb.id]
    assert net in (await cli(server, "network", "ls")).out
    assert (await cli(server, "network", "detach", sb.id, net)).code == 0
    assert (await cli(server, "network", "detach", sb.id, net)).code == 4
    assert (await cli(server, "network", "attach", sb.id, net)).code == 0
    removed = await cli(server, "network", "rm", net, "--force")  # members are detached first
    assert removed.code == 0 and f"{net}\tdeleted" in removed.out
    assert (await cli(server, "network", "show", net)).code == 4
    await sb.destroy()


async def test_disk_group_never_prints_the_secret(server: LocalServer, session: Any) -> None:
    sb = await _box(session)
    disk = _name("disk")
    env_secret = "CREATEOS_DISK_SECRET_KEY"
    os.environ[env_secret] = SECRET
    try:
        created = await cli(
            server, "disk", "create", disk, "--bucket", "bkt", "--endpoint", "http://127.0.0.1:9",
            "--access-key", "AKIA", "-o", "json",
        )  # fmt: skip
    finally:
        del os.environ[env_secret]
    assert created.code == 0 and created.json()["config"]["bucket"] == "bkt"
    no_secret = await cli(
        server,
        "disk",
        "create",
        _name("d"),
        "--bucket",
        "b",
        "--endpoint",
        "http://x",
        "--access-key",
        "a",
    )
    assert no_secret.code == 2
    assert (await cli(server, "disk", "attach", sb.id, disk, "/mnt/d")).code == 0
    assert (await cli(server, "disk", "attach", sb.id, disk, "mnt")).code == 2
    assert disk in (await cli(server, "disk", "ls")).out
    assert (await cli(server, "disk", "show", disk, "-o", "json")).json()["name"] == disk
    assert (await cli(server, "disk", "detach", sb.id, disk, "/mnt/d")).code == 0
    assert (await cli(server, "disk", "attach", sb.id, disk, "/mnt/d")).code == 0
    removed = await cli(server, "disk", "rm", disk, "no-such-disk", "-f")
    assert removed.code == 1 and f"{disk}\tdeleted" in removed.out
    assert await sb.list_disks() == []
    for run in (created, removed):
        assert SECRET not in run.out + run.err
    await sb.destroy()


async def test_firewall_group(server: LocalServer, session: Any) -> None:
    sb = await _box(session)
    opened = await cli(server, "firewall", "show", sb.data.name)
    assert opened.out.startswith("open:")
    set_ = await cli(server, "firewall", "set", sb.id, "pypi.org,github.com", "1.1.1.1:53")
    assert set_.code == 0 and set_.out.split() == ["pypi.org", "github.com", "1.1.1.1:53"]
    assert await sb.get_egress() == ("pypi.org", "github.com", "1.1.1.1:53")
    shown = await cli(server, "firewall", "show", sb.id, "-o", "json")
    assert shown.json() == {"sandbox_id": sb.id, "rules": ["pypi.org", "github.com", "1.1.1.1:53"]}
    bad = await cli(server, "firewall", "set", sb.id, "not a rule!")
    assert bad.code == 7
    cleared = await cli(server, "firewall", "clear", sb.id, "-o", "json")
    assert cleared.json()["rules"] == [] and await sb.get_egress() == ()
    await sb.destroy()


async def test_template_group(server: LocalServer, tmp_path: Path) -> None:
    good, bad = _name("tpl"), _name("tpl")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM devbox:1\nRUN echo hi\n")
    built = await cli(server, "template", "submit", good, "-f", str(dockerfile))
    assert built.code == 0 and "template ready" in built.out
    assert f"\t{good}\tready" in (await cli(server, "template", "ls")).out
    shown = await cli(server, "template", "show", good, "--dockerfile", "-o", "json")
    assert shown.json()["dockerfile"].startswith("FROM devbox:1")
    logs = await cli(server, "template", "logs", good)
    assert "Step 2/2 : RUN echo hi" in logs.out
    followed = await cli(server, "template", "logs", good, "--follow", "-o", "json")
    assert followed.json()["status"] == "ready"
    dockerfile.write_text("FROM devbox:1\nRUN false\n")
    failed = await cli(server, "template", "submit", bad, "-f", str(dockerfile), "-o", "json")
    assert failed.code == 1 and failed.json()["status"] == "failed"
    no_file = await cli(server, "template", "submit", _name("t"), "-f", str(tmp_path / "none"))
    assert no_file.code == 12
    removed = await cli(server, "template", "rm", good, bad, "--force")
    assert removed.code == 0
    assert (await cli(server, "template", "show", good)).code == 4


# -- local, demo, mcp -----------------------------------------------------------------------------


async def test_mcp_without_the_extra_says_what_to_install(server: LocalServer) -> None:
    blocked = (
        "import sys; sys.modules['createos_sandbox_async.mcp'] = None; "
        "from createos_sandbox_async.cli import main; raise SystemExit(main(['mcp']))"
    )
    with anyio.fail_after(60):
        proc = await anyio.run_process([sys.executable, "-c", blocked], check=False, input=b"")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "createos-sandbox-async[mcp]" in err


def test_local_rejects_a_remote_bind_without_allow_remote() -> None:
    assert cli_main(["local", "--host", "0.0.0.0"]) == 2


async def test_demo_runs_a_batch_and_leaves_nothing() -> None:
    from createos_sandbox_async._demo import run_demo

    isolation = "bubblewrap" if os.environ.get("CREATEOS_REQUIRE_BWRAP") == "1" else "auto"
    assert await run_demo(n_items=6, isolation=isolation) == 0
