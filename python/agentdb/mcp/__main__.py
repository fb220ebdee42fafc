"""``python -m agentdb.mcp --db PATH [--http ...]``: the MCP server without the CLI extra.

Same options as ``agentdb mcp`` (which adds nothing but typer's help).
"""

from __future__ import annotations

import argparse
import sys

from .tools import EXTRA_HINT


def main(argv: list[str] | None = None) -> int:
    """Parse the options, open the store, serve until the client (or a signal) ends it.

    >>> main(["--help"])  # doctest: +SKIP
    """
    from .. import memory
    from ..server.auth import resolve_auth

    p = argparse.ArgumentParser(prog="agentdb mcp", description="AgentDB as an MCP server.")
    p.add_argument("--db", default="memory.db", help="store file (or :memory:, or a "
                                                     "postgresql:// URL)")
    p.add_argument("--embedder", default=None, help="embedder of a new store (hashing, "
                                                    "minilm, ...)")
    p.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--api-keys-file", default=None)
    p.add_argument("--no-auth", action="store_true", help="HTTP without API keys (loopback)")
    p.add_argument("--allow-writes", action="store_true",
                   help="let cypher_query run CREATE/MERGE/SET/DELETE/REMOVE")
    p.add_argument("--namespace", default=None,
                   help="serve only this namespace of the store (agentdb.memory.namespaces)")
    args = p.parse_args(argv)
    try:
        from .server import run_http, run_stdio

        keys = resolve_auth(args.host, args.no_auth, args.api_keys_file) if args.http else None
        if not 0 < args.port < 65536:
            raise ValueError(f"--port must be within 1..65535, got {args.port}")
        db = memory.open(args.db, embedder=args.embedder)
        scoped = db if args.namespace is None else db.namespace(args.namespace)
    except ImportError as exc:
        sys.stderr.write(f"error: {exc if EXTRA_HINT in str(exc) else EXTRA_HINT}\n")
        return 2
    except Exception as exc:  # one clear line, no traceback
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return 1
    with db:
        if args.http:
            run_http(scoped, host=args.host, port=args.port, api_keys=keys,
                     allow_writes=args.allow_writes)
        else:
            run_stdio(scoped, allow_writes=args.allow_writes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
