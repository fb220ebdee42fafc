"""Learning-memory benchmark: does retrieval get better from feedback, and at what cost?

Data: ``../shared/data/minilm-pypi-100k`` (real all-MiniLM-L6-v2 vectors). The store holds
the first ``--n`` base rows as patterns (``--quick``: 20,000; default 90,000); rows
90,000.. are the *training* queries (``--pool``, never stored); the 1,000 real queries are
the *held-out* evaluation queries (never used for feedback).

The task -- the right memory is defined by feedback, not by raw cosine: a hidden rank-8
transform ``T = alpha * U V^T`` (V: a random 8-d subspace of the corpus' top-8 principal
directions, U: of principal directions 8-64, ``--alpha`` 4) says which pattern succeeds for
a query: the stored row nearest to ``normalize(q + T q)``. Under raw cosine that pattern
ranks anywhere from 1st to thousands (the distribution is printed); the agent only learns
it through ``db.feedback(q, target_id, 1.0)`` on training queries, and recall@10 of the
targets is measured with ``db.search_patterns(q, k=10)`` on the held-out queries (HNSW
search, so the "oracle" row -- searching with the true ``normalize(q + T q)`` -- is the
ceiling).

Tables:

1. recall@10 before learning and after N feedback events (``--steps``).
2. Continual learning: the training and held-out queries are split into two regions
   (2-means); task A's targets use ``T_A``, task B's ``T_B`` (rank 4 each, disjoint
   subspaces). Learn A (``--task-steps`` events), ``db.learning.consolidate()``, learn B;
   recall on A and B after each phase with EWC++ off (``ewc_lambda=0``) and on (default
   lambda and ``--lambdas``), and a reference trained on A and B mixed. Every configuration
   reopens the store with ``learning={..., "reset": True}``.
3. Cost: one adapter update (``Learner.learn``, rank 8, d=384) and one ``db.feedback`` (with
   the search for negatives), median microseconds; search latency with and without the
   adapter, and the adapter's own cost per query.
4. Federated: ``--agents`` honest ``EphemeralLearningAgent`` s each get a slice of the
   same number of feedback events as the largest N of table 1, over ``--rounds`` rounds
   (each round: agents start from the published adapter, learn, submit; the coordinator
   merges and publishes); ``--poisoned`` agents submit huge random updates every round.
   Compared with: one agent alone with its slice, central training on all events, and the
   same federation without outlier rejection.
5. Attention kernels vs numpy, from ``benchmarks/attention.py``'s ``kernel_table`` when that
   module exists.

``--json PATH`` writes every number. Runs in a few minutes with ``--quick``.

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead (usually the numpy fallback, whose searches are exact, not HNSW). The
backend is printed in the header and every table title. Table 5 compares with numpy, so on
the fallback the run is refused unless ``--allow-fallback`` (or ``--skip attention``)::

    python benchmarks/learning.py --quick
    python benchmarks/learning.py --src --quick --skip attention   # source tree, fallback
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_DATA_DIR,
    add_backend_options,
    environment,
    import_agentdb,
    log,
    parse_csv,
    print_header,
    print_table,
    require_native_for_peers,
    write_json,
)

#: The ``agentdb`` module, imported by :func:`main` (installed package, or --src).
agentdb: Any = None


# --------------------------------------------------------------------------- data / task
def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def load(data_dir: Path, n: int, pool: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = np.load(data_dir / "base.f16.npy", mmap_mode="r")
    if n + pool > base.shape[0] and n > 90_000:
        raise SystemExit(f"--n {n} + --pool {pool} exceed the {base.shape[0]} base rows")
    X = unit(np.asarray(base[:n]).astype(np.float32))
    P = unit(np.asarray(base[90_000:90_000 + pool]).astype(np.float32))
    Q = unit(np.load(data_dir / "queries.f16.npy").astype(np.float32))
    return X, P, Q


def nearest(X: np.ndarray, Q: np.ndarray, chunk: int = 512) -> np.ndarray:
    out = np.empty(len(Q), np.int64)
    for s in range(0, len(Q), chunk):
        out[s:s + chunk] = np.argmax(Q[s:s + chunk] @ X.T, axis=1)
    return out


def raw_rank(X: np.ndarray, Q: np.ndarray, target: np.ndarray, chunk: int = 512) -> np.ndarray:
    """0-based rank of each target under raw cosine."""
    out = np.empty(len(Q), np.int64)
    for s in range(0, len(Q), chunk):
        sims = Q[s:s + chunk] @ X.T
        t = sims[np.arange(len(sims)), target[s:s + chunk]]
        out[s:s + chunk] = (sims > t[:, None]).sum(1)
    return out


def subspaces(X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random orthonormal 8-d bases inside the top-8 and the 8-64 principal directions."""
    sample = X[:10_000]
    _, _, vt = np.linalg.svd(sample - sample.mean(0), full_matrices=False)

    def orth(rows: np.ndarray) -> np.ndarray:
        q, _ = np.linalg.qr(rows.T @ rng.standard_normal((rows.shape[0], 8)))
        return q

    return orth(vt[:8]), orth(vt[8:64])


