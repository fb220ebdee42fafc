"""The AGDBHYPG file format of the hypergraph, shared by the numpy and native backends.

:func:`encode` turns a :class:`~.numpy_graph_state.GraphState` into the header and sections
of :data:`FILE_FORMAT` (written with :func:`~.fileio.write_crc_file`, which adds the CRC-32
trailer); :func:`decode` checks a whole file (magic, version, sizes, checksum, every section)
and rebuilds the state.  Both backends write byte-identical files for the same graph and
read each other's.

Example:
    >>> g = GraphState()
    >>> g.upsert_nodes([1, 2], [4, 5])
    >>> g.insert_edges([3], [0], [0, 1], [1], [0, 1], [2], [0.25], [0.0])
    >>> header, sections = encode(g)
    >>> len(header), len(sections)
    (64, 10)
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import numpy as np

from .numpy_graph_state import GraphState

__all__ = ["FILE_FORMAT", "decode", "encode"]

FILE_FORMAT: Final = """\
AGDBHYPG version 1, little endian, written atomically (temporary file + rename).
header, 64 bytes:
  0  char[8]  magic "AGDBHYPG"
  8  u32      version = 1
  12 u32      header_size = 64
  16 u64      n_nodes
  24 u64      n_edges
  32 u64      n_tail   (total tail entries)
  40 u64      n_head   (total head entries)
  48 u32      flags = 0
  52 u8[12]   reserved, zero
sections, back to back, no padding (live items only):
  node_ids      i64[n_nodes]      strictly ascending, != -1
  node_labels   i32[n_nodes]      >= -1
  edge_ids      i64[n_edges]      strictly ascending, != -1
  edge_types    i32[n_edges]      >= 0
  edge_conf     f32[n_edges]      in [0, 1]
  edge_time     f64[n_edges]
  tail_offsets  u64[n_edges + 1]  0 = first <= ... <= last = n_tail, each edge non-empty
  tail_nodes    u32[n_tail]       index into the node section, distinct within an edge
  head_offsets  u64[n_edges + 1]  same rules with n_head
  head_nodes    u32[n_head]
