"""Backups of an embedded store while it is in use, and restores.

A backup is a new store file written by SQLite's online backup API: one consistent snapshot
(a read transaction) taken while writers go on. The files beside a store are caches of its
rows (the vector index files ``<store>.<collection>.hnsw`` and the causal graph's snapshot
``<store>.graph`` + ``.graph-meta``), each registered in the store's ``meta`` table with the
generation (or token) it reflects. A file goes along with the copy only when it is exactly
the one the copy registers; otherwise its registration is dropped from the copy, and opening
the copy rebuilds that cache from the copy's rows. So a backup never pairs rows with a newer
index, and restoring it gives exactly the records committed before the snapshot.

Files are hard-linked when the destination is on the same file system (the store replaces
its files by rename, so a link keeps the linked version), copied otherwise.

>>> import agentdb, os, tempfile
>>> d = tempfile.mkdtemp()
>>> db = agentdb.open(os.path.join(d, "a.db"), dim=8)
>>> _ = db.store_pattern("t", embedding=[1.0] * 8, reward=1.0, success=True)
>>> info = db.backup(os.path.join(d, "copy.db")); info["records"]["patterns"]
1
>>> restored = restore(os.path.join(d, "copy.db"), os.path.join(d, "b.db"))
>>> agentdb.open(os.path.join(d, "b.db"), dim=8).count("patterns")
1
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from ..errors import ConflictError, InvalidTypeError, StoreError, StoreLockedError
from ..graph import snapshot as graph_snapshot
from ..storage import SQLiteStore

__all__ = ["COLLECTION_FILES", "SIDE_FILES", "backup_store", "backup_path", "restore"]

#: Vector index files beside a store, by collection.
COLLECTION_FILES = {"patterns": ".patterns.hnsw", "episodes": ".episodes.hnsw",
                    "skills": ".skills.hnsw"}
#: Every file that may sit beside a store (caches of its rows, and SQLite's own).
SIDE_FILES = (*COLLECTION_FILES.values(), ".graph", ".graph-meta", "-wal", "-shm")


def _path(p: Any, what: str) -> str:
    """A path argument as a string (InvalidTypeError naming ``what`` otherwise)."""
    if not isinstance(p, (str, os.PathLike)) or not os.fspath(p):
        raise InvalidTypeError(f"{what} must be a non-empty path, got {p!r}")
    return str(os.fspath(p))


def _place(src: str, dest: str) -> None:
    """Hard-link ``src`` at ``dest`` (a copy across file systems)."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _meta(path: str, key: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _drop_meta(path: str, keys: list[str]) -> None:
    if not keys:
        return
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany("DELETE FROM meta WHERE key=?", [(k,) for k in keys])
    finally:
        conn.close()


def backup_store(store: SQLiteStore, dest: str | os.PathLike[str], *,
                 files_lock: AbstractContextManager[Any] | None = None,
                 with_indexes: bool = True) -> dict[str, Any]:
    """Back ``store`` up to ``dest`` (see the module). ``files_lock`` is held while the
    files are checked and linked, so that no index save of this process runs meanwhile;
    ``with_indexes=False`` leaves the vector index files out (the copy rebuilds them)."""
    if store.memory:
        raise StoreError("an in-memory store has no file to back up")
    dest = _path(dest, "the backup destination")
    if Path(dest).resolve() == Path(store.path).resolve():
        raise ConflictError("the backup destination is the store itself")
    for suffix in SIDE_FILES:
        if os.path.exists(dest + suffix):
            raise ConflictError(f"backup destination file '{dest + suffix}' already exists")
    generation = store.backup_to(dest)
    linked: list[str] = []
    dropped: list[str] = []
    with files_lock or nullcontext():
        for name, suffix in COLLECTION_FILES.items():
            key = f"index_gen:{name}"
            want = _meta(dest, key)
            if want is None:
                continue
            if with_indexes and store.meta(key) == want and os.path.exists(store.path + suffix):
                _place(store.path + suffix, dest + suffix)
                linked.append(dest + suffix)
            else:
                dropped.append(key)
        token = _meta(dest, "graph_snapshot")
        if token is not None:
            ok = False
            graph_path, meta_path = graph_snapshot.paths(store.path)
            if os.path.exists(graph_path) and os.path.exists(meta_path):
                out_graph, out_meta = graph_snapshot.paths(dest)
                _place(graph_path, out_graph)
                _place(meta_path, out_meta)
                # the token inside the linked file is the one the copy registers: exact even
                # if another process saved a new snapshot meanwhile (the pair is also checked
                # against each other when the copy opens)
                ok = graph_snapshot.token_of(out_meta) == token
                if ok:
                    linked += [out_graph, out_meta]
                else:
                    Path(out_graph).unlink(missing_ok=True)
                    Path(out_meta).unlink(missing_ok=True)
            if not ok:
                dropped.append("graph_snapshot")
    _drop_meta(dest, dropped)
    conn = sqlite3.connect(dest)
    try:
        records = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                   for t in ("patterns", "episodes", "skills", "graph_nodes", "graph_edges")}
    finally:
        conn.close()
    return {"path": dest, "generation": generation, "records": records, "files": linked,
            "rebuilt_on_open": dropped}


def backup_path(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Back up the store file at ``src`` (what ``agentdb backup`` runs). When no process
    writes it, its files go along; when one does (its lock is held), the vector index files
    are left out, since their saves cannot be ordered with this copy from here, and the
    copy rebuilds them when opened (the graph snapshot is checked by its token and kept)."""
    src = _path(src, "the store to back up")
    if not os.path.exists(src):
        raise FileNotFoundError(f"no AgentDB store at '{src}'")
    try:
        store = SQLiteStore(src, dim=0)
        idle = True
    except StoreLockedError:
        store = SQLiteStore(src, dim=0, readonly=True)
        idle = False
    try:
        return backup_store(store, dest, with_indexes=idle)
    finally:
        store.close()


def restore(backup: str | os.PathLike[str], dest: str | os.PathLike[str], *,
            force: bool = False) -> list[str]:
    """Put the backup at ``backup`` (and its files) in place as the store ``dest``; returns
    the files written. An existing ``dest`` is replaced only with ``force``, and never while
    a process has it open for writing."""
    backup, dest = _path(backup, "the backup"), _path(dest, "the restore destination")
    if not os.path.exists(backup):
        raise FileNotFoundError(f"no backup at '{backup}'")
    if Path(backup).resolve() == Path(dest).resolve():
        raise ConflictError("restore needs a destination other than the backup")
    if os.path.exists(dest):
        if not force:
            raise ConflictError(f"'{dest}' exists; pass force=True (--force) to replace it")
        probe = SQLiteStore(dest, dim=0)  # StoreLockedError while a process writes it
        probe.close()
    written: list[str] = []
    copy: Callable[[str, str], Any] = shutil.copy2
    for suffix in ("", *SIDE_FILES):
        Path(dest + suffix).unlink(missing_ok=True)  # nothing of the old store may stay
    for suffix in ("", *SIDE_FILES):
        if suffix in ("-wal", "-shm") or not os.path.exists(backup + suffix):
            continue
        tmp = f"{dest}{suffix}.restoring"
        copy(backup + suffix, tmp)
        os.replace(tmp, dest + suffix)
        written.append(dest + suffix)
    # the namespaces' stores (agentdb.memory.namespaces): the folder beside it, whole
    shutil.rmtree(dest + ".ns", ignore_errors=True)
    if os.path.isdir(backup + ".ns"):
        shutil.copytree(backup + ".ns", dest + ".ns",
                        ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock"))
        written.append(dest + ".ns")
    return written
