"""The causal graph's snapshot beside an embedded store (``<store>.graph`` and
``<store>.graph-meta``): a reopened graph is the graph that was closed, whether it comes from
the snapshot, from the snapshot plus the rows written after it (also after a crash), or from a
rebuild when the snapshot is stale, damaged or belongs to another state of the store."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import _child
import agentdb
import pytest
from agentdb.graph import loading


@pytest.fixture
def backend(graph_backend):
    """Run on either graph backend (``graph_backend`` in conftest)."""
    return graph_backend


def dump(g: Any) -> dict[str, Any]:
    """Everything observable about a graph, through its public interface."""
    nodes = {n: g.get_event(n) for n in g.node_ids()}
    edges = {e: g.get_edge(e) for e in g.edge_ids()}
    st = g.stats()
    lookups = {}
    for label, prop in g.indexes():
        values = {repr(v): v for ev in nodes.values() for v in [ev["properties"].get(prop)]
                  if isinstance(v, (str, int, float))}
        for key, v in sorted(values.items()):
            lookups[(label, prop, key)] = sorted(g.find_nodes(label, {prop: v}))
    rows = g.query("MATCH (a)-[r]->(b) RETURN id(a) AS a, type(r) AS t, id(b) AS b, "
                   "r.confidence AS c ORDER BY a, b, t")
    return {"nodes": nodes, "edges": edges, "lookups": lookups, "rows": rows,
            "labels": st["labels"], "types": st["types"], "counts": (st["nodes"], st["edges"])}


def populate(g: Any, seed: int, n_ops: int) -> None:
    """Random writes of every kind (deterministic for a seed)."""
    rng = random.Random(seed)
    if not g.indexes():
        g.create_index("Event", "kind")
        g.create_index("Tool", "name")
    for _ in range(n_ops):
        nodes = g.node_ids()
        edges = g.edge_ids()
        op = rng.random()
        if op < 0.35 or len(nodes) < 3:
            labels = rng.choice([["Event"], ["Tool"], ["Event", "Tool"], ["Tool", "Extra"], []])
            g.add_node(labels, {"kind": rng.choice(["a", "b", 3, 2.0, True]),
                                "name": f"n{rng.randrange(20)}", "i": rng.randrange(100)})
        elif op < 0.6:
            a, b = rng.sample(nodes, 2)
            props = {"why": rng.choice(["x", "y"])} if rng.random() < 0.4 else {}
            g.add_causal_edge([a], [b], type=rng.choice(["CAUSED_BY", "LED_TO"]),
                              confidence=rng.choice([0.1, 0.7, 1.0]), timestamp=rng.random(),
                              **props)
        elif op < 0.7 and len(nodes) >= 4:
            g.add_causal_chain(rng.sample(nodes, 3), confidence=0.5)
        elif op < 0.78:
            g.set_node_property(rng.choice(nodes), rng.choice(["kind", "name", "i"]),
                                rng.choice([None, "a", "b", 7]))
        elif op < 0.83:
            n = rng.choice(nodes)
            if rng.random() < 0.5:
                g.add_label(n, rng.choice(["Tool", "Event", "Late"]))
            else:
                labels = g.get_event(n)["labels"]
                if labels:
                    g.remove_label(n, rng.choice(labels))
        elif op < 0.88 and edges:
            e = rng.choice(edges)
            key = rng.choice(["confidence", "why", "timestamp"])
            value = {"confidence": 0.25, "why": rng.choice([None, "z"]), "timestamp": 5.0}[key]
            g.set_relationship_property(e, key, value)
        elif op < 0.94:
            g.remove_event(rng.choice(nodes))
        elif edges:
            g.remove_edge(rng.choice(edges))


def test_reopen_reads_the_snapshot_and_reads_properties_lazily(tmp_path, backend):
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 1, 300)
    before = dump(db.graph)
    db.close()
    assert Path(path + ".graph").exists() and Path(path + ".graph-meta").exists()
    db = agentdb.open(path, dim=8)
    st = db.graph.stats()
    assert st["loaded_from"] == "snapshot" and st["replayed_rows"] == 0
    assert st["cached_node_props"] == 0 and st["cached_edge_props"] == 0
    assert dump(db.graph) == before
    assert db.graph.stats()["cached_node_props"] > 0
    db.close()


def test_the_native_snapshot_is_read_in_place_until_the_first_graph_write(tmp_path, backend):
    if backend == "numpy":
        pytest.skip("the numpy backend copies its graph into Python objects")
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 3, 200)
    before = dump(db.graph)
    db.close()
    assert Path(path + ".graph").read_bytes()[8:12] == (2).to_bytes(4, "little")
    file_bytes = Path(path + ".graph").read_bytes()
    ro = agentdb.open(path, dim=8, readonly=True)
    db = agentdb.open(path, dim=8)
    for store in (ro, db):
        st = store.graph.stats()
        assert st["loaded_from"] == "snapshot" and st["csr_mapped"], st
    assert dump(db.graph) == before and db.graph.stats()["csr_mapped"]  # reads never copy
    a = db.graph.add_event(name="after")
    assert not db.graph.stats()["csr_mapped"]  # the first write copied the CSR into memory
    assert db.graph.get_event(a)["properties"]["name"] == "after"
    assert ro.graph.stats()["csr_mapped"] and dump(ro.graph) == before
    assert Path(path + ".graph").read_bytes() == file_bytes  # untouched until a checkpoint
    db.close()
    ro.close()
    db = agentdb.open(path, dim=8)
    assert db.graph.stats()["csr_mapped"] and db.graph.get_event(a) is not None
    db.close()


def test_graph_meta_is_mapped_and_every_damaged_member_means_a_rebuild(tmp_path, backend):
    import zipfile

    import numpy as np

    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 6, 200)
    db.graph.create_index("Event", "name")
    want = dump(db.graph)
    db.close()
    meta = Path(path + ".graph-meta")
    pristine = meta.read_bytes()
    db = agentdb.open(path, dim=8)
    g = db.graph
    assert g.stats()["loaded_from"] == "snapshot"
    assert isinstance(g._parts.edges.type_of, np.memmap)  # mapped, not read into memory
    assert all(isinstance(a, np.memmap) for ix in g._parts.indexes.values() for a in ix.arrays())
    a, b = g.add_event(name="x"), g.add_event(name="y")
    e = g.add_causal_edge([a], [b], confidence=0.25)
    first = g.edge_ids()[0]
    g.set_relationship_property(first, "confidence", 0.5)  # into a copy-on-write page
    assert meta.read_bytes() == pristine  # the mapped file never changes under the process
    assert g.get_edge(first)["confidence"] == 0.5 and g.get_edge(e)["confidence"] == 0.25
    want_after = dump(g)
    db.close()
    db = agentdb.open(path, dim=8)
    assert dump(db.graph) == want_after
    db.close()
    # every member damaged in turn: refused by its CRC-32, the graph rebuilt from the rows
    meta.write_bytes(pristine)
    Path(path + ".graph").write_bytes(Path(path + ".graph").read_bytes())
    with zipfile.ZipFile(meta) as zf:
        members = [(i.filename, i.header_offset, i.file_size) for i in zf.infolist()]
    assert {m[0] for m in members} >= {"header.npy", "edge_type_of.npy", "index0_hashes.npy"}
    for name, offset, size in members:
        data = bytearray(pristine)
        data[offset + 30 + len(name) + size - 1] ^= 0x5A  # the member's last data byte
        meta.write_bytes(bytes(data))
        parts = loading.load(agentdb.open(path, dim=8, readonly=True).store)
        assert parts.source == "rows" and "damaged .graph-meta" in parts.reason, name
    del want


def test_a_version_1_graph_meta_is_still_read(tmp_path, backend):
    import io
    import json
    import zipfile

    import numpy as np

    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 7, 150)
    want = dump(db.graph)
    db.close()
    meta = Path(path + ".graph-meta")
    with zipfile.ZipFile(meta) as zf:
        z = {n[:-4]: np.load(io.BytesIO(zf.read(n))) for n in zf.namelist()}
    header = json.loads(bytes(z.pop("header")).decode())
    header["version"] = 1
    del header["edge_count"]
    ids = np.flatnonzero(z["edge_type_of"] >= 0).astype(np.int64)
    old = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8), "edge_ids": ids,
           "edge_types": z["edge_type_of"][ids], "edge_conf": z["edge_conf"][ids],
           "edge_ts": z["edge_ts"][ids], "edge_flags": z["edge_flag"][ids]}
    old.update({k: v for k, v in z.items() if k.startswith("index")})
    with open(meta, "wb") as f:
        np.savez(f, **old)
    db = agentdb.open(path, dim=8)
    assert db.graph.stats()["loaded_from"] == "snapshot" and dump(db.graph) == want
    db.close()


def test_rows_written_after_the_snapshot_are_replayed(tmp_path, backend):
    """A writer checkpoints, then keeps writing; a read-only opener gets the snapshot plus
    the later rows, which equals the writer's graph (and a rebuild from the rows)."""
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 2, 200)
    db.checkpoint()
    populate(db.graph, 3, 200)
    db.graph.create_index("Event", "name")
    want = dump(db.graph)
    ro = agentdb.open(path, dim=8, readonly=True)
    try:
        st = ro.graph.stats()
        assert st["loaded_from"] == "snapshot" and st["replayed_rows"] > 0
        assert dump(ro.graph) == want
        rebuilt = loading.rebuild(ro.store)
        assert rebuilt.g.num_edges() == want["counts"][1]
    finally:
        ro.close()
    db.close()
    db = agentdb.open(path, dim=8)  # closed cleanly: a fresh snapshot, nothing to replay
    assert db.graph.stats()["replayed_rows"] == 0 and dump(db.graph) == want
    db.close()


