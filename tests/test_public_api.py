"""The public surface is a contract (design/API.md): pin ``__all__`` so changes are deliberate."""

from __future__ import annotations

import subprocess
import sys

import createos_sandbox_async as pkg

EXPECTED = {
    # entry points
    "AsyncSession",
    "Sandbox",
    "Sandboxes",
    "SandboxPool",
    "PoolStats",
    "PoolCleanupError",
    "RetryPolicy",
    "Timeouts",
    "Limits",
    "Hooks",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "CompleteEvent",
    "ExecEvent",
    "ExecResult",
    "ExecStream",
    # errors
    "CreateSandboxRequest",
    "CreateosError",
    "APIError",
    "AuthError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "NotFoundError",
    "ValidationError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamError",
    "StreamStalledError",
    "StreamInterruptedError",
    "ProtocolError",
    "CommandError",
    "SandboxStateError",
    # models
    "AccessTokenCreated",
    "AccessTokenInfo",
    "Disk",
    "Network",
    "NetworkMember",
    "ProcessEvent",
    "ProcessForeground",
    "ProcessOutputWindow",
    "ProcessView",
    "Point",
    "Screen",
    "ScreenConnection",
    "ScreenSize",
    "SecretStr",
    "Template",
    "TemplateLogEvent",
    "Window",
    "WindowGeometry",
    "SandboxView",
    "SandboxStatus",
    "Shape",
    "RootfsCatalog",
    "RootfsEntry",
    "Host",
    "HostStatus",
    "WhoAmI",
    "WhoAmIStats",
    "Health",
    "Readiness",
    "DestroyResult",
    "ResizeResult",
    "Bandwidth",
    "EgressView",
    "NetworkEntry",
    "DiskAttachment",
    "DiskConfig",
    "SandboxDisk",
    "DiskMountStatus",
    # crash safety (docs/crash-safety.md)
    "SandboxName",
    "new_run_id",
    "parse_sandbox_name",
    "sandbox_name",
    "ReapOutcome",
    "ReapResult",
    # JSON-able models
    "to_dict",
    "__version__",
}


def test_all_is_pinned() -> None:
    assert set(pkg.__all__) == EXPECTED, (
        "public names changed: update EXPECTED, design/API.md and CHANGELOG.md together"
    )
    assert len(pkg.__all__) == len(set(pkg.__all__))


def test_every_public_name_resolves() -> None:
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None, name


def test_api_md_names_are_importable() -> None:
    from createos_sandbox_async import (  # noqa: F401
        AsyncSession,
        ExecEvent,
        ExecResult,
        ExecStream,
        RetryPolicy,
        Sandbox,
        SandboxPool,
    )


def test_unknown_attribute_is_attribute_error() -> None:
    try:
        pkg.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_client_import_never_loads_the_emulator_or_heavy_modules() -> None:
    code = (
        "import sys, createos_sandbox_async as c; c.AsyncSession; "
        "print(sorted(m for m in sys.modules if m.startswith('createos_sandbox_async')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "createos_sandbox_async.local" not in out
    assert "createos_sandbox_async.pool" not in out  # loaded on first use only
