"""Bulk import and export of agent memory as JSON Lines.

One record per line: ``{"kind": "pattern" | "episode" | "skill", ...fields...,
"embedding": [...]}``. Exports carry embeddings (so an import needs no embedder) unless
``embeddings=False``; imports embed records that have none. Skills are imported first, then
patterns, then episodes (episodes may name skills). Import reads the file twice: the first
pass checks every line is a JSON object of a known kind (nothing is written if one is not);
the second writes in batches of ``batch`` records, one transaction each.

>>> import agentdb, tempfile, os
>>> db = agentdb.open(":memory:", dim=16)
>>> _ = db.store_pattern("a task", reward=0.5)
>>> path = os.path.join(tempfile.mkdtemp(), "m.jsonl")
>>> export_jsonl(db, path)
{'patterns': 1, 'episodes': 0, 'skills': 0}
>>> import_jsonl(agentdb.open(":memory:", dim=16), path)
{'patterns': 1, 'episodes': 0, 'skills': 0}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from .progress import progress_bar

if TYPE_CHECKING:
    from .embedded import AgentDB

__all__ = ["export_jsonl", "import_jsonl"]

_KINDS = {"pattern": "patterns", "episode": "episodes", "skill": "skills"}
_ORDER = ("skills", "patterns", "episodes")


def export_jsonl(db: AgentDB, path: str | os.PathLike[str], *,
                 kinds: tuple[str, ...] = ("patterns", "episodes", "skills"),
                 embeddings: bool = True, progress: bool | None = None) -> dict[str, int]:
    """Write records to ``path`` (atomically); returns counts per kind."""
    for k in kinds:
        if k not in _ORDER:
            raise InvalidArgumentError(f"unknown kind {k!r}: expected patterns, episodes or skills")
    counts = {k: 0 for k in ("patterns", "episodes", "skills")}
    total = sum(db.count(k) for k in kinds)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh, \
            progress_bar(total, "exporting", enabled=progress if total > 1000 else False) as adv:
        for kind in kinds:
            tag = kind[:-1]
            for rec in db.iter_records(kind):
                d = rec.to_dict(embedding=embeddings)
                fh.write(json.dumps({"kind": tag, **d}, ensure_ascii=False) + "\n")
                counts[kind] += 1
                adv(1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return counts


def _lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError(f"{os.fspath(path)}:{n}: invalid JSON: {exc.msg} "
                                           f"(column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise InvalidArgumentError(f"{os.fspath(path)}:{n}: expected a JSON object")
            kind = obj.get("kind", "pattern")
            if kind not in _KINDS:
                raise InvalidArgumentError(f"{os.fspath(path)}:{n}: unknown kind {kind!r} "
                                           "(expected pattern, episode or skill)")
            yield n, obj


def import_jsonl(db: AgentDB, path: str | os.PathLike[str], *, keep_ids: bool = False,
                 batch: int = 1000, progress: bool | None = None) -> dict[str, int]:
    """Import records from ``path``; returns counts per kind.

    With ``keep_ids=True`` each record keeps its ``id`` (an id that already exists is an
    error); otherwise new ids are assigned. Timestamps are kept.
    """
    if batch < 1:
        raise InvalidArgumentError(f"batch must be >= 1, got {batch}")
    totals = {k: 0 for k in _KINDS.values()}
    for _, obj in _lines(path):  # pass 1: syntax and kinds, nothing written yet
        totals[_KINDS[obj.get("kind", "pattern")]] += 1
    counts = {k: 0 for k in ("patterns", "episodes", "skills")}
    grand = sum(totals.values())
    with progress_bar(grand, "importing", enabled=progress if grand > 1000 else False) as adv:
        for kind in _ORDER:
            if not totals[kind]:
                continue
            pending: list[tuple[int, dict[str, Any]]] = []
            for n, obj in _lines(path):
                if _KINDS[obj.get("kind", "pattern")] != kind:
                    continue
                rec = {k: v for k, v in obj.items() if k != "kind"}
                if not keep_ids:
                    rec.pop("id", None)
                pending.append((n, rec))
                if len(pending) >= batch:
                    counts[kind] += _flush(db, kind, pending, path)
                    adv(len(pending))
                    pending = []
            if pending:
                counts[kind] += _flush(db, kind, pending, path)
                adv(len(pending))
    return counts


def _flush(db: AgentDB, kind: str, items: list[tuple[int, dict[str, Any]]],
           path: str | os.PathLike[str]) -> int:
    first = items[0][0]
    try:
        if kind == "patterns":
            return len(db.store_patterns([r for _, r in items]))
        if kind == "episodes":
            return len(db.store_episodes([r for _, r in items], update_skills=False))
        for _, r in items:
            r.pop("updated_at", None)
            name = r.pop("name", None)
            db.store_skill(name, r.pop("description", ""), **r)
        return len(items)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgumentError(
            f"{os.fspath(path)}: import of {kind} stopped in the batch starting "
            f"at line {first}: {exc}") from None
