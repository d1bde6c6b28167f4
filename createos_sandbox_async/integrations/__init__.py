"""Adapters that plug CreateOS sandboxes into agent frameworks, each an optional extra.

- :mod:`createos_sandbox_async.integrations.pydantic_ai`: ``CreateosWorkspace``, a
  ``pydantic_ai.workspaces`` backend (extra ``[pydantic-ai]``);
- :mod:`createos_sandbox_async.integrations.openai_agents`: ``CreateosSandboxClient``, an
  ``agents.sandbox`` client for the OpenAI Agents SDK (extra ``[openai-agents]``);
- :mod:`createos_sandbox_async.mcp`: an MCP server with sandbox tools (extra ``[mcp]``).

They share one core (:mod:`createos_sandbox_async.integrations.core`): a per-conversation
sandbox holder, one output-truncation policy and one mapping from SDK errors to tool errors.
Importing this package imports no framework.
"""

from __future__ import annotations
