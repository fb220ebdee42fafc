"""The causal graph's snapshot beside an embedded store: what lets a large graph open in well
under a second, holding little memory of its own.

Two files sit next to ``<store>``:

* ``<store>.graph``: the native CSR hypergraph (``AGDBHYPG`` version 2, see
  :data:`agentdb.engines.numpy_graph_file.FILE_FORMAT_V2`; checksummed per section, written
  atomically), which the native backend memory-maps and reads in place;
* ``<store>.graph-meta``: an uncompressed ``.npz`` whose members are memory-mapped too (each
  member's CRC-32, stored by ``zipfile``, is checked first): the edge columns by edge id
  (:class:`~agentdb.graph.tables.EdgeTable`: type code, confidence, timestamp, has-properties
  flag; mapped copy-on-write, so later writes never reach the file), the property indexes as
  hash-sorted hash / node id arrays (mapped read-only), and a JSON header: format version,
  the store generation the snapshot reflects, the token it was registered under in the
  store's ``meta`` table (``graph_snapshot``), the label and type names, the nodes' further
  labels, the edge count, and the size and checksum of the ``.graph`` file it pairs with.

A snapshot is used only if its token is the store's (a store restored from an older copy
carries another token), its generation is not ahead of the store's, and both files are
whole; the rows written after its generation (every row carries the generation that wrote
it, and graph deletions are logged) are then replayed. Anything else means a rebuild from
the rows (:mod:`agentdb.graph.loading`). Version-1 ``.graph-meta`` files (edge columns as
lists, read into memory) are still read.

>>> SNAPSHOT_VERSION
2
"""

from __future__ import annotations

import io
import json
import mmap
import os
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SNAPSHOT_VERSION", "Snapshot", "SnapshotUnusable", "paths", "read", "token_of",
           "write"]