@pytest.mark.parametrize("damage", ["graph-byte", "meta-byte", "meta-missing", "truncated",
                                    "other-token"])
def test_a_stale_or_damaged_snapshot_is_rebuilt_from_the_rows(tmp_path, backend, damage):
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 4, 150)
    want = dump(db.graph)
    db.close()
    target = Path(path + (".graph" if damage in ("graph-byte", "truncated") else ".graph-meta"))
    if damage == "meta-missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "other-token":
        db = agentdb.open(path, dim=8)
        db.store.set_meta("graph_snapshot", "restored-from-elsewhere")
        db.store.close()
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x5A
        target.write_bytes(bytes(data))
    db = agentdb.open(path, dim=8)
    assert db.graph.stats()["loaded_from"] == "rows"
    assert dump(db.graph) == want
    db.close()
    db = agentdb.open(path, dim=8)  # the rebuild was saved again at close
    assert db.graph.stats()["loaded_from"] == "snapshot" and dump(db.graph) == want
    db.close()


def test_a_store_copy_restored_over_a_newer_snapshot_is_not_mixed_up(tmp_path, backend):
    """Copy the store (and its snapshot) aside, write more, close, then put the old store
    file back beside the newer snapshot: the snapshot no longer matches and is not used."""
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 5, 120)
    db.close()
    ro = agentdb.open(path, dim=8, readonly=True)
    old = dump(ro.graph)
    ro.close()
    saved = {s: Path(path + s).read_bytes() for s in ("", "-wal") if Path(path + s).exists()}
    db = agentdb.open(path, dim=8)
    populate(db.graph, 6, 120)
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    for suffix, data in saved.items():
        Path(path + suffix).write_bytes(data)
    db = agentdb.open(path, dim=8)
    assert db.graph.stats()["loaded_from"] == "rows"
    assert dump(db.graph) == old
    db.close()


