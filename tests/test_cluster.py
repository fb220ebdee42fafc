"""ClusterDB on a real multi-node Ray cluster (head + 2 workers, all on 127.0.0.1, made with
``ray.cluster_utils.Cluster``) and a real PostgreSQL (the ``postgres_url`` fixture).

Small on purpose (dim 16, a few hundred records, 2 shards x 2 replicas) so the file runs in
about a minute on a 2-core machine; no timing assertions. Skips when ray is not installed
unless ``AGENTDB_REQUIRE_CLUSTER=1``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import numpy as np
import pytest
from _requires import unavailable

# Ray swaps 127.0.0.1 for the host's routable IP unless "cluster mode" is off; the nodes
# started below inherit this, so the whole cluster lives on loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError as exc:  # pragma: no cover - depends on the environment
    unavailable("CLUSTER", f"cluster tests need ray ({exc})", module=True)

import agentdb  # noqa: E402
from agentdb.cluster.ring import HashRing  # noqa: E402

DIM = 16
N = 300


pytestmark = pytest.mark.usefixtures("ray_exclusive")  # one Ray module at a time


@pytest.fixture(scope="module")
def ray_cluster():
    """Head + 2 worker nodes (1 CPU each) on 127.0.0.1; the test process is the driver."""
    from agentdb.cluster.db import _ensure_pythonpath
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    _ensure_pythonpath()  # workers import the in-tree package
    if ray.is_initialized():
        ray.shutdown()
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
              "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "_system_config": system})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, namespace="agentdb-tests")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _rows(n: int, seed: int = 0, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    return [{"task": f"task {start + i}", "embedding": vecs[i],
             "reward": float(np.round(rng.uniform(-1, 1), 3)), "success": bool(i % 2),
             "session_id": f"s{i % 4}", "metadata": {"group": i % 3, "n": start + i}}
            for i in range(n)]


@pytest.fixture
def cdb(ray_cluster, postgres_url, pg_schema):
    from agentdb.cluster import ClusterDB

    db = ClusterDB(ray_cluster.address, postgres_url, shards=2, replicas=2, dim=DIM,
                   schema=pg_schema, namespace=f"agentdb_{pg_schema}", search_timeout=10.0,
                   ready_timeout=90.0)
    try:
        yield db
    finally:
        db.close(shutdown=True)


def _brute(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int,
           mask: np.ndarray | None = None) -> list[int]:
    v = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    d = 1.0 - v @ (q / np.linalg.norm(q))
    if mask is not None:
        d = np.where(mask, d, np.inf)
    order = np.argsort(d, kind="stable")[:k]
    return [int(ids[j]) for j in order if np.isfinite(d[j])]


def _wait_converged(db, timeout: float = 90.0) -> dict:
    """Until every replica is ready and has applied the whole log."""
    deadline = time.monotonic() + timeout
    st: dict = {}
    while time.monotonic() < deadline:
        st = db.status()
        reps = [r for s in st["shards"] for r in s["replicas"]]
        if all(r["state"] == "ready" and r["applied_seq"] == st["log_seq"] for r in reps):
            return st
        time.sleep(0.3)
    raise AssertionError(f"replicas did not converge in {timeout}s: {st}")


# ---------------------------------------------------------------------------------- tests


def test_log_plain(postgres_url, pg_schema):
    """The log alone: seqs increase in commit order, read_since pages, the ring round-trips."""
    from agentdb.cluster.log import ClusterLog
    from agentdb.storage.postgres import PostgresStore

    store = PostgresStore(postgres_url, 4, schema=pg_schema)
    lg = ClusterLog(postgres_url, schema=pg_schema)
    try:
        lg.ensure()
        lg.ensure()  # idempotent
        assert lg.max_seq() == 0
        listener = lg.listener()
        assert listener.wait(0.05) is False
        seqs = []
        for i in range(3):
            with store.write() as w:
                rid = store.insert(w, "patterns", {"task": f"t{i}", "reward": 0.0,
                                                   "success": False, "metadata": "{}"},
                                   np.ones(4, np.float32))
                seqs.append(lg.append(w, "patterns", "upsert", [rid, rid]))
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        assert listener.wait(2.0) is True  # the NOTIFYs of the commits above
        listener.close()
        entries = lg.read_since(0, limit=4)
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
        assert len(lg.read_since(0)) == 6 and lg.max_seq() == seqs[-1]
        assert lg.read_since(seqs[-1]) == []
        ring = HashRing([0, 1]).to_dict()
        assert lg.load_ring() is None
        lg.store_ring(ring)
        assert lg.load_ring() == ring
        assert lg.init_meta("ring", "other") != "other"
    finally:
        lg.close()
        store.close()


def test_writes_search_filters_read_your_writes(cdb, postgres_url, pg_schema):
    rows = _rows(N)
    ids = cdb.store_patterns(rows)
    assert len(ids) == N and cdb.last_seq > 0 and cdb.count() == N
    s1 = cdb.last_seq
    one = cdb.store_pattern("a single one", embedding=np.arange(1, DIM + 1), reward=0.5)
    assert cdb.last_seq > s1  # increasing seqs
    s2 = cdb.last_seq
    cdb.update_pattern(one, reward=0.25, metadata={"group": 7})
    assert cdb.last_seq > s2
    assert cdb.get_pattern(one).reward == 0.25

    vecs = np.stack([r["embedding"] for r in rows] + [np.arange(1, DIM + 1, dtype=np.float32)])
    all_ids = np.asarray([*ids, one])
    rng = np.random.default_rng(7)
    # read-your-writes: the default min_seq is this handle's last write
    hits = cdb.search_patterns(np.arange(1, DIM + 1), k=1)
    assert hits[0].id == one and hits[0].record.reward == 0.25
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)

    # results equal a brute-force top-k and the embedded store on the same rows
    emb = agentdb.open(":memory:", dim=DIM)
    emb.store_patterns([dict(r, id=i) for r, i in zip(rows, ids)])
    emb.store_pattern("a single one", embedding=np.arange(1, DIM + 1), reward=0.25,
                      metadata={"group": 7}, id=one)
    agree = same_emb = 0
    for _ in range(20):
        q = rng.standard_normal(DIM)
        got = [h.id for h in cdb.search_patterns(q, k=10)]
        agree += len(set(got) & set(_brute(vecs, all_ids, q, 10)))
        same_emb += len(set(got) & {h.id for h in emb.search_patterns(q, k=10)})
    assert agree >= 0.98 * 200 and same_emb >= 0.98 * 200

    # filters are pushed down to the replicas
    meta = {i: r for i, r in zip(ids, rows)}
    q = rng.standard_normal(DIM)
    got = cdb.search_patterns(q, k=10, success_only=True, min_reward=0.0,
                              where={"group": {"$in": [0, 1]}})
    assert got and all(h.record.success and h.record.reward >= 0.0
                       and h.record.metadata["group"] in (0, 1) for h in got)
    mask = np.array([meta[i]["success"] and meta[i]["reward"] >= 0.0
                     and meta[i]["metadata"]["group"] in (0, 1) if i in meta else False
                     for i in all_ids])
    assert len(set(h.id for h in got) & set(_brute(vecs, all_ids, q, 10, mask))) >= 9
    by_session = cdb.search_patterns(q, k=5, session_id="s1")
    assert len(by_session) == 5 and all(h.record.session_id == "s1" for h in by_session)
    assert cdb.search_patterns(q, k=5, where={"group": 99}) == []
    assert all(h.similarity >= 0.3 for h in cdb.search_patterns(q, k=50, threshold=0.3))

    # delete: read-your-writes again
    cdb.delete_pattern(one)
    assert one not in [h.id for h in cdb.search_patterns(np.arange(1, DIM + 1), k=5)]
    with pytest.raises(KeyError):
        cdb.get_pattern(one)
    with pytest.raises(KeyError):
        cdb.delete_pattern(one)

    # text is embedded; episodes and skills follow the same path
    tid = cdb.store_pattern("parse ISO dates in log lines", reward=0.9, success=True)
    assert cdb.search_patterns("parse ISO dates in log lines", k=1)[0].id == tid
    cdb.store_skill("retry", "retry with backoff")
    eid = cdb.store_episode("call the API", success=True, skills=["retry"],
                            critique="use jitter")
    assert cdb.get_skill("retry").uses == 1
    assert cdb.search_episodes("call the API", k=1)[0].id == eid
    assert cdb.search_skills("retry backoff", k=1, min_success_rate=0.5)[0].record.name \
        == "retry"

    # the data is an ordinary PostgreSQL store: the embedded backend reads it
    with agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema) as pg:
        assert pg.count() == N + 1
        assert pg.get_pattern(tid).task == "parse ISO dates in log lines"

    st = _wait_converged(cdb)
    assert st["log_seq"] == cdb.log_seq() >= cdb.last_seq
    assert [s["shard"] for s in st["shards"]] == [0, 1]
    for s in st["shards"]:
        assert len(s["replicas"]) == 2
        assert all(r["alive"] and r["lag"] == 0 and r["node_ip"] == "127.0.0.1"
                   for r in s["replicas"])
        # replicas of a shard hold the same records, on different nodes (STRICT_SPREAD)
        assert len({r["vectors"] for r in s["replicas"]}) == 1
        assert len({r["node_id"] for r in s["replicas"]}) == 2
    assert sum(s["replicas"][0]["vectors"] for s in st["shards"]) == \
        cdb.count("patterns") + cdb.count("episodes") + cdb.count("skills")
    assert len([n for n in st["nodes"] if n["alive"]]) == 3
    assert cdb.stats()["patterns"] == N + 1


def test_events_reads_rerank_and_learning(cdb, ray_cluster, postgres_url, pg_schema):
    """The rest of the embedded memory API on the cluster: events of this handle's writes,
    critique_summary, iter_records, attention re-ranking and synthesize_context (equal to
    the same computation on exact candidates), feedback that moves the target up and
    persists in PostgreSQL for the next handle, and the errors."""
    from agentdb.cluster import ClusterDB
    from agentdb.engines.attention import AttentionService
    from agentdb.memory.validation import reward_prior

    seen: list[tuple[str, int]] = []
    off = cdb.on("*", lambda e, p: seen.append((e, p["id"])))
    rows = _rows(120, seed=3)
    ids = cdb.store_patterns(rows)
    assert seen == [("pattern:stored", i) for i in ids]
    seen.clear()
    cdb.update_pattern(ids[0], reward=0.5)
    cdb.delete_pattern(ids[1])
    sid = cdb.store_skill("retry", "retry with backoff")
    eid = cdb.store_episode("call the API", success=False, critique="no jitter",
                            skills=["retry"], embedding=np.ones(DIM))
    cdb.store_episode("call the API again", success=False, critique="no jitter",
                      embedding=np.ones(DIM) + 0.01)
    assert seen[:5] == [("pattern:updated", ids[0]), ("pattern:deleted", ids[1]),
                        ("skill:stored", sid), ("episode:stored", eid), ("skill:updated", sid)]
    off()
    unseen = cdb.store_pattern("unseen", embedding=np.ones(DIM))
    assert len(seen) == 6
    with pytest.raises(ValueError, match="unknown event"):
        cdb.on("pattern:exploded", print)

    assert cdb.critique_summary(np.ones(DIM), k=5) == ["no jitter"]
    assert [p.id for p in cdb.iter_records("patterns", batch=7)] == [ids[0], *ids[2:], unseen]
    assert cdb.count("episodes") == 2
    with pytest.raises(ValueError, match="unknown kind"):
        cdb.count("widgets")

    # re-ranking: the same attention over the exact top candidates
    live = {i: r for i, r in zip(ids, rows) if i != ids[1]}
    live[ids[0]] = dict(live[ids[0]], reward=0.5)
    live[unseen] = {"embedding": np.ones(DIM, np.float32), "reward": 0.0}
    lid = np.asarray(list(live))
    lvec = np.stack([live[i]["embedding"] for i in lid])
    svc = AttentionService(temperature=0.05)
    rng = np.random.default_rng(11)
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        cand = [h.id for h in cdb.search_patterns(q, k=20)]  # the candidates re-ranked
        assert len(set(cand) & set(_brute(lvec, lid, q, 20))) >= 19
        cvec = np.stack([live[i]["embedding"] for i in cand])
        got = cdb.search_patterns(q, k=5, rerank="attention")
        assert [h.id for h in got] == cand[:5]  # heads=1: exact cosine order
        assert all(h.score is not None for h in got)
        prior = reward_prior([live[i]["reward"] for i in cand])
        order, scores = svc.rerank(q, cvec, heads=1, prior=prior)
        got = cdb.search_patterns(q, k=5, rerank="attention+reward")
        assert [h.id for h in got] == [cand[j] for j in order[:5]]
        np.testing.assert_allclose([h.score for h in got], scores[:5], rtol=1e-4)
        ctx = cdb.synthesize_context(q, k=4)
        assert [i for i, _ in ctx["weights"]] == cand[:4]
        w = np.array([x for _, x in ctx["weights"]])
        assert w.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(ctx["vector"], w @ cvec[:4], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="rerank must be"):
        cdb.search_patterns(rng.standard_normal(DIM), rerank="bogus")
    with pytest.raises(ValueError, match="candidates must be"):
        cdb.search_patterns(rng.standard_normal(DIM), k=5, rerank="attention", candidates=3)

    # feedback: a target ranked ~10th for a query becomes the top hit
    q = rng.standard_normal(DIM).astype(np.float32)
    target = _brute(lvec, lid, q, 10)[-1]
    assert cdb.search_patterns(q, k=1)[0].id != target
    for _ in range(60):
        out = cdb.feedback(q + 0.05 * rng.standard_normal(DIM), target, reward=1.0)
        assert out["updated"]
    assert cdb.search_patterns(q, k=1)[0].id == target
    assert cdb.search_patterns(q, k=1, adapt=False)[0].id != target
    st = cdb.feedback_trajectory(q, [target, *_brute(lvec, lid, q, 3)], 1.0)
    assert st["updated"] and cdb.stats()["learning"]["updates"] == 61
    with pytest.raises(KeyError, match="unknown pattern id"):
        cdb.feedback(q, 10**9, reward=1.0)
    with pytest.raises(ValueError, match="reward"):
        cdb.feedback(q, target, reward=float("nan"))
    with pytest.raises(ValueError, match="dimension"):
        cdb.feedback(q[:3], target)
    assert cdb.learning.stats()["updates"] == 61  # the failed calls changed nothing
    cdb.checkpoint()

    # a second handle (no new actors) loads the saved adapter from PostgreSQL
    other = ClusterDB(ray_cluster.address, postgres_url, dim=DIM, schema=pg_schema,
                      namespace=f"agentdb_{pg_schema}", search_timeout=10.0)
    try:
        assert other.learning.stats()["updates"] == 61
        assert other.search_patterns(q, k=1, min_seq=cdb.last_seq)[0].id == target
        cdb.learning.reset()
        assert other.learning.reload() and not other.learning.active
        assert other.search_patterns(q, k=1, min_seq=cdb.last_seq)[0].id != target
    finally:
        other.close()


def test_recall_on_real_data(ray_cluster, postgres_url, pg_schema, shared_data):
    """recall@10 through the cluster equals (within noise) agentdb.open on the same rows."""
    from agentdb.cluster import ClusterDB

    n, nq = 3000, 100
    base, queries = shared_data.base[:n], shared_data.queries[:nq]
    bn = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    gt = np.argsort(1.0 - qn @ bn.T, axis=1)[:, :10] + 1  # ids are 1..n
    db = ClusterDB(ray_cluster.address, postgres_url, shards=2, replicas=1,
                   dim=base.shape[1], schema=pg_schema, namespace=f"agentdb_{pg_schema}",
                   search_timeout=20.0, ready_timeout=90.0, pgvector_index=False)
    emb = agentdb.open(":memory:", dim=base.shape[1])
    try:
        for lo in range(0, n, 1000):
            ids = db.store_patterns([{"task": f"p{i}", "embedding": base[i], "id": i + 1}
                                     for i in range(lo, min(n, lo + 1000))])
            emb.store_patterns([{"task": f"p{i}", "embedding": base[i], "id": i + 1}
                                for i in range(lo, min(n, lo + 1000))])
        assert ids[-1] == n
        rc = re_ = 0.0
        for j in range(nq):
            cids, _ = db.search_ids("patterns", queries[j], k=10)
            rc += len(set(cids.tolist()) & set(gt[j].tolist())) / 10
            re_ += len({h.id for h in emb.search_patterns(queries[j], k=10)}
                       & set(gt[j].tolist())) / 10
        rc, re_ = rc / nq, re_ / nq
        assert rc >= re_ - 0.01, (rc, re_)
        assert rc >= 0.95
    finally:
        emb.close()
        db.close(shutdown=True)


class _Writer(threading.Thread):
    """Writes patterns until stopped; remembers every acknowledged (id, vector)."""

    def __init__(self, db, seed: int) -> None:
        super().__init__(daemon=True)
        self.db, self.rng = db, np.random.default_rng(seed)
        self.acked: dict[int, np.ndarray] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                v = self.rng.standard_normal(DIM).astype(np.float32)
                self.acked[self.db.store_pattern("w", embedding=v)] = v
                time.sleep(0.01)
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.error = exc


def _check_no_loss(db, acked: dict[int, np.ndarray]) -> None:
    db_ids = set(db.search_ids("patterns", np.ones(DIM), k=10_000)[0].tolist())
    assert set(acked) <= db_ids
    for rid, v in list(acked.items())[:: max(1, len(acked) // 40)]:
        assert db.search_ids("patterns", v, k=1)[0][0] == rid


def _search_under_failure(db, writer: _Writer, rounds: int) -> None:
    """Searches with read-your-writes must keep answering with full results."""
    q = np.random.default_rng(3).standard_normal(DIM)
    for _ in range(rounds):
        assert len(db.search_patterns(q, k=10)) == 10
        if writer.acked:
            rid, v = next(reversed(writer.acked.items()))
            ids, _ = db.search_ids("patterns", v, k=1, min_seq=db.last_seq)
            assert ids[0] == rid
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_replica_rebuilds_and_catches_up(cdb):
    cdb.store_patterns(_rows(N))
    writer = _Writer(cdb, 1)
    writer.start()
    try:
        time.sleep(0.3)
        q = np.random.default_rng(5).standard_normal(DIM)
        for _ in range(10):  # the handle learns where every replica takes fast searches
            cdb.search_ids("patterns", q, k=3)
            time.sleep(0.01)
        victim = ray.get_actor(cdb.actor_name(0, 0), namespace=cdb.ray_namespace)
        pid_before = ray.get(victim.status.remote())["pid"]
        t0 = time.monotonic()
        ray.kill(victim, no_restart=False)  # Ray restarts it with its memory gone
        deadline = time.monotonic() + 15  # the kill is asynchronous: wait until it took
        while _pid_alive(pid_before) and time.monotonic() < deadline:  # effect
            time.sleep(0.02)
        _search_under_failure(cdb, writer, 30)
        assert cdb.actor_name(0, 0) in cdb.scatter.suspect  # searches did fail over
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None and len(writer.acked) > 10
    st = _wait_converged(cdb)
    rep = st["shards"][0]["replicas"][0]
    assert rep["pid"] != pid_before and rep["applied_seq"] == st["log_seq"]
    print(f"\nkilled replica ready again after <= {time.monotonic() - t0:.1f}s")
    _check_no_loss(cdb, writer.acked)
    assert cdb.count() == N + len(writer.acked)


def test_add_shard_moves_a_fraction_and_keeps_results(cdb):
    ids = cdb.store_patterns(_rows(N, seed=5))
    qs = np.random.default_rng(9).standard_normal((15, DIM))
    before = [cdb.search_ids("patterns", q, k=10)[0].tolist() for q in qs]
    old = cdb.ring
    new_id = cdb.add_shard()
    assert new_id == 2 and cdb.ring.shards == [0, 1, 2]
    moved = old.moved_fraction(cdb.ring, ids)
    assert 0.15 < moved < 0.55  # ~1/3 of the keys move, all to the new shard
    assert all(cdb.ring.shard_for(i) in (old.shard_for(i), new_id) for i in ids)
    after = [cdb.search_ids("patterns", q, k=10)[0].tolist() for q in qs]
    assert sum(len(set(a) & set(b)) for a, b in zip(before, after)) >= 0.98 * 150
    st = _wait_converged(cdb)
    counts = {s["shard"]: s["replicas"][0]["vectors"] for s in st["shards"]}
    assert sum(counts.values()) == N and counts[new_id] > 0
    assert counts[new_id] == sum(1 for i in ids if cdb.ring.shard_for(i) == new_id)
    # a write after the change lands in the right shard and is found
    v = np.linspace(1, 2, DIM)
    pid = cdb.store_pattern("after", embedding=v)
    assert cdb.search_ids("patterns", v, k=1)[0][0] == pid
    # another handle that still routes by the old ring is corrected by the replicas
    from agentdb.cluster import ClusterDB

    other = ClusterDB(None, cdb.url, dim=DIM, schema=cdb.schema, namespace=cdb.ray_namespace)
    try:
        assert other.ring == cdb.ring
        other.shards.ring, other.shards.routing = old, {s: other.shards.routing[s]
                                                        for s in old.shards}
        assert other.search_ids("patterns", v, k=1)[0][0] == pid
        assert other.ring == cdb.ring
    finally:
        other.close()


def test_remove_shard_moves_its_keys_online(cdb, postgres_url, pg_schema):
    """remove_shard: the remaining replicas load the removed shard's records and graph edges,
    results and khop answers stay the same, a handle with the old ring corrects itself, the
    shard's actors are gone, and a shard can be added again afterwards."""
    from agentdb.cluster import ClusterDB

    ids = cdb.store_patterns(_rows(N, seed=8))
    g = cdb.graph
    nodes = [g.add_event(type="step", n=i) for i in range(20)]
    rng = np.random.default_rng(12)
    for _ in range(30):
        a, b = (int(x) for x in rng.choice(nodes, 2, replace=False))
        g.add_causal_edge([a], [b])
    qs = rng.standard_normal((15, DIM))
    before = [cdb.search_ids("patterns", q, k=10)[0].tolist() for q in qs]
    hops = {n: g.khop(n, 3) for n in nodes[:8]}
    old = cdb.ring
    other = ClusterDB(None, cdb.url, dim=DIM, schema=cdb.schema, namespace=cdb.ray_namespace)
    try:
        with pytest.raises(ValueError, match="not on the ring"):
            cdb.remove_shard(7)
        with pytest.raises(TypeError, match="shard must be"):
            cdb.remove_shard("1")
        with pytest.raises(ValueError, match="timeout must be"):
            cdb.remove_shard(1, timeout=-1)
        assert cdb.ring == old  # the refused calls changed nothing
        moved = [i for i in ids if old.shard_for(i) == 1]
        out = cdb.remove_shard(1)
        assert out["shard"] == 1 and cdb.ring.shards == [0] and out["ring"]["shards"] == [0]
        assert out["loaded"] == {"0/0": len(moved), "0/1": len(moved)}  # records only
        after = [cdb.search_ids("patterns", q, k=10)[0].tolist() for q in qs]
        assert sum(len(set(a) & set(b)) for a, b in zip(before, after)) >= 0.98 * 150
        assert {n: g.khop(n, 3) for n in nodes[:8]} == hops
        st = _wait_converged(cdb)
        assert [s["shard"] for s in st["shards"]] == [0]
        assert [r["vectors"] for r in st["shards"][0]["replicas"]] == [N, N]
        v = np.linspace(1, 2, DIM)
        pid = cdb.store_pattern("after removal", embedding=v)
        assert cdb.search_ids("patterns", v, k=1)[0][0] == pid
        # the other handle still routes to shard 1: its replicas are gone, it reloads
        assert other.ring == old
        assert other.search_ids("patterns", v, k=1, min_seq=cdb.last_seq)[0][0] == pid
        assert other.ring == cdb.ring
        with pytest.raises(ValueError, match="last shard"):
            cdb.remove_shard()
        deadline = time.monotonic() + 20
        while cdb.shards.get_actor(1, 0) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cdb.shards.get_actor(1, 0) is None and cdb.shards.get_actor(1, 1) is None
        # and grow again: the new shard takes its ~half of the keys back
        new_id = cdb.add_shard()
        assert cdb.ring.shards == [0, new_id]
        after = [cdb.search_ids("patterns", q, k=10)[0].tolist() for q in qs]
        assert sum(len(set(a) & set(b)) for a, b in zip(before, after)) >= 0.98 * 150
        assert {n: g.khop(n, 3) for n in nodes[:8]} == hops
    finally:
        other.close()


