"""The ``agentdb`` command line (typer + rich; the ``cli`` extra).

    agentdb demo                       # the README's main job
    agentdb --version                  # version, native core, SIMD paths (= python -m agentdb)
    agentdb init --db memory.db
    agentdb store "parse ISO dates" --reward 0.9 --success --db memory.db
    agentdb search "parse dates" -k 3 --success-only --json --db memory.db
    agentdb get 1 | delete 1 | stats | import FILE | export FILE
    export AGENTDB_POSTGRES_URL=$(agentdb postgres start)   # install | start | stop | status
    AGENTDB_API_KEYS=... agentdb serve --db memory.db --port 8080  # HTTP API (docs/api.md)
    agentdb mcp --db memory.db                 # MCP server over stdio (--http; docs/mcp.md)
    agentdb cluster up --shards 3 --replicas 2  # status | down (docs/cluster.md)
    agentdb backup memory.db memory-copy.db     # while in use; agentdb restore COPY DEST
    agentdb forget memory.db --reward-below 0   # and every expired record

One module per command group, each with ``register(app)``: :mod:`.records` (init, store, search,
get, delete, stats, import, export), :mod:`.demo`, :mod:`.serve`, :mod:`.postgres`,
:mod:`.mcp`, :mod:`.cluster`, :mod:`.migrate`, :mod:`.backup` (backup, restore), :mod:`.forget`;
:mod:`.common` holds what they share.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["main"]

_EXTRA_HINT = "the agentdb CLI needs the 'cli' extra: pip install 'agentdb[cli]'"


def _build_app() -> Any:
    """The typer app with every command (imports typer + rich: the ``cli`` extra)."""
    import typer

    from . import backup, cluster, demo, forget, mcp, migrate, postgres, records, serve

    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="AgentDB: memory for AI agents (SQLite + native HNSW).")

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", "-V",
                                     help="Print the version and the native core's SIMD paths "
                                          "(add --json for JSON) and exit."),
    ) -> None:
        """AgentDB: memory for AI agents (SQLite + native HNSW)."""
        # `--version` is answered in main() before typer runs (so it works without the cli
        # extra); the option is declared here so that --help lists it.

    # the order of --help
    for group in (records, demo, serve, mcp, postgres, cluster, migrate, backup, forget):
        group.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``agentdb`` command.

    >>> main(["--version"])  # doctest: +ELLIPSIS
    agentdb ...
    0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("--version", "-V"):  # works without the cli extra
        from ..about import report

        sys.stdout.write(report(as_json="--json" in args[1:]) + "\n")
        return 0
    try:
        app = _build_app()
    except ImportError as exc:
        sys.stderr.write(f"{_EXTRA_HINT} ({exc})\n")
        return 2
    try:
        app(args=args, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
