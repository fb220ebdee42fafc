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

__all__ = ["FILE_FORMAT", "FILE_FORMAT_V2", "decode", "encode"]

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

FILE_FORMAT_V2: Final = """\
AGDBHYPG version 2 ("mappable"), little endian, written atomically by the native backend's
save(path, mappable=True); its load() memory-maps it and reads every section in place until
the graph's first write copies them into memory. The numpy backend reads it (node and edge
sections) but writes version 1.
header, 520 bytes:
  0  char[8]  magic "AGDBHYPG"
  8  u32      version = 2
  12 u32      header_size = 520
  16 u64      n_nodes
  24 u64      n_edges
  32 u32      n_sections = 19
  36 u32      flags: 1 = node ids ascend with their slots, 2 = wide-edge lists present
  40 u8[16]   reserved, zero
  56 u32      CRC-32 of the header with this field zero
  60 u32      reserved, zero
  64 19 x {u64 offset (a multiple of 64), u64 bytes, u32 CRC-32, u32 element size}
sections (zero padding between them), a compact graph in slot order:
  0 node ids i64        1 node labels i32     2 edge ids i64
  3 edge records {i32 type, f32 conf, u32 n_tail, u32 n_head, u64 tail, u64 head} (32 B)
  4 edge times f64      5 tail nodes u32      6 head nodes u32 (slots)
  7/8 out/in pair offsets u64[n_nodes + 1]   9/10 out/in pairs {u32 node, u32 edge, i32 type}
  11/12 out/in wide offsets u64 (n_nodes + 1 or 0)   13/14 out/in wide-edge lists u32
  15/16 node id map: keys i64, slots u32 (open addressing, -1 = empty; a power of two)
  17/18 edge id map: keys i64, slots u32
trailer: u32 CRC-32 of every preceding byte.
"""