def test_graph_slices_khop_and_updates(cdb, postgres_url, pg_schema):
    """The causal graph: writes through the log, topology sliced over the shards, khop as
    scatter rounds -- the same answers as the embedded graph on the same PostgreSQL data,
    also after a replica is killed and rebuilds its slice. Plus update_episode/skill."""
    g = cdb.graph
    rng = np.random.default_rng(4)
    pid = cdb.store_pattern("linked", embedding=np.ones(DIM))
    nodes = [g.add_event(type="step", n=i, pattern_id=pid if i == 0 else None)
             for i in range(40)]
    for _ in range(70):
        a, b, c = (int(x) for x in rng.choice(nodes, 3, replace=False))
        g.add_causal_edge([a, b] if rng.random() < 0.3 else [a], [c],
                          type="CAUSED_BY" if rng.random() < 0.8 else "ENABLES",
                          confidence=float(rng.uniform(0.1, 1)))
    chain_id, chain = g.add_causal_chain(nodes[:4], type="NEXT", confidence=[0.9, 0.5, 1.0])
    assert len(chain) == 3 and g.get_edge(chain[0])["causes"] == [nodes[0]]
    whole = g.get_edge(chain_id)
    assert whole["type"] == "CAUSAL_CHAIN" and whole["causes"] == nodes[:3]
    assert whole["effects"] == [nodes[3]] and whole["properties"]["chain_length"] == 4
    assert whole["confidence"] == pytest.approx(0.45)
    assert g.get_event(nodes[0])["properties"]["patternId"] == pid
    with pytest.raises(KeyError, match="unknown node"):
        g.add_causal_edge([nodes[0]], [10**9])
    with pytest.raises(KeyError, match="unknown pattern id"):
        g.add_event(pattern_id=10**9)
    with pytest.raises(ValueError, match="confidence"):
        g.add_causal_edge([nodes[0]], [nodes[1]], confidence=2.0)
    with pytest.raises(ValueError, match="direction"):
        g.khop(nodes[0], 2, direction="sideways")
    with pytest.raises(KeyError, match="unknown node"):
        g.khop(10**9, 2)
    # the edges of every node are spread over both shards
    st = _wait_converged(cdb)
    slices = [s["replicas"][0]["graph"]["edges"] for s in st["shards"]]
    assert all(0 < e < 74 for e in slices), slices

    def compare() -> None:
        with agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema) as emb:
            for seed in nodes[:12]:
                for k, direction, types in ((1, "out", None), (3, "out", None),
                                            (2, "in", ["CAUSED_BY"]), (4, "both", None),
                                            (2, "out", ["NEXT"])):
                    assert g.khop(seed, k, direction, types) == \
                        emb.graph.khop(seed, k, direction, types), (seed, k, direction)
            assert g.khop(nodes[:3], 2) == emb.graph.khop(nodes[:3], 2)
            assert g.stats() == {"nodes": len(nodes), "edges": emb.graph.stats()["edges"]}

    compare()
    # removals are logged: read-your-writes on the next khop
    e = chain[1]
    g.remove_edge(e)
    assert nodes[2] not in g.khop(nodes[1], 1, types=["NEXT"])
    with pytest.raises(KeyError):
        g.remove_edge(e)
    g.remove_event(nodes[39])
    assert nodes[39] not in g.khop(nodes[:39], 5, "both")
    with pytest.raises(KeyError):
        g.get_event(nodes[39])
    nodes.pop()
    compare()
    # a killed replica rebuilds its slice from PostgreSQL
    victim = ray.get_actor(cdb.actor_name(1, 0), namespace=cdb.ray_namespace)
    ray.kill(victim, no_restart=False)
    compare()
    _wait_converged(cdb)
    compare()

    # the log is compacted once every replica applied it; new writes still flow
    before = cdb.log_seq()
    out = cdb.compact_log()
    assert out["deleted"] > 100 and out["upto"] == before and out["oldest"] == before
    assert cdb.log_seq() == before  # the last entry stays: seqs never go back
    late = g.add_event(type="late")
    g.add_causal_edge([nodes[0]], [late])
    assert late in g.khop(nodes[0], 1)
    ray.kill(ray.get_actor(cdb.actor_name(0, 1), namespace=cdb.ray_namespace), no_restart=False)
    nodes.append(late)
    compare()
    _wait_converged(cdb)

    # update_episode / update_skill through the log
    cdb.store_skill("probe", "probe the API")
    ep = cdb.store_episode("call it", embedding=np.full(DIM, 0.5), skills=["probe"])
    got = cdb.update_episode(ep, reward=0.8, success=True, critique="fine")
    assert (got.reward, got.success, got.critique) == (0.8, True, "fine")
    assert cdb.search_episodes(np.full(DIM, 0.5), k=1, success=True)[0].id == ep
    with pytest.raises(ValueError, match="reward"):
        cdb.update_episode(ep, reward=float("nan"))
    sk = cdb.update_skill("probe", success_rate=0.9, description="probe the API twice")
    assert sk.success_rate == 0.9 and sk.description == "probe the API twice"
    assert cdb.search_skills("probe", k=1, min_success_rate=0.85)[0].record.name == "probe"
    with pytest.raises(KeyError):
        cdb.update_skill("nope", uses=1)