CRASH_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    import agentdb
    from test_graph_snapshot import populate
    db = agentdb.open(sys.argv[1], dim=8)
    populate(db.graph, 7, 150)
    db.checkpoint()
    populate(db.graph, 8, 150)
    print("written", flush=True)
    os._exit(0)  # no close, no checkpoint: the snapshot is stale
""")


def test_writes_after_the_snapshot_survive_a_crash(tmp_path):
    path = str(tmp_path / "g.db")
    out = subprocess.run([sys.executable, "-c", CRASH_CHILD, path,
                          str(Path(__file__).resolve().parent)],
                         capture_output=True, text=True, env=_child.child_env(), timeout=300)
    assert out.stdout.strip() == "written", out.stderr
    db = agentdb.open(path, dim=8)
    st = db.graph.stats()
    assert st["loaded_from"] == "snapshot" and st["replayed_rows"] > 0
    got = dump(db.graph)
    db.close()
    ref = agentdb.open(":memory:", dim=8)
    populate(ref.graph, 7, 150)
    populate(ref.graph, 8, 150)
    want = dump(ref.graph)
    for part in ("nodes", "edges"):  # timestamps of edges default to the time of writing
        for v in list(got[part].values()) + list(want[part].values()):
            v.pop("timestamp", None)
    assert got == want


def test_a_rolled_back_transaction_reloads_from_the_snapshot(tmp_path, backend):
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    g = db.graph
    populate(g, 9, 100)
    db.checkpoint()
    want = dump(g)
    with pytest.raises(RuntimeError), g.transaction():
        a = g.add_event(kind="gone")
        g.add_causal_edge([a], [g.node_ids()[0]])
        g.set_node_property(g.node_ids()[0], "kind", "changed")
        raise RuntimeError("roll back")
    assert g.stats()["loaded_from"] == "snapshot"
    assert dump(g) == want
    db.close()


def test_in_memory_and_read_only_stores_write_no_snapshot(tmp_path):
    db = agentdb.open(":memory:", dim=8)
    populate(db.graph, 10, 30)
    assert db.graph.save_snapshot() is False
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    populate(db.graph, 10, 30)
    db.store.close()  # as if the process had died before closing: no snapshot yet
    ro = agentdb.open(path, dim=8, readonly=True)
    assert ro.graph.stats()["loaded_from"] == "rows"
    assert ro.graph.save_snapshot() is False
    ro.close()
    assert not Path(path + ".graph").exists()


def test_setting_an_edge_property_keeps_the_exact_confidence(tmp_path, backend):
    """The CSR holds confidences as float32; the rows and the API keep the float64 given."""
    path = str(tmp_path / "g.db")
    db = agentdb.open(path, dim=8)
    g = db.graph
    a, b = g.add_event(name="a"), g.add_event(name="b")
    e = g.add_causal_edge([a], [b], confidence=0.7, timestamp=1.25)
    g.set_relationship_property(e, "why", "retry")
    assert g.get_edge(e)["confidence"] == 0.7
    g.set_relationship_property(e, "timestamp", 2.5)
    assert g.get_edge(e)["timestamp"] == 2.5 and g.get_edge(e)["confidence"] == 0.7
    db.close()
    for rebuild in (False, True):  # from the snapshot, then rebuilt from the rows
        if rebuild:
            Path(path + ".graph-meta").unlink()
        db = agentdb.open(path, dim=8)
        got = db.graph.get_edge(e)
        assert (got["confidence"], got["timestamp"], got["properties"]) == (0.7, 2.5,
                                                                          {"why": "retry"})
        db.close()


def test_an_edge_id_beyond_the_edge_columns_is_a_clear_error():
    from agentdb.errors import StoreError

    db = agentdb.open(":memory:", dim=8)
    a, b = db.graph.add_event(), db.graph.add_event()
    with db.store.write() as w:  # as a row written by another tool might be
        db.store.put_graph_edge(w, 2**40, "CAUSED_BY", [a], [b], 0.5, 0.0, {})
    with pytest.raises(StoreError, match="beyond the graph's edge columns"):
        loading.load(db.store)
