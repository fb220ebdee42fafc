"""Diverse search results: maximal marginal relevance (MMR) over a candidate set.

Searches take ``diversity=d`` in [0, 1]: the index returns a wider candidate set (``max(4k,
20)`` by default), and the ``k`` results are picked one at a time, each maximising

    (1 - d) * cos(query, x) - d * max over the picked p of cos(x, p)

so ``d = 0`` is plain relevance order and larger values trade similarity to the query for
dissimilarity to what was already picked (Carbonell & Goldstein's MMR with λ = 1 - d).

>>> import numpy as np
>>> q = np.array([1.0, 0.0])
>>> X = np.array([[1.0, 0.0], [0.99, 0.14], [0.7, 0.7]])   # two near-duplicates, one other
>>> mmr(q, X, 2, 0.0), mmr(q, X, 2, 0.6)
([0, 1], [0, 2])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["check_diversity", "diversity_candidates", "mmr"]


def check_diversity(d: Any) -> float | None:
    """``diversity`` as a float in [0, 1] (None stays None: no MMR).

    >>> check_diversity(0.3), check_diversity(None)
    (0.3, None)
    """
    if d is None:
        return None
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"diversity must be a number in [0, 1], got {d!r}")
    d = float(d)
    if not 0.0 <= d <= 1.0:  # also NaN
        raise InvalidArgumentError(f"diversity must be within [0, 1], got {d}")
    return d


def diversity_candidates(k: int, candidates: int | None) -> int:
    """How many hits to fetch for an MMR pick of ``k`` (``candidates``, default
    ``max(4k, 20)``; never fewer than ``k``).

    >>> diversity_candidates(5, None), diversity_candidates(5, 8)
    (20, 8)
    """
    if candidates is None:
        return max(4 * int(k), 20)
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
        raise InvalidTypeError(f"candidates must be an integer, got {candidates!r}")
    if candidates < k:
        raise InvalidArgumentError(f"candidates must be >= k ({k}), got {candidates}")
    return int(candidates)


def mmr(query: Any, vectors: Any, k: int, diversity: float) -> list[int]:
    """Indices of ``k`` rows of ``vectors`` picked by MMR for ``query``, in pick order
    (cosine similarities; rows and query need not be normalised)."""
    X = np.asarray(vectors, dtype=np.float64)
    n = X.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return []
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)
    qn = q / max(float(np.linalg.norm(q)), 1e-30)
    rel = Xn @ qn
    lam = 1.0 - float(diversity)
    picked = [int(np.argmax(rel))]
    redundancy = Xn @ Xn[picked[0]]  # max similarity to the picked, per row
    taken = np.zeros(n, bool)
    taken[picked[0]] = True
    while len(picked) < k:
        score = lam * rel - (1.0 - lam) * redundancy
        score[taken] = -np.inf
        j = int(np.argmax(score))  # ties: the earlier (more relevant) candidate
        picked.append(j)
        taken[j] = True
        redundancy = np.maximum(redundancy, Xn @ Xn[j])
    return picked
