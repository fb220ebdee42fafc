"""The causal graph's snapshot beside an embedded store: what lets a large graph open in well
under a second.

Two files sit next to ``<store>``:

* ``<store>.graph``: the native CSR hypergraph (``AGDBHYPG``, see
  :data:`agentdb.engines.numpy_graph_file.FILE_FORMAT`; checksummed, written atomically);
* ``<store>.graph-meta``: an uncompressed ``.npz`` (each member CRC-checked by ``zipfile``)
  holding the edge columns (:class:`~agentdb.graph.tables.EdgeTable`), the label and type
  names, the nodes' further labels, the property indexes as sorted hash/id arrays, and a
  JSON header: format version, the store generation the snapshot reflects, the token it was
  registered under in the store's ``meta`` table (``graph_snapshot``), and the size and
  checksum of the ``.graph`` file it pairs with.

A snapshot is used only if its token is the store's (a store restored from an older copy
carries another token), its generation is not ahead of the store's, and both files are
whole; the rows written after its generation (every row carries the generation that wrote
it, and graph deletions are logged) are then replayed. Anything else means a rebuild from
the rows (:mod:`agentdb.graph.loading`).

>>> SNAPSHOT_VERSION
1
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SNAPSHOT_VERSION", "Snapshot", "SnapshotUnusable", "paths", "read", "token_of",
           "write"]

SNAPSHOT_VERSION = 1


class SnapshotUnusable(Exception):
    """The snapshot is missing, stale, from another store, or damaged (the message says
    which); the graph is rebuilt from the store's rows."""


@dataclass
class Snapshot:
    """Everything the graph keeps in memory besides the CSR and the property maps."""

    generation: int
    token: str
    label_names: list[str]
    type_names: list[str]
    more: dict[int, list[str]]
    secondary: list[str]
    edge_ids: np.ndarray
    edge_types: np.ndarray
    edge_conf: np.ndarray
    edge_ts: np.ndarray
    edge_flags: np.ndarray
    indexes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def paths(store_path: str) -> tuple[str, str]:
    """``(<store>.graph, <store>.graph-meta)``.

    >>> paths("/data/agent.db")
    ('/data/agent.db.graph', '/data/agent.db.graph-meta')
    """
    return store_path + ".graph", store_path + ".graph-meta"


def _trailer(path: str) -> tuple[int, int]:
    """``(size, stored CRC-32)`` of a checksummed file (its last four bytes)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 4:
            return size, -1
        f.seek(size - 4)
        return size, struct.unpack("<I", f.read(4))[0]


def write(store_path: str, g: Any, snap: Snapshot) -> None:
    """Write both files (each atomically: temporary file, rename; the CSR first, so a crash in
    between leaves a pair that does not match, and the graph is rebuilt from the rows; the
    rows are the record, a lost snapshot only costs a slower open)."""
    graph_path, meta_path = paths(store_path)
    g.save(graph_path, mappable=True)  # the native backend maps it on open (version 2)
    size, crc = _trailer(graph_path)
    header = {
        "version": SNAPSHOT_VERSION, "generation": int(snap.generation), "token": snap.token,
        "graph_size": size, "graph_crc": crc, "labels": snap.label_names,
        "types": snap.type_names, "more": [[int(n), m] for n, m in snap.more.items()],
        "secondary": sorted(snap.secondary),
        "indexes": [[label, prop] for label, prop in snap.indexes],
    }
    arrays: dict[str, np.ndarray] = {
        "header": np.frombuffer(json.dumps(header).encode(), np.uint8),
        "edge_ids": np.asarray(snap.edge_ids, np.int64),
        "edge_types": np.asarray(snap.edge_types, np.int32),
        "edge_conf": np.asarray(snap.edge_conf, np.float64),
        "edge_ts": np.asarray(snap.edge_ts, np.float64),
        "edge_flags": np.asarray(snap.edge_flags, np.uint8),
    }
    for i, (h, ids) in enumerate(snap.indexes.values()):
        arrays[f"index{i}_hashes"] = np.asarray(h, np.int64)
        arrays[f"index{i}_ids"] = np.asarray(ids, np.int64)
    directory = str(Path(meta_path).resolve().parent)
    fd, tmp = tempfile.mkstemp(prefix=".graph-meta-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # like the store's other files, not mkstemp's 0600
        os.replace(tmp, meta_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def token_of(meta_path: str) -> str | None:
    """The token a ``.graph-meta`` file was registered under (None if unreadable).

    >>> token_of("/nonexistent.graph-meta") is None
    True
    """
    try:
        with open(meta_path, "rb") as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as z:
            token = json.loads(bytes(z["header"]).decode()).get("token")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return token if isinstance(token, str) else None


def read(store_path: str, token: str | None, generation: int, load_graph: Any
         ) -> tuple[Any, Snapshot]:
    """The native graph and the :class:`Snapshot` saved beside ``store_path``, or
    :class:`SnapshotUnusable` naming why not. ``token`` and ``generation`` are the store's;
    ``load_graph(path)`` reads the CSR file (the backend's ``Hypergraph.load``)."""
    graph_path, meta_path = paths(store_path)
    if token is None:
        raise SnapshotUnusable("the store has no graph snapshot registered")
    if not (os.path.exists(graph_path) and os.path.exists(meta_path)):
        raise SnapshotUnusable("no snapshot files")
    try:
        with open(meta_path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("version") != SNAPSHOT_VERSION:
                raise SnapshotUnusable(f"snapshot format version {header.get('version')}")
            if header.get("token") != token:
                raise SnapshotUnusable("the snapshot belongs to another state of the store")
            if int(header["generation"]) > generation:
                raise SnapshotUnusable("the snapshot is newer than the store")
            if _trailer(graph_path) != (header["graph_size"], header["graph_crc"]):
                raise SnapshotUnusable("the .graph file does not pair with .graph-meta")
            indexes = {}
            for i, (label, prop) in enumerate(header["indexes"]):
                indexes[(str(label), str(prop))] = (z[f"index{i}_hashes"], z[f"index{i}_ids"])
            snap = Snapshot(
                generation=int(header["generation"]), token=token,
                label_names=[str(x) for x in header["labels"]],
                type_names=[str(x) for x in header["types"]],
                more={int(n): [str(x) for x in m] for n, m in header["more"]},
                secondary=[str(x) for x in header["secondary"]],
                edge_ids=z["edge_ids"], edge_types=z["edge_types"], edge_conf=z["edge_conf"],
                edge_ts=z["edge_ts"], edge_flags=z["edge_flags"], indexes=indexes)
    except SnapshotUnusable:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise SnapshotUnusable(f"damaged .graph-meta: {exc}") from None
    n = len(snap.edge_ids)
    if not all(len(a) == n for a in (snap.edge_types, snap.edge_conf, snap.edge_ts,
                                     snap.edge_flags)):
        raise SnapshotUnusable("damaged .graph-meta: edge columns of unequal lengths")
    try:
        g = load_graph(graph_path)
    except (OSError, ValueError) as exc:
        raise SnapshotUnusable(f"damaged .graph: {exc}") from None
    if int(g.num_edges()) != n:
        raise SnapshotUnusable("the .graph file and .graph-meta disagree on the edges")
    return g, snap
