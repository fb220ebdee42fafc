"""The online learner behind ``db.learning``: a LoRA query adapter trained from feedback,
EWC++ against forgetting, a switch, a reset, and persistence in the store.

>>> import numpy as np
>>> lr = Learner(8, LearningConfig(rank=2, negatives=2))
>>> rng = np.random.default_rng(0)
>>> q, pos, negs = rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal((2, 8))
>>> lr.learn(q, pos, negs, 1.0)["updated"], lr.stats()["updates"], lr.active
(True, 1, True)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, StoreError
from .adapter import Adam, LoRAAdapter, contrastive_grad, normalize
from .ewc import EWC
from .state import META_KEY, LearningStateError, decode_state, encode_state

__all__ = ["Learner", "LearningConfig", "check_feedback_reward"]

log = logging.getLogger("agentdb.learning")


@dataclass
class LearningConfig:
    """Hyper-parameters of the query adapter (defaults measured in ``benchmarks/learning.py``).

    * ``rank`` -- adapter rank ``r`` (``A``: r x dim, ``B``: dim x r).
    * ``lr`` -- Adam step size (2e-3: the best recall after 500-2,000 events on the benchmark).
    * ``tau`` -- softmax temperature of the contrastive loss over cosine similarities.
    * ``negatives`` -- how many of the currently retrieved patterns are the negatives.
    * ``ewc_lambda`` -- strength of the EWC++ pull towards earlier tasks (0 turns it off).
    * ``fisher_decay`` -- per-update decay ``gamma`` of the running Fisher estimate.
    * ``task_decay`` -- decay of the consolidated Fisher at each task boundary.
    * ``consolidate_every`` -- consolidate automatically every N updates (0: only when
      :meth:`Learner.consolidate` is called).
    * ``save_every`` -- write the state to the store every N updates (it is always written on
      ``checkpoint()`` / ``close()`` and by enable/disable/reset/consolidate/set_adapter).
    * ``seed``, ``init_scale`` -- the random start of ``A`` (``B`` starts at zero).
    * ``ef_factor`` -- adapted queries search with ``ef_factor`` x the index's ``ef_search``
      (when the caller gives no ``ef``): an adapted query lies off the data's distribution,
      where HNSW needs a wider beam (measured: recall@10 0.79 at ef 64, 0.83 at 128, 0.84 =
      exact at 256 on the learning benchmark).

    >>> LearningConfig(rank=4).rank
    4
    """

    rank: int = 8
    lr: float = 2e-3
    tau: float = 0.05
    negatives: int = 16
    ewc_lambda: float = 30.0
    fisher_decay: float = 0.99
    task_decay: float = 1.0
    consolidate_every: int = 0
    save_every: int = 100
    seed: int = 0
    init_scale: float = 1.0
    ef_factor: float = 2.0

    def __post_init__(self) -> None:
        for name in ("rank", "negatives", "consolidate_every", "save_every", "seed"):
            v = getattr(self, name)
            low = 1 if name in ("rank", "negatives") else 0
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise InvalidArgumentError(f"learning option {name} must be an integer >= {low}, "
                                           f"got {v!r}")
            setattr(self, name, int(v))
        for name, low, high in (("lr", 0.0, math.inf), ("tau", 0.0, math.inf),
                                ("ewc_lambda", -1.0, math.inf), ("fisher_decay", -1.0, 1.0),
                                ("task_decay", -1.0, 1.0), ("init_scale", 0.0, math.inf),
                                ("ef_factor", 0.0, 64.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InvalidTypeError(f"learning option {name} must be a number, got {v!r}")
            v = float(v)
            closed_low = name in ("ewc_lambda", "fisher_decay", "task_decay")
            ok = math.isfinite(v) and (v >= 0 if closed_low else v > low) and v <= high
            if not ok:
                lo = "0 <=" if closed_low else "0 <"
                hi = " <= 1" if high == 1.0 else ""
                raise InvalidArgumentError(
                    f"learning option {name} must be finite with {lo} {name}{hi}, "
                    f"got {v!r}")
            setattr(self, name, v)

    @classmethod
    def from_options(cls, options: dict[str, Any],
                     base: LearningConfig | None = None) -> LearningConfig:
        """``base`` (or the defaults) with ``options`` applied; unknown keys are an error."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise InvalidArgumentError(f"unknown learning option(s): {', '.join(unknown)} (known: "
                                       f"{', '.join(sorted(fields | {'enabled', 'reset'}))})")
        values = dataclasses.asdict(base) if base is not None else {}
        values.update(options)
        return cls(**values)


