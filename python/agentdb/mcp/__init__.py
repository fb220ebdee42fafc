"""AgentDB as an MCP server (the official ``mcp`` SDK; the ``mcp`` extra).

``agentdb mcp --db memory.db`` serves a store to an MCP client (Claude Desktop, Claude Code,
Cursor, ...) over stdio; ``--http`` serves it over streamable HTTP, behind the same API keys as
``agentdb serve``. The tools (:mod:`.tools`): patterns, Reflexion episodes and critique
summaries, skills, the causal graph, read-only Cypher, feedback and stats; the resources:
``agentdb://stats`` and ``agentdb://{patterns,episodes,skills}/recent``. docs/mcp.md has the
client set-up.

>>> from agentdb.mcp import tools
>>> len(tools.TOOL_NAMES)
18
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXTRA_HINT", "build_server", "run_http", "run_stdio"]

from .tools import EXTRA_HINT


def __getattr__(name: str) -> Any:
    if name in ("build_server", "run_http", "run_stdio"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
