"""``agentdb mcp``: the store as an MCP server (stdio, or streamable HTTP with ``--http``)."""

from __future__ import annotations

import typer

from .common import DB_OPT as db_opt


def register(app: typer.Typer) -> None:
    """Add ``agentdb mcp`` to ``app`` (called by :func:`agentdb.cli._build_app`)."""

    @app.command()
    def mcp(
        db: str = db_opt,
        embedder: str = typer.Option(None, help="Embedder of a new store (hashing, minilm, "
                                                "...); an existing store uses its own."),
        http: bool = typer.Option(False, "--http", help="Streamable HTTP instead of stdio."),
        host: str = typer.Option("127.0.0.1", help="HTTP address to bind."),
        port: int = typer.Option(8765, help="HTTP port (the endpoint is /mcp)."),
        api_keys_file: str = typer.Option(None, "--api-keys-file",
                                          help="API keys, one per line (# comments)."),
        no_auth: bool = typer.Option(False, "--no-auth",
                                     help="HTTP without API keys (loopback hosts only)."),
        allow_writes: bool = typer.Option(False, "--allow-writes",
                                          help="Let cypher_query change the graph."),
        namespace: str = typer.Option(None, "--namespace",
                                      help="Serve only this namespace of the store."),
    ) -> None:
        """Serve a store to MCP clients (Claude, Cursor, ...); needs the 'mcp' extra.

        Over HTTP, API keys come from AGENTDB_API_KEYS and/or --api-keys-file, as for serve.
        """
        from ..mcp.__main__ import main

        argv = ["--db", db, "--host", host, "--port", str(port)]
        argv += ["--embedder", embedder] if embedder else []
        argv += ["--api-keys-file", api_keys_file] if api_keys_file else []
        argv += ["--namespace", namespace] if namespace else []
        argv += [flag for flag, on in (("--http", http), ("--no-auth", no_auth),
                                       ("--allow-writes", allow_writes)) if on]
        code = main(argv)
        if code:
            raise typer.Exit(code)
