"""The low-rank (LoRA) query adapter and its contrastive loss, in plain numpy.

A rank-``r`` adapter maps a query embedding ``q`` (normalised first) to

    q' = normalize(q + B (A q))        A: (r, d), B: (d, r)

``B`` starts at zero, so a fresh adapter is the identity; ``A`` starts small and random
(seeded). Stored memory vectors are never changed: only the query moves.

One feedback event is a softmax over candidates ``C`` (the positive pattern and the current
top-K retrieved patterns as negatives) with logits ``cos(q', c) / tau``. A positive reward
``w`` minimises ``-w log p(pos)``; a negative one minimises ``-|w| log(1 - p(pos))`` (it pushes
the pattern away). :func:`contrastive_grad` returns the loss and the analytic gradients for
``A`` and ``B``.

>>> import numpy as np
>>> ad = LoRAAdapter(16, rank=2, seed=0)
>>> q = np.ones(16, np.float32)
>>> bool(np.allclose(ad.apply(q), q / np.linalg.norm(q)))   # the identity at init
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["Adam", "LoRAAdapter", "contrastive_grad", "normalize"]


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows (or the vector) of ``x`` scaled to unit L2 norm (zero rows stay zero).

    >>> normalize(np.array([3.0, 4.0])).tolist()
    [0.6, 0.8]
    """
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


class LoRAAdapter:
    """Parameters ``A`` (rank x dim) and ``B`` (dim x rank), float64.

    ``init_scale`` is the standard deviation of ``A``'s entries times ``sqrt(dim)`` (default
    1: each row of ``A`` has about unit norm).

    >>> ad = LoRAAdapter(8, rank=2)
    >>> ad.A.shape, ad.B.shape, ad.is_identity
    ((2, 8), (8, 2), True)
    """

    def __init__(self, dim: int, rank: int = 8, *, seed: int = 0, init_scale: float = 1.0,
                 A: Any = None, B: Any = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidArgumentError(f"dim must be an integer >= 1, got {dim!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or \
                not 1 <= rank <= dim:
            raise InvalidArgumentError(f"rank must be an integer in [1, dim={dim}], got {rank!r}")
        self.dim, self.rank = int(dim), int(rank)
        if A is None:
            rng = np.random.default_rng(seed)
            A = rng.standard_normal((self.rank, self.dim)) * (init_scale / np.sqrt(self.dim))
        if B is None:
            B = np.zeros((self.dim, self.rank))
        self.A = _param(A, (self.rank, self.dim), "A")
        self.B = _param(B, (self.dim, self.rank), "B")

    @property
    def is_identity(self) -> bool:
        """True while ``B`` is all zero (the adapter then changes nothing)."""
        return not self.B.any()

    def copy(self) -> LoRAAdapter:
        """An independent copy."""
        return LoRAAdapter(self.dim, self.rank, A=self.A.copy(), B=self.B.copy())

    def delta(self) -> np.ndarray:
        """The dense update ``B @ A`` (dim x dim)."""
        return self.B @ self.A

    def delta_norm(self) -> float:
        """Frobenius norm of ``B @ A`` without forming it.

        >>> LoRAAdapter(8, rank=2).delta_norm()
        0.0
        """
        return float(np.sqrt(max(np.sum((self.B.T @ self.B) * (self.A @ self.A.T)), 0.0)))

    def apply(self, q: Any) -> np.ndarray:
        """The adapted, unit-norm query (float32); 1-D ``(dim,)`` or 2-D ``(m, dim)``.

        >>> ad = LoRAAdapter(4, rank=1, A=[[1, 0, 0, 0]], B=[[0], [1], [0], [0]])
        >>> [round(float(x), 3) for x in ad.apply(np.array([1.0, 0, 0, 0]))]
        [0.707, 0.707, 0.0, 0.0]
        """
        x = np.asarray(q, np.float64)
        if x.ndim == 1:  # the per-query path: keep it to a few small operations
            x = x / np.sqrt(x @ x)
            u = x + self.B @ (self.A @ x)
            return (u / np.sqrt(u @ u)).astype(np.float32)
        x = normalize(x)
        if not self.is_identity:
            x = normalize(x + (x @ self.A.T) @ self.B.T)
        return x.astype(np.float32)


def contrastive_grad(A: np.ndarray, B: np.ndarray, q: np.ndarray, C: np.ndarray, pos: int,
                     weight: float, tau: float
                     ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Loss and gradients of one feedback event.

    ``q`` is the unit query (d,), ``C`` the unit candidate rows (m, d) with the positive at
    row ``pos``; ``weight`` > 0 pulls it up (softmax cross-entropy times ``weight``),
    ``weight`` < 0 pushes it down (``-|weight| log(1 - p)``). Returns
    ``(loss, dA, dB, p)`` with ``p`` the softmax over the candidates.

    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((2, 6)), rng.standard_normal((6, 2))
    >>> C = normalize(rng.standard_normal((4, 6))); q = normalize(rng.standard_normal(6))
    >>> loss, dA, dB, p = contrastive_grad(A, B, q, C, 0, 1.0, 0.1)
    >>> dA.shape, dB.shape, round(float(p.sum()), 6)
    ((2, 6), (6, 2), 1.0)
    """
    h = A @ q
    u = q + B @ h
    n = float(np.sqrt(u @ u))
    uh = u / n
    cos = C @ uh
    s = cos / tau
    s = s - s.max()
    e = np.exp(s)
    p = e / e.sum()
    pp = float(p[pos])
    gs = -p.copy()
    gs[pos] += 1.0  # e_pos - p
    if weight >= 0:
        loss = -weight * np.log(max(pp, 1e-300))
        gs *= -weight  # weight * (p - e_pos)
    else:
        w = -weight
        rest = max(1.0 - pp, 1e-12)
        loss = -w * np.log(rest)
        gs *= w * pp / rest
    gu = (gs @ C - float(gs @ cos) * uh) / (n * tau)
    dB = np.outer(gu, h)
    dA = np.outer(B.T @ gu, q)
    return float(loss), dA, dB, p


class Adam:
    """Adam on a list of arrays, updated in place (bias-corrected; ``lr`` is the step size).

    >>> x = [np.ones(2)]; opt = Adam(x, lr=0.1)
    >>> opt.step([np.ones(2)]); x[0].round(3).tolist()
    [0.9, 0.9]
    """

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1 = self.lr / (1.0 - b1 ** self.t)
        c2 = np.sqrt(1.0 / (1.0 - b2 ** self.t))
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * np.square(g)
            denom = np.sqrt(v)
            denom *= c2
            denom += self.eps
            np.divide(m, denom, out=denom)
            denom *= c1
            p -= denom

    def reset(self) -> None:
        """Forget the moment estimates (after the parameters were replaced)."""
        for a in (*self.m, *self.v):
            a[...] = 0.0
        self.t = 0


def _param(x: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.array(x, dtype=np.float64)
    if arr.shape != shape:
        raise InvalidArgumentError(f"adapter {name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"adapter {name} contains NaN or infinity")
    return arr
