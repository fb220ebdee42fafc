"""Build the MCP server over a store and run it over stdio or streamable HTTP.

>>> from agentdb.mcp.server import build_server
>>> import agentdb
>>> with agentdb.open(":memory:", dim=8) as db:  # doctest: +SKIP
...     server = build_server(db)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .._version import __version__
from ..server.auth import KeyStore, key_from_headers
from . import tools
from .tools import EXTRA_HINT

__all__ = ["build_server", "run_http", "run_stdio"]

INSTRUCTIONS = (
    "AgentDB is this agent's long-term memory. Before a task, search similar patterns "
    "(pattern_search) and read the critiques of similar failures "
    "(reflexion_critique_summary); after it, store what was done (pattern_store / "
    "reflexion_store with a critique) and give feedback on what helped (learning_feedback). "
    "Record causes with causal_add_event / causal_add_edge and ask why with "
    "causal_query_paths or cypher_query.")


def _sdk() -> Any:
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT} ({exc})") from exc
    return MCPServer


def build_server(db: Any, *, allow_writes: bool = False, name: str = "agentdb") -> Any:
    """An ``mcp`` ``MCPServer`` with AgentDB's tools and resources over ``db``.

    ``allow_writes``: let ``cypher_query`` change the graph (read-only by default).

    >>> import agentdb
    >>> with agentdb.open(":memory:", dim=8) as db:  # doctest: +SKIP
    ...     build_server(db).name
    'agentdb'
    """
    server = _sdk()(name, version=__version__, instructions=INSTRUCTIONS,
                    log_level="WARNING")
    tools.register(server, db, allow_writes=allow_writes)
    return server


def run_stdio(db: Any, *, allow_writes: bool = False) -> None:
    """Serve ``db`` over stdin/stdout until the client closes the pipe.

    >>> run_stdio  # doctest: +ELLIPSIS
    <function run_stdio at ...>
    """
    build_server(db, allow_writes=allow_writes).run("stdio")


class _RequireKey:
    """ASGI middleware: every HTTP request needs one of the API keys (``Authorization:
    Bearer <key>`` or ``X-API-Key``), else 401 with a JSON error (the ``agentdb serve`` rule)."""

    def __init__(self, app: Any, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            if self.keys.check(key_from_headers(headers)) is None:
                body = json.dumps({"error": {"code": "unauthorized", "message":
                                             "missing or invalid API key"}}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(db: Any, *, api_keys: list[str] | None, allow_writes: bool = False,
             host: str = "127.0.0.1") -> Any:
    """The streamable-HTTP ASGI app at ``/mcp``, behind ``api_keys`` (None: no auth).

    >>> http_app  # doctest: +ELLIPSIS
    <function http_app at ...>
    """
    app = build_server(db, allow_writes=allow_writes).streamable_http_app(host=host)
    return app if api_keys is None else _RequireKey(app, KeyStore(api_keys))


def run_http(db: Any, *, host: str = "127.0.0.1", port: int = 8765,
             api_keys: list[str] | None = None, allow_writes: bool = False,
             log_level: str = "warning") -> None:
    """Serve ``db`` over streamable HTTP at ``http://host:port/mcp`` until SIGINT/SIGTERM.

    >>> run_http  # doctest: +ELLIPSIS
    <function run_http at ...>
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT} ({exc})") from exc
    app = http_app(db, api_keys=api_keys, allow_writes=allow_writes, host=host)
    auth = "off (loopback only)" if api_keys is None else f"{len(api_keys)} API key(s)"
    sys.stderr.write(f"agentdb: MCP over streamable HTTP on http://{host}:{port}/mcp "
                     f"(auth: {auth})\n")
    sys.stderr.flush()
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=5)