@pytest.mark.slow
def test_removed_node(cdb, ray_cluster):
    """A worker node disappears mid-load: searches keep answering, nothing acknowledged is
    lost, its replicas are rescheduled elsewhere, rebuild and catch up. Runs last (it changes
    the module's cluster); a node is added back afterwards."""
    cdb.store_patterns(_rows(N, seed=11))
    st = _wait_converged(cdb)
    by_id = {n.node_id: n for n in ray_cluster.worker_nodes}
    used = [r["node_id"] for s in st["shards"] for r in s["replicas"]]
    node_id = next(n for n in used if n in by_id)
    writer = _Writer(cdb, 2)
    writer.start()
    try:
        time.sleep(0.3)
        ray_cluster.remove_node(by_id[node_id])
        _search_under_failure(cdb, writer, 30)
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None
    st = _wait_converged(cdb, timeout=120)
    assert node_id not in [r["node_id"] for s in st["shards"] for r in s["replicas"]]
    assert not next(n for n in st["nodes"] if n["node_id"] == node_id)["alive"]
    _check_no_loss(cdb, writer.acked)
    ray_cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")


def test_close_keeps_or_removes_actors(ray_cluster, postgres_url, pg_schema):
    from agentdb.cluster import ClusterDB

    ns = f"agentdb_{uuid.uuid4().hex[:8]}"
    db = ClusterDB(ray_cluster.address, postgres_url, shards=1, replicas=1, dim=DIM,
                   schema=pg_schema, namespace=ns)
    db.store_pattern("x", embedding=np.ones(DIM))
    db.close()  # default: actors stay for other handles
    with ClusterDB(None, postgres_url, dim=DIM, schema=pg_schema, namespace=ns) as again:
        assert again.search_patterns(np.ones(DIM), k=1, min_seq=again.log_seq())[0].record.task \
            == "x"
    assert ray.get_actor(db.actor_name(0, 0), namespace=ns) is not None
    owner = ClusterDB(None, postgres_url, dim=DIM, schema=pg_schema, namespace=ns)
    owner.shards.created = [owner.actor_name(0, 0)]  # take ownership to clean up
    owner.shards.created_pgs = [f"{ns}/shard0/pg"]
    owner.close(shutdown=True)
    time.sleep(0.5)
    with pytest.raises(ValueError):
        ray.get_actor(db.actor_name(0, 0), namespace=ns)


