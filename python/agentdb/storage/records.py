"""Record types of agent memory and the validation shared by every store.

>>> p = Pattern(id=1, task="parse dates", reward=0.9, success=True)
>>> p.to_dict()["task"]
'parse dates'
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "NORM_RANGE",
    "REWARD_RANGE",
    "Episode",
    "Pattern",
    "SearchResult",
    "Skill",
    "check_metadata",
    "check_reward",
    "check_vector",
]

#: Rewards are finite floats in this closed range (negative rewards are penalties).
REWARD_RANGE: tuple[float, float] = (-1.0, 1.0)
#: The norms an embedding may have: float32 sums of squares (the native index's fast path,
#: pgvector's distances) stay exact within it.
NORM_RANGE: tuple[float, float] = (1e-15, 1e15)


@dataclass
class Pattern:
    """A reasoning pattern (the ReasoningBank): what was tried for a task and how it went.

    >>> Pattern(id=3, task="t").success
    False
    """

    id: int
    task: str
    reward: float = 0.0
    success: bool = False
    session_id: str | None = None
    input: str | None = None
    output: str | None = None
    critique: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    #: How many stores were folded into this pattern (1, plus one per near-duplicate
    #: merged by ``store_pattern(dedupe=...)``).
    uses: int = 1
    #: When the pattern expires (epoch seconds; None = never): invisible from then on.
    expires_at: float | None = None
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self, embedding: bool = False) -> dict[str, Any]:
        """Plain-JSON form (the embedding as a list only when asked).

        >>> sorted(Pattern(id=1, task="x").to_dict())[:3]
        ['created_at', 'critique', 'expires_at']
        """
        return _to_dict(self, embedding)


@dataclass
class Episode:
    """A Reflexion episode: one attempt at a task with its self-critique.

    >>> Episode(id=1, task="t", critique="too slow").critique
    'too slow'
    """

    id: int
    task: str
    reward: float = 0.0
    success: bool = False
    session_id: str | None = None
    input: str | None = None
    output: str | None = None
    critique: str | None = None
    latency_ms: float | None = None
    tokens: int | None = None
    skills: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    #: When the episode expires (epoch seconds; None = never).
    expires_at: float | None = None
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self, embedding: bool = False) -> dict[str, Any]:
        """Plain-JSON form.

        >>> Episode(id=1, task="x").to_dict()["skills"]
        []
        """
        return _to_dict(self, embedding)


@dataclass
class Skill:
    """A reusable skill with a running success rate learnt from episodes.

    >>> Skill(id=1, name="retry").uses
    0
    """

    id: int
    name: str
    description: str = ""
    signature: str | None = None
    code: str | None = None
    success_rate: float = 0.0
    uses: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    #: When the skill expires (epoch seconds; None = never).
    expires_at: float | None = None
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self, embedding: bool = False) -> dict[str, Any]:
        """Plain-JSON form.

        >>> Skill(id=1, name="n").to_dict()["name"]
        'n'
        """
        return _to_dict(self, embedding)


@dataclass
class SearchResult:
    """One search hit: the id, cosine similarity (1 - distance), distance and the record.

    >>> SearchResult(id=1, similarity=0.9, distance=0.1, record=None).similarity
    0.9
    """

    id: int
    similarity: float
    distance: float
    record: Any
    #: The re-ranking score when the search re-ranked (``rerank="attention"``), else None.
    score: float | None = None

    def __post_init__(self) -> None:
        # float32 rounding can put an exact match a hair past similarity 1 (distance < 0)
        self.similarity = min(max(float(self.similarity), -1.0), 1.0)
        self.distance = min(max(float(self.distance), 0.0), 2.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form with the record nested (``score`` only when re-ranked).

        >>> SearchResult(1, 0.5, 0.5, Pattern(id=1, task="t")).to_dict()["record"]["task"]
        't'
        """
        rec = self.record.to_dict() if hasattr(self.record, "to_dict") else self.record
        out = {"id": self.id, "similarity": self.similarity, "distance": self.distance,
               "record": rec}
        if self.score is not None:
            out["score"] = self.score
        return out


def _to_dict(rec: Any, embedding: bool) -> dict[str, Any]:
    d = asdict(rec)
    emb = d.pop("embedding", None)
    if embedding and emb is not None:
        d["embedding"] = np.asarray(emb, dtype=np.float32).tolist()
    return d


def check_reward(reward: Any, name: str = "reward") -> float:
    """Validate a reward: a finite number within :data:`REWARD_RANGE`.

    >>> check_reward(0.5)
    0.5
    >>> check_reward(2)
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: reward must be within [-1.0, 1.0], got 2.0
    """
    if isinstance(reward, bool) or not isinstance(reward, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"{name} must be a number, got {type(reward).__name__}")
    r = float(reward)
    if not math.isfinite(r):
        raise InvalidArgumentError(f"{name} must be finite, got {r}")
    lo, hi = REWARD_RANGE
    if not lo <= r <= hi:
        raise InvalidArgumentError(f"{name} must be within [{lo}, {hi}], got {r}")
    return r


def check_metadata(metadata: Any) -> str:
    """Validate metadata (a JSON-serialisable dict) and return its JSON text.

    >>> check_metadata({"lang": "py"})
    '{"lang": "py"}'
    """
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidTypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"metadata is not JSON-serialisable: {exc}") from None


def check_vector(vec: Any, dim: int, name: str = "embedding") -> np.ndarray:
    """Validate one embedding: numeric, 1-D, ``dim`` long, finite, not all zero, and its norm
    within :data:`NORM_RANGE`.

    >>> check_vector([1, 0], 2).dtype
    dtype('float32')
    """
    arr = np.asarray(vec)
    if arr.dtype.kind not in "fiu":
        raise InvalidTypeError(f"{name} must be a real numeric vector, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != dim:
        raise InvalidArgumentError(
            f"dimension mismatch: store has dim {dim}, {name} has {arr.shape[0]}")
    # one pass: the largest magnitude is NaN if any value is, inf if any is, 0 if all are
    top = float(np.abs(arr).max()) if arr.size else 0.0  # the norm is in [top, top*sqrt(dim)]
    if not math.isfinite(top):
        raise InvalidArgumentError(f"{name} contains NaN or infinity")
    if top == 0.0:
        raise InvalidArgumentError(f"{name} is an all-zero vector (cosine similarity is undefined)")
    if not (top >= NORM_RANGE[0] and top * math.sqrt(arr.size) <= NORM_RANGE[1]):
        norm = float(np.linalg.norm(arr.astype(np.float64)))
        if not NORM_RANGE[0] <= norm <= NORM_RANGE[1]:
            raise InvalidArgumentError(
                f"{name} has norm {norm:.3g}; embeddings need a norm between 1e-15 and 1e15 "
                "(float32 sums of squares, as pgvector computes them, under- or overflow "
                "outside it): scale the vector")
    return arr
