"""A test run must leave no process behind: a pytest plugin that fails the session if one does.

At start it points every emulator of this run at a state directory of its own (through
`CREATEOS_LOCAL_STATE_DIR`, which child processes such as the CLI's emulator inherit). At the end
it looks for anything this run started that is still alive:

- a sandbox process: one whose root mount is a tree under that directory (every process a
  sandbox starts sees it, whatever its parent, its name or its user), and every other process
  in the pid namespace of one;
- a process whose environment carries the directory (an emulator started as a subprocess).

Emulators of other runs on the same machine use other directories and are never counted.
`sandbox_processes()` is also what leak tests use to look for one sandbox's processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

ENV = "CREATEOS_LOCAL_STATE_DIR"
_saved: dict[str, str | None] = {}


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def _root_mount(pid: int) -> str:
    """Where the process's `/` comes from: the root field of its `/` mount (a sandbox's tree
    path, relative to the filesystem holding it, with `//deleted` once removed)."""
    root = ""
    for line in _read(f"/proc/{pid}/mountinfo").decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            root = fields[3]  # the last "/" mount is the one in effect
    return root


def _pidns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def sandbox_processes(where: str) -> list[int]:
    """Live processes whose root is a sandbox tree under `where` (a state directory, or one
    sandbox's tree), plus every process sharing a pid namespace with one of them."""
    mark = "/" + os.path.basename(os.path.normpath(where))
    found = {p for p in _pids() if mark + "/" in _root_mount(p) + "/" and _alive(p)}
    spaces = {_pidns(p) for p in found} - {"", _pidns(os.getpid())}
    if spaces:
        found |= {p for p in _pids() if _pidns(p) in spaces and _alive(p)}
    return sorted(found)


def session_processes(where: str) -> list[int]:
    """Everything this run started under `where` that is still alive (see the module doc)."""
    entry = f"{ENV}={where}".encode()
    me = os.getpid()
    found = set(sandbox_processes(where))
    for pid in _pids():
        env = _read(f"/proc/{pid}/environ")
        mine = env.startswith(entry + b"\0") or b"\0" + entry + b"\0" in env
        if mine and pid != me and _alive(pid):
            found.add(pid)
    return sorted(found)


def describe(pid: int) -> str:
    """pid, parent, user and command line, for the failure message."""
    stat = _read(f"/proc/{pid}/stat")
    ppid = stat[stat.rfind(b")") + 2 :].split()[1].decode() if stat else "?"
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        uid = -1
    cmd = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
    return f"pid {pid} (parent {ppid}, uid {uid}): {cmd[:200]}"


def pytest_configure(config: pytest.Config) -> None:
    if _saved:
        return
    parent = os.environ.get(ENV) or _default_parent()
    where = tempfile.mkdtemp(prefix="createos-tests-", dir=parent)
    os.chmod(where, 0o711)  # sandbox users traverse it, as they do the emulator's own
    _saved["where"] = where
    _saved["previous"] = os.environ.get(ENV)
    os.environ[ENV] = where


def _default_parent() -> str:
    """Where the emulator would put its state without the variable (same choice, same speed)."""
    from createos_sandbox_async.local.server import _fast_tmp

    return _fast_tmp() or tempfile.gettempdir()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    where = _saved.get("where")
    if not where:
        return
    left: list[int] = []
    deadline = time.monotonic() + 10.0  # SIGKILLed processes vanish in milliseconds
    while time.monotonic() < deadline:
        left = session_processes(where)
        if not left:
            break
        time.sleep(0.05)
    if not left:
        return
    lines = [describe(p) for p in left]
    for pid in left:  # do not leave them running: report them, then kill them
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    message = (
        f"{len(left)} process(es) started by this test run outlived it "
        "(a sandbox or emulator was not cleaned up):\n  " + "\n  ".join(lines)
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("!", "leaked processes", red=True)
        reporter.write_line(message)
    else:  # pragma: no cover - always there unless -p no:terminal
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    where = _saved.pop("where", None)
    if where is None:
        return
    previous = _saved.pop("previous", None)
    if previous is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = previous
    shutil.rmtree(where, ignore_errors=True)
