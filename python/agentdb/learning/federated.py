"""Federated learning of the query adapter: many short-lived agents learn locally, one
coordinator merges what they learned and publishes it to the store.

* :class:`EphemeralLearningAgent` copies the store's adapter, learns from its own session's
  feedback in memory (never writing to the store; a read-only store is fine) and hands back
  an :class:`AdapterUpdate`: its change ``dW = B'A' - BA`` (kept as low-rank factors), the
  number of feedback events and a quality (default: its mean reward mapped to [0, 1]).
* :class:`FederatedLearningCoordinator` takes updates built on the same base adapter,
  rejects bad ones (non-finite, wrong shape, another base, no examples, quality <= 0, an
  outlier norm, or a norm above ``max_norm``), averages the accepted ``dW``
  weighted by ``quality * count``, re-factors ``base + mean dW`` to rank ``r`` with a
  truncated SVD (balanced: ``B = U sqrt(S)``, ``A = sqrt(S) V^T``) and :meth:`publishes
  <FederatedLearningCoordinator.publish>` it as the store's adapter.
* Outlier rule (with at least ``min_for_outlier`` = 3 candidate updates): norms are compared
  on a log scale, where honest agents' spread is multiplicative: an update is rejected when
  ``log ||dW|| > median + outlier_k * max(1.4826 * MAD, 0.15)`` (``outlier_k`` 3: at least
  1.57x the median norm; ``outlier_k=None`` turns the rule off). A poisoned update with an
  ordinary norm is *not* caught.
* ``server_lr`` scales the merged step (``base + server_lr * weighted mean dW``; 1 = plain
  averaging, the measured best on ``benchmarks/learning.py``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> coord = FederatedLearningCoordinator(dim=16, rank=2)
>>> for n in range(4):
...     agent = EphemeralLearningAgent(coord.base, agent_id=f"a{n}")
...     for _ in range(5):
...         _ = agent.learn(rng.standard_normal(16), rng.standard_normal(16),
...                         rng.standard_normal((3, 16)), 1.0)
...     coord.submit(agent.update())
>>> result = coord.merge()
>>> len(result.accepted), result.rejected
(4, {})
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError
from .adapter import LoRAAdapter
from .learner import Learner, LearningConfig

__all__ = ["AdapterUpdate", "EphemeralLearningAgent", "FederatedLearningCoordinator",
           "MergeResult", "fingerprint", "refactor"]

_ids = itertools.count(1)


def fingerprint(adapter: LoRAAdapter) -> str:
    """A short hash of an adapter's parameters (updates must name the base they grew from).

    >>> len(fingerprint(LoRAAdapter(4, rank=1)))
    16
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(adapter.A, np.float64).tobytes())
    h.update(np.ascontiguousarray(adapter.B, np.float64).tobytes())
    return h.hexdigest()


@dataclass
class AdapterUpdate:
    """What one agent learned: ``dW = left @ right`` (dim x dim, never formed unless asked),
    how many feedback events (``count``) and how good its session was (``quality``)."""

    agent_id: str
    left: np.ndarray
    right: np.ndarray
    count: int
    quality: float
    base_fingerprint: str
    mean_reward: float = 0.0

    def delta(self) -> np.ndarray:
        """The dense ``dW`` (dim x dim)."""
        return self.left @ self.right

    def norm(self) -> float:
        """Frobenius norm of ``dW`` from the factors (nan/inf if they are not finite)."""
        with np.errstate(all="ignore"):
            val = float(np.sum((self.left.T @ self.left) * (self.right @ self.right.T)))
        return float(np.sqrt(val)) if val >= 0 else float("nan")


@dataclass
class MergeResult:
    """The merged adapter and the accounting: accepted agents with their weights (summing to
    1), rejected agents with the reason, every submitted norm, the outlier threshold used and
    the share of the merged update's energy the rank-``r`` re-factoring kept."""

    adapter: LoRAAdapter
    accepted: list[str]
    rejected: dict[str, str]
    weights: dict[str, float] = field(default_factory=dict)
    norms: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    energy_kept: float = 1.0


