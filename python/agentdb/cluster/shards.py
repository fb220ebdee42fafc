"""The shards of a :class:`~agentdb.cluster.db.ClusterDB`: placement groups, replica actors
and their handles, readiness, status, and the online ring changes (``add_shard``,
``remove_shard``) and log compaction that act on them.

One detached placement group per shard (``"{namespace}/shard{s}/pg"``) with ``replicas``
bundles; replicas are detached Ray actors named ``"{namespace}/shard{s}/replica{r}"``. See
the :mod:`agentdb.cluster.db` docstring for placement and rebalancing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..errors import ClusterError, InvalidArgumentError, InvalidTypeError
from .log import ClusterLog
from .replica import remote_class
from .ring import HashRing

__all__ = ["ClusterUnavailable", "Shards"]

log = logging.getLogger("agentdb.cluster")

_BUNDLE_CPU = 0.01


class ClusterUnavailable(ClusterError):
    """No replica of some shard could answer within the deadline."""


class Shards:
    """The replica actors of every shard on ``ring`` and the routing to them.

    ``routing`` maps each shard to its replicas' actor handles; ``ring`` and ``routing``
    change together under ``lock``. ``config`` is the replicas' configuration (PostgreSQL,
    index parameters), completed per replica with its shard, replica number and ring.
    ``created`` / ``created_pgs`` name the actors and placement groups this object created
    (what :meth:`remove_created` removes). No Ray call happens before :meth:`start`.
    """

    def __init__(self, cluster_log: ClusterLog, ring: HashRing, *, namespace: str,
                 replicas: int, placement: str, ready_timeout: float,
                 config: dict[str, Any]) -> None:
        self.log = cluster_log
        self.ring = ring
        self.namespace = namespace
        self.replicas = replicas
        self.placement = placement
        self.ready_timeout = ready_timeout
        self.config = config
        self.lock = threading.RLock()
        self.routing: dict[int, list[Any]] = {}
        self.created: list[str] = []
        self.created_pgs: list[str] = []

    def start(self) -> None:
        """Find or create the replicas of every shard on the ring and wait until each shard
        has a ready replica (within ``ready_timeout``)."""
        self.routing = {s: self.ensure_shard(s, self.ring) for s in self.ring.shards}
        self.wait_ready(list(self.ring.shards), self.ready_timeout, every=False)

    def snapshot(self) -> tuple[HashRing, dict[int, list[Any]]]:
        """The ring and a copy of the routing, read together."""
        with self.lock:
            return self.ring, dict(self.routing)

    def remove_created(self) -> None:
        """Kill the actors and remove the placement groups this object created (others'
        stay)."""
        for name in self.created:
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
            except Exception:  # already gone
                pass
        for name in self.created_pgs:
            try:
                ray.util.remove_placement_group(ray.util.get_placement_group(name))
            except Exception:
                pass

    def actor_name(self, shard: int, replica: int) -> str:
        """The Ray actor name of one replica."""
        return f"{self.namespace}/shard{shard}/replica{replica}"

    def _placement_group(self, shard: int) -> Any:
        name = f"{self.namespace}/shard{shard}/pg"
        try:
            return ray.util.get_placement_group(name)
        except ValueError:
            pass
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        strategy = {"spread": "SPREAD", "strict_spread": "STRICT_SPREAD"}.get(
            self.placement, "STRICT_SPREAD" if alive >= self.replicas else "SPREAD")
        pg = placement_group([{"CPU": _BUNDLE_CPU}] * self.replicas, strategy=strategy,
                             name=name, lifetime="detached")
        try:
            ray.get(pg.ready(), timeout=self.ready_timeout)
        except ray.exceptions.GetTimeoutError:
            ray.util.remove_placement_group(pg)
            raise ClusterUnavailable(f"placement group {name} ({strategy}, {self.replicas} x "
                                     f"{_BUNDLE_CPU} CPU) not schedulable within "
                                     f"{self.ready_timeout:g}s") from None
        self.created_pgs.append(name)
        return pg

    def ensure_shard(self, shard: int, ring: HashRing) -> list[Any]:
        """Handles of a shard's replicas, creating missing actors (idempotent)."""
        pg = self._placement_group(shard)
        cls = remote_class()
        handles = []
        for r in range(self.replicas):
            name = self.actor_name(shard, r)
            try:
                handles.append(ray.get_actor(name, namespace=self.namespace))
                continue
            except ValueError:
                pass
            cfg = dict(self.config, shard=shard, replica=r, ring=ring.to_dict())
            handles.append(cls.options(
                name=name, namespace=self.namespace, lifetime="detached", get_if_exists=True,
                num_cpus=_BUNDLE_CPU,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=r)).remote(cfg))
            self.created.append(name)
        return handles

    def wait_ready(self, shards: list[int], timeout: float, every: bool) -> None:
        """Wait until each shard has one ready replica (``every``: all replicas ready)."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses(shards, 2.0)
            pending = []
            for s in shards:
                states = [st.get("state") for st in statuses[s]]
                ok = (all(x == "ready" for x in states) if every
                      else any(x == "ready" for x in states))
                if not ok:
                    pending.append((s, states))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"shards not ready after {timeout:g}s: {pending}")
            time.sleep(0.2)

    def statuses(self, shards: list[int], timeout: float) -> dict[int, list[dict[str, Any]]]:
        """``status()`` of every replica of ``shards``, asked in parallel; a replica that
        does not answer within ``timeout`` is reported ``unreachable``."""
        refs: dict[tuple[int, int], Any] = {}
        for s in shards:
            handles = self.routing.get(s) or [self.get_actor(s, r)
                                               for r in range(self.replicas)]
            for r, h in enumerate(handles):
                refs[(s, r)] = (None if h is None else
                                h.status.options(concurrency_group="control").remote())
        deadline = time.monotonic() + timeout
        out: dict[int, list[dict[str, Any]]] = {s: [] for s in shards}
        for (s, r), ref in refs.items():
            st: dict[str, Any] = {"shard": s, "replica": r, "state": "missing",
                                  "alive": False}
            if ref is not None:
                try:
                    left = max(0.01, deadline - time.monotonic())
                    st = dict(ray.get(ref, timeout=left), alive=True)
                except Exception as exc:
                    st = {"shard": s, "replica": r, "state": "unreachable", "alive": False,
                          "error": f"{type(exc).__name__}: {exc}"[:300]}
            out[s].append(st)
        return out

    def get_actor(self, shard: int, replica: int) -> Any:
        """The handle of a replica actor found by name, or None when it does not exist."""
        try:
            return ray.get_actor(self.actor_name(shard, replica), namespace=self.namespace)
        except ValueError:
            return None

    def reload_ring(self) -> bool:
        """Route by the ring stored in PostgreSQL; True when it differs from this handle's."""
        stored = self.log.load_ring()
        if stored is None:
            return False
        ring = HashRing.from_dict(stored)
        with self.lock:
            if ring == self.ring:
                return False
            routing = dict(self.routing)
            for s in ring.shards:
                if s not in routing:
                    handles = [self.get_actor(s, r) for r in range(self.replicas)]
                    routing[s] = [h for h in handles if h is not None]
            self.routing = {s: routing[s] for s in ring.shards}
            self.ring = ring
        return True

    def add_shard(self) -> int:
        """Add a shard online (see :meth:`ClusterDB.add_shard
        <agentdb.cluster.db.ClusterDB.add_shard>`); returns its id."""
        self.reload_ring()
        with self.lock:
            old = self.ring
        new_id = max(old.shards) + 1
        while self.get_actor(new_id, 0) is not None:  # a removed shard's name may linger
            new_id += 1
        new = old.with_shard(new_id)
        handles = self.ensure_shard(new_id, new)
        tmp_routing = {**self.routing, new_id: handles}
        saved = self.routing
        self.routing = tmp_routing  # so wait_ready can find them; searches use self.ring
        try:
            self.wait_ready([new_id], self.ready_timeout, every=True)
        except BaseException:
            self.routing = saved
            raise
        self.log.store_ring(new.to_dict())
        with self.lock:
            self.ring = new
            self.routing = tmp_routing
        refs = [h.set_ring.options(concurrency_group="control").remote(new.to_dict())
                for s in old.shards for h in tmp_routing[s]]
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except Exception as exc:  # a dead replica rebuilds with the stored ring
                log.warning("set_ring failed on a replica: %s", exc)
        return new_id

    def remove_shard(self, shard: int | None = None, timeout: float | None = None
                     ) -> dict[str, Any]:
        """Remove a shard online (default: the highest id); its keys move to the others.

        Every replica of the remaining shards first loads the records (and graph edges) it
        gains from PostgreSQL and starts routing by the smaller ring, while searches keep
        going to the old shard; then the ring is stored, this handle switches, and the
        removed shard's replicas and placement group are deleted. Another handle notices on
        its next call (a shard it names is gone) and reloads the ring.

        Refuses (``ClusterUnavailable``, nothing changed) unless every replica of the
        remaining shards is ready, and (``ValueError``) to remove the last shard or an
        unknown one. Returns ``{"shard", "ring", "loaded"}`` (records loaded per replica).
        """
        self.reload_ring()
        with self.lock:
            old = self.ring
        if shard is not None and (isinstance(shard, bool)
                                  or not isinstance(shard, (int, np.integer))):
            raise InvalidTypeError(f"shard must be a shard id (int) or None, got {shard!r}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InvalidArgumentError(
                f"timeout must be a positive number of seconds, got {timeout!r}")
        sid = max(old.shards) if shard is None else int(shard)
        if sid not in old.shards:
            raise InvalidArgumentError(f"shard {sid} is not on the ring {old.shards}")
        if len(old.shards) == 1:
            raise InvalidArgumentError("cannot remove the last shard of a cluster")
        new = old.without_shard(sid)
        wait = self.ready_timeout if timeout is None else float(timeout)
        keep = list(new.shards)
        statuses = self.statuses(keep, 5.0)
        bad = [(s, st.get("replica"), st.get("state")) for s in keep for st in statuses[s]
               if st.get("state") != "ready"]
        if bad:
            raise ClusterUnavailable(f"cannot remove shard {sid}: replicas not ready "
                                     f"(shard, replica, state): {bad}")
        handles = {(s, r): h for s in keep for r, h in enumerate(self.routing[s])}
        refs = {key: h.set_ring.options(concurrency_group="control").remote(new.to_dict())
                for key, h in handles.items()}
        loaded, failed = {}, {}
        for key, ref in refs.items():
            try:
                loaded[f"{key[0]}/{key[1]}"] = ray.get(ref, timeout=wait)["loaded"]
            except Exception as exc:
                failed[key] = f"{type(exc).__name__}: {exc}"[:300]
        if failed:  # undo: the replicas that switched drop the keys they loaded
            for key in loaded:
                s, r = (int(x) for x in key.split("/"))
                try:
                    ray.get(handles[(s, r)].set_ring.options(concurrency_group="control")
                            .remote(old.to_dict()), timeout=wait)
                except Exception as exc:  # pragma: no cover - it rebuilds by the stored ring
                    log.warning("could not restore the ring on shard %s replica %s: %s",
                                s, r, exc)
            raise ClusterUnavailable(f"cannot remove shard {sid}: replicas failed to take "
                                     f"its keys: {failed}")
        self.log.store_ring(new.to_dict())
        with self.lock:
            self.ring = new
            self.routing = {s: self.routing[s] for s in keep}
        # a replica that restarted meanwhile rebuilt by the old ring: move it too
        for s, reps in self.statuses(keep, 5.0).items():
            for st in reps:
                if st.get("state") == "ready" and st.get("ring_shards") != keep:
                    ray.get(handles[(s, int(st["replica"]))].set_ring.options(
                        concurrency_group="control").remote(new.to_dict()), timeout=wait)
        for r in range(self.replicas):
            actor = self.get_actor(sid, r)
            if actor is not None:
                ray.kill(actor, no_restart=True)
        try:
            ray.util.remove_placement_group(
                ray.util.get_placement_group(f"{self.namespace}/shard{sid}/pg"))
        except ValueError:  # already gone
            pass
        return {"shard": sid, "ring": new.to_dict(), "loaded": loaded}

    def compact_log(self, timeout: float = 5.0) -> dict[str, int]:
        """Delete the log entries every replica has applied, so the log does not grow without
        bound; returns ``{"deleted", "upto", "oldest"}`` (the oldest seq kept).

        Safe because a replica that (re)starts rebuilds from the tables and only replays the
        log from the position it read them at. Entries are kept unless *every* replica of
        every shard answers its status: a replica that cannot be asked might be alive and
        behind (it is then ``ClusterUnavailable``), and a replica still building holds the
        minimum at its start position.
        """
        self.reload_ring()
        statuses = self.statuses(list(self.ring.shards), timeout)
        applied = []
        for s, reps in statuses.items():
            for st in reps:
                if not st.get("alive") or st.get("applied_seq") is None:
                    raise ClusterUnavailable(
                        f"cannot compact the log: shard {s} replica {st.get('replica')} is "
                        f"{st.get('state')} ({st.get('error') or st.get('last_error')})")
                applied.append(int(st["applied_seq"]) if st.get("state") == "ready" else 0)
        upto = min(applied, default=0)
        deleted = self.log.truncate(upto) if upto > 0 else 0
        return {"deleted": deleted, "upto": upto, "oldest": self.log.min_seq()}

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """Log position, ring, every replica (state, applied seq, lag, node) and the nodes."""
        self.reload_ring()
        seq = self.log.max_seq()
        shards = []
        statuses = self.statuses(list(self.ring.shards), timeout)
        for s in self.ring.shards:
            reps = []
            for st in statuses[s]:
                applied = st.get("applied_seq")
                reps.append({
                    "replica": st.get("replica"), "state": st.get("state"),
                    "applied_seq": applied,
                    "lag": None if applied is None else max(0, seq - int(applied)),
                    "vectors": st.get("vectors"), "graph": st.get("graph"),
                    "node_id": st.get("node_id"),
                    "node_ip": st.get("node_ip"), "pid": st.get("pid"),
                    "alive": bool(st.get("alive")), "last_error": st.get("last_error"),
                    "error": st.get("error")})
            shards.append({"shard": s, "replicas": reps})
        nodes = [{"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
                  "alive": bool(n.get("Alive")), "resources": n.get("Resources", {})}
                 for n in ray.nodes()]
        return {"log_seq": seq, "ring": self.ring.to_dict(), "namespace": self.namespace,
                "shards": shards, "nodes": nodes}

