"""What every ``agentdb`` command shares: the consoles, ``--db`` / ``--json``, one-line errors.

Imported only when the command line runs (it needs the ``cli`` extra: typer + rich).

>>> kind_of("episode")
'episodes'
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from .. import memory

__all__ = ["DB_OPT", "JSON_OPT", "KINDS", "emit", "err", "fail", "kind_of", "open_db", "out",
           "parse_json"]

out = Console()
err = Console(stderr=True)
KINDS = {"pattern": "patterns", "episode": "episodes", "skill": "skills"}
DB_OPT: Any = typer.Option("memory.db", "--db", help="Store file (or :memory:).")
JSON_OPT: Any = typer.Option(False, "--json", help="Machine-readable JSON output.")


def fail(msg: str) -> NoReturn:
    """Print ``error: msg`` to stderr and exit with status 1 (no traceback)."""
    from rich.markup import escape  # "agentdb[postgres]" is text, not a style tag

    err.print(f"[red]error:[/red] {escape(msg)}", markup=True, highlight=False)
    raise typer.Exit(1)


def open_db(path: str, **kw: Any) -> Any:
    """``agentdb.open(path, **kw)``, any failure reported as one line by :func:`fail`."""
    try:
        return memory.open(path, **kw)
    except Exception as exc:  # one clear line, no traceback
        fail(f"{type(exc).__name__}: {exc}")


def emit(obj: Any, as_json: bool) -> None:
    """Print ``obj``: one JSON line with ``--json``, else rich's rendering."""
    if as_json:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    else:
        out.print(obj)


def kind_of(kind: str) -> str:
    """``pattern`` / ``episode`` / ``skill`` -> the table name; anything else fails."""
    if kind not in KINDS:
        fail(f"unknown kind {kind!r}: expected pattern, episode or skill")
    return KINDS[kind]


def parse_json(text: str | None, what: str) -> Any:
    """Parse an option's JSON text (``None`` stays ``None``); bad JSON fails naming ``what``."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}")
