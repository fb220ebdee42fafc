"""Version-2 hypergraph files: written by the native backend with ``save(path, mappable=True)``,
memory-mapped and read in place by ``load`` until the first write (FILE_FORMAT_V2).

Checked here: every query answers the same from a mapped file as from the graph that wrote
it and from a version-1 load; the first write copies the file into memory and leaves the file
alone; a rejected write leaves the graph mapped; damaged and crafted files are refused with
ValueError (never a crash); the numpy backend reads version 2 too.
"""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from agentdb.engines import numpy_graph as _numpy_graph
from agentdb.engines.numpy_graph_file import FILE_FORMAT_V2
from test_hypergraph import (
    _native_or_skip,
    add_bulk,
    all_queries,
    build,
    plain,
    random_graph,
    snapshot,
)

HEADER = 64 + 19 * 24


@pytest.fixture
def native():
    return _native_or_skip()


def messy_graph(cls, seed=3, wide=0.08):
    """A graph with a CSR part, buffered edges, removed nodes and edges, and wide edges."""
    ids, labels, edges = random_graph(seed, n_nodes=160, n_edges=260, wide=wide)
    g = build(cls, ids, labels, edges[:150])
    g.compact()
    add_bulk(g, edges[150:])
    rng = random.Random(seed)
    for e in rng.sample(edges, 20):
        g.remove_edge(e[0])
    for v in rng.sample(ids, 5):
        g.remove_node(v)
    return g, ids


def _sections(data):
    """[(offset, bytes)] of a version-2 file's sections."""
    return [struct.unpack_from("<QQ", data, 64 + 24 * i) for i in range(19)]


def _refresh_crcs(data):
    """Recompute every CRC of a (crafted) version-2 file so only its structure is wrong."""
    buf = bytearray(data)
    for i, (off, n) in enumerate(_sections(buf)):
        struct.pack_into("<I", buf, 64 + 24 * i + 16, zlib.crc32(buf[off:off + n]) if n else 0)
    struct.pack_into("<I", buf, 56, 0)
    struct.pack_into("<I", buf, 56, zlib.crc32(buf[:HEADER]))
    buf[-4:] = struct.pack("<I", zlib.crc32(buf[:-4]))
    return bytes(buf)


def test_the_layout_is_documented():
    assert "version = 2" in FILE_FORMAT_V2 and "n_sections = 19" in FILE_FORMAT_V2
    assert f"header, {HEADER} bytes" in FILE_FORMAT_V2


@pytest.mark.parametrize("wide", [0.0, 0.08])
def test_mapped_file_answers_every_query_like_the_graph_that_wrote_it(native, tmp_path, wide):
    g, ids = messy_graph(native, wide=wide)
    p1, p2 = tmp_path / "g.v1", tmp_path / "g.v2"
    g.save(p1)
    g.save(p2, mappable=True)
    data = p2.read_bytes()
    assert data[:12] == b"AGDBHYPG" + struct.pack("<I", 2)
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])  # whole-file trailer
    mapped, copied = native.load(p2), native.load(p1)
    numpy_v2 = _numpy_graph.Hypergraph.load(p2)  # the numpy backend reads version 2 too
    assert mapped.is_mapped() and not copied.is_mapped() and not g.is_mapped()
    assert mapped.buffered() == 0
    g.compact()  # the file holds the compacted graph; the writer was not changed by saving
    want = all_queries(g, ids, random.Random(1))
    assert all_queries(mapped, ids, random.Random(1)) == want
    assert all_queries(copied, ids, random.Random(1)) == want
    assert all_queries(numpy_v2, ids, random.Random(1)) == want
    assert mapped.is_mapped()  # reads never copy
    # the mapped graph holds far less memory of its own than the copy
    assert mapped.memory_usage() < copied.memory_usage() / 3
    # a mapped graph writes the same file again (it is compact), in either version
    mapped.save(tmp_path / "again.v2", mappable=True)
    assert (tmp_path / "again.v2").read_bytes() == data
    mapped.save(tmp_path / "again.v1")
    assert (tmp_path / "again.v1").read_bytes() == p1.read_bytes()


