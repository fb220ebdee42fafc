"""``agentdb forget``: remove expired records, and those meeting the given criteria."""

from __future__ import annotations

import typer

from .common import JSON_OPT as json_opt
from .common import emit, fail, open_db, out


def register(app: typer.Typer) -> None:
    """Add this command to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    @app.command()
    def forget(
        db: str = typer.Argument(..., help="The store (a file, or a postgresql:// URL)."),
        kind: list[str] = typer.Option(
            [], "--kind", help="patterns, episodes or skills (repeatable; default: all)."),
        older_than: float | None = typer.Option(
            None, "--older-than", min=0.001, help="Stored at least this many seconds ago."),
        reward_below: float | None = typer.Option(
            None, "--reward-below", help="Reward (skills: success rate) below this."),
        unused_for: float | None = typer.Option(
            None, "--unused-for", min=0.001, help="Not updated for this many seconds."),
        where: str | None = typer.Option(
            None, "--where", help='A metadata filter as JSON, e.g. \'{"lang": "py"}\'.'),
        as_json: bool = json_opt,
    ) -> None:
        """Remove expired records for good and, with criteria (AND), the records meeting
        all of them; prints how many of each kind went."""
        import json

        flt = None
        if where is not None:
            try:
                flt = json.loads(where)
            except ValueError:
                fail("--where is not valid JSON")
        with open_db(db) as d:
            try:
                removed = d.forget(kind or None, older_than=older_than,
                                   reward_below=reward_below, unused_for=unused_for,
                                   where=flt)
            except Exception as exc:  # one clear line, no traceback
                fail(f"{type(exc).__name__}: {exc}")
        if as_json:
            emit(removed, True)
            return
        out.print("forgot " + ", ".join(f"{len(v):,} {k}" for k, v in removed.items()))