def test_delete_patterns_by_filter_on_the_cluster(cdb):
    from test_memory import _delete_by_filter_checks

    _delete_by_filter_checks(cdb)


def test_diverse_searches_on_the_cluster(cdb):
    from test_diversity import diversity_checks

    diversity_checks(cdb)


def test_text_and_hybrid_searches_on_the_cluster(cdb):
    from test_hybrid import hybrid_checks

    hybrid_checks(cdb)


def test_forgetting_on_the_cluster(cdb):
    from test_forgetting import forgetting_checks

    forgetting_checks(cdb)


def test_namespaces_on_the_cluster(cdb):
    alice = cdb.namespace("alice")
    assert cdb.namespace("alice") is alice and cdb.namespace("default") is cdb
    seen: list[dict] = []
    alice.on("pattern:stored", lambda _e, payload: seen.append(payload))
    v = np.random.default_rng(77).standard_normal(DIM).astype(np.float32)
    a = alice.store_pattern("alice's deploy note ERR_ALICE_NS", embedding=v)
    d = cdb.store_pattern("the default namespace's note", embedding=v)
    assert [h.id for h in alice.search_patterns(v, k=10)] == [a]
    assert a not in [h.id for h in cdb.search_patterns(v, k=50)
                     if h.record.task.startswith("alice")]
    assert d in [h.id for h in cdb.search_patterns(v, k=50)]
    assert alice.search_patterns("ERR_ALICE_NS", mode="text")[0].id == a
    assert cdb.search_patterns("ERR_ALICE_NS", mode="text") == []
    assert alice.count() == 1 and seen[0]["namespace"] == "alice"
    ev = alice.graph.add_event("Event", name="alice's event")
    assert alice.graph.get_event(ev)["properties"]["name"] == "alice's event"
    assert "alice" in cdb.namespaces()
    assert alice.stats()["namespace"] == "alice" and cdb.stats()["namespace"] == "default"


