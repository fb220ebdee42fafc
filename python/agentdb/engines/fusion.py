"""Keyword queries and rank fusion for hybrid (text + vector) search.

:func:`query_terms` turns a free-text query into the terms the full-text indexes match
(SQLite FTS5, PostgreSQL ``tsvector``): words of letters, digits and underscores, so
identifiers such as ``ERR_CONN_RESET`` or ``psycopg2`` stay whole, lower-cased, each
searched as a phrase of its parts and OR-ed, so a record matching more (and rarer) terms
ranks higher (BM25 / ``ts_rank_cd``). :func:`rrf` fuses ranked lists by reciprocal-rank
fusion: ``score(d) = sum_i w_i / (K + rank_i(d))`` with ``K = 60`` (Cormack et al.) and
ranks from 1, so a record high in both lists beats one high in a single list.

>>> query_terms("Fix ERR_CONN_RESET in psycopg2 (again)!")
['fix', 'err_conn_reset', 'in', 'psycopg2', 'again']
>>> fts5_match(["err_conn_reset", "psycopg2"])
'"err_conn_reset" OR "psycopg2"'
>>> [i for i, _ in rrf([[1, 2, 3], [3, 1]], [0.5, 0.5])]
[1, 3, 2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["MODES", "RRF_K", "check_mode", "check_text_weight", "fts5_match", "hybrid_max_df",
           "query_terms", "rrf", "text_max_df"]

#: Search modes: the HNSW index, the full-text index, or both fused.
MODES = ("vector", "text", "hybrid")
#: The rank offset of reciprocal-rank fusion.
RRF_K = 60
_MAX_TERMS = 64
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(query: str) -> list[str]:
    """The distinct lower-cased terms of a query, in order (at most 64)."""
    out: list[str] = []
    for w in _WORD.findall(query.lower()):
        if w not in out:
            out.append(w)
        if len(out) == _MAX_TERMS:
            break
    return out


def fts5_match(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: each term as a quoted string (a phrase of its tokens), OR-ed
    (terms hold only word characters, so no quoting problem can arise)."""
    return " OR ".join(f'"{t}"' for t in terms)


def check_mode(mode: Any, query: Any) -> str:
    """The search mode, checked; text and hybrid need a text query.

    >>> check_mode("hybrid", "parse dates")
    'hybrid'
    """
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "vector" and not isinstance(query, str):
        raise InvalidArgumentError(f"mode={mode!r} needs a text query (a vector has no words)")
    return str(mode)


def check_text_weight(w: Any) -> float:
    """The text side's weight in hybrid fusion, in [0, 1] (the vector side gets 1 - w).

    >>> check_text_weight(0.5)
    0.5
    """
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise InvalidTypeError(f"text_weight must be a number in [0, 1], got {w!r}")
    w = float(w)
    if not 0.0 <= w <= 1.0:
        raise InvalidArgumentError(f"text_weight must be within [0, 1], got {w}")
    return w


def hybrid_max_df(rows: int) -> int:
    """The most records a query term may appear in and still count on the text side of a
    hybrid search: ``max(3, rows // 10000)`` (0.01% of the collection). Words that many
    records share ("how", "python", "dates") would otherwise bring records that match nothing
    but them, and reciprocal-rank fusion, which sees ranks and not scores, would give those
    records as much weight as an exact match of a name or an identifier, which is what the
    text side is for (``benchmarks/hybrid.py`` measured 0.5% and 0.05% too).

    >>> hybrid_max_df(100_000), hybrid_max_df(10)
    (10, 3)
    """
    return max(3, int(rows) // 10_000)


def text_max_df(rows: int) -> int:
    """The most records a query term may appear in for a text search: ``max(20, rows //
    20)`` (5%, words like "the" and "for"; they add little to BM25 and cost a scan of most
    of the index). A query made only of such words keeps them all.

    >>> text_max_df(100_000)
    5000
    """
    return max(20, int(rows) // 20)


def rrf(lists: Sequence[Sequence[int]], weights: Sequence[float], k: int = RRF_K
        ) -> list[tuple[int, float]]:
    """``(id, fused score)`` best first over every id of ``lists`` (each best first); ties
    keep the order of first appearance."""
    scores: dict[int, float] = {}
    for ids, w in zip(lists, weights):
        for rank, i in enumerate(ids, start=1):
            scores[i] = scores.get(i, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