def targets(X: np.ndarray, Q: np.ndarray, T: np.ndarray) -> np.ndarray:
    return nearest(X, unit(Q + Q @ T.T))


# --------------------------------------------------------------------------- agentdb helpers
def build_store(path: str, X: np.ndarray) -> float:
    t0 = time.perf_counter()
    db = agentdb.open(path, dim=X.shape[1], durability="normal", progress=False)
    for s in range(0, len(X), 5000):
        db.store_patterns([{"task": f"pattern {i}", "embedding": X[i], "id": i + 1}
                           for i in range(s, min(s + 5000, len(X)))])
    db.close()
    return time.perf_counter() - t0


def recall10(db: Any, Q: np.ndarray, target: np.ndarray, adapt: bool = True) -> float:
    hits = 0
    for q, t in zip(Q, target):
        ids = [r.id for r in db.search_patterns(q, k=10, adapt=adapt)]
        hits += (int(t) + 1) in ids
    return hits / max(len(Q), 1)


def exact_recall10(db: Any, X: np.ndarray, Q: np.ndarray, target: np.ndarray) -> float:
    """Recall@10 with exact (numpy) search of the adapted queries: the adapter's quality
    without the HNSW index's misses."""
    Qa = np.stack([db.learning.apply(q) for q in Q]) if db.learning.active else Q
    hits = 0
    for s in range(0, len(Qa), 256):
        sims = Qa[s:s + 256] @ X.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        hits += int((top == target[s:s + 256, None]).any(1).sum())
    return hits / max(len(Q), 1)


def train(db: Any, P: np.ndarray, target: np.ndarray, n: int, order: np.ndarray,
          start: int = 0, times: list[float] | None = None) -> None:
    for j in range(start, n):
        i = order[j % len(order)]
        t0 = time.perf_counter()
        db.feedback(P[i], int(target[i]) + 1, 1.0)
        if times is not None:
            times.append(time.perf_counter() - t0)


def fmt(x: float) -> str:
    return f"{x:.3f}"