class Learner:
    """A LoRA query adapter trained online, with EWC++, a switch and persistence.

    Made by :class:`agentdb.AgentDB` as ``db.learning`` (state in the store's ``meta`` table
    under ``learning:state``), or standalone with ``store=None`` (in memory only, as in
    :class:`agentdb.learning.EphemeralLearningAgent`).

    The adapter changes a query only while learning is ``enabled`` *and* the adapter is not
    the identity (``active``): a store that never got feedback searches exactly as before.
    """

    def __init__(self, dim: int, config: LearningConfig | None = None, *,
                 enabled: bool = True, store: Any = None, readonly: bool = False) -> None:
        self.dim = int(dim)
        self.config = config or LearningConfig(rank=min(int(dim), 8))
        if self.config.rank > self.dim:
            raise InvalidArgumentError(f"learning rank {self.config.rank} exceeds the dimension "
                                       f"{self.dim}")
        self.enabled = bool(enabled)
        self.readonly = readonly
        self.load_error: str | None = None
        self._store = store
        self._lock = threading.RLock()
        self._dirty = False
        self._new_state()

    # ---- state --------------------------------------------------------------------------
    def _new_state(self) -> None:
        c = self.config
        init = LoRAAdapter(self.dim, c.rank, seed=c.seed, init_scale=c.init_scale)
        # one flat parameter vector (A then B, as views) so Adam and EWC run as single ops
        self._split = c.rank * self.dim
        self._theta = np.concatenate([init.A.ravel(), init.B.ravel()])
        self._grad = np.zeros_like(self._theta)
        self._adapter = init
        init.A, init.B = self._views(self._theta)
        self._params = [self._theta]
        self._opt = Adam(self._params, lr=c.lr)
        self._ewc = EWC([self._theta.shape], ewc_lambda=c.ewc_lambda,
                        fisher_decay=c.fisher_decay, task_decay=c.task_decay)
        self.counters: dict[str, Any] = {"updates": 0, "positive": 0, "negative": 0,
                                         "last_loss": None, "loss_ema": None,
                                         "since_save": 0, "adapter_set": 0}
        self._identity = True

    def _views(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)``-shaped views of a flat parameter-sized array."""
        r, d = self.config.rank, self.dim
        return flat[:self._split].reshape(r, d), flat[self._split:].reshape(d, r)

    @property
    def active(self) -> bool:
        """True when searches are adapted: enabled and the adapter is not the identity."""
        return self.enabled and not self._identity

    @property
    def adapter(self) -> LoRAAdapter:
        """A copy of the current adapter."""
        with self._lock:
            return self._adapter.copy()

    def apply(self, q: np.ndarray) -> np.ndarray:
        """The query to search with: adapted when :attr:`active`, else ``q`` unchanged.

        >>> Learner(4).apply(np.array([1.0, 0, 0, 0], np.float32)).tolist()
        [1.0, 0.0, 0.0, 0.0]
        """
        if not self.active:
            return q
        with self._lock:
            return self._adapter.apply(q)

    # ---- learning -----------------------------------------------------------------------
    def _check_writable(self, what: str) -> None:
        if self.readonly:
            raise StoreError(f"cannot {what}: the store is open read-only (use "
                             "agentdb.learning.EphemeralLearningAgent to learn without "
                             "writing)")
        if self.load_error is not None:
            raise LearningStateError(f"cannot {what}: the stored learning state is unreadable "
                                     f"({self.load_error}); db.learning.reset() discards it")

    def learn(self, query: Any, positive: Any, negatives: Any, reward: float) -> dict[str, Any]:
        """One online update from vectors: the ``positive`` pattern vs ``negatives``
        (rows), weighted by ``reward`` (> 0 pulls the positive up, < 0 pushes it down).

        Returns ``{"updated": bool, ...}`` with the loss, the positive's softmax
        probability and rank among the candidates before the update; nothing changes while
        learning is disabled or when ``reward == 0``.
        """
        self._check_writable("learn from feedback")
        w = check_feedback_reward(reward)
        q = _check_vec(query, self.dim, "query")
        pos = _check_vec(positive, self.dim, "positive")
        negs = np.asarray(negatives, np.float64).reshape(-1, self.dim) \
            if np.size(negatives) else np.zeros((0, self.dim))
        if not np.isfinite(negs).all():
            raise InvalidArgumentError("negatives contain NaN or infinity")
        if not self.enabled:
            return {"updated": False, "reason": "learning is disabled"}
        if w == 0.0:
            return {"updated": False, "reason": "reward 0 carries no signal"}
        if len(negs) == 0:
            return {"updated": False, "reason": "no negatives to contrast with"}
        C = normalize(np.vstack([pos[None, :], negs]))
        qn = normalize(q)
        with self._lock:
            ad, g = self._adapter, self._grad
            loss, dA, dB, p = contrastive_grad(ad.A, ad.B, qn, C, 0, w, self.config.tau)
            g[:self._split] = dA.ravel()
            g[self._split:] = dB.ravel()
            self._ewc.observe([g])
            pen = self._ewc.penalty_grads(self._params)
            if pen is not None:
                g += pen[0]
            self._opt.step([g])
            self._identity = False
            c = self.counters
            c["updates"] += 1
            c["positive" if w > 0 else "negative"] += 1
            c["last_loss"] = loss
            c["loss_ema"] = loss if c["loss_ema"] is None else 0.98 * c["loss_ema"] + 0.02 * loss
            c["since_save"] += 1
            self._dirty = True
            every = self.config.consolidate_every
            if every and c["updates"] % every == 0:
                self._ewc.consolidate(self._params)
            n = c["updates"]
            rank = 1 + int(np.sum(p[1:] > p[0]))
            if self.config.save_every and c["since_save"] >= self.config.save_every:
                self.save()
        return {"updated": True, "loss": loss, "p_positive": float(p[0]), "rank_before": rank,
                "updates": n}

    # ---- switch, reset, task boundaries -------------------------------------------------
    def enable(self) -> None:
        """Adapt searches and learn from feedback (persisted; session only when read-only)."""
        self._set_enabled(True)

    def disable(self) -> None:
        """Search with raw queries and ignore feedback; the adapter is kept (persisted;
        session only when read-only)."""
        self._set_enabled(False)

    def _set_enabled(self, value: bool) -> None:
        with self._lock:
            if self.enabled == bool(value):
                return
            self.enabled = bool(value)
            self._dirty = True
            if self.load_error is None:
                self.save()

    def reset(self) -> None:
        """Back to the identity adapter: forget the adapter, the optimizer, the Fisher
        estimates and task anchors (also discards an unreadable stored state); the switch and
        the configuration stay. Written at once."""
        if self.readonly:
            self._check_writable("reset learning")
        with self._lock:
            self._new_state()
            self.load_error = None
            self._dirty = True
            self.save()

    def consolidate(self) -> None:
        """Mark a task boundary for EWC++: later learning is pulled towards the current
        adapter, weighted by the Fisher estimate of what was learned so far. Not automatic
        unless ``consolidate_every`` is set. Written at once."""
        self._check_writable("consolidate")
        with self._lock:
            self._ewc.consolidate(self._params)
            self._dirty = True
            self.save()

    def set_adapter(self, adapter: LoRAAdapter | tuple[Any, Any]) -> None:
        """Replace the adapter (e.g. a federated merge): ``LoRAAdapter`` or ``(A, B)``.
        The optimizer restarts; EWC state is kept. Written at once."""
        self._check_writable("set the adapter")
        A, B = (adapter.A, adapter.B) if isinstance(adapter, LoRAAdapter) else adapter
        new = LoRAAdapter(self.dim, self.config.rank, A=A, B=B)  # validates shapes, finiteness
        with self._lock:
            self._adapter.A[...] = new.A
            self._adapter.B[...] = new.B
            self._opt.reset()
            self._identity = new.is_identity
            self.counters["adapter_set"] += 1
            self._dirty = True
            self.save()

    # ---- inspection ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters and health: ``enabled``, ``active``, ``updates`` (``positive`` /
        ``negative``), ``last_loss``, ``loss_ema``, ``adapter_norm`` (Frobenius norm of
        ``B A``), ``consolidations``, ``ewc_active``, ``ewc_penalty``, ``saved``,
        ``load_error``, ``config``.

        >>> Learner(8).stats()["adapter_norm"]
        0.0
        """
        with self._lock:
            c = self.counters
            return {
                "enabled": self.enabled, "active": self.active, "dim": self.dim,
                "rank": self.config.rank, "updates": c["updates"], "positive": c["positive"],
                "negative": c["negative"], "last_loss": c["last_loss"],
                "loss_ema": c["loss_ema"], "adapter_norm": self._adapter.delta_norm(),
                "adapter_set": c["adapter_set"], "consolidations": self._ewc.consolidations,
                "ewc_active": self._ewc.active, "ewc_penalty": self._ewc.penalty(self._params),
                "saved": not self._dirty, "readonly": self.readonly,
                "load_error": self.load_error, "config": dataclasses.asdict(self.config),
            }

    # ---- persistence --------------------------------------------------------------------
    def export_state(self) -> str:
        """The whole state as one text value (see :mod:`agentdb.learning.state`)."""
        with self._lock:
            ewc, opt = self._ewc, self._opt
            header = {"dim": self.dim, "enabled": self.enabled,
                      "config": dataclasses.asdict(self.config),
                      "counters": {k: v for k, v in self.counters.items() if k != "since_save"},
                      "adam_t": opt.t, "consolidations": ewc.consolidations,
                      "identity": self._identity, "saved_at": time.time()}
            flats = {"": self._theta, "m": opt.m[0], "v": opt.v[0], "f": ewc.fisher[0],
                     "i": ewc.importance[0]}
            if ewc.anchor is not None:
                flats["a"] = ewc.anchor[0]
            arrays = {}
            for key, flat in flats.items():
                arrays[key + "A"], arrays[key + "B"] = self._views(flat)
            return encode_state(header, arrays)

    def import_state(self, text: str, *, save: bool = True) -> None:
        """Load a state from :meth:`export_state` (``LearningStateError`` if it is unreadable
        or made for another dimension; nothing changes then)."""
        if save:
            self._check_writable("import a learning state")
        header, arrays = decode_state(text)
        try:
            dim = int(header["dim"])
            config = LearningConfig.from_options(dict(header["config"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LearningStateError(f"state header is invalid ({exc})") from None
        if dim != self.dim:
            raise LearningStateError(f"state is for dim {dim}, this store has dim {self.dim}")
        r, d = config.rank, dim
        shapes = {"A": (r, d), "B": (d, r)}
        need = {k + s: shapes[s] for s in "AB" for k in ("", "m", "v", "f", "i")}
        if "aA" in arrays or "aB" in arrays:
            need.update({"aA": (r, d), "aB": (d, r)})
        for key, shape in need.items():
            arr = arrays.get(key)
            if arr is None or arr.shape != shape or not np.isfinite(arr).all():
                got = "missing" if arr is None else f"shape {arr.shape}"
                raise LearningStateError(f"state array {key!r} is invalid ({got}, expected "
                                         f"{shape}, finite)")
        with self._lock:
            self.config = config
            self._new_state()
            for key, flat in (("", self._theta), ("m", self._opt.m[0]), ("v", self._opt.v[0]),
                              ("f", self._ewc.fisher[0]), ("i", self._ewc.importance[0])):
                flat[:self._split] = arrays[key + "A"].ravel()
                flat[self._split:] = arrays[key + "B"].ravel()
            if "aA" in arrays:
                self._ewc.anchor = [np.concatenate([arrays["aA"].ravel(),
                                                    arrays["aB"].ravel()]).astype(np.float64)]
            self._ewc.consolidations = int(header.get("consolidations", 0))
            self._opt.t = int(header.get("adam_t", 0))
            counters = header.get("counters", {})
            for k in self.counters:
                if k in counters:
                    self.counters[k] = counters[k]
            self.enabled = bool(header.get("enabled", True))
            self._identity = self._adapter.is_identity
            self.load_error = None
            self._dirty = save
            if save:
                self.save()

    def save(self) -> bool:
        """Write the state to the store if it changed (one ``meta`` value, one transaction).
        Returns whether it wrote; never writes to a read-only store, without a store, or
        over an unreadable stored state that was not reset."""
        if self._store is None or self.readonly or self.load_error is not None:
            return False
        with self._lock:
            if not self._dirty:
                return False
            self._store.set_meta(META_KEY, self.export_state())
            self._dirty = False
            self.counters["since_save"] = 0
            return True

    def reload(self) -> bool:
        """Replace the in-memory state by the one saved in the store -- what another handle
        or process saved since this one loaded. Updates of this handle that were not saved
        are discarded. Returns False (nothing changes) when no state is saved or there is no
        store; ``LearningStateError`` when the saved state is unreadable.

        >>> Learner(8).reload()
        False
        """
        if self._store is None:
            return False
        text = self._store.meta(META_KEY)
        if text is None:
            return False
        self.import_state(text, save=False)
        return True

    @classmethod
    def attach(cls, store: Any, dim: int, option: Any, readonly: bool) -> Learner:
        """The learner of a store, from its saved state and the ``learning=`` option of
        :func:`agentdb.open`: ``None`` (the stored switch, on for a new store), ``True`` /
        ``False`` (switch on / off), or a dict of :class:`LearningConfig` fields plus
        ``enabled`` and ``reset`` (discard the stored state)."""
        if option is None or isinstance(option, bool):
            opts: dict[str, Any] = {} if option is None else {"enabled": option}
        elif isinstance(option, dict):
            opts = dict(option)
        else:
            raise InvalidTypeError(f"learning must be None, True, False or a dict of options, got "
                                   f"{type(option).__name__}")
        enabled = opts.pop("enabled", None)
        reset = bool(opts.pop("reset", False))
        if enabled is not None and not isinstance(enabled, (bool, np.bool_)):
            raise InvalidTypeError(f"learning option enabled must be a bool, got {enabled!r}")
        LearningConfig.from_options(opts)  # validate the options before touching anything
        text = None if reset else store.meta(META_KEY)
        learner: Learner | None = None
        if text is not None:
            learner = cls(dim, LearningConfig(rank=min(dim, 8)), store=store, readonly=readonly)
            try:
                learner.import_state(text, save=False)
            except LearningStateError as exc:
                learner = cls(dim, LearningConfig.from_options(opts), enabled=False,
                              store=store, readonly=readonly)
                learner.load_error = str(exc)
                log.warning("learning state of this store is unreadable (%s): learning is "
                            "off until db.learning.reset()", exc)
                return learner
            if "rank" in opts and opts["rank"] != learner.config.rank:
                raise InvalidArgumentError(f"the store holds a rank-{learner.config.rank} adapter, "
                                           f"opened with learning rank {opts['rank']}: open with "
                                           f"learning={{'rank': {learner.config.rank}}}, or add "
                                           "'reset': True to discard the stored adapter")
            if opts:
                learner._reconfigure(LearningConfig.from_options(opts, learner.config))
        if learner is None:
            cfg = LearningConfig.from_options({"rank": min(dim, 8), **opts})
            learner = cls(dim, cfg, store=store, readonly=readonly)
            learner._dirty = reset and store.meta(META_KEY) is not None
        if enabled is not None and bool(enabled) != learner.enabled:
            learner.enabled = bool(enabled)
            learner._dirty = True
        if learner._dirty:
            learner.save()
        return learner

    def _reconfigure(self, config: LearningConfig) -> None:
        """New hyper-parameters for the same rank (learning rate, EWC strength, ...)."""
        if config == self.config:
            return
        self.config = config
        self._opt.lr = config.lr
        self._ewc.ewc_lambda = config.ewc_lambda
        self._ewc.fisher_decay = config.fisher_decay
        self._ewc.task_decay = config.task_decay
        self._dirty = True


def check_feedback_reward(reward: Any) -> float:
    """A feedback reward as a float: finite, in [-1, 1] (``ValueError`` / ``TypeError``)."""
    if isinstance(reward, bool) or not isinstance(reward, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"reward must be a number, got {type(reward).__name__}")
    w = float(reward)
    if not math.isfinite(w) or not -1.0 <= w <= 1.0:
        raise InvalidArgumentError(f"reward must be a finite number in [-1, 1], got {reward!r}")
    return w


def _check_vec(x: Any, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InvalidTypeError(f"{name} must be a real numeric vector, got dtype {arr.dtype}")
    arr = arr.astype(np.float64).reshape(-1) if arr.ndim == 1 else arr
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise InvalidArgumentError(f"dimension mismatch: {name} must have shape ({dim},), got "
                                   f"{np.shape(x)}")
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{name} contains NaN or infinity")
    if not arr.any():
        raise InvalidArgumentError(f"{name} is an all-zero vector")
    return arr
