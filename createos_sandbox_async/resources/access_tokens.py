"""The per-sandbox delegated access token (``sandbox.access_token``; WIRE §16).

A sandbox has at most one token. It works as an ``X-Api-Key`` for that sandbox's own runtime
routes (exec, files, processes, computer, pause/resume/destroy) and nothing else, so it can be
handed to code that should drive one sandbox only. Manage it with the owner's key. The plaintext is
returned only by :meth:`SandboxAccessToken.create` and :meth:`SandboxAccessToken.rotate`, wrapped in
a :class:`~createos_sandbox_async.models.SecretStr` that never prints itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._convert import structure
from .._resource_models import AccessTokenCreated, AccessTokenInfo

if TYPE_CHECKING:
    from ..sandbox import Sandbox

__all__ = ["SandboxAccessToken"]


class SandboxAccessToken:
    """One sandbox's delegated access token: ``sb.access_token``.

    The token lets someone else drive just this sandbox (commands, files, processes, pause,
    resume, destroy), never the account. Use it as the API key of their session.

    Example:
        ```python
        created = await sb.access_token.create()
        worker = AsyncSession(created.token.get_secret_value())
        ```
    """

    __slots__ = ("_sandbox",)

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def __repr__(self) -> str:
        return f"SandboxAccessToken(sandbox={self._sandbox.id!r})"

    def _minted(self, created: AccessTokenCreated) -> AccessTokenCreated:
        """Register a fresh plaintext with the transport, so errors and hooks redact it too."""
        self._sandbox._transport.add_secret(created.token.get_secret_value())
        return created

    async def create(self) -> AccessTokenCreated:
        """Mint the token. Its plaintext is returned only here and by ``rotate``.

        Returns:
            The token (a ``SecretStr``: ``token.get_secret_value()``) and its dates.

        Raises:
            ValidationError: A token is already enabled (409; use ``rotate``).
            PermissionDeniedError: The session's key is itself a delegated token.
        """
        data = await self._sandbox._transport.request("POST", self._sandbox._path("/access-token"))
        return self._minted(structure(data, AccessTokenCreated))

    async def get(self) -> AccessTokenInfo:
        """Whether a token is enabled, with a redacted hint; never the token itself.

        Returns:
            ``enabled`` and a ``token_hint``.
        """
        data = await self._sandbox._transport.request("GET", self._sandbox._path("/access-token"))
        return structure(data, AccessTokenInfo)

    async def rotate(self) -> AccessTokenCreated:
        """Replace the token; the old one stops working.

        Returns:
            The new token.

        Raises:
            NotFoundError: There is no token to rotate.
        """
        path = self._sandbox._path("/access-token/rotate")
        data = await self._sandbox._transport.request("POST", path)
        return self._minted(structure(data, AccessTokenCreated))

    async def revoke(self) -> AccessTokenInfo:
        """Disable the token; succeeds when there is none. Immediate in the sandbox's region.

        Returns:
            The token's state afterwards.
        """
        path = self._sandbox._path("/access-token")
        data = await self._sandbox._transport.request("DELETE", path)
        return structure(data, AccessTokenInfo)