# --------------------------------------------------------------------------- parts
def part_single(path: str, X, P, Q, T, steps: list[int], seed: int, out: dict) -> list:
    tp, tq = targets(X, P, T), targets(X, Q, T)
    ranks = raw_rank(X, Q, tq)
    pct = {p: int(np.percentile(ranks, p)) + 1 for p in (10, 25, 50, 75, 90)}
    out["target_rank_percentiles"] = pct
    out["target_rank_in_top10"] = float(np.mean(ranks < 10))
    db = agentdb.open(path, learning={"reset": True}, progress=False)
    rows = [["no learning (raw cosine)", 0, fmt(recall10(db, Q, tq)),
             fmt(exact_recall10(db, X, Q, tq))]]
    oracle = recall10(db, unit(Q + Q @ T.T), tq, adapt=False)
    order = np.random.default_rng(seed).permutation(len(P))
    done, times = 0, []
    for n in steps:
        log(f"single task: training to {n} feedback events")
        train(db, P, tp, n, order, done, times)
        done = n
        rows.append([f"after {n} feedback events", n, fmt(recall10(db, Q, tq)),
                     fmt(exact_recall10(db, X, Q, tq))])
    ef_wide = 4 * 64
    wide = sum((int(t) + 1) in [r.id for r in db.search_patterns(q, k=10, ef=ef_wide)]
               for q, t in zip(Q, tq)) / max(len(Q), 1)
    rows.append([f"same, HNSW ef {ef_wide} (default: ef_factor 2 x 64)", steps[-1], fmt(wide),
                 rows[-1][3]])
    rows.append(["oracle: search with the true normalize(q + Tq)", "-", fmt(oracle), "1.000"])
    out["single"] = {r[0]: {"hnsw": r[2], "exact": r[3]} for r in rows}
    out["feedback_seconds"] = times
    db.close()
    return rows


