"""Every resource method that makes a request takes ``timeout=`` (issue 13, one resource base).

Enumerated, not listed: a new public method without ``timeout`` fails here. The few that send
nothing themselves or are bounded another way are named in ``EXEMPT`` with the reason.
"""

from __future__ import annotations

import inspect

import pytest

from createos_sandbox_async import AsyncSession, Sandbox, Sandboxes
from createos_sandbox_async._resource import Resource
from createos_sandbox_async.computer import Computer, Keyboard, Mouse, Screens, Windows
from createos_sandbox_async.files import Files
from createos_sandbox_async.processes import Processes
from createos_sandbox_async.resources.access_tokens import SandboxAccessToken
from createos_sandbox_async.resources.disks import Disks
from createos_sandbox_async.resources.networks import Networks
from createos_sandbox_async.resources.templates import Templates

RESOURCES = [
    AsyncSession,
    Sandboxes,
    Sandbox,
    Files,
    Processes,
    Computer,
    Mouse,
    Keyboard,
    Windows,
    Screens,
    Networks,
    Disks,
    Templates,
    SandboxAccessToken,
]
# Sends nothing itself, or is bounded another way (documented on the method).
EXEMPT = {
    "Sandbox.preview_url",  # builds a URL
    "Sandboxes.reap",  # many calls; each under the session's timeouts, per sandbox outcome
    "AsyncSession.aclose",
    # A follower of process output across reconnects: bounded by idle_timeout (no total).
    "Processes.connect",
}
# Return a stream or pager that sends when iterated: they take timeout= too.
SYNC_SENDERS = {"list", "exec_stream", "download_iter", "follow_logs", "stream", "connect"}


def _public_senders(cls: type) -> list[str]:
    names = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or f"{cls.__name__}.{name}" in EXEMPT:
            continue
        if inspect.iscoroutinefunction(member) or (
            inspect.isfunction(member) and name in SYNC_SENDERS
        ):
            names.append(name)
    return names


@pytest.mark.parametrize("cls", RESOURCES, ids=lambda c: c.__name__)
def test_every_public_request_method_takes_timeout(cls: type) -> None:
    methods = _public_senders(cls)
    assert methods, f"{cls.__name__}: found no methods"
    missing = [
        name
        for name in methods
        if "timeout" not in inspect.signature(getattr(cls, name)).parameters
    ]
    assert missing == []


@pytest.mark.parametrize(
    "cls",
    [Sandboxes, Sandbox, Files, Processes, Computer, Mouse, Networks, Disks, SandboxAccessToken],
    ids=lambda c: c.__name__,
)
def test_resources_share_the_one_base(cls: type) -> None:
    assert issubclass(cls, Resource)


def test_session_caches_its_namespaces() -> None:
    session = AsyncSession("k", base_url="http://127.0.0.1:1", allow_insecure_http=True)
    assert session.networks is session.networks
    assert session.disks is session.disks
    assert session.templates is session.templates
    assert session.sandboxes is session.sandboxes
