"""The emulator must be right, not just agree with us: drive it with the OFFICIAL SDKs, unchanged.

One `LocalServer` (bubblewrap isolation) serves the whole module. Each scenario of
tests/conformance/py_official.py (official Python SDK, run by its own venv) and
tests/conformance/ts_official.mjs (official TypeScript SDK, run by node) runs as a subprocess
that gets the base URL and key from the environment the way a user of those SDKs sets them.
A scenario fails on any mismatch; its output says what the SDK sent and what came back.

Install the SDKs with tests/conformance/setup.sh. Without them these tests skip, unless
CREATEOS_REQUIRE_CONFORMANCE=1 (CI), where a missing SDK is a failure.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from _emulator import child_process, start_emulator

HERE = Path(__file__).resolve().parent / "conformance"
PY_OFFICIAL = HERE / ".venv-official" / "bin" / "python"
TS_SDK_PACKAGE = HERE / "node_modules" / "@nodeops-createos" / "sandbox" / "package.json"
PY_SCENARIOS = ["catalog", "sandboxes", "exec", "files", "lifecycle", "processes", "tokens"]
TS_SCENARIOS = ["catalog", "sandboxes", "exec", "files", "lifecycle", "extras", "resources"]
SCENARIO_DEADLINE = 90.0  # seconds; a scenario normally takes 1-5 s

pytestmark = [pytest.mark.conformance, pytest.mark.anyio]


def _missing(what: str) -> None:
    """Skip on a laptop without the official SDKs; fail where they are required (CI)."""
    msg = f"{what} not installed: run tests/conformance/setup.sh"
    if os.environ.get("CREATEOS_REQUIRE_CONFORMANCE") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def _require_python_sdk() -> None:
    if not PY_OFFICIAL.exists():
        _missing("official Python SDK (tests/conformance/.venv-official)")


@functools.cache
def _node_major(node: str) -> int:
    """Major version of node (the official TS SDK needs >= 20: AbortSignal.any, fetch)."""
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    try:
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


def _require_ts_sdk() -> str:
    node = shutil.which("node")
    if node is None or not TS_SDK_PACKAGE.exists() or _node_major(node) < 20:
        _missing("node >= 20 or the official TypeScript SDK (tests/conformance/node_modules)")
    assert node is not None
    return node


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Any]:
    """One emulator for every scenario; short heartbeats and visible transitional states."""
    async with start_emulator(
        isolation="bubblewrap", heartbeat_interval=0.2, transition_delay=0.05
    ) as srv:
        yield srv


def _env(server: Any, other_key: str) -> dict[str, str]:
    """The child's environment: only what a user of the official SDKs would set, no proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CREATEOS_")
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}
    }
    env.update(
        CREATEOS_SANDBOX_BASE_URL=server.base_url,
        CREATEOS_API_KEY=server.api_key,  # read by the Python SDK
        CREATEOS_SANDBOX_API_KEY=server.api_key,  # read by the TypeScript SDK
        CREATEOS_OTHER_API_KEY=other_key,  # a second tenant, for isolation checks
        NO_PROXY="127.0.0.1,localhost,::1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.fixture(scope="module")
def other_tenant(server: Any) -> str:
    key: str = server.add_tenant()
    return key


async def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[int | None, str]:
    """Run one scenario to completion (bounded); return its exit code and combined output."""
    chunks: list[bytes] = []
    async with child_process(
        list(argv), cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        assert proc.stdout is not None
        with anyio.move_on_after(SCENARIO_DEADLINE) as scope:
            async for chunk in proc.stdout:
                chunks.append(chunk)
            await proc.wait()
        if scope.cancelled_caught:
            proc.kill()
            await proc.wait()
            chunks.append(f"\n[killed after {SCENARIO_DEADLINE:.0f}s]\n".encode())
            return None, b"".join(chunks).decode(errors="replace")
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def _report(sdk: str, scenario: str, rc: int | None, output: str) -> None:
    sys.stdout.write(output)
    assert rc == 0, f"official {sdk} SDK, scenario {scenario!r} (exit {rc}):\n{output[-6000:]}"
    assert f"ok   {scenario}" in output, output[-2000:]


def _arm_faults(server: Any) -> list[Any]:
    """FAULT_PLAN: what the `faults` scenario of both scripts meets, in the order it meets it."""
    f = server.faults
    f.clear()
    return [
        f.status(503, route="/v1/whoami", method="GET", retry_after=0),
        f.reset(route="/v1/sandboxes", method="GET"),
        f.status(429, route="/v1/sandboxes", method="POST", retry_after=0),
        f.status(502, route="/v1/sandboxes/*", method="GET", html=True),
        f.status(500, route="/v1/sandboxes/*/exec", method="POST"),
        f.truncate(route="/v1/sandboxes/*/exec", method="POST", after_frames=1),
        f.slow(route="/v1/sandboxes/*/files", method="GET", delay=0.002, chunk_size=8192),
    ]


@pytest.mark.parametrize("sdk", ["python", "typescript"])
async def test_official_sdks_ride_out_injected_faults(
    server: Any, other_tenant: str, sdk: str
) -> None:
    """The emulator's faults look like real ones to the official SDKs: the retryable ones are
    retried (each exactly once), the 500 on a POST surfaces, a truncated stream just ends."""
    if sdk == "python":
        _require_python_sdk()
        argv = [str(PY_OFFICIAL), str(HERE / "py_official.py"), "faults"]
    else:
        argv = [_require_ts_sdk(), str(HERE / "ts_official.mjs"), "faults"]
    count = server.request_count
    before = (count("GET", "/v1/whoami"), count("POST", "/v1/sandboxes"), count("POST", "*/exec"))
    handles = _arm_faults(server)
    try:
        rc, out = await _run(argv, _env(server, other_tenant))
    finally:
        server.faults.clear()
    _report(sdk, "faults", rc, out)
    assert [h.hits for h in handles] == [1] * len(handles), handles
    after = (count("GET", "/v1/whoami"), count("POST", "/v1/sandboxes"), count("POST", "*/exec"))
    # whoami and create each sent twice (one retry); exec 3 times: the 500 was NOT retried.
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 3]


async def test_official_typescript_sdk_gets_faults_injected_over_http(
    server: Any, other_tenant: str
) -> None:
    """Issue 15 §2: a process in another language injects faults over HTTP (/__createos/, with
    the admin token) and the official TS SDK meets them: the 500 on its exec surfaces (a POST
    is never retried), the 429 is retried once. The admin calls are never counted."""
    node = _require_ts_sdk()
    server.faults.clear()
    count = server.request_count
    before = (count("POST", "*/exec"), count(path="/__createos/*"))
    env = {**_env(server, other_tenant), "CREATEOS_LOCAL_ADMIN_TOKEN": server.admin_token}
    rc, out = await _run([node, str(HERE / "ts_official.mjs"), "fault-control"], env)
    _report("TypeScript", "fault-control", rc, out)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    seen = json.loads(line.removeprefix("RESULT "))
    assert seen == {
        "exec500": {"status": 500, "envelope": "error"},
        "exec429Stdout": "after 429\n",
        "hits": [1, 1],
        "execCount": 3,  # the 500, the 429 and its retry
        "tenantKeyStatus": 401,
        "cleared": 2,
    }
    after = (count("POST", "*/exec"), count(path="/__createos/*"))
    assert (after[0] - before[0], after[1]) == (3, 0)
    assert server.faults.known() == []


@pytest.mark.parametrize("scenario", PY_SCENARIOS)
async def test_official_python_sdk(server: Any, other_tenant: str, scenario: str) -> None:
    _require_python_sdk()
    rc, out = await _run(
        [str(PY_OFFICIAL), str(HERE / "py_official.py"), scenario], _env(server, other_tenant)
    )
    _report("Python", scenario, rc, out)


@pytest.mark.parametrize("scenario", TS_SCENARIOS)
async def test_official_typescript_sdk(server: Any, other_tenant: str, scenario: str) -> None:
    node = _require_ts_sdk()
    rc, out = await _run(
        [node, str(HERE / "ts_official.mjs"), scenario], _env(server, other_tenant)
    )
    _report("TypeScript", scenario, rc, out)
