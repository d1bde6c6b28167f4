"""A local emulator of the CreateOS Sandbox API: commands run for real, isolated by bubblewrap.

    from createos_sandbox_async.local import LocalServer

    async with LocalServer() as server:   # port=0 picks a free port
        print(server.base_url, server.api_key)

or from a shell: `python -m createos_sandbox_async.local`. See docs/emulator.md.
"""

from .faults import FaultHandle, Faults
from .runtime import IsolationUnavailableError
from .server import LocalServer

__all__ = ["FaultHandle", "Faults", "IsolationUnavailableError", "LocalServer"]