_MAGIC: Final = b"AGDBHYPG"
_VERSION: Final = 1
_VERSION_MAPPED: Final = 2
#: version 2's sections in order: numpy dtype and element size (see FILE_FORMAT_V2)
_V2_ELEM: Final = (
    ("<i8", 8), ("<i4", 4), ("<i8", 8),
    (np.dtype([("type", "<i4"), ("conf", "<f4"), ("n_tail", "<u4"), ("n_head", "<u4"),
               ("tail", "<u8"), ("head", "<u8")]), 32),
    ("<f8", 8), ("<u4", 4), ("<u4", 4), ("<u8", 8), ("<u8", 8),
    (np.dtype([("node", "<u4"), ("edge", "<u4"), ("type", "<i4")]), 12),
    (np.dtype([("node", "<u4"), ("edge", "<u4"), ("type", "<i4")]), 12),
    ("<u8", 8), ("<u8", 8), ("<u4", 4), ("<u4", 4), ("<i8", 8), ("<u4", 4), ("<i8", 8),
    ("<u4", 4),
)
_V2_HEADER_SIZE: Final = 64 + 24 * len(_V2_ELEM)
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
    if version == _VERSION_MAPPED:
        return _decode_v2(data, where)
    if version != _VERSION:
        raise ValueError(
            f"{where} has unsupported format version {version} "
            f"(this build reads versions 1 and 2)"
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
    return _state(node_ids.tolist(), labels.tolist(), edge_ids.tolist(), etypes.tolist(),
                  conf.tolist(), times.tolist(), toff, tnodes, hoff, hnodes)


def _state(ids: list[int], labels: list[int], edge_ids: list[int], etypes: list[int],
           conf: list[float], times: list[float], toff: list[int], tnodes: list[int],
           hoff: list[int], hnodes: list[int]) -> GraphState:
    """A :class:`GraphState` from checked node and edge columns (slots index ``ids``)."""
    g = GraphState()
    g.labels = dict(zip(ids, labels))
    g.out_edges = {v: {} for v in ids}
    g.in_edges = {v: {} for v in ids}
    tl = [ids[i] for i in tnodes]
    hl = [ids[i] for i in hnodes]
    order = sorted(range(len(edge_ids)), key=edge_ids.__getitem__)  # edges in id order
    for i in order:
        eid, t, c, ts = edge_ids[i], etypes[i], conf[i], times[i]
        tail = tuple(tl[toff[i] : toff[i + 1]])
        head = tuple(hl[hoff[i] : hoff[i + 1]])
        g.edges[eid] = (t, tail, head, c, ts)
        for v in tail:
            g.out_edges[v][eid] = None
        for v in head:
            g.in_edges[v][eid] = None
    g.csr_edges = len(edge_ids)
    return g


def _decode_v2(data: bytes, where: str) -> GraphState:
    """A version-2 file (the native backend's in-memory layout, read in place there): the
    header, the section table and every section's CRC are checked and the node and edge
    sections read; the derived sections (projection, id maps) are the native backend's."""
    size = len(data)
    if size < _V2_HEADER_SIZE + _TRAILER.size:
        raise ValueError(f"{where} is truncated: {size} bytes, expected at least "
                         f"{_V2_HEADER_SIZE + _TRAILER.size}")
    head = bytearray(data[:_V2_HEADER_SIZE])
    (header_crc,) = struct.unpack_from("<I", head, 56)
    head[56:60] = bytes(4)
    header_size, nn, ne, n_sec, flags = struct.unpack_from("<IQQII", head, 12)
    if (header_size != _V2_HEADER_SIZE or n_sec != len(_V2_ELEM)
            or zlib.crc32(head) & 0xFFFFFFFF != header_crc or flags & ~3
            or head[40:56] != bytes(16) or head[60:64] != bytes(4)
            or nn > _MAX_SLOTS or ne > _MAX_EDGES):
        raise ValueError(f"{where} has a corrupt header")
    secs: list[np.ndarray] = []
    end = _V2_HEADER_SIZE
    for i, (dtype, elem) in enumerate(_V2_ELEM):
        off, nbytes, crc, esize = struct.unpack_from("<QQII", head, 64 + 24 * i)
        if (esize != elem or off % 64 or off < end or nbytes % elem
                or off + nbytes > size - _TRAILER.size):
            raise ValueError(f"{where} has a corrupt section table (section {i})")
        if nbytes and zlib.crc32(memoryview(data)[off:off + nbytes]) & 0xFFFFFFFF != crc:
            raise ValueError(f"{where} failed its checksum: section {i} (corrupt file)")
        secs.append(np.frombuffer(data, dtype=dtype, count=nbytes // elem, offset=off))
        end = off + nbytes
    if size != end + _TRAILER.size:
        if size < end + _TRAILER.size:
            raise ValueError(f"{where} is truncated: {size} bytes, expected "
                             f"{end + _TRAILER.size}")
        raise ValueError(f"{where} is corrupt: {size - end - _TRAILER.size} unexpected "
                         "trailing bytes")
    node_ids, labels, edge_ids, rec, times, tnodes, hnodes = secs[:7]

    def bad(what: str) -> ValueError:
        return ValueError(f"{where} is corrupt: {what}")

    if len(node_ids) != nn or len(labels) != nn or any(len(a) != ne
                                                        for a in (edge_ids, rec, times)):
        raise bad("section sizes do not match the header")
    if np.any(node_ids == -1) or np.any(edge_ids == -1):
        raise bad("id -1 is reserved")
    if len(np.unique(node_ids)) != nn or len(np.unique(edge_ids)) != ne:
        raise bad("duplicate ids")
    if np.any(labels < -1) or np.any(rec["type"] < 0):
        raise bad("negative label or type")
    if not np.all((rec["conf"] >= 0.0) & (rec["conf"] <= 1.0)):
        raise bad("confidence outside [0, 1]")
    nt, nh = len(tnodes), len(hnodes)
    ntail, nhead = rec["n_tail"].astype(np.uint64), rec["n_head"].astype(np.uint64)
    if ne and (np.any(ntail == 0) or np.any(nhead == 0) or np.any(rec["tail"] > nt)
               or np.any(rec["head"] > nh) or np.any(ntail > nt - rec["tail"])
               or np.any(nhead > nh - rec["head"])):
        raise bad("edge record out of range")
    if (nt and int(tnodes.max()) >= nn) or (nh and int(hnodes.max()) >= nn):
        raise bad("node index out of range")
    # rebuild compact per-edge offsets (a version-2 edge points anywhere into its lists)
    tail_list: list[int] = []
    head_list: list[int] = []
    toff, hoff = [0], [0]
    tl, hl = tnodes.tolist(), hnodes.tolist()
    for t0, n_t, h0, n_h in zip(rec["tail"].tolist(), rec["n_tail"].tolist(),
                                rec["head"].tolist(), rec["n_head"].tolist()):
        part_t, part_h = tl[t0:t0 + n_t], hl[h0:h0 + n_h]
        if len(set(part_t)) != n_t or len(set(part_h)) != n_h:
            raise bad("duplicate node in a tail or head")
        tail_list += part_t
        head_list += part_h
        toff.append(len(tail_list))
        hoff.append(len(head_list))
    return _state(node_ids.tolist(), labels.tolist(), edge_ids.tolist(), rec["type"].tolist(),
                  rec["conf"].tolist(), times.tolist(), toff, tail_list, hoff, head_list)