class EphemeralLearningAgent:
    """Learns a local copy of the query adapter from one session's feedback, in memory.

    ``base`` is an :class:`agentdb.AgentDB` (its current adapter and learning options; its
    patterns serve :meth:`feedback` and :meth:`search`, read only) or a
    :class:`~agentdb.learning.LoRAAdapter` (then feed vectors to :meth:`learn`, or pass
    ``db=`` as well). ``options`` override :class:`~agentdb.learning.LearningConfig` fields
    (``lr``, ``tau``, ``negatives``, ...; the rank is the base's).
    """

    def __init__(self, base: Any, *, db: Any = None, agent_id: str | None = None,
                 **options: Any) -> None:
        if isinstance(base, LoRAAdapter):
            adapter, config = base.copy(), LearningConfig(rank=base.rank)
        elif hasattr(base, "learning") and hasattr(base, "search_patterns"):
            db = base if db is None else db
            adapter, config = base.learning.adapter, base.learning.config
        else:
            raise InvalidTypeError("EphemeralLearningAgent needs an AgentDB or a LoRAAdapter, got "
                                   f"{type(base).__name__}")
        if "rank" in options and options["rank"] != adapter.rank:
            raise InvalidArgumentError(f"the base adapter has rank {adapter.rank}; an agent cannot "
                                       f"change it (got rank={options['rank']})")
        self.db = db
        self.agent_id = agent_id or f"agent-{next(_ids)}"
        self.base = adapter
        self.base_fingerprint = fingerprint(adapter)
        cfg = LearningConfig.from_options({**options, "save_every": 0, "consolidate_every": 0},
                                          config)
        self._learner = Learner(adapter.dim, cfg)
        self._learner.set_adapter(adapter)
        self.rewards: list[float] = []

    @property
    def adapter(self) -> LoRAAdapter:
        """A copy of the local adapter."""
        return self._learner.adapter

    def _need_db(self, what: str) -> Any:
        if self.db is None:
            raise InvalidArgumentError(
                f"{what} needs a store: build the agent from an AgentDB or pass "
                "db=...")
        return self.db

    def adapt(self, query: Any) -> np.ndarray:
        """The query as this agent would search with it (its local adapter applied)."""
        return self._learner.adapter.apply(query)

    def search(self, query: Any, k: int = 5, **filters: Any) -> list[Any]:
        """``db.search_patterns`` with this agent's adapter instead of the store's."""
        db = self._need_db("search")
        q = db.query_vector(query)
        return db.search_patterns(self._learner.apply(q), k, adapt=False, **filters)

    def learn(self, query: Any, positive: Any, negatives: Any, reward: float = 1.0
              ) -> dict[str, Any]:
        """One local update from vectors (see :meth:`agentdb.learning.Learner.learn`)."""
        out = self._learner.learn(query, positive, negatives, reward)
        if out["updated"]:
            self.rewards.append(float(reward))
        return out

    def feedback(self, query: Any, pattern_id: int, reward: float = 1.0) -> dict[str, Any]:
        """Like ``db.feedback`` but learned locally: the negatives are what *this* agent's
        adapter retrieves; the store is only read."""
        db = self._need_db("feedback by pattern id")
        q, pos, negs = db.feedback_inputs(query, pattern_id, None, self._learner,
                                           reward=reward)
        return self.learn(q, pos, negs, reward)

    def update(self, quality: float | None = None) -> AdapterUpdate:
        """This session's change to the adapter. ``quality`` defaults to the mean reward
        mapped from [-1, 1] to [0, 1]."""
        new = self._learner.adapter
        left = np.hstack([new.B, -self.base.B])
        right = np.vstack([new.A, self.base.A])
        mean = float(np.mean(self.rewards)) if self.rewards else 0.0
        q = (mean + 1.0) / 2.0 if quality is None else float(quality)
        return AdapterUpdate(self.agent_id, left, right, len(self.rewards), q,
                             self.base_fingerprint, mean)


