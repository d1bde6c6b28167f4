"""The pytest plugin (createos_sandbox_async_pytest), used the way a user's suite uses it.

Each case writes a user's test file and runs it in a child pytest (``pytester``) under one async
plugin setup: anyio, pytest-asyncio with function-scoped loops, with a session-scoped loop, and
in auto mode. The same file must pass where it should and fail where it should; in particular a
test that fails holding ``createos_sandbox`` still has its sandbox destroyed.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from _emulator import require_bwrap

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "createos_sandbox_async_pytest"

INI = """
[pytest]
filterwarnings = error
addopts = -p no:cacheprovider -p {plugin}
asyncio_default_fixture_loop_scope = function
{extra}
"""

USER_TESTS = """
import asyncio
import json
import pathlib

import pytest

from createos_sandbox_async import StreamStalledError

{mark}

RECORD = pathlib.Path(__file__).with_name("left.json")
LOOPS = []


async def test_runs_a_command(createos_sandbox):
    LOOPS.append(asyncio.get_running_loop())
    res = await createos_sandbox.exec("python3", ["-c", "print(6 * 7)"], check=True)
    assert res.stdout == "42\\n"


async def test_a_session_sees_only_its_own_sandboxes(createos_session, createos_sandbox):
    LOOPS.append(asyncio.get_running_loop())
    assert [sb.id async for sb in createos_session.sandboxes.list()] == [createos_sandbox.id]


async def test_faults_and_counts(createos_server, createos_session, createos_faults):
    before = createos_server.request_count("POST", "/v1/sandboxes")
    burst = createos_faults.status(429, route="/v1/sandboxes", method="POST", times=2)
    sb = await createos_session.sandboxes.create(shape="s-1vcpu-256mb")
    async with sb:
        assert burst.hits == 2
    assert createos_server.request_count("POST", "/v1/sandboxes") - before == 3


async def test_fails_holding_a_sandbox(createos_sandbox):
    RECORD.write_text(json.dumps(createos_sandbox.id))
    assert createos_sandbox.status == "destroyed", "fails on purpose"


async def test_the_failed_tests_sandbox_was_destroyed(createos_server):
    sid = json.loads(RECORD.read_text())
    assert createos_server.request_count("DELETE", f"/v1/sandboxes/{{sid}}") == 1


@pytest.mark.createos(heartbeat_interval=0.02, fresh=True)
async def test_the_marker_gives_a_fresh_server(createos_server, createos_sandbox, createos_faults):
    assert createos_server.request_count("POST", "/v1/sandboxes") == 1  # only this test's
    createos_faults.stall(route="/v1/sandboxes/*/exec", after_frames=1)
    with pytest.raises(StreamStalledError):
        stream = createos_sandbox.exec_stream("bash", ["-c", "echo hi; sleep 30"], idle_timeout=0.5)
        async with stream:
            async for _event in stream:
                pass
    {loop_check}
"""

SYNC_TESTS = """
def test_a_sync_test_may_use_the_server(createos_server):
    assert createos_server.base_url.startswith("http://127.0.0.1:")


def test_a_sync_test_cannot_have_a_session(createos_session):
    pass
"""

CONFTEST_ANYIO = """
import pytest


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"
"""

SETUPS = {
    # anyio, with pytest-asyncio installed next to it (strict mode leaves anyio tests alone)
    "anyio": ("pytestmark = pytest.mark.anyio", "", CONFTEST_ANYIO, "", ()),
    "asyncio-function-loop": (
        "pytestmark = pytest.mark.asyncio",
        "",
        "",
        "assert len(set(LOOPS)) == 2  # a loop per test",
        ("-p", "no:anyio"),
    ),
    "asyncio-session-loop": (
        'pytestmark = pytest.mark.asyncio(loop_scope="session")',
        "",
        "",
        "assert set(LOOPS) == {asyncio.get_running_loop()}  # one loop for all",
        ("-p", "no:anyio"),
    ),
    "asyncio-auto-mode": (
        "",
        "asyncio_mode = auto\nasyncio_default_test_loop_scope = session",
        "",
        "assert set(LOOPS) == {asyncio.get_running_loop()}",
        ("-p", "no:anyio"),
    ),
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_a_users_suite_passes_and_fails_where_it_should(
    pytester: pytest.Pytester, setup: str
) -> None:
    require_bwrap()
    mark, ini_extra, conftest, loop_check, args = SETUPS[setup]
    pytester.makeini(INI.format(plugin=PLUGIN, extra=ini_extra))
    if conftest:
        pytester.makeconftest(conftest)
    pytester.makepyfile(
        test_user=USER_TESTS.format(mark=mark, loop_check=loop_check or "pass"),
        test_user_sync=SYNC_TESTS,
    )
    result = pytester.runpytest_subprocess(*args, "-v", timeout=240)
    result.assert_outcomes(passed=6, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_fails_holding_a_sandbox FAILED*"])
    result.stdout.fnmatch_lines(["*fails on purpose*"])
    result.stdout.fnmatch_lines(["*needs an async test run on asyncio*"])


def test_a_bad_marker_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(plugin=PLUGIN, extra=""))
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.createos(heartbeat=1)
        def test_x(createos_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess(timeout=120)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown option(s)*heartbeat*"])


def test_loading_the_plugin_imports_neither_the_sdk_nor_the_emulator(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI.format(plugin=PLUGIN, extra=""))
    pytester.makepyfile(
        test_unrelated="""
        import sys

        def test_nothing_of_ours_was_imported():
            assert "createos_sandbox_async_pytest" in sys.modules
            ours = [m for m in sys.modules if m.split(".")[0] == "createos_sandbox_async"]
            assert ours == []
        """
    )
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=1)


def test_the_plugin_is_registered_under_pytest11() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {PLUGIN: PLUGIN}
    # the same name as the module: `-p createos_sandbox_async_pytest` is then a no-op
    code = f"import {PLUGIN} as p; assert callable(p.createos_server)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert PLUGIN in wheel["targets"]["wheel"]["packages"]
