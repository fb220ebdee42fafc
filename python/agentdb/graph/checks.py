"""Validation shared by the causal graph engines (embedded and cluster): property maps,
confidences, timestamps, hyperedges, links to memory records, and property-index keys.

>>> check_confidence(0.5)
0.5
>>> index_key(True) == index_key(1)
True
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, NotFoundError
from ..storage.columns import equality_key

__all__ = ["check_confidence", "check_edge", "check_props", "check_time", "index_key",
           "link_records", "same_value"]


def index_key(value: Any) -> Any:
    """Index key: numbers by exact value (True == 1), strings as is, others unindexable
    (``None``); the same keys as the filter columns' :func:`~agentdb.storage.columns.equality_key`.
    """
    if isinstance(value, (bool, int, float, str)):
        return equality_key(value)
    return None


def check_props(props: dict[str, Any], what: str) -> dict[str, Any]:
    """A copy of ``props`` if its keys are non-empty strings and it is JSON-serialisable."""
    if not isinstance(props, dict):
        raise InvalidTypeError(f"{what} properties must be a dict, got {type(props).__name__}")
    for k in props:
        if not isinstance(k, str) or not k:
            raise InvalidArgumentError(
                f"{what} property names must be non-empty strings, got {k!r}")
    try:
        json.dumps(props, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} properties are not JSON-serialisable: {exc}") from None
    return dict(props)


def check_confidence(c: Any) -> float:
    """A confidence as a float in [0, 1] (NaN, booleans and non-numbers refused)."""
    if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"confidence must be a number in [0, 1], got {c!r}")
    c = float(c)
    if not 0.0 <= c <= 1.0:  # also rejects NaN
        raise InvalidArgumentError(f"confidence must be within [0, 1], got {c}")
    return c


def check_time(t: Any) -> float:
    """A finite timestamp (epoch seconds) as a float."""
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"timestamp must be a number (epoch seconds), got {t!r}")
    if not math.isfinite(float(t)):
        raise InvalidArgumentError(f"timestamp must be finite, got {t}")
    return float(t)


def link_records(store: Any, props: dict[str, Any], pattern_id: int | None,
                 episode_id: int | None, skill_id: int | None) -> None:
    """Check that the linked memory records exist in ``store`` and set ``patternId`` /
    ``episodeId`` / ``skillId`` in ``props`` (``TypeError`` / ``KeyError`` naming the id)."""
    for key, table, rid in (("patternId", "patterns", pattern_id),
                            ("episodeId", "episodes", episode_id),
                            ("skillId", "skills", skill_id)):
        if rid is None:
            continue
        if isinstance(rid, bool) or not isinstance(rid, (int, np.integer)):
            raise InvalidTypeError(f"{table[:-1]}_id must be an integer, got {rid!r}")
        if not store.existing(table, [int(rid)]):
            raise NotFoundError(f"unknown {table[:-1]} id {rid}")
        props[key] = int(rid)


def check_edge(etype: Any, causes: Sequence[int], effects: Sequence[int], confidence: Any,
               timestamp: Any, props: dict[str, Any]
               ) -> tuple[list[int], list[int], float, float, dict[str, Any]]:
    """Validate a hyperedge: ``(tail, head, confidence, timestamp, props)`` or a ValueError /
    TypeError naming the problem (the timestamp defaults to now)."""
    if not isinstance(etype, str) or not etype:
        raise InvalidArgumentError(f"edge type must be a non-empty string, got {etype!r}")
    tail = [int(x) for x in causes]
    head = [int(x) for x in effects]
    if not tail or not head:
        raise InvalidArgumentError("a causal edge needs at least one cause and one effect")
    return (tail, head, check_confidence(confidence),
            check_time(time.time() if timestamp is None else timestamp),
            check_props(props, "edge"))


def same_value(a: Any, b: Any) -> bool:
    """Cypher equality of two property values (booleans equal only booleans)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)