def test_first_write_copies_the_file_and_leaves_it_alone(native, tmp_path):
    g, ids = messy_graph(native)
    p = tmp_path / "g.v2"
    g.save(p, mappable=True)
    data = p.read_bytes()
    g.compact()
    live = g.node_ids().tolist()
    fresh = [10**8 + i for i in range(3)]

    def writes(h):
        h.add_nodes(fresh, [1, 2, 3])
        h.add_edge(10**9, 2, [fresh[0], live[0]], [live[1]], 0.5, 3.0)
        h.remove_edge(int(h.edge_ids()[0]))
        h.remove_node(live[2])
        h.add_node(live[3], label=7)  # relabel

    for first in ("add_nodes", "add_edges", "remove_node", "remove_edge", "compact"):
        m = native.load(p)
        if first == "add_nodes":
            m.add_node(live[5], label=2)
        elif first == "add_edges":
            m.add_edge(10**9 + 1, 0, [live[0]], [live[1]])
        elif first == "remove_node":
            m.remove_node(live[4])
        elif first == "remove_edge":
            m.remove_edge(int(m.edge_ids()[1]))
        else:
            m.compact()  # a mapped graph is already compact: nothing to copy
            assert m.is_mapped()
            continue
        assert not m.is_mapped(), first
    m, ref = native.load(p), native.load(p)
    ref.add_node(-77)  # copied into memory by its first write
    ref.remove_node(-77)
    assert ref.is_mapped() is False
    writes(m)
    writes(ref)
    assert all_queries(m, ids, random.Random(2)) == all_queries(ref, ids, random.Random(2))
    assert p.read_bytes() == data  # the file never changes under a mapped graph


def test_rejected_write_keeps_the_graph_mapped(native, tmp_path):
    g, _ = messy_graph(native)
    p = tmp_path / "g.v2"
    g.save(p, mappable=True)
    m = native.load(p)
    with pytest.raises(KeyError, match="unknown node"):
        m.add_edge(10**9, 0, [10**10], [10**10 + 1])
    with pytest.raises(KeyError):
        m.remove_node(10**10)
    with pytest.raises(KeyError):
        m.remove_edge(10**10)
    with pytest.raises(ValueError, match="reserved"):
        m.add_nodes([-1], [0])
    assert m.is_mapped()


def test_empty_and_tiny_graphs(native, tmp_path):
    builders = [lambda g: None, lambda g: g.add_nodes([5], [1]),
                lambda g: (g.add_nodes([1, 2], [0, 0]), g.add_edge(9, 0, [1], [2]))]
    for i, build_it in enumerate(builders):
        g = native()
        build_it(g)
        p = tmp_path / f"t{i}.v2"
        g.save(p, mappable=True)
        for cls in (native, _numpy_graph.Hypergraph):
            h = cls.load(p)
            assert snapshot(h) == (*snapshot(g)[:5], 0)
        h = native.load(p)
        h.add_nodes([100], [0])  # writable
        assert h.has_node(100)


def test_numpy_backend_writes_version_1_when_asked_for_mappable(tmp_path):
    g = _numpy_graph.Hypergraph()
    g.add_nodes([1, 2], [0, 0])
    g.add_edge(3, 0, [1], [2])
    g.save(tmp_path / "n", mappable=True)
    assert struct.unpack_from("<I", (tmp_path / "n").read_bytes(), 8)[0] == 1
    assert not g.is_mapped() and g.mapped_resident_bytes() == 0