trailer: u32 CRC-32 (zlib.crc32) of every preceding byte.
"""

_MAGIC: Final = b"AGDBHYPG"
_VERSION: Final = 1
_HEADER_SIZE: Final = 64
_HEADER: Final = struct.Struct("<8sIIQQQQI12s")
_TRAILER: Final = struct.Struct("<I")
_MAX_SLOTS: Final = 0xFFFFFFFE  # nodes
_MAX_EDGES: Final = 0x7FFFFFFE  # edges (the native projection flags bit 31)
_MAX_COUNT: Final = 1 << 40


def encode(g: GraphState) -> tuple[bytes, list[np.ndarray]]:
    """``(header, sections)`` of the file for ``g`` (live items only, ids ascending)."""
    node_ids = sorted(g.labels)
    index = {v: i for i, v in enumerate(node_ids)}
    edge_ids = sorted(g.edges)
    recs = [g.edges[e] for e in edge_ids]
    tails = [index[v] for r in recs for v in r[1]]
    heads = [index[v] for r in recs for v in r[2]]
    toff = np.zeros(len(recs) + 1, dtype="<u8")
    hoff = np.zeros(len(recs) + 1, dtype="<u8")
    toff[1:] = np.cumsum([len(r[1]) for r in recs], dtype=np.uint64)
    hoff[1:] = np.cumsum([len(r[2]) for r in recs], dtype=np.uint64)
    header = _HEADER.pack(
        _MAGIC,
        _VERSION,
        _HEADER_SIZE,
        len(node_ids),
        len(edge_ids),
        len(tails),
        len(heads),
        0,
        bytes(12),
    )
    sections = [
        np.array(node_ids, dtype="<i8"),
        np.array([g.labels[v] for v in node_ids], dtype="<i4"),
        np.array(edge_ids, dtype="<i8"),
        np.array([r[0] for r in recs], dtype="<i4"),
        np.array([r[3] for r in recs], dtype="<f4"),
        np.array([r[4] for r in recs], dtype="<f8"),
        toff,
        np.array(tails, dtype="<u4"),
        hoff,
        np.array(heads, dtype="<u4"),
    ]
    return header, sections


def decode(data: bytes, where: str) -> GraphState:
    """The graph stored in the file contents ``data``; ValueError naming ``where`` and the
    problem for a file that is not a hypergraph file, has another version, is truncated or
    corrupt."""
    size = len(data)
    if size >= 8 and data[:8] != _MAGIC:
        raise ValueError(f"{where} is not an AgentDB hypergraph file (bad magic)")
    if size < _HEADER_SIZE + _TRAILER.size:
        raise ValueError(
            f"{where} is truncated: {size} bytes, expected at least "
            f"{_HEADER_SIZE + _TRAILER.size}"
        )
    _m, version, header_size, nn, ne, nt, nh, flags, reserved = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise ValueError(
            f"{where} has unsupported format version {version} "
            f"(this build reads version {_VERSION})"
        )
    if (
        header_size != _HEADER_SIZE
        or flags != 0
        or reserved != bytes(12)
        or nn > _MAX_SLOTS
        or ne > _MAX_EDGES
        or nt > _MAX_COUNT
        or nh > _MAX_COUNT
    ):
        raise ValueError(f"{where} has a corrupt header")
    expected = _HEADER_SIZE + nn * 12 + ne * 24 + 2 * (ne + 1) * 8 + (nt + nh) * 4 + 4
    if size < expected:
        raise ValueError(f"{where} is truncated: {size} bytes, expected {expected}")
    if size > expected:
        raise ValueError(f"{where} is corrupt: {size - expected} unexpected trailing bytes")
    (stored,) = _TRAILER.unpack_from(data, size - 4)
    if zlib.crc32(memoryview(data)[: size - 4]) & 0xFFFFFFFF != stored:
        raise ValueError(f"{where} failed its checksum: checksum mismatch (corrupt file)")

    off = _HEADER_SIZE

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal off
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=off)
        off += arr.nbytes
        return arr

    def bad(what: str) -> ValueError:
        return ValueError(f"{where} is corrupt: {what}")

    node_ids = take("<i8", nn)
    labels = take("<i4", nn)
    if np.any(node_ids == -1):
        raise bad("node id -1 is reserved")
    if nn > 1 and np.any(np.diff(node_ids) <= 0):
        raise bad("node ids are not strictly ascending")
    if np.any(labels < -1):
        raise bad("negative node label")
    edge_ids = take("<i8", ne)
    etypes = take("<i4", ne)
    conf = take("<f4", ne)
    times = take("<f8", ne)
    if np.any(edge_ids == -1):
        raise bad("edge id -1 is reserved")
    if ne > 1 and np.any(np.diff(edge_ids) <= 0):
        raise bad("edge ids are not strictly ascending")
    if np.any(etypes < 0):
        raise bad("negative edge type")
    if not np.all((conf >= 0.0) & (conf <= 1.0)):
        raise bad("confidence outside [0, 1]")

    def side(total: int, name: str) -> tuple[list[int], list[int]]:
        offs = take("<u8", ne + 1)
        nodes = take("<u4", total)
        if int(offs[0]) != 0 or int(offs[ne]) != total:
            raise bad(f"{name} offsets")
        if ne and (np.any(offs[1:] <= offs[:-1]) or np.any(offs > total)):
            raise bad(f"{name} offsets (empty or decreasing)")
        if total and int(nodes.max()) >= nn:
            raise bad(f"{name} node index out of range")
        offl, nodel = offs.tolist(), nodes.tolist()
        for i in range(ne):
            part = nodel[offl[i] : offl[i + 1]]
            if len(set(part)) != len(part):
                raise bad(f"duplicate node in a {name}")
        return offl, nodel

    toff, tnodes = side(nt, "tail")
    hoff, hnodes = side(nh, "head")
    g = GraphState()
    ids = node_ids.tolist()
    g.labels = dict(zip(ids, labels.tolist()))
    g.out_edges = {v: {} for v in ids}
    g.in_edges = {v: {} for v in ids}
    tl = [ids[i] for i in tnodes]
    hl = [ids[i] for i in hnodes]
    for i, (eid, t, c, ts) in enumerate(
        zip(edge_ids.tolist(), etypes.tolist(), conf.tolist(), times.tolist())
    ):
        tail = tuple(tl[toff[i] : toff[i + 1]])
        head = tuple(hl[hoff[i] : hoff[i + 1]])
        g.edges[eid] = (t, tail, head, c, ts)
        for v in tail:
            g.out_edges[v][eid] = None
        for v in head:
            g.in_edges[v][eid] = None
    g.csr_edges = ne
    return g
