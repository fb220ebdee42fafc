"""Learning memory: retrieval that improves as agents report outcomes.

**SONA adaptation.** ``db.learning`` holds a rank-``r`` LoRA adapter applied to *pattern*
queries before the index search, ``q' = normalize(q + B A q)``; stored vectors never change.
It learns online from feedback:

>>> import numpy as np, agentdb
>>> db = agentdb.open(":memory:", dim=16)
>>> rng = np.random.default_rng(0)
>>> ids = db.store_patterns([{"task": f"p{i}", "embedding": v}
...                          for i, v in enumerate(rng.standard_normal((40, 16)))])
>>> q = rng.standard_normal(16)
>>> target = db.search_patterns(q, k=20)[-1].id       # a pattern that ranks 20th
>>> for _ in range(30):
...     _ = db.feedback(q, target, reward=1.0)        # it worked for this query
>>> db.search_patterns(q, k=1)[0].id == target
True
>>> db.learning.stats()["updates"]
30
>>> db.close()

* ``db.feedback(query, pattern_id, reward)`` -- the pattern was (reward > 0) or was not
  (reward < 0) the right memory for the query; the negatives are the patterns the current
  adapter retrieves. ``db.feedback_trajectory(query, retrieved_ids, outcome, used=...)`` --
  an outcome for a retrieval the agent already made (the retrieved list gives the negatives).
* Loss: softmax over ``cos(q', c) / tau`` for the positive vs the negatives, weighted by the
  reward; ``-|r| log(1 - p)`` for negative rewards. Analytic gradients, Adam (``lr`` 2e-3).
* EWC++: a running diagonal Fisher estimate (decay ``fisher_decay``);
  ``db.learning.consolidate()`` marks a task boundary (automatic only with
  ``consolidate_every=N``), after which ``ewc_lambda * F* * (theta - theta*)`` joins every
  gradient.
* The switch: ``db.learning.enable()`` / ``disable()`` (persisted), ``reset()`` (identity
  adapter, written at once), ``stats()``, ``export_state()`` / ``import_state(text)``,
  ``set_adapter(adapter)``.
* Default: learning is **on** for a new store, but the adapter is the identity until the
  first feedback, so a store that never gets feedback searches exactly as before.
  ``agentdb.open(path, learning=False)`` turns it off (persisted), ``learning={...}`` sets
  :class:`LearningConfig` fields (plus ``enabled`` and ``reset``).
* Only ``search_patterns`` is adapted (``adapt=False`` skips it for one search): feedback
  names patterns, so episodes and skills are searched with the raw query.
* Persistence: the whole state (adapter, Adam moments, Fisher, anchor, counters, options) is
  one versioned, checksummed value in the store's ``meta`` table, written every
  ``save_every`` (100) updates, at ``checkpoint()`` / ``close()`` and by every switch, reset,
  consolidation or new adapter; a crash loses at most the updates since the last write. An
  unreadable stored state never stops the store from opening: learning is then off, the
  value is kept untouched, ``stats()["load_error"]`` says why, and feedback raises
  :class:`LearningStateError` until ``db.learning.reset()``. A read-only store never writes:
  enable/disable apply to the session, feedback raises ``StoreError``.

**Federated learning.** :class:`EphemeralLearningAgent` learns a local copy of the adapter
in memory; :class:`FederatedLearningCoordinator` merges many agents' updates (weighted by
quality x count, outliers by norm rejected, truncated-SVD re-factoring) and publishes the
result to the store. See :mod:`agentdb.learning.federated`.
"""

from __future__ import annotations

from .adapter import Adam, LoRAAdapter, contrastive_grad, normalize
from .ewc import EWC
from .federated import (
    AdapterUpdate,
    EphemeralLearningAgent,
    FederatedLearningCoordinator,
    MergeResult,
    refactor,
)
from .learner import Learner, LearningConfig
from .state import LearningStateError

__all__ = [
    "EWC",
    "Adam",
    "AdapterUpdate",
    "EphemeralLearningAgent",
    "FederatedLearningCoordinator",
    "Learner",
    "LearningConfig",
    "LearningStateError",
    "LoRAAdapter",
    "MergeResult",
    "contrastive_grad",
    "normalize",
    "refactor",
]