SNAPSHOT_VERSION = 2
_READS = (1, 2)  # .graph-meta versions this build reads


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
    edge_type_of: np.ndarray  # by edge id (dense): type code, -1 for no edge
    edge_conf: np.ndarray
    edge_ts: np.ndarray
    edge_flag: np.ndarray
    edge_count: int
    #: ``(label, property)`` -> ``(hashes, node ids)``, sorted by hash
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
        "secondary": sorted(snap.secondary), "edge_count": int(snap.edge_count),
        "indexes": [[label, prop] for label, prop in snap.indexes],
    }
    arrays: dict[str, np.ndarray] = {
        "header": np.frombuffer(json.dumps(header).encode(), np.uint8),
        "edge_type_of": np.asarray(snap.edge_type_of, np.int32),
        "edge_conf": np.asarray(snap.edge_conf, np.float64),
        "edge_ts": np.asarray(snap.edge_ts, np.float64),
        "edge_flag": np.asarray(snap.edge_flag, np.uint8),
    }
    for i, (h, ids) in enumerate(snap.indexes.values()):
        arrays[f"index{i}_hashes"] = np.asarray(h, np.int64)
        arrays[f"index{i}_ids"] = np.asarray(ids, np.int64)
    directory = str(Path(meta_path).resolve().parent)
    fd, tmp = tempfile.mkstemp(prefix=".graph-meta-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # stored, not compressed
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # like the store's other files, not mkstemp's 0600
        os.replace(tmp, meta_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mapped_members(path: str) -> dict[str, np.ndarray]:
    """Every member of the uncompressed ``.npz`` at ``path`` as an array mapped from the file
    (``header`` and the index arrays read-only, the edge columns copy-on-write), after
    checking each member's CRC-32 through a temporary mapping (closed again, so the check
    leaves nothing in the resident set). ValueError / OSError / BadZipFile when damaged."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
        size = os.fstat(f.fileno()).st_size
        places: list[tuple[str, int, int, int]] = []
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is compressed or not an array")
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"member {info.filename!r} has no local header")
            n_name, n_extra = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + n_name + n_extra
            if start + info.file_size > size:
                raise ValueError(f"member {info.filename!r} runs past the end of the file")
            places.append((info.filename[:-4], start, info.file_size, info.CRC))
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as whole:
            view = memoryview(whole)
            try:
                for name, start, n, crc in places:
                    if zlib.crc32(view[start:start + n]) & 0xFFFFFFFF != crc:
                        raise ValueError(f"member {name!r} failed its CRC-32")
            finally:
                view.release()
        for name, start, n, _crc in places:
            f.seek(start)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"member {name!r} has .npy version {version}")
            if fortran or dtype.hasobject or len(shape) != 1:
                raise ValueError(f"member {name!r} is not a flat array")
            offset = f.tell()
            if offset + shape[0] * dtype.itemsize != start + n:
                raise ValueError(f"member {name!r} does not match its size")
            if shape[0] == 0:
                out[name] = np.zeros(0, dtype)
            else:
                mode = "c" if name.startswith("edge_") else "r"
                out[name] = np.memmap(f, dtype=dtype, mode=mode, offset=offset, shape=shape)
    return out


def token_of(meta_path: str) -> str | None:
    """The token a ``.graph-meta`` file was registered under (None if unreadable).

    >>> token_of("/nonexistent.graph-meta") is None
    True
    """
    try:
        with zipfile.ZipFile(meta_path) as zf:  # the header member only
            raw = np.load(io.BytesIO(zf.read("header.npy")), allow_pickle=False)
        token = json.loads(bytes(raw).decode()).get("token")
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
        z = _mapped_members(meta_path)
        header = json.loads(bytes(z["header"]).decode())
        version = header.get("version")
        if version not in _READS:
            raise SnapshotUnusable(f"snapshot format version {version}")
        if header.get("token") != token:
            raise SnapshotUnusable("the snapshot belongs to another state of the store")
        if int(header["generation"]) > generation:
            raise SnapshotUnusable("the snapshot is newer than the store")
        if _trailer(graph_path) != (header["graph_size"], header["graph_crc"]):
            raise SnapshotUnusable("the .graph file does not pair with .graph-meta")
        indexes = {}
        for i, (label, prop) in enumerate(header["indexes"]):
            h, ids = z[f"index{i}_hashes"], z[f"index{i}_ids"]
            if len(h) != len(ids) or h.dtype != np.int64 or ids.dtype != np.int64:
                raise ValueError(f"property index {label}.{prop} is damaged")
            indexes[(str(label), str(prop))] = (h, ids)
        columns = _columns_v1(z) if version == 1 else _columns_v2(z, header)
        snap = Snapshot(
            generation=int(header["generation"]), token=token,
            label_names=[str(x) for x in header["labels"]],
            type_names=[str(x) for x in header["types"]],
            more={int(n): [str(x) for x in m] for n, m in header["more"]},
            secondary=[str(x) for x in header["secondary"]], indexes=indexes, **columns)
    except SnapshotUnusable:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise SnapshotUnusable(f"damaged .graph-meta: {exc}") from None
    n = snap.edge_count
    try:
        g = load_graph(graph_path)
    except (OSError, ValueError) as exc:
        raise SnapshotUnusable(f"damaged .graph: {exc}") from None
    if int(g.num_edges()) != n:
        raise SnapshotUnusable("the .graph file and .graph-meta disagree on the edges")
    return g, snap


def _columns_v2(z: dict[str, np.ndarray], header: dict[str, Any]) -> dict[str, Any]:
    """The dense edge columns of a version-2 ``.graph-meta`` (checked, not copied)."""
    want = {"edge_type_of": np.int32, "edge_conf": np.float64, "edge_ts": np.float64,
            "edge_flag": np.uint8}
    cols = {name: z[name] for name in want}
    n = len(cols["edge_type_of"])
    for name, arr in cols.items():
        if arr.dtype != np.dtype(want[name]).newbyteorder("<") or len(arr) != n:
            raise ValueError(f"edge column {name} has the wrong type or length")
    count = int(header["edge_count"])
    if count != int(np.count_nonzero(cols["edge_type_of"] >= 0)):
        raise ValueError("the edge count does not match the edge columns")
    return {**cols, "edge_count": count}


def _columns_v1(z: dict[str, np.ndarray]) -> dict[str, Any]:
    """A version-1 ``.graph-meta``'s edge lists spread into dense columns by edge id."""
    ids = np.asarray(z["edge_ids"], np.int64)
    parts = [z["edge_types"], z["edge_conf"], z["edge_ts"], z["edge_flags"]]
    if not all(len(a) == len(ids) for a in parts):
        raise ValueError("edge columns of unequal lengths")
    if len(ids) and (int(ids.min()) < 1 or len(np.unique(ids)) != len(ids)):
        raise ValueError("edge ids out of range or repeated")
    top = int(ids.max()) + 1 if len(ids) else 0
    type_of = np.full(top, -1, np.int32)
    conf, ts, flag = np.zeros(top), np.zeros(top), np.zeros(top, np.uint8)
    type_of[ids], conf[ids], ts[ids], flag[ids] = parts
    return {"edge_type_of": type_of, "edge_conf": conf, "edge_ts": ts, "edge_flag": flag,
            "edge_count": len(ids)}