class FederatedLearningCoordinator:
    """Merges :class:`AdapterUpdate` s from many agents into one adapter (see the module
    docstring for the rules). ``base``: an :class:`agentdb.AgentDB` (its current adapter), a
    :class:`~agentdb.learning.LoRAAdapter`, or None with ``dim`` and ``rank`` (the identity
    adapter with the default seed -- the one a new store starts with)."""

    def __init__(self, base: Any = None, *, dim: int | None = None, rank: int | None = None,
                 outlier_k: float | None = 3.0, max_norm: float | None = None,
                 min_for_outlier: int = 3, server_lr: float = 1.0) -> None:
        if base is None:
            if dim is None:
                raise InvalidArgumentError(
                    "give a base (AgentDB or LoRAAdapter) or dim= (and rank=)")
            base = LoRAAdapter(int(dim), int(rank) if rank is not None else min(int(dim), 8))
        elif hasattr(base, "learning"):
            base = base.learning.adapter
        if not isinstance(base, LoRAAdapter):
            raise InvalidTypeError(f"base must be an AgentDB or a LoRAAdapter, got "
                                   f"{type(base).__name__}")
        if rank is not None and rank != base.rank:
            raise InvalidArgumentError(
                f"rank={rank} does not match the base adapter's rank {base.rank}")
        if outlier_k is not None and not (np.isfinite(outlier_k) and 0 < outlier_k <= 100):
            raise InvalidArgumentError(
                f"outlier_k must be a number in (0, 100] or None (no outlier "
                f"rejection), got {outlier_k!r}")
        if max_norm is not None and not (np.isfinite(max_norm) and max_norm > 0):
            raise InvalidArgumentError(f"max_norm must be a finite number > 0, got {max_norm!r}")
        if not (np.isfinite(server_lr) and server_lr > 0):
            raise InvalidArgumentError(f"server_lr must be a finite number > 0, got {server_lr!r}")
        self.server_lr = float(server_lr)
        self.base = base.copy()
        self.outlier_k = None if outlier_k is None else float(outlier_k)
        self.max_norm = max_norm
        self.min_for_outlier = int(min_for_outlier)
        self.updates: list[AdapterUpdate] = []

    def submit(self, update: AdapterUpdate) -> None:
        """Queue one agent's update (one per agent id until the next publish)."""
        if not isinstance(update, AdapterUpdate):
            raise InvalidTypeError(f"expected an AdapterUpdate, got {type(update).__name__}")
        if any(u.agent_id == update.agent_id for u in self.updates):
            raise InvalidArgumentError(f"agent {update.agent_id!r} already submitted an update")
        self.updates.append(update)

    def _screen(self) -> tuple[list[AdapterUpdate], dict[str, str], dict[str, float],
                               float | None]:
        d = self.base.dim
        rejected: dict[str, str] = {}
        norms: dict[str, float] = {}
        ok: list[AdapterUpdate] = []
        for u in self.updates:
            left, right = np.asarray(u.left), np.asarray(u.right)
            if left.ndim != 2 or right.ndim != 2 or left.shape[0] != d or \
                    right.shape != (left.shape[1], d):
                rejected[u.agent_id] = (f"factor shapes {left.shape} x {right.shape} do not "
                                        f"make a {d} x {d} update")
                continue
            n = u.norm()
            norms[u.agent_id] = n
            if not (np.isfinite(left).all() and np.isfinite(right).all() and np.isfinite(n)):
                rejected[u.agent_id] = "non-finite values"
            elif u.base_fingerprint != fingerprint(self.base):
                rejected[u.agent_id] = "built on a different base adapter"
            elif u.count < 1:
                rejected[u.agent_id] = "no feedback events"
            elif not (np.isfinite(u.quality) and u.quality > 0):
                rejected[u.agent_id] = f"quality {u.quality!r} is not > 0"
            elif self.max_norm is not None and n > self.max_norm:
                rejected[u.agent_id] = f"norm {n:.4g} above max_norm {self.max_norm:.4g}"
            else:
                ok.append(u)
        threshold = None
        if self.outlier_k is not None and len(ok) >= self.min_for_outlier:
            ns = np.array([norms[u.agent_id] for u in ok])
            logs = np.log(np.maximum(ns, 1e-300))
            med = float(np.median(logs))
            spread = max(1.4826 * float(np.median(np.abs(logs - med))), 0.15)
            threshold = float(np.exp(med + self.outlier_k * spread))
            keep = []
            for u, n in zip(ok, ns):
                if n > threshold:
                    rejected[u.agent_id] = (
                        f"norm {n:.4g} is an outlier (> {threshold:.4g} = median "
                        f"{np.exp(med):.4g} x exp({self.outlier_k:g} x robust spread "
                        f"{spread:.3g}) of log norms)")
                else:
                    keep.append(u)
            ok = keep
        return ok, rejected, norms, threshold

    def merge(self) -> MergeResult:
        """Screen, weight and merge the submitted updates into a new rank-``r`` adapter
        (the base itself when nothing was accepted); the store is not touched."""
        ok, rejected, norms, threshold = self._screen()
        if not ok:
            return MergeResult(self.base.copy(), [], rejected, {}, norms, threshold, 1.0)
        w = np.array([u.quality * u.count for u in ok], np.float64)
        w = w / w.sum()
        step = self.server_lr
        left = np.hstack([self.base.B] + [step * wi * u.left for wi, u in zip(w, ok)])
        right = np.vstack([self.base.A] + [u.right for u in ok])
        adapter, kept = refactor(left, right, self.base.rank)
        return MergeResult(adapter, [u.agent_id for u in ok], rejected,
                           {u.agent_id: float(wi) for u, wi in zip(ok, w)}, norms, threshold,
                           kept)

    def publish(self, db: Any, result: MergeResult | None = None) -> MergeResult:
        """Merge (unless ``result`` is given) and write the adapter as ``db``'s; the merged
        adapter becomes the base of the next round and the queue empties. ``ValueError`` if
        no update was accepted (nothing is written then)."""
        result = result if result is not None else self.merge()
        if not result.accepted:
            reasons = "; ".join(f"{a}: {r}" for a, r in result.rejected.items()) or "none"
            raise InvalidArgumentError(
                f"nothing to publish: no update was accepted (rejected: {reasons})")
        db.learning.set_adapter(result.adapter)
        self.base = result.adapter.copy()
        self.updates.clear()
        return result


