"""The cluster's log loses its PostgreSQL primary: how long until writes resume, what failed,
what was lost (benchmarks/failover.py).

Setup: :class:`agentdb.cluster.pg_ha.LocalHAPostgres` in a temporary folder -- one primary and
``--standbys`` synchronous standbys under Patroni with a one-member etcd, all on 127.0.0.1 --
and a ``ClusterDB`` (``--shards`` x ``--replicas`` on a local Ray) over its multi-host URL.
The first ``--n`` vectors of ``../shared/data/minilm-pypi-100k`` are stored first; during the
run one writer thread stores the next vectors one by one (``store_pattern``, each commit
acknowledged only once a standby has it) and one searcher thread looks for the last
acknowledged vector (``search_ids(k=3, ef=256, min_seq=last_seq)``: read-your-writes).

Each of ``--kills`` rounds waits until the group is whole again (every standby streaming, one
synchronous), lets the load run ``--steady`` seconds, then kills:

* ``postgres`` (default): ``kill -9`` of the primary's PostgreSQL server; its Patroni sees
  the crash within a second and hands the leader lock to the synchronous standby
  (``primary_start_timeout: 0``);
* ``member``: ``kill -9`` of the primary's Patroni *and* its server, a lost machine; the
  lock expires after Patroni's ``ttl`` (20 s, its minimum) before a standby takes it; the
  member is started again after the round.

Reported per round: seconds from the kill until Patroni reports a new primary running (polled
every ~20 ms until writes resume; ``-`` if writes resumed first), seconds from the kill to the
acknowledgement of the first write issued after it (writes resume), the writes that raised
meanwhile (all must be ``StoreError``; the commonest messages are listed), searches answered
and raised, wrong answers (a search for an acknowledged vector that does not find it first),
and the new primary. At the end every replica must reach the log's end, and every
acknowledged write must be in PostgreSQL and found by a search: the ``lost`` column.

Examples::

    python benchmarks/failover.py --src                  # 3 kills of the primary server
    python benchmarks/failover.py --src --mode member --kills 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    PRINTED_TABLES,
    add_backend_options,
    environment,
    fmt_float,
    import_agentdb,
    load_dataset,
    log,
    module_version,
    print_header,
    print_table,
    write_json,
)


class Load:
    """One writer and one searcher on a ClusterDB; everything they saw, with times."""

    def __init__(self, db: Any, vectors: np.ndarray, known: set[int]) -> None:
        self.db, self.vectors = db, vectors
        self.acked: dict[int, int] = {}  # id -> row of ``vectors``
        self.acked_at: list[float] = []
        self.started_at: list[float] = []  # when each acknowledged write was issued
        self.failed: list[tuple[float, BaseException]] = []
        self.answered: list[float] = []
        self.search_failed: list[float] = []
        self.search_errors: list[BaseException] = []
        self.wrong: list[str] = []
        self.known = known
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, daemon=True),
                        threading.Thread(target=self._search, daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _write(self) -> None:
        i = 0
        while not self.stop.is_set() and i < len(self.vectors):
            t0 = time.monotonic()
            try:
                rid = self.db.store_pattern(f"failover write {i}", embedding=self.vectors[i])
            except Exception as exc:  # noqa: BLE001 - counted and typed by the report
                self.failed.append((time.monotonic(), exc))
                i += 1  # a write that raised may still have committed: never store its
                time.sleep(0.05)  # vector again, or a search could rightly find that copy
                continue
            self.acked[rid] = i
            self.acked_at.append(time.monotonic())
            self.started_at.append(t0)
            i += 1
            time.sleep(0.01)

    def _search(self) -> None:
        while not self.stop.is_set():
            if not self.acked:
                time.sleep(0.02)
                continue
            rid, row = next(reversed(self.acked.items()))
            try:
                ids, _ = self.db.search_ids("patterns", self.vectors[row], k=3, ef=256,
                                            min_seq=self.db.last_seq)
            except Exception as exc:  # noqa: BLE001 - counted by the report
                self.search_failed.append(time.monotonic())
                self.search_errors.append(exc)
                time.sleep(0.05)
                continue
            self.answered.append(time.monotonic())
            if int(ids[0]) != rid:
                self.wrong.append(f"searched for {rid}, got {ids.tolist()}")
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="rows stored first (default 5000)")
    p.add_argument("--kills", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--mode", choices=["postgres", "member"], default="postgres")
    p.add_argument("--standbys", type=int, default=1, help="synchronous standbys (default 1)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--steady", type=float, default=3.0, help="seconds of load before a kill")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write the tables to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)
    agentdb, note = import_agentdb(args.src)
    from agentdb.cluster import ClusterDB
    from agentdb.cluster.pg_ha import LocalHAPostgres
    from agentdb.errors import StoreError

    print_header("AgentDB cluster: PostgreSQL failover under load (benchmarks/failover.py)",
                 environment(agentdb, note, {"patroni": module_version(None, "patroni")}))
    data = load_dataset(min(100_000, args.n + 20_000), 10, args.data)
    base, extra = data.base[: args.n], data.base[args.n:]
    with tempfile.TemporaryDirectory(prefix="agentdb-failover-") as tmp:
        ha = LocalHAPostgres(Path(tmp) / "ha", standbys=args.standbys, echo=log)
        t0 = time.monotonic()
        url = ha.start()
        log(f"PostgreSQL group ready in {time.monotonic() - t0:.1f}s")
        db = None
        try:
            db = ClusterDB(None, url, shards=args.shards, replicas=args.replicas,
                           dim=base.shape[1], pgvector_index=False, namespace="failover",
                           search_timeout=10.0)
            known: set[int] = set()
            for lo in range(0, len(base), 1000):
                known |= set(db.store_patterns([{"task": f"row {i}", "embedding": base[i]}
                                                for i in range(lo, min(lo + 1000, len(base)))]))
            load = Load(db, extra, known)
            load.start()
            rows = []
            resumes = []
            for r in range(args.kills):
                ha.wait_ready(180)
                time.sleep(args.steady)
                before = ha.primary()
                failed0, sfail0 = len(load.failed), len(load.search_failed)
                answered0 = len(load.answered)
                if args.mode == "postgres":
                    old = ha.kill_postgres()
                else:
                    old = str(before["name"]) if before else "?"
                    ha.kill_member(old)
                t_kill = time.monotonic()
                deadline = t_kill + 120
                promoted = None  # when Patroni reports a new primary running
                while time.monotonic() < deadline and not any(
                        t > t_kill for t in load.started_at):
                    if promoted is None:
                        now_primary = ha.primary()
                        if now_primary and now_primary["name"] != old:
                            promoted = time.monotonic() - t_kill
                    time.sleep(0.02)
                # the first write issued after the kill (one issued before it may still be
                # acknowledged after it: it had committed on the old primary and its standby)
                after = [a for a, t in zip(load.acked_at, load.started_at) if t > t_kill]
                resume = after[0] - t_kill if after else None
                time.sleep(1.0)
                new = ha.primary()
                if resume is not None:
                    resumes.append(resume)
                gaps = np.diff([t for t in load.answered if t > t_kill - 1]) if len(
                    load.answered) > 1 else np.array([0.0])
                rows.append([str(r + 1), f"{old} -> {new['name'] if new else '?'}",
                             fmt_float(promoted, 2), fmt_float(resume, 2),
                             str(len(load.failed) - failed0),
                             str(len(load.answered) - answered0),
                             str(len(load.search_failed) - sfail0),
                             fmt_float(float(gaps.max()) if len(gaps) else None, 2)])
                log(f"round {r + 1}: writes resumed after {resume}s")
                if args.mode == "member":
                    ha.start()  # the lost machine comes back (as a standby)
            load.join()
            ha.wait_ready(180)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                st = db.status()
                reps = [x for s in st["shards"] for x in s["replicas"]]
                if all(x["state"] == "ready" and x["applied_seq"] == st["log_seq"]
                       for x in reps):
                    break
                time.sleep(0.3)
            else:
                raise SystemExit(f"replicas did not reach the log's end: {st}")
            present = db.store.existing("patterns", list(load.acked))
            lost = [rid for rid in load.acked if rid not in present]
            missed = 0
            for rid, row in list(load.acked.items())[:: max(1, len(load.acked) // 200)]:
                ids, _ = db.search_ids("patterns", extra[row], k=1, ef=256)
                missed += int(ids[0]) != rid
            typed = all(isinstance(e, StoreError) for _, e in load.failed)
            why = Counter(" ".join(str(e).split())[:90] for _, e in load.failed)
            why_s = Counter(f"{type(e).__name__}: {' '.join(str(e).split())[:80]}"
                            for e in load.search_errors)
            print_table(
                f"kill -9 of the primary's {'server' if args.mode == 'postgres' else 'member'}"
                f" under load ({args.standbys} synchronous standby(s), cluster "
                f"{args.shards}x{args.replicas}, {args.n:,} rows + a writer)",
                ["round", "primary", "new primary s", "writes resume s", "writes raised",
                 "searches answered", "searches raised", "longest search gap s"], rows,
                note=(f"median resume "
                      f"{fmt_float(statistics.median(resumes), 2) if resumes else '-'}"
                      f" s; {len(load.acked):,} writes acknowledged, {len(load.failed)} raised "
                      f"(all StoreError: {typed}"
                      f"{''.join(f'; {n} x {m!r}' for m, n in why.most_common(3))}); "
                      f"lost acknowledged writes: "
                      f"{len(lost)}; sampled searches "
                      f"for acknowledged writes that missed: {missed}; wrong answers during "
                      f"the run: {len(load.wrong)}"
                      f"{''.join(f'; searches raised {n} x {m!r}' for m, n in why_s.items())}"
                      f"{' ' + str(load.wrong[:3]) if load.wrong else ''}"
                      f"; every replica at the log's end "
                      f"({st['log_seq']})"))
        finally:
            if db is not None:
                db.close(shutdown=True)
            ha.stop()
    if args.json:
        write_json(args.json, {"tables": PRINTED_TABLES})


if __name__ == "__main__":
    main()
