"""Whether a conversation's sandbox still exists: shared by the holder and the file helpers."""

from __future__ import annotations

from createos_sandbox_async import NotFoundError, Sandbox

__all__ = ["DEAD", "SandboxGoneError", "ensure_alive", "is_alive"]

#: Sandbox states from which a sandbox never runs a command again.
DEAD = frozenset({"destroying", "destroyed", "failed"})


class SandboxGoneError(Exception):
    """The conversation's sandbox no longer exists (destroyed, expired, failed, never found).

    Adapters turn it into their framework's "environment unavailable" error. It is never
    answered by creating a replacement: the files and processes the model relies on are gone.
    """

    def __init__(self, message: str, *, sandbox_id: str | None = None) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id


async def is_alive(sandbox: Sandbox) -> bool:
    """Whether ``sandbox`` still exists (one GET); transient errors propagate."""
    try:
        await sandbox.refresh()
    except NotFoundError:
        return False
    return str(sandbox.status) not in DEAD


async def ensure_alive(sandbox: Sandbox) -> None:
    """Raise :class:`SandboxGoneError` unless ``sandbox`` exists."""
    if not await is_alive(sandbox):
        raise SandboxGoneError(
            f"sandbox {sandbox.id} no longer exists (status {str(sandbox.status)!r})",
            sandbox_id=sandbox.id,
        )
