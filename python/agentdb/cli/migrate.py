"""``agentdb migrate``: copy a store between SQLite and PostgreSQL."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import JSON_OPT as json_opt
from .common import emit, fail, out


def register(app: typer.Typer) -> None:
    """Add these commands to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    @app.command()
    def migrate(
        source: str = typer.Option(..., "--from", help="SQLite file or postgresql:// URL."),
        destination: str = typer.Option(..., "--to", help="postgresql:// URL or SQLite file."),
        schema: str = typer.Option("public", help="PostgreSQL schema of the tables."),
        table_prefix: str = typer.Option("", help="Prefix of the PostgreSQL table names."),
        batch: int = typer.Option(2000, help="Rows per destination transaction."),
        verify: bool = typer.Option(True, "--verify/--no-verify",
                                    help="Compare counts and checksums at the end."),
        as_json: bool = json_opt,
    ) -> None:
        """Copy a store between SQLite and PostgreSQL (resumable; verifies every table)."""
        from ..memory.migrate import migrate as run_migration

        try:
            report = run_migration(source, destination, schema=schema,
                                   table_prefix=table_prefix, batch=batch, verify=verify,
                                   progress=None if not as_json else False)
        except Exception as exc:  # one clear line, no traceback
            fail(f"{type(exc).__name__}: {exc}")
        if as_json:
            emit(report, True)
            return
        table = Table("table", "source", "destination", "copied", "checksum")
        for name, r in report.items():
            ok = r.get("checksum_ok")
            table.add_row(name, str(r.get("source")), str(r.get("destination")),
                          str(r.get("copied")), "-" if ok is None else ("ok" if ok else "DIFF"))
        out.print(table)