def regions(P: np.ndarray, Q: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    allq = np.vstack([P, Q])
    c = allq[rng.choice(len(allq), 2, replace=False)]
    for _ in range(25):
        lab = np.argmax(allq @ c.T, axis=1)
        c = unit(np.stack([allq[lab == k].mean(0) for k in range(2)]))
    return np.argmax(P @ c.T, axis=1), np.argmax(Q @ c.T, axis=1)


def part_continual(path: str, X, P, Q, V, U, alpha: float, n_task: int, lambdas: list[float],
                   seed: int, out: dict) -> list:
    lp, lq = regions(P, Q, np.random.default_rng(seed + 1))
    TA = alpha * U[:, :4] @ V[:, :4].T
    TB = alpha * U[:, 4:] @ V[:, 4:].T
    PA, PB, QA, QB = P[lp == 0], P[lp == 1], Q[lq == 0], Q[lq == 1]
    tPA, tPB, tQA, tQB = (targets(X, PA, TA), targets(X, PB, TB), targets(X, QA, TA),
                          targets(X, QB, TB))
    out["continual_sizes"] = {"train_A": len(PA), "train_B": len(PB), "heldout_A": len(QA),
                              "heldout_B": len(QB)}
    rng = np.random.default_rng(seed + 2)
    oA, oB = rng.permutation(len(PA)), rng.permutation(len(PB))
    rows = []
    for lam in lambdas:
        log(f"continual: ewc_lambda={lam:g}")
        db = agentdb.open(path, learning={"reset": True, "ewc_lambda": lam}, progress=False)
        before = (recall10(db, QA, tQA), recall10(db, QB, tQB))
        train(db, PA, tPA, n_task, oA)
        after_a = (recall10(db, QA, tQA), recall10(db, QB, tQB))
        db.learning.consolidate()
        train(db, PB, tPB, n_task, oB)
        after_b = (recall10(db, QA, tQA), recall10(db, QB, tQB))
        name = "EWC++ off (lambda 0)" if lam == 0 else f"EWC++ lambda {lam:g}"
        rows.append([name, fmt(before[0]), fmt(after_a[0]), fmt(after_b[0]), fmt(after_b[1])])
        db.close()
    log("continual: joint reference (A and B mixed)")
    db = agentdb.open(path, learning={"reset": True}, progress=False)
    PJ, tJ = np.vstack([PA, PB]), np.concatenate([tPA, tPB])
    train(db, PJ, tJ, 2 * n_task, rng.permutation(len(PJ)))
    rows.append(["reference: A and B mixed, no boundary", "-", "-",
                 fmt(recall10(db, QA, tQA)), fmt(recall10(db, QB, tQB))])
    db.close()
    out["continual"] = rows
    return rows


def part_cost(path: str, X, P, Q, T, seed: int, out: dict) -> list:
    from agentdb.learning import Learner, LearningConfig

    cfg = LearningConfig()
    tp = targets(X, P, T)
    m = min(500, len(P))
    neg = np.argpartition(-(P[:m] @ X.T), cfg.negatives, axis=1)[:, :cfg.negatives]
    learner = Learner(X.shape[1], cfg)
    times = []
    for i in range(m):
        negs = X[[j for j in neg[i] if j != tp[i]][:cfg.negatives]]
        t0 = time.perf_counter()
        learner.learn(P[i], X[tp[i]], negs, 1.0)
        times.append(time.perf_counter() - t0)
    upd = statistics.median(times[50:]) * 1e6
    fb = statistics.median(out["feedback_seconds"][50:]) * 1e6
    db = agentdb.open(path, progress=False)  # the adapter left by the previous part
    train(db, P, tp, 200, np.arange(len(P)))  # make sure it is active
    lat: dict[bool, list[float]] = {True: [], False: []}
    for j, q in enumerate(Q):
        for adapt in ((True, False) if j % 2 else (False, True)):  # alternate the order
            t0 = time.perf_counter()
            db.search_patterns(q, k=10, adapt=adapt)
            lat[adapt].append(time.perf_counter() - t0)
    lat_on, lat_off = lat[True], lat[False]
    apply_t = []
    for q in Q[:500]:
        t0 = time.perf_counter()
        db.learning.apply(q)
        apply_t.append(time.perf_counter() - t0)
    db.close()
    on, off = statistics.median(lat_on) * 1e6, statistics.median(lat_off) * 1e6
    ap = statistics.median(apply_t) * 1e6
    out["cost_us"] = {"update": upd, "feedback": fb, "search_adapted": on, "search_raw": off,
                      "apply": ap}
    return [["adapter update (Learner.learn: grad + EWC + Adam), rank 8, d=384", f"{upd:.0f}"],
            ["db.feedback (search for 16 negatives + vectors + update)", f"{fb:.0f}"],
            ["search_patterns k=10, adapter active", f"{on:.0f}"],
            ["search_patterns k=10, adapt=False", f"{off:.0f}"],
            ["adapter apply alone (per query)", f"{ap:.1f}"]]


def part_federated(path: str, X, P, Q, T, n_events: int, n_agents: int, n_rounds: int,
                   n_poisoned: int, server_lr: float, seed: int, out: dict) -> list:
    from agentdb.learning import (
        AdapterUpdate,
        EphemeralLearningAgent,
        FederatedLearningCoordinator,
    )

    tp, tq = targets(X, P, T), targets(X, Q, T)
    order = np.random.default_rng(seed + 3).permutation(len(P))
    events = order[np.arange(n_events) % len(order)]
    slices = np.array_split(events, n_agents)  # agent a's events, all rounds
    rng = np.random.default_rng(seed + 4)
    d = X.shape[1]

    def federate(outlier_k: float | None) -> tuple[float, dict[str, str], float]:
        db = agentdb.open(path, learning={"reset": True}, progress=False)
        coord = FederatedLearningCoordinator(db, outlier_k=outlier_k, server_lr=server_lr)
        rejected: dict[str, str] = {}
        t_merge: list[float] = []
        for r in range(n_rounds):
            for a in range(n_agents):
                agent = EphemeralLearningAgent(db, agent_id=f"agent{a}-r{r}")
                for i in np.array_split(slices[a], n_rounds)[r]:
                    agent.feedback(P[i], int(tp[i]) + 1, 1.0)
                coord.submit(agent.update())
            honest = np.median([u.norm() for u in coord.updates])
            for b in range(n_poisoned):
                left = rng.standard_normal((d, 16))
                right = rng.standard_normal((16, d))
                scale = np.sqrt(50 * honest / np.linalg.norm(left @ right))
                coord.submit(AdapterUpdate(f"poisoned{b}-r{r}", left * scale, right * scale,
                                           count=len(slices[0]), quality=1.0,
                                           base_fingerprint=coord.updates[0].base_fingerprint))
            t0 = time.perf_counter()
            res = coord.merge()
            t_merge.append(time.perf_counter() - t0)
            rejected.update(res.rejected)
            coord.publish(db, res)
        rec = recall10(db, Q, tq)
        db.close()
        return rec, rejected, statistics.median(t_merge)

    log("federated: with outlier rejection")
    fed, rejected, t_merge = federate(3.0)
    log("federated: without outlier rejection")
    fed_open, rej_open, _ = federate(None)
    log("federated: one agent alone")
    db = agentdb.open(path, learning={"reset": True}, progress=False)
    agent = EphemeralLearningAgent(db, agent_id="alone")
    for i in slices[0]:
        agent.feedback(P[i], int(tp[i]) + 1, 1.0)
    agent_db_rec = 0.0
    hits = 0
    for q, t in zip(Q, tq):
        hits += (int(t) + 1) in [r.id for r in agent.search(q, k=10)]
    agent_db_rec = hits / len(Q)
    log("federated: central training on all events")
    train(db, P, tp, n_events, order)
    central = recall10(db, Q, tq)
    db.close()
    poisoned_rejected = sorted(a for a in rejected if a.startswith("poisoned"))
    honest_rejected = sorted(a for a in rejected if not a.startswith("poisoned"))
    out["federated"] = {"merged": fed, "merged_no_rejection": fed_open, "single_agent":
                        agent_db_rec, "central": central, "rejected": rejected,
                        "rejected_without_rule": rej_open, "merge_seconds": t_merge}
    total_p = n_poisoned * n_rounds
    return [
        [f"one agent alone ({len(slices[0])} events)", fmt(agent_db_rec), "-"],
        [f"federated: {n_agents} agents x {n_rounds} rounds + {n_poisoned} poisoned/round"
         f", server_lr {server_lr:g}",
         fmt(fed), f"{len(poisoned_rejected)}/{total_p} poisoned, "
                   f"{len(honest_rejected)}/{n_agents * n_rounds} honest"],
        ["same, outlier rejection off", fmt(fed_open), f"{len(rej_open)} rejected"],
        [f"central: one learner, all {n_events} events", fmt(central), "-"],
        ["merge (screen + weight + SVD re-factor), median ms per round",
         f"{t_merge * 1e3:.1f}", "-"],
    ]


def part_rerank(tmp: str, X: np.ndarray, Q: np.ndarray, seed: int, out: dict) -> list:
    """Attention re-ranking in ``search_patterns`` on real queries: recall@10 against the
    exact cosine top-10 of the stored rows (plain HNSW vs ``rerank="attention"`` with 1, 4
    and 8 heads over 40 candidates), and, with rewards drawn U(-1, 1) per pattern, the mean
    reward of the top 10 and the recall of the exact top-10 among the *good* patterns
    (reward >= 0.5), for plain search, ``rerank="attention+reward"`` and the hard filter
    ``min_reward=0.5``; median latency per search."""
    rng = np.random.default_rng(seed + 3)
    rewards = rng.uniform(-1, 1, len(X))
    path = str(Path(tmp) / "rerank.db")
    db = agentdb.open(path, dim=X.shape[1], durability="normal", progress=False,
                      learning=False)
    for s in range(0, len(X), 5000):
        db.store_patterns([{"task": f"p{i}", "embedding": X[i], "id": i + 1,
                            "reward": float(rewards[i])} for i in range(s, min(s + 5000, len(X)))])
    good = rewards >= 0.5
    gt, gt_good = [], []
    for s in range(0, len(Q), 256):
        sims = Q[s:s + 256] @ X.T
        gt += [set((np.argsort(-row)[:10] + 1).tolist()) for row in sims]
        sims[:, ~good] = -np.inf
        gt_good += [set((np.argsort(-row)[:10] + 1).tolist()) for row in sims]
    configs: list[tuple[str, dict[str, Any]]] = [
        ("plain HNSW (ef 64)", {}),
        ("rerank='attention', heads=1, 40 candidates", {"rerank": "attention", "heads": 1}),
        ("rerank='attention', heads=4", {"rerank": "attention", "heads": 4}),
        ("rerank='attention', heads=8", {"rerank": "attention", "heads": 8}),
        ("rerank='attention+reward', heads=1", {"rerank": "attention+reward", "heads": 1}),
        ("filter min_reward=0.5", {"min_reward": 0.5}),
    ]
    rows, res = [], {}
    for label, kw in configs:
        rec = rec_good = reward = 0.0
        times = []
        for j, q in enumerate(Q):
            t0 = time.perf_counter()
            hits = db.search_patterns(q, k=10, **kw)
            times.append(time.perf_counter() - t0)
            ids = [h.id for h in hits]
            rec += len(gt[j] & set(ids)) / 10
            rec_good += len(gt_good[j] & set(ids)) / 10
            reward += float(np.mean([rewards[i - 1] for i in ids]))
        m = len(Q)
        res[label] = {"recall": rec / m, "recall_good": rec_good / m,
                      "mean_reward": reward / m, "us": 1e6 * statistics.median(times)}
        rows.append([label, fmt(rec / m), fmt(rec_good / m), f"{reward / m:+.3f}",
                     f"{1e6 * statistics.median(times):.0f}"])
    db.close()
    out["rerank"] = res
    return rows


def part_attention(quick: bool, out: dict) -> None:
    try:
        from attention import kernel_table  # type: ignore[import-not-found]
    except ImportError as exc:
        print(f"## Attention kernels\n(benchmarks/attention.py with kernel_table() is not "
              f"available: {exc})\n")
        return
    try:
        rows = kernel_table(agentdb, quick=quick)
    except Exception as exc:  # noqa: BLE001 - report it, keep the learning numbers
        print(f"## Attention kernels\nkernel_table() failed: {exc!r}\n")
        return
    out["attention"] = rows
    if rows:
        headers = list(rows[0])
        print_table("Attention kernels vs numpy (benchmarks/attention.py)", headers,
                    [[f"{v:.4g}" if isinstance(v, float) else v for v in
                      (r.get(h) for h in headers)] for r in rows])


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="20,000 stored rows, 5,000 training queries, fewer steps")
    ap.add_argument("--n", type=int, default=None, help="stored rows (default 90000)")
    ap.add_argument("--pool", type=int, default=None, help="training queries (default 10000)")
    ap.add_argument("--steps", default=None, help="feedback counts (default 100,500,2000)")
    ap.add_argument("--task-steps", type=int, default=None,
                    help="feedback events per continual task (default 2000)")
    ap.add_argument("--lambdas", default="0,10,30",
                    help="EWC lambdas for the continual table (0 = off; 30 is the default)")
    ap.add_argument("--alpha", type=float, default=4.0, help="magnitude of the hidden T")
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--poisoned", type=int, default=2)
    ap.add_argument("--server-lr", type=float, default=1.0,
                    help="federated step: base + server_lr x weighted mean update")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--skip", default="",
                    help="parts to skip: continual,federated,rerank,attention")
    ap.add_argument("--json", type=Path, default=None)
    add_backend_options(ap)
    args = ap.parse_args(argv)
    skip = set(parse_csv(args.skip))
    global agentdb
    agentdb, note = import_agentdb(args.src)
    if "attention" not in skip:
        require_native_for_peers(agentdb, args.allow_fallback,
                                 "the attention kernels vs numpy (table 5)",
                                 hint="Or pass --skip attention to run only the learning tables.")
    if not (args.data / "base.f16.npy").exists():
        print(f"data set not found: {args.data}", file=sys.stderr)
        return 2
    n = args.n or (20_000 if args.quick else 90_000)
    pool = args.pool or (5_000 if args.quick else 10_000)
    steps = parse_csv(args.steps, int) if args.steps else [100, 500, 2000]
    n_task = args.task_steps or 2000
    env = environment(agentdb, note)
    print_header("AgentDB learning memory: LoRA query adapter, EWC++, federated merge", env)
    X, P, Q = load(args.data, n, pool)
    out: dict[str, Any] = {"env": env, "n": n, "pool": pool, "alpha": args.alpha}
    rng = np.random.default_rng(args.seed)
    V, U = subspaces(X, rng)
    T = args.alpha * U @ V.T
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "learning.db")
        log(f"storing {n} patterns")
        secs = build_store(path, X)
        print(f"store: {n} MiniLM patterns ({secs:.1f} s to build), training queries: {pool} "
              f"corpus rows not stored, held-out: {len(Q)} real queries\n")
        t_start = time.perf_counter()
        rows = part_single(path, X, P, Q, T, steps, args.seed, out)
        pct = out["target_rank_percentiles"]
        print_table(
            "Recall@10 of the feedback-defined target on held-out queries",
            ["", "feedback events", "recall@10 (HNSW)", "recall@10 (exact search)"], rows,
            note=(f"target's rank under raw cosine (held-out): p10 {pct[10]}, p25 {pct[25]}, "
                  f"median {pct[50]}, p75 {pct[75]}, p90 {pct[90]}; in the raw top 10: "
                  f"{out['target_rank_in_top10']:.1%}\nhidden T: rank 8, alpha "
                  f"{args.alpha:g}; learning defaults (rank 8, lr 2e-3, tau 0.05, 16 negatives)"))
        if "continual" not in skip:
            lambdas = parse_csv(args.lambdas, float)
            rows = part_continual(path, X, P, Q, V, U, args.alpha, n_task, lambdas,
                                  args.seed, out)
            sz = out["continual_sizes"]
            print_table(
                "Continual learning: task A, consolidate, then task B (recall@10, held-out)",
                ["", "A before", "A after A", "A after B", "B after B"], rows,
                note=(f"{n_task} feedback events per task; regions by 2-means: train A "
                      f"{sz['train_A']} / B {sz['train_B']}, held-out A {sz['heldout_A']} / "
                      f"B {sz['heldout_B']}; T_A, T_B rank 4 on disjoint subspaces"))
        rows = part_cost(path, X, P, Q, T, args.seed, out)
        print_table("Cost (median microseconds)", ["", "us"], rows)
        if "federated" not in skip:
            rows = part_federated(path, X, P, Q, T, max(steps), args.agents, args.rounds,
                                  args.poisoned, args.server_lr, args.seed, out)
            print_table("Federated learning (recall@10, held-out, same task as table 1)",
                        ["", "recall@10", "rejected"], rows)
            rej = out["federated"]["rejected"]
            if rej:
                print("rejections:")
                for a, why in sorted(rej.items()):
                    print(f"  {a}: {why}")
                print()
        if "rerank" not in skip:
            log("attention re-ranking on real queries")
            rows = part_rerank(tmp, X, Q, args.seed, out)
            print_table("Attention re-ranking in search_patterns (1,000 real queries, k=10)",
                        ["", "recall@10 (exact cosine)", "recall@10 (good: reward >= 0.5)",
                         "mean reward@10", "us/search"], rows,
                        note="rewards U(-1, 1) per pattern; 'good' ground truth: exact "
                             "cosine top-10 among patterns with reward >= 0.5")
        print(f"learning parts took {time.perf_counter() - t_start:.0f} s\n")
    if "attention" not in skip:
        part_attention(args.quick, out)
    if args.json:
        out.pop("feedback_seconds", None)
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
