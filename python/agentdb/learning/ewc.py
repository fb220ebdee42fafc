"""EWC++ for the query adapter: an online diagonal Fisher estimate with decay, and a
quadratic pull towards the parameters of earlier tasks.

* While learning, every update folds its squared gradient into a running estimate
  ``F = gamma * F + (1 - gamma) * g**2`` (per parameter; ``gamma`` = ``fisher_decay``).
* :meth:`EWC.consolidate` marks a task boundary: the anchor ``theta*`` becomes the current
  parameters and the running ``F`` is added to the consolidated importance
  ``F* = gamma_task * F* + F`` (``gamma_task`` = ``task_decay``: older tasks fade slowly).
* After the first consolidation every update adds the penalty's gradient
  ``lambda * F* * (theta - theta*)`` -- the gradient of
  ``(lambda / 2) sum F* (theta - theta*)^2`` -- to the data gradient, so parameters that
  mattered for earlier tasks stay near their values.

>>> import numpy as np
>>> ewc = EWC([(2,)], ewc_lambda=10.0)
>>> theta = [np.array([1.0, 2.0])]
>>> ewc.observe([np.array([1.0, 0.0])]); ewc.consolidate(theta)
>>> theta[0] += 1.0
>>> [g.round(6).tolist() for g in ewc.penalty_grads(theta)]   # only where F* > 0
[[0.1, 0.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["EWC"]


class EWC:
    """Diagonal online-EWC state for a list of parameter arrays of the given shapes."""

    def __init__(self, shapes: list[tuple[int, ...]], *, ewc_lambda: float = 30.0,
                 fisher_decay: float = 0.99, task_decay: float = 1.0) -> None:
        self.ewc_lambda = float(ewc_lambda)
        self.fisher_decay = float(fisher_decay)
        self.task_decay = float(task_decay)
        self.fisher = [np.zeros(s) for s in shapes]        # running estimate (current task)
        self.importance = [np.zeros(s) for s in shapes]    # consolidated F*
        self.anchor: list[np.ndarray] | None = None        # theta* (None before a boundary)
        self.consolidations = 0

    @property
    def active(self) -> bool:
        """True once a task boundary exists and lambda > 0 (the penalty applies)."""
        return self.anchor is not None and self.ewc_lambda > 0

    def observe(self, grads: list[np.ndarray]) -> None:
        """Fold one update's data gradient into the running Fisher estimate."""
        g = self.fisher_decay
        for f, d in zip(self.fisher, grads):
            f *= g
            f += (1.0 - g) * (d * d)

    def consolidate(self, params: list[np.ndarray]) -> None:
        """Task boundary: anchor at ``params`` and add the running Fisher to ``F*``."""
        for imp, f in zip(self.importance, self.fisher):
            imp *= self.task_decay
            imp += f
        self.anchor = [p.copy() for p in params]
        self.consolidations += 1

    def penalty_grads(self, params: list[np.ndarray]) -> list[np.ndarray] | None:
        """``lambda * F* * (theta - theta*)`` per parameter, or None while inactive."""
        if not self.active:
            return None
        assert self.anchor is not None
        lam = self.ewc_lambda
        return [lam * imp * (p - a) for imp, p, a in zip(self.importance, params, self.anchor)]

    def penalty(self, params: list[np.ndarray]) -> float:
        """``(lambda / 2) * sum F* (theta - theta*)^2`` (0 while inactive)."""
        if not self.active:
            return 0.0
        assert self.anchor is not None
        return 0.5 * self.ewc_lambda * float(sum(
            np.sum(imp * (p - a) ** 2) for imp, p, a in zip(self.importance, params,
                                                             self.anchor)))

    def reset(self) -> None:
        """Forget every task boundary and the Fisher estimates."""
        for a in (*self.fisher, *self.importance):
            a[...] = 0.0
        self.anchor = None
        self.consolidations = 0