def test_concurrent_searches_are_combined_and_answered_alike(cdb):
    import threading

    rng = np.random.default_rng(31)
    vecs = rng.standard_normal((300, DIM)).astype(np.float32)
    cdb.store_patterns([{"task": f"combine {i}", "embedding": v, "metadata": {"c": i % 3}}
                        for i, v in enumerate(vecs)])
    queries = vecs[:48] + 0.01
    # ef 256: each replica's walk is exact here, so any replica gives the same answer
    alone = [[h.id for h in cdb.search_patterns(q, k=5, adapt=False, ef=256,
                                                where={"c": i % 3} if i % 2 else None)]
             for i, q in enumerate(queries)]
    rounds: list[int] = []
    original = cdb.scatter._search_many

    def counting(batch):
        rounds.append(len(batch))
        return original(batch)

    cdb.scatter._search_many = counting
    together: list[list[int] | None] = [None] * len(queries)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(t, len(queries), 8):
                together[i] = [h.id for h in cdb.search_patterns(
                    queries[i], k=5, adapt=False, ef=256,
                    where={"c": i % 3} if i % 2 else None)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        cdb.scatter._search_many = original
    assert not errors and together == alone
    assert rounds and max(rounds) > 1  # some searches did share a round


# ----------------------------------------------------------- the log survives its primary


class _FailoverWriter(threading.Thread):
    """Writes patterns until stopped, through failures: remembers every acknowledged (id,
    vector), every write that raised (with the error) and when each happened."""

    def __init__(self, db, seed: int) -> None:
        super().__init__(daemon=True)
        self.db, self.rng = db, np.random.default_rng(seed)
        self.acked: dict[int, np.ndarray] = {}
        self.acked_at: list[float] = []
        self.started_at: list[float] = []  # when each acknowledged write was issued
        self.failed: list[tuple[float, BaseException]] = []
        self.stop = threading.Event()

    def resumed_after(self, t: float) -> list[float]:
        """When the writes issued after ``t`` were acknowledged. (A write issued before a
        kill may be acknowledged after it: it had committed before the server died.)"""
        return [a for a, s in zip(self.acked_at, self.started_at) if s > t]

    def run(self) -> None:
        while not self.stop.is_set():
            v = self.rng.standard_normal(DIM).astype(np.float32)
            t0 = time.monotonic()
            try:
                rid = self.db.store_pattern("w", embedding=v)
            except Exception as exc:  # noqa: BLE001 - every failure is checked by the test
                self.failed.append((time.monotonic(), exc))
                time.sleep(0.05)
                continue
            self.acked[rid] = v
            self.acked_at.append(time.monotonic())
            self.started_at.append(t0)
            time.sleep(0.01)


def test_log_survives_its_primary(ray_cluster, tmp_path):
    """kill -9 the PostgreSQL primary under continuous cluster writes and searches: Patroni
    promotes the synchronous standby, writes resume, no acknowledged write is lost, failed
    writes raised a StoreError, every replica reaches the log's end, and no search answered
    wrongly meanwhile (it answered right, or raised)."""
    from agentdb.cluster import ClusterDB
    from agentdb.cluster.pg_ha import LocalHAPostgres, etcd_binary
    from agentdb.errors import ClusterError, StoreError

    try:
        import patroni  # noqa: F401

        etcd_binary()
    except (ImportError, ClusterError) as exc:
        unavailable("FAILOVER", f"PostgreSQL failover needs patroni and etcd ({exc})")
    ha = LocalHAPostgres(tmp_path / "ha", standbys=1)
    url = ha.start()
    db = None
    try:
        db = ClusterDB(ray_cluster.address, url, shards=2, replicas=1, dim=DIM,
                       namespace=f"agentdb_ha_{uuid.uuid4().hex[:8]}", search_timeout=10.0,
                       ready_timeout=90.0)
        base = db.store_patterns(_rows(100))
        known = set(base)
        writer = _FailoverWriter(db, 5)
        wrong: list[str] = []
        unacked: set[int] = set()
        search_errors: list[BaseException] = []
        searches = [0]
        stop_search = threading.Event()

        def searcher() -> None:
            while not stop_search.is_set():
                if not writer.acked:
                    time.sleep(0.02)
                    continue
                rid, v = next(reversed(writer.acked.items()))
                try:
                    ids, _ = db.search_ids("patterns", v, k=3, ef=256, min_seq=db.last_seq)
                except Exception as exc:  # noqa: BLE001 - allowed during the failover
                    search_errors.append(exc)
                    time.sleep(0.05)
                    continue
                searches[0] += 1
                if int(ids[0]) != rid:
                    wrong.append(f"searched for {rid}, got {ids.tolist()}")
                # an id neither stored first nor acknowledged can only be a write that
                # raised but committed (checked below: it must exist)
                unacked.update(set(ids.tolist()) - known - set(writer.acked) - {-1})
                time.sleep(0.01)

        t_search = threading.Thread(target=searcher, daemon=True)
        writer.start()
        t_search.start()
        deadline = time.monotonic() + 30
        while len(writer.acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        old = ha.kill_postgres()
        t_kill = time.monotonic()
        deadline = t_kill + 90  # bounded: Patroni fails over in seconds
        while time.monotonic() < deadline and not writer.resumed_after(t_kill):
            time.sleep(0.05)
        resumed = writer.resumed_after(t_kill)
        assert resumed, f"writes did not resume; failures: {writer.failed[-3:]}"
        time.sleep(1.0)  # more writes and searches on the new primary
        writer.stop.set()
        writer.join(30)
        stop_search.set()
        t_search.join(30)
        new = ha.primary()
        assert new is not None and new["name"] != old
        print(f"\nprimary {old} killed; writes resumed on {new['name']} after "
              f"{resumed[0] - t_kill:.2f}s; {len(writer.failed)} writes raised, "
              f"{len(writer.acked)} acknowledged; {searches[0]} searches answered, "
              f"{len(search_errors)} raised")
        assert not wrong, wrong[:5]
        # nothing that was never written: a search may show a write that raised (its commit
        # reached the standby before the connection died), never an id nobody stored
        assert len(unacked) <= len(writer.failed), (unacked, writer.failed)
        assert db.store.existing("patterns", sorted(unacked)) == unacked
        for _, exc in writer.failed:  # a failed write raised the store's typed error
            assert isinstance(exc, StoreError), repr(exc)
        st = _wait_converged(db)
        assert st["log_seq"] >= db.last_seq
        _check_no_loss(db, writer.acked)
        n = db.count()
        assert len(base) + len(writer.acked) <= n <= len(base) + len(writer.acked) + len(
            writer.failed)
        ha.wait_ready(120)  # the old primary came back as a standby
    finally:
        if db is not None:
            db.close(shutdown=True)
        ha.stop()


def test_fast_path_answers_as_ray_does_and_refuses_strangers(cdb):
    """Searches over the replicas' TCP listeners give exactly the Ray path's answers (ids,
    distances, records, filters, read-your-writes); a request without the cluster's token
    gets no answer at all."""
    import socket

    from agentdb.cluster import ClusterDB
    from agentdb.cluster.fastpath import decode, encode

    cdb.store_patterns(_rows(200, seed=4))
    _wait_converged(cdb)  # `slow` below has seen no write, so it does not wait for these
    slow = ClusterDB(None, cdb.url, dim=DIM, schema=cdb.schema, namespace=cdb.ray_namespace,
                     fast_path=False)
    try:
        rng = np.random.default_rng(8)
        for j in range(30):
            q = rng.standard_normal(DIM)
            kw = [{}, {"min_reward": 0.2}, {"where": {"group": 1}},
                  {"session_id": "s1"}][j % 4]
            a = cdb.search_patterns(q, k=7, ef=256, adapt=False, **kw)
            b = slow.search_patterns(q, k=7, ef=256, adapt=False, **kw)
            assert [(h.id, round(h.distance, 5), h.record.to_dict()) for h in a] == \
                [(h.id, round(h.distance, 5), h.record.to_dict()) for h in b]
        v = rng.standard_normal(DIM).astype(np.float32)
        rid = cdb.store_pattern("fresh", embedding=v, metadata={"fresh": True})
        hit = cdb.search_patterns(v, k=1)[0]  # read-your-writes through the fast path
        assert hit.id == rid and hit.record.metadata == {"fresh": True}
        cdb.update_pattern(rid, metadata={"fresh": False})
        assert cdb.search_patterns(v, k=1)[0].record.metadata == {"fresh": False}
        assert cdb.scatter.fast_stats["fast"] > 0 and slow.scatter.fast_stats["fast"] == 0
        addr = next(iter(a for a, _, _ in cdb.scatter._addresses.values() if a))
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(encode({"token": "not-the-token", "dim": DIM, "min_seq": 0,
                              "timeout": 1, "ring": None, "entries": []}))
            assert s.recv(100) == b""  # closed without an answer
        token = cdb.log.get_meta("fastpath_token")
        with socket.create_connection(addr, timeout=5) as s:  # the wrong replica says so
            s.sendall(encode({"token": token, "expect": [99, 0], "dim": DIM, "min_seq": 0,
                              "timeout": 1, "ring": None, "entries": []}))
            size = int.from_bytes(s.recv(4), "big")
            body = b""
            while len(body) < size:
                body += s.recv(size - len(body))
            head, _ = decode(body)
            assert head["ok"] is False and "not [99, 0]" in head["message"]
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"\x00\x00\x00\x05garbage")
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:  # closed with the rest unread
                pass
        assert decode(encode({"ok": 1})[4:])[0] == {"ok": 1}
    finally:
        slow.close()


def test_wait_ready_waits_for_every_replica_and_checks_its_timeout(cdb):
    cdb.wait_ready(90)
    reps = [r for s in cdb.status()["shards"] for r in s["replicas"]]
    assert len(reps) == 4 and all(r["state"] == "ready" for r in reps)
    for bad in (0, -1.0, float("nan"), float("inf"), "abc", True, [1]):
        with pytest.raises(agentdb.errors.InvalidArgumentError, match="timeout"):
            cdb.wait_ready(bad)
