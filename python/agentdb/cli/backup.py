"""``agentdb backup`` and ``agentdb restore``: consistent copies of an embedded store."""

from __future__ import annotations

import typer

from .common import JSON_OPT as json_opt
from .common import emit, fail, out


def register(app: typer.Typer) -> None:
    """Add these commands to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    @app.command()
    def backup(
        source: str = typer.Argument(..., help="The store file (SQLite) to back up."),
        destination: str = typer.Argument(..., help="The backup file to create."),
        as_json: bool = json_opt,
    ) -> None:
        """Copy a store while it may be in use (SQLite's online backup; its index files
        too when no process writes it, otherwise they are rebuilt when the copy opens)."""
        from ..memory.backup import backup_path

        try:
            info = backup_path(source, destination)
        except Exception as exc:  # one clear line, no traceback
            fail(f"{type(exc).__name__}: {exc}")
        if as_json:
            emit(info, True)
            return
        counts = ", ".join(f"{v:,} {k}" for k, v in info["records"].items())
        out.print(f"backed up '{source}' to '{destination}' at generation "
                  f"{info['generation']}: {counts}")
        if info["rebuilt_on_open"]:
            out.print("rebuilt when the copy opens: " + ", ".join(info["rebuilt_on_open"]))

    @app.command()
    def restore(
        backup_file: str = typer.Argument(..., help="A file made by `agentdb backup`."),
        destination: str = typer.Argument(..., help="Where to put the restored store."),
        force: bool = typer.Option(False, "--force",
                                   help="Replace an existing store (never one in use)."),
        as_json: bool = json_opt,
    ) -> None:
        """Put a backup (and its index files) in place as a store."""
        from ..memory.backup import restore as run_restore

        try:
            files = run_restore(backup_file, destination, force=force)
        except Exception as exc:  # one clear line, no traceback
            fail(f"{type(exc).__name__}: {exc}")
        if as_json:
            emit({"path": destination, "files": files}, True)
            return
        out.print(f"restored '{backup_file}' to '{destination}' ({len(files)} files)")
