"""Async Python SDK for CreateOS Sandbox: run code in cloud micro-VMs from asyncio.

Import everything from here; modules with a leading underscore are private::

    from createos_sandbox_async import AsyncSession

    async with AsyncSession() as session:
        sb = await session.sandboxes.create(shape="s-1vcpu-256mb")
        async with sb:
            print((await sb.exec("echo", ["hi"])).stdout)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import Limits, Timeouts
from ._hooks import CompleteEvent, Hooks, RequestEvent, ResponseEvent, RetryEvent
from ._jsonable import to_dict
from ._requests import CreateSandboxRequest
from ._retry import RetryPolicy
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthError,
    CommandError,
    CreateosError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    PoolCleanupError,
    ProtocolError,
    RateLimitError,
    SandboxStateError,
    ServerError,
    StreamError,
    StreamInterruptedError,
    StreamStalledError,
    ValidationError,
)
from .models import (
    AccessTokenCreated,
    AccessTokenInfo,
    Bandwidth,
    DestroyResult,
    Disk,
    DiskAttachment,
    DiskConfig,
    DiskMountStatus,
    EgressView,
    Health,
    Host,
    HostStatus,
    Network,
    NetworkEntry,
    NetworkMember,
    Point,
    ProcessEvent,
    ProcessForeground,
    ProcessOutputWindow,
    ProcessView,
    Readiness,
    ResizeResult,
    RootfsCatalog,
    RootfsEntry,
    SandboxDisk,
    SandboxStatus,
    SandboxView,
    Screen,
    ScreenConnection,
    ScreenSize,
    SecretStr,
    Shape,
    Template,
    TemplateLogEvent,
    WhoAmI,
    WhoAmIStats,
    Window,
    WindowGeometry,
)
from .naming import SandboxName, new_run_id, parse_sandbox_name, sandbox_name
from .resources.sandboxes import Sandboxes
from .sandbox import Sandbox
from .session import AsyncSession

if TYPE_CHECKING:
    from ._reap import ReapOutcome, ReapResult
    from .exec import ExecEvent, ExecResult, ExecStream
    from .pool import PoolStats, SandboxPool

# Names whose modules load on first use (they pull in more code than most programs need).
_LAZY = {
    "ExecEvent": "exec",
    "ExecResult": "exec",
    "ExecStream": "exec",
    "SandboxPool": "pool",
    "PoolStats": "pool",
    "ReapOutcome": "_reap",
    "ReapResult": "_reap",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AccessTokenCreated",
    "AccessTokenInfo",
    "AsyncSession",
    "AuthError",
    "Bandwidth",
    "CommandError",
    "CompleteEvent",
    "CreateSandboxRequest",
    "CreateosError",
    "DestroyResult",
    "Disk",
    "DiskAttachment",
    "DiskConfig",
    "DiskMountStatus",
    "EgressView",
    "ExecEvent",
    "ExecResult",
    "ExecStream",
    "Health",
    "Hooks",
    "Host",
    "HostStatus",
    "Limits",
    "Network",
    "NetworkEntry",
    "NetworkMember",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Point",
    "PoolCleanupError",
    "PoolStats",
    "ProcessEvent",
    "ProcessForeground",
    "ProcessOutputWindow",
    "ProcessView",
    "ProtocolError",
    "RateLimitError",
    "Readiness",
    "ReapOutcome",
    "ReapResult",
    "RequestEvent",
    "ResizeResult",
    "ResponseEvent",
    "RetryEvent",
    "RetryPolicy",
    "RootfsCatalog",
    "RootfsEntry",
    "Sandbox",
    "SandboxDisk",
    "SandboxName",
    "SandboxPool",
    "SandboxStateError",
    "SandboxStatus",
    "SandboxView",
    "Sandboxes",
    "Screen",
    "ScreenConnection",
    "ScreenSize",
    "SecretStr",
    "ServerError",
    "Shape",
    "StreamError",
    "StreamInterruptedError",
    "StreamStalledError",
    "Template",
    "TemplateLogEvent",
    "Timeouts",
    "ValidationError",
    "WhoAmI",
    "WhoAmIStats",
    "Window",
    "WindowGeometry",
    "__version__",
    "new_run_id",
    "parse_sandbox_name",
    "sandbox_name",
    "to_dict",
]
