"""Checks and conversions the memory API shares: argument validation, ids, record rows, the
search helpers of the embedded store and the cluster (:mod:`agentdb.cluster.db`).

>>> as_id(3), KIND["patterns"]
(3, 'pattern')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, NotFoundError
from ..storage.records import Episode, Pattern, Skill, check_metadata, check_reward

__all__ = [
    "KIND", "TEXT_FIELDS", "UNSET", "as_id", "check_ef", "check_k_threshold", "check_kind",
    "check_rate", "check_success", "check_text", "dict_items", "opt_id", "opt_time",
    "pattern_changes", "rerank_candidates", "reward_prior", "stored_vectors", "to_record",
]

_RECORD = {"patterns": Pattern, "episodes": Episode, "skills": Skill}
#: The record kind of each collection ("patterns" -> "pattern"), as in event names.
KIND = {"patterns": "pattern", "episodes": "episode", "skills": "skill"}
#: The optional text fields of an episode besides its task.
TEXT_FIELDS = ("session_id", "input", "output", "critique")
#: The default of an update argument that was not given (``None`` is a value to store).
UNSET: Any = object()


def rerank_candidates(rerank: str, k: Any, candidates: Any) -> int:
    """How many hits a re-ranked search fetches (``candidates``, default ``max(4k, 20)``),
    after checking ``rerank`` and ``k`` (shared by the embedded store and the cluster).

    >>> rerank_candidates("attention", 5, None)
    20
    """
    if rerank not in ("attention", "attention+reward"):
        raise InvalidArgumentError(f"rerank must be None, 'attention' or 'attention+reward', got "
                                   f"{rerank!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be an integer >= 1, got {k!r}")
    n = max(4 * int(k), 20) if candidates is None else candidates
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < k:
        raise InvalidArgumentError(f"candidates must be an integer >= k ({k}), got {candidates!r}")
    return int(n)


def reward_prior(rewards: Any) -> np.ndarray:
    """The ``rerank="attention+reward"`` prior of rewards in [-1, 1]: ``max(0.05, (1 + r) / 2)``.

    >>> reward_prior([-1.0, 0.0, 1.0]).tolist()
    [0.05, 0.5, 1.0]
    """
    return np.maximum(0.05, (1.0 + np.asarray(rewards, np.float64)) / 2.0)


def stored_vectors(store: Any, name: str, ids: Sequence[int]) -> np.ndarray:
    """The stored embeddings of ``ids`` read from ``store``, in order; ``KeyError`` names the
    first unknown id."""
    rows = store.get(name, list(ids))
    missing = [i for i in ids if i not in rows]
    if missing:
        raise NotFoundError(f"unknown {KIND[name]} id {missing[0]}")
    return np.stack([np.asarray(rows[i]["embedding"], np.float32) for i in ids])


def check_k_threshold(k: Any, threshold: Any) -> float | None:
    """Validate a search's ``k`` and ``threshold``; the threshold as a float (or None)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be an integer >= 1, got {k!r}")
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(
            threshold, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"threshold must be a number, got {type(threshold).__name__}")
    if not (-1.0 <= float(threshold) <= 1.0):  # also rejects NaN
        raise InvalidArgumentError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    return float(threshold)


def check_ef(ef: Any) -> int | None:
    """Validate a search's beam width ``ef``: None (the index's default) or an integer >= 1.

    >>> check_ef(64), check_ef(None)
    (64, None)
    >>> check_ef(0)
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: ef must be an integer >= 1, got 0
    """
    if ef is None:
        return None
    if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or ef < 1:
        raise InvalidArgumentError(f"ef must be an integer >= 1, got {ef!r}")
    return int(ef)


def check_kind(kind: Any) -> None:
    """Raise ``InvalidArgumentError`` unless ``kind`` is "patterns", "episodes" or "skills"."""
    if kind not in KIND:
        raise InvalidArgumentError(f"unknown kind {kind!r}: expected patterns, episodes or skills")


def to_record(name: str, row: dict[str, Any]) -> Any:
    """The record (:class:`Pattern`, :class:`Episode`, :class:`Skill`) of a store row of
    collection ``name`` (its ``gen`` column dropped)."""
    if "gen" in row:
        row = {k: v for k, v in row.items() if k != "gen"}
    return _RECORD[name](**row)


def as_id(value: Any) -> int:
    """``value`` as an int id (``InvalidTypeError`` unless an integer; bools are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidTypeError(f"id must be an integer, got {type(value).__name__}")
    return int(value)


def opt_id(value: Any) -> int | None:
    """An explicit record id (an integer >= 1) or None."""
    if value is None:
        return None
    rid = as_id(value)
    if rid < 1:
        raise InvalidArgumentError(f"id must be >= 1, got {rid}")
    return rid


def dict_items(items: Iterable[Any], what: str) -> list[dict[str, Any]]:
    """Copies of the dicts in ``items`` (a list of dicts named ``what`` in errors)."""
    if isinstance(items, (str, bytes, dict)):
        raise InvalidTypeError(f"{what} must be a list of dicts, got {type(items).__name__}")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidTypeError(f"{what}[{n}] must be a dict, got {type(item).__name__}")
        out.append(dict(item))
    return out


def pattern_changes(task: Any, reward: Any, success: Any, session_id: Any, input: Any,
                     output: Any, critique: Any, metadata: Any) -> dict[str, Any]:
    """Validated column values for a pattern update; ``UNSET`` arguments are left out
    (shared by :meth:`AgentDB.update_pattern` and the cluster's)."""
    values: dict[str, Any] = {}
    if task is not UNSET:
        check_text("task", task, required=True)
        values["task"] = task
    if reward is not UNSET:
        values["reward"] = check_reward(reward)
    if success is not UNSET:
        values["success"] = check_success(success)
    for fname, val in (("session_id", session_id), ("input", input), ("output", output),
                       ("critique", critique)):
        if val is not UNSET:
            check_text(fname, val)
            values[fname] = val
    if metadata is not UNSET:
        values["metadata"] = check_metadata(metadata)
    return values


def check_success(value: Any) -> int:
    """A ``success`` flag (a bool, or 0 / 1) as 0 or 1."""
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)):
        return int(bool(value))
    raise InvalidTypeError(f"success must be a bool, got {value!r}")


def opt_time(value: Any) -> float | None:
    """An explicit ``created_at`` (finite epoch seconds) as a float, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InvalidArgumentError(
            f"created_at must be a finite epoch time in seconds, got {value!r}")
    return float(value)


def check_text(name: str, value: Any, required: bool = False) -> None:
    """Check a text field: a string (or None unless ``required``; then non-blank) of at
    most 1,000,000 characters."""
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string")
    if len(value) > 1_000_000:
        raise InvalidArgumentError(
            f"{name} is too long ({len(value)} characters; the limit is 1,000,000)")


def check_rate(value: Any) -> float:
    """A skill's ``success_rate``: a number within [0, 1], as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"success_rate must be a number, got {type(value).__name__}")
    r = float(value)
    if not (0.0 <= r <= 1.0):
        raise InvalidArgumentError(f"success_rate must be within [0, 1], got {r}")
    return r