def refactor(left: np.ndarray, right: np.ndarray, rank: int, *, seed: int = 0
             ) -> tuple[LoRAAdapter, float]:
    """The best rank-``rank`` adapter for ``W = left @ right`` (truncated SVD via two thin
    QRs, never forming ``W``) and the share of ``||W||_F^2`` it keeps. Directions with a zero
    singular value get a small random ``A`` row and a zero ``B`` column, so they can still
    learn.

    >>> rng = np.random.default_rng(1)
    >>> L, R = rng.standard_normal((6, 2)), rng.standard_normal((2, 6))
    >>> ad, kept = refactor(L, R, 2)
    >>> bool(np.allclose(ad.B @ ad.A, L @ R)), round(kept, 6)
    (True, 1.0)
    """
    d = left.shape[0]
    q1, r1 = np.linalg.qr(left)
    q2, r2 = np.linalg.qr(right.T)
    u, s, vt = np.linalg.svd(r1 @ r2.T)
    total = float(np.sum(s * s))
    s_r = s[:rank]
    kept = float(np.sum(s_r * s_r) / total) if total > 0 else 1.0
    root = np.sqrt(s_r)
    B = np.zeros((d, rank))
    A = np.zeros((rank, d))
    m = len(s_r)
    B[:, :m] = (q1 @ u[:, :m]) * root
    A[:m] = root[:, None] * (vt[:m] @ q2.T)
    dead = [i for i in range(rank) if i >= m or s[i] <= 1e-12 * max(float(s[0]), 1.0)]
    if dead:
        rng = np.random.default_rng(seed)
        B[:, dead] = 0.0
        A[dead] = rng.standard_normal((len(dead), d)) / np.sqrt(d)
    return LoRAAdapter(d, rank, A=A, B=B), kept
