"""``agentdb postgres install | start | stop | status``: the embedded PostgreSQL 16 + pgvector."""

from __future__ import annotations

import sys
from typing import Any

import typer

from .common import JSON_OPT as json_opt
from .common import emit, fail


def register(app: typer.Typer) -> None:
    """Add these commands to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    pg_app = typer.Typer(no_args_is_help=True,
                         help="Embedded PostgreSQL 16 + pgvector server (the 'postgres' extra).")
    app.add_typer(pg_app, name="postgres")
    pg_dir_opt = typer.Option(None, "--data-dir", metavar="PATH",
                              help="Data directory (default: $AGENTDB_POSTGRES_DATA, "
                                   "else ~/.agentdb/postgres).")

    def pg_run(name: str, data_dir: str | None) -> Any:
        from ..storage import pgserver as postgres_server

        try:
            return getattr(postgres_server, name)(data_dir)
        except Exception as exc:  # one clear line, no traceback
            msg = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            fail(msg or type(exc).__name__)

    def pg_print(*lines: str) -> None:  # plain writes: rich would wrap long URLs
        sys.stdout.write("".join(line + "\n" for line in lines))

    @pg_app.command("install")
    def pg_install(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Initialise the data directory and check pgvector works (leaves it stopped)."""
        info = pg_run("install", data_dir)
        if as_json:
            emit(info, True)
        else:
            pg_print(f"data dir: {info['data_dir']}",
                     f"PostgreSQL {info['postgres_version']}, "
                     f"pgvector {info['pgvector_version']}",
                     f"url (while running): {info['url']}")

    @pg_app.command("start")
    def pg_start(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Start (or reuse) the server; print its URL. It keeps running after this command."""
        url = pg_run("start", data_dir)
        if as_json:
            emit(pg_run("status", data_dir), True)
        else:
            pg_print(url)  # export AGENTDB_POSTGRES_URL=$(agentdb postgres start)

    @pg_app.command("stop")
    def pg_stop(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Stop the server (fast shutdown); says so when none was running."""
        from ..storage.pgserver import data_dir_path

        stopped = pg_run("stop", data_dir)
        if as_json:
            emit({"data_dir": str(data_dir_path(data_dir)), "stopped": stopped}, True)
        else:
            pg_print("stopped" if stopped else "not running")

    @pg_app.command("status")
    def pg_status(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Show whether the data directory is initialised and the server running."""
        info = pg_run("status", data_dir)
        if as_json:
            emit(info, True)
        elif info["running"]:
            pg_print(f"running (pid {info['pid']}): {info['url']}")
        else:
            state = "stopped" if info["initialized"] else "not initialised"
            pg_print(f"{state}: {info['data_dir']}")
