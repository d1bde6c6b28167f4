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
from .._resource import Resource
from .._resource_models import AccessTokenCreated, AccessTokenInfo

if TYPE_CHECKING:
    from ..sandbox import Sandbox

__all__ = ["SandboxAccessToken"]


class SandboxAccessToken(Resource):
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
        super().__init__(sandbox._transport, sandbox._path("/access-token"))
        self._sandbox = sandbox

    def __repr__(self) -> str:
        return f"SandboxAccessToken(sandbox={self._sandbox.id!r})"

    def _minted(self, created: AccessTokenCreated) -> AccessTokenCreated:
        """Register a fresh plaintext with the transport, so errors and hooks redact it too."""
        self._transport.add_secret(created.token.get_secret_value())
        return created

    async def create(self, *, timeout: float | None = None) -> AccessTokenCreated:
        """Mint the token. Its plaintext is returned only here and by ``rotate``.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The token (a ``SecretStr``: ``token.get_secret_value()``) and its dates.

        Raises:
            ValidationError: A token is already enabled (409; use ``rotate``).
            PermissionDeniedError: The session's key is itself a delegated token.
        """
        data = await self._request("POST", timeout=timeout)
        return self._minted(structure(data, AccessTokenCreated))

    async def get(self, *, timeout: float | None = None) -> AccessTokenInfo:
        """Whether a token is enabled, with a redacted hint; never the token itself.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            ``enabled`` and a ``token_hint``.
        """
        data = await self._request("GET", timeout=timeout)
        return structure(data, AccessTokenInfo)

    async def rotate(self, *, timeout: float | None = None) -> AccessTokenCreated:
        """Replace the token; the old one stops working.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The new token.

        Raises:
            NotFoundError: There is no token to rotate.
        """
        data = await self._request("POST", "/rotate", timeout=timeout)
        return self._minted(structure(data, AccessTokenCreated))

    async def revoke(self, *, timeout: float | None = None) -> AccessTokenInfo:
        """Disable the token; succeeds when there is none. Immediate in the sandbox's region.

        Args:
            timeout: Seconds for the request, retries included (default: the session's).

        Returns:
            The token's state afterwards.
        """
        data = await self._request("DELETE", timeout=timeout)
        return structure(data, AccessTokenInfo)