@pytest.fixture
def v2_bytes(tmp_path):
    g, _ = messy_graph(_native_or_skip(), seed=5, wide=0.05)
    p = tmp_path / "s.v2"
    g.save(p, mappable=True)
    return p.read_bytes()


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_damaged_files_are_refused(v2_bytes, tmp_path, backend):
    cls = _native_or_skip() if backend == "native" else _numpy_graph.Hypergraph
    data = v2_bytes
    p = tmp_path / "bad.v2"

    def refused(blob, match=None):
        p.write_bytes(blob)
        with pytest.raises(ValueError, match=match):
            cls.load(p)

    for cut in (12, HEADER - 1, HEADER + 3, len(data) // 2, len(data) - 1):
        refused(data[:cut], "truncated|corrupt")
    refused(data + b"\0" * 8, "trailing")
    refused(data[:20] + b"\x01" + data[21:], "corrupt header")  # header CRC catches it
    rng = random.Random(0)
    for i, (off, n) in enumerate(_sections(data)):
        if n:
            pos = off + rng.randrange(n)
            blob = bytearray(data)
            blob[pos] ^= 0x41
            refused(bytes(blob), f"checksum: section {i}")


def _patched(data, section, index, fmt, value):
    off, _ = _sections(data)[section]
    blob = bytearray(data)
    struct.pack_into(fmt, blob, off + index * struct.calcsize(fmt), value)
    return _refresh_crcs(bytes(blob))


@pytest.mark.parametrize("what,section,fmt,value,match", [
    ("tail node out of range", 5, "<I", 10**6, "out of range"),
    ("head node out of range", 6, "<I", 10**6, "out of range"),
    ("pair offsets decrease", 7, "<Q", 10**9, "offsets"),
    ("edge id -1", 2, "<q", -1, "reserved"),
    ("node label < -1", 1, "<i", -5, "label"),
])
def test_crafted_files_with_valid_checksums_are_refused(native, v2_bytes, tmp_path, what,
                                                        section, fmt, value, match):
    p = tmp_path / "crafted.v2"
    p.write_bytes(_patched(v2_bytes, section, 1, fmt, value))
    with pytest.raises(ValueError, match=match):
        native.load(p)


def test_crafted_edge_record_and_id_maps_are_refused(native, v2_bytes, tmp_path):
    p = tmp_path / "crafted.v2"
    off, _ = _sections(v2_bytes)[3]
    blob = bytearray(v2_bytes)
    struct.pack_into("<I", blob, off + 8, 2**31)  # n_tail of edge 0 past the tail list
    p.write_bytes(_refresh_crcs(bytes(blob)))
    with pytest.raises(ValueError, match="edge record"):
        native.load(p)
    # an id map whose slots point at the wrong node, and one with no empty cell
    koff, kn = _sections(v2_bytes)[15]
    voff, _ = _sections(v2_bytes)[16]
    keys = np.frombuffer(v2_bytes, "<i8", kn // 8, koff)
    full = int(np.flatnonzero(keys != -1)[0])
    blob = bytearray(v2_bytes)
    struct.pack_into("<I", blob, voff + 4 * full, 10**6)
    p.write_bytes(_refresh_crcs(bytes(blob)))
    with pytest.raises(ValueError, match="node id map"):
        native.load(p)
    blob = bytearray(v2_bytes)
    blob[koff:koff + kn] = np.full(kn // 8, 7, "<i8").tobytes()
    p.write_bytes(_refresh_crcs(bytes(blob)))
    with pytest.raises(ValueError, match="node id map"):
        native.load(p)


def test_mapped_graph_serves_concurrent_readers_and_one_writer(native, tmp_path):
    import threading

    g, ids = messy_graph(native, seed=8)
    p = tmp_path / "c.v2"
    g.save(p, mappable=True)
    m = native.load(p)
    live = m.node_ids().tolist()
    errors: list[BaseException] = []

    def reader():
        try:
            for v in live[:40]:
                m.khop(v, 3, "both")
                m.neighbors(v, "out")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    m.add_edge(10**9, 0, [live[0]], [live[1]])  # copies the file while readers run
    for t in threads:
        t.join(60)
    assert not errors and not m.is_mapped()
    assert plain(m.neighbors(live[0], "out")) != ()
    assert 10**9 in m.edge_ids().tolist()
