"""Command line: ``createos-sandbox`` (or ``python -m createos_sandbox_async``).

Verb for verb the official ``createos sandbox`` CLI (docs/cli.md has the table): ``create``,
``ls``, ``get``, ``edit``, ``pause``, ``resume``, ``fork``, ``rm``, ``exec``, ``shell``, ``push``,
``pull``, ``shapes``, ``rootfs``, the ``network``/``disk``/``firewall``/``template`` groups, plus
``whoami``, ``local``, ``demo`` and ``mcp``. Sandboxes are named by id or by name. Every command
takes ``--output json`` (one JSON document on stdout) and fails with one line on stderr and a
documented exit status. Built on the SDK's public API only; one module per verb group.
"""

from __future__ import annotations

from ._app import main

__all__ = ["main"]
