"""The agent memory users import: ``db = agentdb.open("memory.db")``.

Patterns (the ReasoningBank), Reflexion episodes and skills live in one SQLite file (the
system of record); each collection has an HNSW index saved beside it
(``memory.db.patterns.hnsw``, ...). On open, a missing, corrupt or stale index is detected and
brought up to date from SQLite (only the changes since it was saved, or a full rebuild).

>>> import agentdb
>>> db = agentdb.open(":memory:", dim=64)
>>> pid = db.store_pattern("parse ISO dates in logs", reward=0.9, success=True)
>>> hits = db.search_patterns("parse dates from log lines", k=1)
>>> hits[0].id == pid
True
>>> db.close()
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..embedders import Embedder, get_embedder
from ..engines.loader import backend
from ..errors import (
    ConflictError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    StoreClosedError,
)
from ..learning.learner import Learner, check_feedback_reward
from ..storage import SQLiteStore, StoreError
from ..storage.columns import FilterColumns
from ..storage.events import Callback, EventBus
from ..storage.filters import where_sql
from ..storage.records import (
    Episode,
    Pattern,
    SearchResult,
    Skill,
    check_metadata,
    check_reward,
    check_vector,
)
from .progress import progress_bar

__all__ = ["AgentDB", "open"]

_RECORD = {"patterns": Pattern, "episodes": Episode, "skills": Skill}
_KIND = {"patterns": "pattern", "episodes": "episode", "skills": "skill"}
_TEXT_FIELDS = ("session_id", "input", "output", "critique")
_UNSET: Any = object()


class _Collection:
    def __init__(self, name: str, index: Any, attrs: FilterColumns | None) -> None:
        self.name = name
        self.index = index
        self.attrs = attrs
        self.saved_gen = -1  # the generation the index file on disk reflects (-1: none)
        self.changed_gen = 0  # the last generation that changed this index's vectors


class MemoryCore:
    """The memory API written once, over an engine's hooks.

    Everything here -- validation of records, embedding, events, reads, updates, learning
    from feedback, attention synthesis, critique summaries -- is shared by the embedded
    store (:class:`AgentDB`: SQLite or PostgreSQL + a native index in this process) and the
    cluster (:class:`agentdb.cluster.ClusterDB`: PostgreSQL as the log + Ray shards). An
    engine subclass provides the state and the hooks of the *engine protocol*:

    * attributes ``dim``, ``embedder``, ``store`` (the system of record: ``get``,
      ``existing``, ``count``, ``iter``, ``meta``), ``learning``, ``_events``, ``_closed``;
    * ``_check_open()`` -- raise :class:`~agentdb.errors.StoreClosedError` once closed;
    * ``_write_rows(name, rows, extra=None) -> ids`` -- insert validated rows
      ``(values, vector, id | None, created_at | None)`` in one transaction, index them;
    * ``_get(name, id) -> record`` / ``_delete(name, id)`` /
      ``_update(name, id, values, vector | None) -> record`` -- one row, ``NotFoundError``
      when unknown;
    * ``_search(name, query, k, filters..., threshold, ef) -> list[SearchResult]`` and
      ``_retrieve_ids(vector, n) -> ids`` -- search with the filters as an allow-list;
    * ``_pattern_vectors(ids) -> array`` -- stored vectors by id;
    * ``store_pattern(s)``, ``store_episodes``, ``store_skill``, ``get_skill``, the
      ``search_*`` methods and ``stats`` -- whose write and search paths differ per engine.

    >>> import agentdb
    >>> issubclass(agentdb.AgentDB, MemoryCore)
    True
    """

    def __enter__(self) -> AgentDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run (every call then raises ``StoreClosedError``)."""
        return self._closed

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event, payload)`` after each matching committed write.

        >>> db = AgentDB(":memory:", dim=8); seen = []
        >>> off = db.on("pattern:stored", lambda e, p: seen.append(p["task"]))
        >>> _ = db.store_pattern("t", embedding=np.ones(8)); seen
        ['t']
        """
        return self._events.on(event, callback)

    def _vector(self, embedding: Any, text: str | None) -> np.ndarray:
        if embedding is not None:
            return check_vector(embedding, self.dim)
        if text is None:
            raise InvalidArgumentError("an embedding or a text to embed is required")
        return check_vector(self.embedder.embed([text])[0], self.dim)

    def _query_vector(self, query: str | Any) -> np.ndarray:
        if isinstance(query, str):
            if not query.strip():
                raise InvalidArgumentError("query text is empty")
            return check_vector(self.embedder.embed([query])[0], self.dim, "query")
        return check_vector(query, self.dim, "query")

    def _pattern_row(self, task: str, embedding: Any, reward: Any, success: Any,
                     session_id: Any, input: Any, output: Any, critique: Any,
                     metadata: Any) -> tuple[dict[str, Any], np.ndarray]:
        _check_text("task", task, required=True)
        for fname, val in (("session_id", session_id), ("input", input), ("output", output),
                           ("critique", critique)):
            _check_text(fname, val)
        values = {"task": task, "reward": check_reward(reward), "success": _check_success(success),
                  "session_id": session_id, "input": input, "output": output,
                  "critique": critique, "metadata": check_metadata(metadata)}
        return values, self._vector(embedding, None if embedding is not None else task)

    def _pattern_rows(self, patterns: Iterable[dict[str, Any]]
                      ) -> list[tuple[dict[str, Any], np.ndarray, int | None, float | None]]:
        """Validate pattern dicts into ``(values, vector, id, created_at)`` rows (texts without
        an embedding are embedded in one batch); errors name the item."""
        items = _dict_items(patterns, "patterns")
        if not items:
            return []
        self._embed_missing(items, "task")
        rows = []
        for n, p in enumerate(items):
            try:
                values, vec = self._pattern_row(
                    p.pop("task", None), p.pop("embedding", None), p.pop("reward", 0.0),
                    p.pop("success", False), p.pop("session_id", None), p.pop("input", None),
                    p.pop("output", None), p.pop("critique", None), p.pop("metadata", None))
                rid = _opt_id(p.pop("id", None))
                created = _opt_time(p.pop("created_at", None))
                p.pop("updated_at", None)
                if p:
                    raise InvalidArgumentError(f"unknown pattern field(s): {', '.join(sorted(p))}")
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"patterns[{n}]: {exc}") from None
            rows.append((values, vec, rid, created))
        return rows

    def _embed_missing(self, items: list[dict[str, Any]], field: str,
                       text: Callable[[dict[str, Any]], str] | None = None) -> None:
        need = [p for p in items if p.get("embedding") is None and isinstance(p.get(field), str)]
        if need:
            vecs = self.embedder.embed([text(p) if text else p[field] for p in need])
            for p, v in zip(need, vecs):
                p["embedding"] = v

    def _emit_rows(self, name: str, ids: Sequence[int], action: str = "stored") -> None:
        event = f"{_KIND[name]}:{action}"
        if not self._events._subs:
            return
        for rec in self._get_many(name, ids):
            self._events.emit(event, rec.to_dict())

    def _get_many(self, name: str, ids: Sequence[int]) -> list[Any]:
        rows = self.store.get(name, ids)
        return [_record(name, rows[i]) for i in ids if i in rows]

    def get_pattern(self, id: int) -> Pattern:
        """A pattern by id (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); i = db.store_pattern("t")
        >>> db.get_pattern(i).task
        't'
        """
        return self._get("patterns", id)

    def update_pattern(self, id: int, *, task: str = _UNSET, embedding: Any = None,
                       reward: float = _UNSET, success: bool = _UNSET,
                       session_id: str | None = _UNSET, input: str | None = _UNSET,
                       output: str | None = _UNSET, critique: str | None = _UNSET,
                       metadata: dict[str, Any] | None = _UNSET) -> Pattern:
        """Change some fields of a pattern; returns the updated record. A new ``task``
        without an ``embedding`` is re-embedded.

        >>> db = AgentDB(":memory:", dim=8); i = db.store_pattern("t")
        >>> db.update_pattern(i, reward=1.0, success=True).reward
        1.0
        """
        rid = _as_id(id)
        self._get("patterns", rid)
        values = _pattern_changes(task, reward, success, session_id, input, output, critique,
                                  metadata)
        vec = None
        if embedding is not None:
            vec = check_vector(embedding, self.dim)
        elif "task" in values:
            vec = self._vector(None, values["task"])
        return self._update("patterns", rid, values, vec)

    def delete_pattern(self, id: int) -> None:
        """Delete a pattern (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); i = db.store_pattern("t"); db.delete_pattern(i)
        """
        self._delete("patterns", id)

    @property
    def attention(self) -> Any:
        """The :class:`agentdb.engines.attention.AttentionService` used by ``rerank="attention"``
        and :meth:`synthesize_context` (native kernels when built)."""
        if self._attention is None:
            from ..engines.attention import AttentionService

            self._attention = AttentionService(temperature=0.05)
        return self._attention

    def synthesize_context(self, query: str | Any, k: int = 5, *, temperature: float = 0.05,
                           adapt: bool = True, min_reward: float | None = None,
                           success_only: bool = False, session_id: str | None = None,
                           where: dict[str, Any] | None = None) -> dict[str, Any]:
        """An attention-weighted summary of the ``k`` patterns most relevant to ``query``:
        ``{"vector": (dim,) float32 array, "weights": [(id, weight), ...] best first,
        "records": [SearchResult, ...]}``. The weights are ``softmax(cos(q, x_i) / T)`` over
        the retrieved patterns (summing to 1) and ``vector = sum_i w_i x_i`` over their
        stored embeddings -- one vector to condition an agent on, plus how much each memory
        contributed. Filters as in :meth:`search_patterns`; an empty store gives an empty
        summary (a zero vector, no weights).

        >>> db = AgentDB(":memory:", dim=4)
        >>> a = db.store_pattern("a", embedding=[1, 0, 0, 0])
        >>> b = db.store_pattern("b", embedding=[0, 1, 0, 0])
        >>> ctx = db.synthesize_context([1, 0.1, 0, 0], k=2, temperature=0.1)
        >>> [i for i, _ in ctx["weights"]] == [a, b], round(sum(w for _, w in ctx["weights"]), 6)
        (True, 1.0)
        """
        hits = self.search_patterns(query, k, min_reward=min_reward, success_only=success_only,
                                    session_id=session_id, where=where, adapt=adapt)
        if not hits:
            return {"vector": np.zeros(self.dim, np.float32), "weights": [], "records": []}
        q = self._query_vector(query)
        if adapt:
            q = self.learning.apply(q)
        vecs = self._pattern_vectors([h.id for h in hits])
        summary, w = self.attention.synthesize(q, vecs, temperature=temperature)
        return {"vector": np.asarray(summary, np.float32),
                "weights": [(h.id, float(x)) for h, x in zip(hits, w)], "records": hits}

    def feedback(self, query: str | Any, pattern_id: int, reward: float = 1.0
                 ) -> dict[str, Any]:
        """Report that pattern ``pattern_id`` was the right memory for ``query``
        (``reward`` > 0, the weight) or a wrong one (``reward`` < 0); ``reward`` is finite,
        in [-1, 1]. One online step of the query adapter (:mod:`agentdb.learning`) against
        the patterns it currently retrieves; later :meth:`search_patterns` calls use it.

        Returns ``{"updated": True, "loss", "p_positive", "rank_before", "updates"}``, or
        ``{"updated": False, "reason"}`` when learning is disabled or ``reward == 0``.
        Unknown ids raise ``KeyError``, a bad query or reward ``ValueError``, a read-only
        store ``StoreError``.

        >>> db = AgentDB(":memory:", dim=8)
        >>> a = db.store_pattern("a", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        >>> b = db.store_pattern("b", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
        >>> db.feedback([1, 0.2, 0, 0, 0, 0, 0, 0], b, reward=1.0)["updated"]
        True
        """
        q, pos, negs = self._feedback_inputs(query, pattern_id, None, self.learning,
                                             reward=reward)
        return self.learning.learn(q, pos, negs, reward)

    def feedback_trajectory(self, query: str | Any, retrieved_ids: Sequence[int],
                            outcome_reward: float, *, used: int | None = None
                            ) -> dict[str, Any]:
        """The outcome of one retrieval step of a trajectory: the agent searched with
        ``query``, got ``retrieved_ids`` (best first), acted on ``used`` (default: the
        first) and the outcome was ``outcome_reward`` in [-1, 1]. ``used`` is the positive
        (or, for a negative outcome, the pattern pushed away); the other retrieved ids are
        the negatives (when there are none, the current retrieval supplies them). Call it
        once per step of a multi-step trajectory. Returns what :meth:`feedback` returns.

        >>> db = AgentDB(":memory:", dim=8)
        >>> ids = [db.store_pattern(f"p{i}", embedding=np.eye(8)[i]) for i in range(3)]
        >>> db.feedback_trajectory(np.eye(8)[0], ids, 1.0, used=ids[2])["updated"]
        True
        """
        if isinstance(retrieved_ids, (str, bytes)) or not isinstance(retrieved_ids, Iterable):
            raise InvalidTypeError("retrieved_ids must be a sequence of pattern ids")
        retrieved = [_as_id(i) for i in retrieved_ids]
        if not retrieved and used is None:
            raise InvalidArgumentError("retrieved_ids is empty and no used= pattern was given")
        positive = retrieved[0] if used is None else used
        q, pos, negs = self._feedback_inputs(query, positive, retrieved, self.learning,
                                             reward=outcome_reward)
        return self.learning.learn(q, pos, negs, outcome_reward)

    def _feedback_inputs(self, query: str | Any, pattern_id: int,
                         retrieved: Sequence[int] | None, learner: Learner, *, reward: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated ``(query, positive vector, negative vectors)`` for one feedback event;
        negatives are ``retrieved`` minus the positive, else what ``learner``'s adapter
        retrieves now (shared with :class:`agentdb.learning.EphemeralLearningAgent`)."""
        self._check_open()
        pid = _as_id(pattern_id)
        check_feedback_reward(reward)
        q = self._query_vector(query)
        neg_ids = [i for i in dict.fromkeys(retrieved or ()) if i != pid]
        if not neg_ids:
            n = learner.config.negatives
            ids = self._retrieve_ids(learner.apply(q), n + 1)
            neg_ids = [int(i) for i in ids if i >= 0 and i != pid][:n]
        vecs = self._pattern_vectors([pid, *neg_ids])
        return q, vecs[0], vecs[1:]

    def _episode_row(self, e: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
        task = e.pop("task", None)
        _check_text("task", task, required=True)
        values: dict[str, Any] = {"task": task}
        for fname in _TEXT_FIELDS:
            val = e.pop(fname, None)
            _check_text(fname, val)
            values[fname] = val
        values["reward"] = check_reward(e.pop("reward", 0.0))
        values["success"] = _check_success(e.pop("success", False))
        latency = e.pop("latency_ms", None)
        if latency is not None:
            if isinstance(latency, bool) or not isinstance(
                    latency, (int, float, np.integer, np.floating)):
                raise InvalidTypeError(f"latency_ms must be a number, got {type(latency).__name__}")
            latency = float(latency)
            if not np.isfinite(latency) or latency < 0:
                raise InvalidArgumentError(
                    f"latency_ms must be a finite number >= 0, got {latency}")
        values["latency_ms"] = latency
        tokens = e.pop("tokens", None)
        if tokens is not None:
            if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
                raise InvalidArgumentError(f"tokens must be an integer >= 0, got {tokens!r}")
            tokens = int(tokens)
        values["tokens"] = tokens
        skills = e.pop("skills", None) or []
        if isinstance(skills, str) or not all(isinstance(s, str) for s in skills):
            raise InvalidTypeError("skills must be a list of skill names")
        values["skills"] = json.dumps(list(dict.fromkeys(skills)))  # each skill counted once
        values["metadata"] = check_metadata(e.pop("metadata", None))
        emb = e.pop("embedding", None)
        return values, self._vector(emb, None if emb is not None else task)

    def store_episode(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, latency_ms: float | None = None,
                      tokens: int | None = None, skills: Sequence[str] | None = None,
                      metadata: dict[str, Any] | None = None, id: int | None = None) -> int:
        """Store a Reflexion episode; returns its id. Each skill named in ``skills`` has its
        ``uses`` and running ``success_rate`` updated in the same transaction.

        >>> db = AgentDB(":memory:", dim=16)
        >>> _ = db.store_skill("retry", "retry with backoff")
        >>> _ = db.store_episode("call API", success=True, skills=["retry"])
        >>> db.get_skill("retry").uses
        1
        """
        return self.store_episodes([{
            "task": task, "embedding": embedding, "reward": reward, "success": success,
            "session_id": session_id, "input": input, "output": output, "critique": critique,
            "latency_ms": latency_ms, "tokens": tokens, "skills": skills,
            "metadata": metadata, "id": id}])[0]

    def get_episode(self, id: int) -> Episode:
        """An episode by id (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); i = db.store_episode("t")
        >>> db.get_episode(i).task
        't'
        """
        return self._get("episodes", id)

    def update_episode(self, id: int, *, reward: float = _UNSET, success: bool = _UNSET,
                       critique: str | None = _UNSET, output: str | None = _UNSET,
                       latency_ms: float | None = _UNSET, tokens: int | None = _UNSET,
                       metadata: dict[str, Any] | None = _UNSET) -> Episode:
        """Change the outcome fields of an episode (its task and skills stay); returns the
        updated record and fires ``episode:updated``.

        >>> db = AgentDB(":memory:", dim=8); i = db.store_episode("t")
        >>> db.update_episode(i, critique="retry sooner").critique
        'retry sooner'
        """
        rid = _as_id(id)
        old = self._get("episodes", rid)
        probe: dict[str, Any] = {"task": old.task, "embedding": old.embedding}
        for fname, val in (("reward", reward), ("success", success), ("critique", critique),
                           ("output", output), ("latency_ms", latency_ms), ("tokens", tokens),
                           ("metadata", metadata)):
            if val is not _UNSET:
                probe[fname] = val
        values, _ = self._episode_row(dict(probe))  # the same validation as store_episode
        changed = {k: values[k] for k in probe if k not in ("task", "embedding")}
        return self._update("episodes", rid, changed, None)

    def delete_episode(self, id: int) -> None:
        """Delete an episode (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); db.delete_episode(db.store_episode("t"))
        """
        self._delete("episodes", id)

    def critique_summary(self, task: str | Any, k: int = 5) -> list[str]:
        """Critiques of the ``k`` most similar *failed* episodes, most similar first,
        without duplicates — the Reflexion memory to put in the next prompt.

        >>> db = AgentDB(":memory:", dim=16)
        >>> _ = db.store_episode("write tests", success=False, critique="mocked too much")
        >>> db.critique_summary("write unit tests")
        ['mocked too much']
        """
        out: list[str] = []
        for r in self.search_episodes(task, k=k, success=False):
            c = r.record.critique
            if c and c not in out:
                out.append(c)
        return out

    def _skill_id(self, id_or_name: int | str) -> int:
        if isinstance(id_or_name, str):
            row = self.store.find("skills", "name", id_or_name)
            if row is None:
                raise NotFoundError(f"unknown skill {id_or_name!r}")
            return int(row["id"])
        return _as_id(id_or_name)

    def update_skill(self, id_or_name: int | str, *, name: str = _UNSET,
                     description: str = _UNSET, signature: str | None = _UNSET,
                     code: str | None = _UNSET, success_rate: float = _UNSET,
                     uses: int = _UNSET, metadata: dict[str, Any] | None = _UNSET,
                     embedding: Any = None) -> Skill:
        """Change some fields of a skill; a new name or description is re-embedded.

        >>> db = AgentDB(":memory:", dim=8); _ = db.store_skill("s")
        >>> db.update_skill("s", success_rate=0.5).success_rate
        0.5
        """
        rid = self._skill_id(id_or_name)
        old = self._get("skills", rid)
        values: dict[str, Any] = {}
        for fname, val in (("name", name), ("description", description),
                           ("signature", signature), ("code", code)):
            if val is not _UNSET:
                _check_text(fname, val, required=fname == "name")
                values[fname] = val
        if success_rate is not _UNSET:
            values["success_rate"] = _check_rate(success_rate)
        if uses is not _UNSET:
            if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 0:
                raise InvalidArgumentError(f"uses must be an integer >= 0, got {uses!r}")
            values["uses"] = int(uses)
        if metadata is not _UNSET:
            values["metadata"] = check_metadata(metadata)
        if "name" in values and values["name"] != old.name and \
                self.store.find("skills", "name", values["name"]) is not None:
            raise ConflictError(f"skill with name {values['name']!r} already exists")
        vec = None
        if embedding is not None:
            vec = check_vector(embedding, self.dim)
        elif "name" in values or "description" in values:
            vec = self._vector(None, f"{values.get('name', old.name)}: "
                                     f"{values.get('description', old.description)}")
        return self._update("skills", rid, values, vec)

    def delete_skill(self, id_or_name: int | str) -> None:
        """Delete a skill by id or name (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); _ = db.store_skill("s"); db.delete_skill("s")
        """
        self._delete("skills", self._skill_id(id_or_name))

    def count(self, kind: str = "patterns") -> int:
        """Number of records of a kind ("patterns", "episodes", "skills").

        >>> AgentDB(":memory:", dim=8).count("skills")
        0
        """
        _check_kind(kind)
        return self.store.count(kind)

    def iter_records(self, kind: str, batch: int = 2000) -> Iterable[Any]:
        """Every record of a kind, in id order (with embeddings).

        >>> db = AgentDB(":memory:", dim=8); _ = db.store_pattern("t")
        >>> [p.task for p in db.iter_records("patterns")]
        ['t']
        """
        _check_kind(kind)
        for rows in self.store.iter_rows(kind, batch=batch):
            for row in rows:
                yield _record(kind, row)


class AgentDB(MemoryCore):
    """Agent memory on SQLite + a native HNSW index per collection. Use :func:`open`.

    >>> db = AgentDB(":memory:", dim=32)
    >>> db.stats()["patterns"]
    0
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        dim: int | None = None,
        embedder: Embedder | str | None = None,
        readonly: bool = False,
        durability: str = "full",
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        threads: int = 0,
        progress: bool | None = None,
        backend: str | None = None,
        url: str | None = None,
        schema: str = "public",
        table_prefix: str = "",
        search: str | None = None,
        mirror: str | None = None,
        mirror_schema: str = "public",
        mirror_prefix: str = "",
        learning: bool | dict[str, Any] | None = None,
    ) -> None:
        if backend is None and str(path).startswith(("postgresql://", "postgres://")):
            backend = "postgres"  # agentdb.open("postgresql://...")
        kind = backend if backend is not None else os.environ.get("AGENTDB_BACKEND", "sqlite")
        kind = (kind or "sqlite").strip().lower()
        if kind not in ("sqlite", "postgres"):
            raise InvalidArgumentError(f"backend must be 'sqlite' or 'postgres', got {kind!r}")
        if kind == "postgres":
            url = url or os.environ.get("AGENTDB_POSTGRES_URL") or (
                str(path) if str(path).startswith(("postgresql://", "postgres://")) else None)
            if not url:
                raise InvalidArgumentError(
                    "backend='postgres' needs url=... or AGENTDB_POSTGRES_URL")
            search = search or "pgvector"
            if search not in ("pgvector", "native"):
                raise InvalidArgumentError(f"search must be 'pgvector' or 'native', got {search!r}")
            if mirror is not None:
                raise InvalidArgumentError(
                    "mirror= applies to the SQLite backend (PostgreSQL is already "
                    "the system of record)")
        elif search not in (None, "native"):
            raise InvalidArgumentError("search='pgvector' needs backend='postgres'")
        self.backend_name = kind
        self.search_mode = search or "native"
        self._mirror: Any = None
        from ..storage.mirror import redact_url

        self.path = redact_url(url) if kind == "postgres" and url else str(path)
        self._progress = progress
        self._lock = threading.RLock()
        self._events = EventBus()
        self._closed = False
        self._graph: Any = None
        self._attention: Any = None
        self._index_params = {"M": M, "ef_construction": ef_construction,
                              "ef_search": ef_search, "threads": threads}
        existing_dim = (_existing_pg_dim(url, schema, table_prefix) if kind == "postgres"
                        else _existing_dim(self.path))
        if dim is None:
            dim = existing_dim or (getattr(embedder, "dim", None) if embedder is not None
                                   and not isinstance(embedder, str) else None) or 384
        if existing_dim and existing_dim != dim:
            raise InvalidArgumentError(
                f"dimension mismatch: '{self.path}' stores dim {existing_dim}, "
                f"opened with dim {dim}")
        self.dim = int(dim)
        self.embedder = get_embedder(embedder, self.dim)
        if self.embedder.dim != self.dim:
            raise InvalidArgumentError(f"dimension mismatch: embedder has dim {self.embedder.dim}, "
                                       f"store has dim {self.dim}")
        if kind == "postgres":
            from ..storage.postgres import PostgresStore

            self.store: Any = PostgresStore(url, self.dim, schema=schema,
                                            table_prefix=table_prefix, readonly=readonly)
        else:
            self.store = SQLiteStore(self.path, self.dim, readonly=readonly,
                                     durability=durability)
        self.readonly = readonly
        try:
            self._cols = {name: self._open_collection(name)
                          for name in ("patterns", "episodes", "skills")}
            self.learning = Learner.attach(self.store, self.dim, learning, readonly)
            if mirror is not None:
                if readonly:
                    raise InvalidArgumentError("a read-only store cannot feed a mirror")
                from ..storage.mirror import Mirror

                self._mirror = Mirror(self.store, mirror, schema=mirror_schema,
                                      table_prefix=mirror_prefix)
        except BaseException:
            self.store.close()
            raise
        if not self.store.memory and not readonly:
            ref = weakref.ref(self)
            atexit.register(lambda: (db := ref()) is not None and db.close())

    # ---- lifecycle --------------------------------------------------------------------------
    def _index_path(self, name: str) -> str:
        return f"{self.path}.{name}.hnsw"

    def _new_index(self) -> Any:
        p = self._index_params
        return backend.HNSWIndex(self.dim, metric="cosine", M=p["M"],
                                 ef_construction=p["ef_construction"],
                                 ef_search=p["ef_search"], threads=p["threads"])

    def _open_pg_collection(self, name: str) -> _Collection:
        """PostgreSQL: pgvector answers searches, or a native index is rebuilt from the table
        (one binary COPY of ids and vectors)."""
        self.index_status = getattr(self, "index_status", {})
        if self.search_mode == "pgvector":
            from ..storage.pg_backend import PostgresBackend

            self.index_status[name] = "pgvector"
            return _Collection(name, PostgresBackend(self.store, name,
                                                     self._index_params["ef_search"]), None)
        index = self._new_index()
        ids, vecs = self.store.export_vectors(name)
        if len(ids):
            index.add(ids, vecs)
        self.index_status[name] = f"rebuilt from PostgreSQL ({len(ids)} vectors)"
        col = _Collection(name, index, self._filter_columns(name))
        return col

    def _filter_columns(self, name: str) -> FilterColumns:
        attrs = FilterColumns()

        def meta_of(m: Any) -> Any:
            return m if isinstance(m, dict) else json.loads(m)

        if name == "skills":  # the reward column holds the success rate
            for rid, rate, meta in self.store.scalar_columns(name, ("success_rate", "metadata")):
                attrs.set(rid, rate, False, None, meta_of(meta))
        else:
            for rid, reward, success, session, meta in self.store.scalar_columns(
                    name, ("reward", "success", "session_id", "metadata")):
                attrs.set(rid, reward, bool(success), session, meta_of(meta))
        return attrs

    def _open_collection(self, name: str) -> _Collection:
        """Load the saved index and replay what changed since it was saved, or rebuild."""
        if self.backend_name == "postgres":
            return self._open_pg_collection(name)
        index, since = None, -1
        path = self._index_path(name)
        saved = self.store.meta(f"index_gen:{name}")
        self.index_status: dict[str, str] = getattr(self, "index_status", {})
        status = "new"
        if not self.store.memory and os.path.exists(path) and saved is not None:
            try:
                index = backend.HNSWIndex.load(path)
                if index.dim != self.dim or index.metric != "cosine":
                    raise InvalidArgumentError("index parameters do not match the store")
                index.ef_search = self._index_params["ef_search"]
                index.threads = self._index_params["threads"]
                since = int(saved)
                status = "loaded"
            except (ValueError, OSError) as exc:
                index, status = None, f"rebuilt ({exc})"
        elif not self.store.memory and self.store.count(name):
            status = "rebuilt (index file missing)"
        if index is None:
            index, since = self._new_index(), -1
        changed = 0
        for rid in self.store.deleted_since(name, since):
            if index.contains(rid):
                index.remove([rid])
                changed += 1
        changed += self._replay(name, index, since)
        if len(index) != self.store.count(name):  # should not happen; never serve a wrong index
            index = self._new_index()
            self._replay(name, index, -1)
            status = "rebuilt (count mismatch)"
        self.index_status[name] = status
        col = _Collection(name, index, self._filter_columns(name))
        # the file is current when nothing of this collection changed since it was saved
        # (later writes to other tables -- other collections, the graph, the learning
        # state -- advance the generation too, but do not touch this index)
        current = status == "loaded" and changed == 0
        col.saved_gen = since if current else -1
        col.changed_gen = since if current else self.store.generation
        return col

    def _replay(self, name: str, index: Any, since: int) -> int:
        """Add the rows written after generation ``since``; returns how many."""
        count = 0
        total = self.store.count(name) if since < 0 else None
        show = self._progress if self._progress is not None else None
        with progress_bar(total or 0, f"indexing {name}",
                          enabled=(show if show is not None else None)
                          if (total or 0) >= 20_000 else False) as advance:
            for rows in self.store.iter_rows(name, since_gen=since, batch=5000,
                                             columns="id, embedding, gen"):
                ids = np.fromiter((r["id"] for r in rows), np.int64, len(rows))
                vecs = np.stack([r["embedding"] for r in rows])
                index.add(ids, vecs)
                advance(len(rows))
                count += len(rows)
        return count

    def checkpoint(self) -> None:
        """Save every index file that changed, so the next open needs no catch-up.

        >>> AgentDB(":memory:", dim=8).checkpoint()
        """
        if not self.readonly:
            self.learning.save()  # the query adapter's state, if it changed
        if self.store.memory or self.readonly or self.backend_name == "postgres":
            return  # PostgreSQL: pgvector persists itself; a native index is rebuilt on open
        with self._lock:
            gen = self.store.generation
            saved = []
            for name, col in self._cols.items():
                if col.saved_gen >= 0 and col.changed_gen <= col.saved_gen:
                    continue  # the file already holds these vectors
                col.index.save(self._index_path(name))
                self.store.set_meta(f"index_gen:{name}", str(gen))
                saved.append(col)
            gen_after = self.store.generation  # set_meta advanced it; nothing else changed
            for col in saved:
                col.saved_gen = gen_after

    def close(self) -> None:
        """Save changed indexes and close the store (idempotent).

        >>> db = AgentDB(":memory:", dim=8); db.close(); db.close()
        """
        if self._closed:
            return
        try:
            self.checkpoint()
            if self._mirror is not None:
                self._mirror.close()
        finally:
            self._closed = True
            self.store.close()

    # ---- PostgreSQL mirror ------------------------------------------------------------------
    def mirror_status(self) -> dict[str, Any]:
        """Health and lag of the PostgreSQL mirror (``open(..., mirror=url)``): ``pending``
        writes not yet copied, ``lag_seconds`` (age of the oldest), ``connected``,
        ``last_error``, ``acked_seq`` / ``last_seq``, ``applied``, ``last_sync``.

        >>> AgentDB(":memory:", dim=8).mirror_status()
        {'enabled': False}
        """
        self._check_open()
        if self._mirror is None:
            return {"enabled": False}
        return {"enabled": True, **self._mirror.status()}

    def mirror_flush(self, timeout: float = 30.0) -> bool:
        """Block until every committed write is in PostgreSQL (False after ``timeout`` s)."""
        self._check_open()
        if self._mirror is None:
            raise InvalidArgumentError(
                "this store has no mirror (open it with mirror='postgresql://...')")
        return bool(self._mirror.flush(timeout))

    @property
    def write_lock(self) -> threading.RLock:
        """The lock every write of this handle holds. Hold it too to make a read-check-write
        sequence atomic against the other threads of this process (re-entrant).

        >>> db = open(":memory:", dim=8)
        >>> with db.write_lock:
        ...     pid = db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        """
        return self._lock

    def search_hits(self, vector: Any, k: int = 5, *, ef: int | None = None,
                    min_reward: float | None = None, success_only: bool = False,
                    session_id: str | None = None, where: dict[str, Any] | None = None,
                    threshold: float | None = None) -> list[dict[str, Any]]:
        """The cheapest pattern search: ``{"id", "similarity", "distance", "metadata"}`` per
        hit, best first. Same filters, order and answer as :meth:`search_patterns` with
        ``adapt=False``, but the metadata comes from the in-memory filter columns (kept
        current by every write) instead of a read of the records. The HTTP server's
        ``/vectors/search`` runs on it. A pgvector store answers through
        :meth:`search_patterns`.

        >>> db = open(":memory:", dim=8)
        >>> pid = db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0], metadata={"a": 1})
        >>> db.search_hits([1, 0.1, 0, 0, 0, 0, 0, 0], 1, where={"a": 1})[0]["metadata"]
        {'a': 1}
        """
        col = self._cols["patterns"] if not self._closed else None
        if col is None or col.attrs is None:
            return [{"id": h.id, "similarity": h.similarity, "distance": h.distance,
                     "metadata": h.record.metadata} for h in self.search_patterns(
                vector, k, min_reward=min_reward, success_only=success_only,
                session_id=session_id, where=where, threshold=threshold, ef=ef, adapt=False)]
        threshold = _check_k_threshold(k, threshold)
        allowed = self._allowed("patterns", min_reward, True if success_only else None,
                                session_id, where)
        q = self._query_vector(vector)
        index = col.index
        n = len(index)
        if n == 0 or (allowed is not None and allowed.size == 0):
            return []
        ids, dists = index.search(q, k=min(int(k), n), ef=ef, allowed=allowed)
        attrs = col.attrs
        out = []
        with attrs.lock:
            pos, meta = attrs.pos, attrs.meta
            for i, d in zip(ids.tolist(), dists.tolist()):
                p = pos.get(i) if i >= 0 else None
                if p is None or (threshold is not None and 1.0 - d < threshold):
                    continue  # padding, deleted meanwhile, or below the threshold
                out.append({"id": i, "similarity": 1.0 - d, "distance": d, "metadata": meta[p]})
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"AgentDB '{self.path}' is closed")

    # ---- causal graph ---------------------------------------------------------------------------
    @property
    def graph(self) -> Any:
        """The causal memory hypergraph of this store
        (:class:`agentdb.graph.causal.CausalMemoryGraph`),
        loaded on first use.

        >>> db = AgentDB(":memory:", dim=8)
        >>> db.graph.stats()["nodes"]
        0
        """
        self._check_open()
        if self._graph is None:
            from ..graph.causal import CausalMemoryGraph

            with self._lock:
                if self._graph is None:
                    self._graph = CausalMemoryGraph(self.store, self._events)
        return self._graph

    # ---- events -----------------------------------------------------------------------------
    # ---- helpers ----------------------------------------------------------------------------
    def _write_rows(self, name: str,
                    rows: list[tuple[dict[str, Any], np.ndarray, int | None, float | None]],
                    extra: Callable[[Any], None] | None = None) -> list[int]:
        """Insert validated rows in one transaction and index them; all or nothing."""
        self._check_open()
        col = self._cols[name]
        with self._lock:
            added: list[int] = []
            try:
                with self.store.write() as w:
                    added = self._insert_rows(w, name, rows)
                    if extra is not None:
                        extra(w)
                    col.index.add(np.asarray(added, np.int64), np.stack([r[1] for r in rows]))
            except BaseException:
                present = [i for i in added if col.index.contains(i)]
                if present:
                    col.index.remove(present)
                raise
            col.changed_gen = self.store.generation
            if col.attrs is not None:
                for (values, _, _, _), rid in zip(rows, added):
                    if name == "skills":
                        col.attrs.set(rid, values["success_rate"], False, None,
                                      json.loads(values["metadata"]))
                    else:
                        col.attrs.set(rid, values["reward"], bool(values["success"]),
                                      values.get("session_id"), json.loads(values["metadata"]))
        return added

    def _insert_rows(self, w: Any, name: str,
                     rows: list[tuple[dict[str, Any], np.ndarray, int | None, float | None]]
                     ) -> list[int]:
        """Insert rows inside transaction ``w``: one binary COPY on PostgreSQL for a batch
        without explicit ids, else row by row (duplicates become a ValueError)."""
        bulk = getattr(self.store, "bulk_insert", None)
        if bulk is not None and len(rows) > 1 and all(r[2] is None for r in rows):
            batch = [dict(values, **({} if created is None else {"created_at": created}))
                     for values, _v, _r, created in rows]
            try:
                return list(bulk(w, name, batch, np.stack([r[1] for r in rows])))
            except Exception as exc:
                if "UNIQUE" in str(exc) and name == "skills":
                    raise ConflictError(f"a skill with one of these names already exists ({exc})"
                                        ) from None
                raise
        added: list[int] = []
        for values, vec, rid, created in rows:
            try:
                added.append(self.store.insert(w, name, values, vec, row_id=rid,
                                               created_at=created))
            except Exception as exc:
                msg = str(exc)
                if "UNIQUE" in msg or "PRIMARY KEY" in msg or "duplicate key" in msg:
                    what = (f"name {values.get('name')!r}" if name == "skills"
                            and values.get("name") else f"id {rid}")
                    raise ConflictError(f"{_KIND[name]} with {what} already exists") from None
                raise
        return added

    def _get(self, name: str, rid: int) -> Any:
        self._check_open()
        rid = _as_id(rid)
        rows = self.store.get(name, [rid])
        if rid not in rows:
            raise NotFoundError(f"unknown {_KIND[name]} id {rid}")
        return _record(name, rows[rid])

    def _delete(self, name: str, rid: int) -> None:
        self._check_open()
        rid = _as_id(rid)
        col = self._cols[name]
        with self._lock:
            if not self.store.existing(name, [rid]):
                raise NotFoundError(f"unknown {_KIND[name]} id {rid}")
            with self.store.write() as w:
                self.store.delete(w, name, [rid])
            col.index.remove([rid])
            col.changed_gen = self.store.generation
            if col.attrs is not None:
                col.attrs.remove(rid)
        self._events.emit(f"{_KIND[name]}:deleted", {"id": rid})

    def _update(self, name: str, rid: int, values: dict[str, Any],
                vec: np.ndarray | None) -> Any:
        self._check_open()
        col = self._cols[name]
        with self._lock:
            old_vec = col.index.get_vector(rid) if vec is not None else None
            try:
                with self.store.write() as w:
                    self.store.update(w, name, rid, values, vec)
                    if vec is not None:
                        col.index.add([rid], vec)
            except BaseException:
                if old_vec is not None:
                    col.index.add([rid], old_vec)
                raise
            col.changed_gen = self.store.generation
            rec = self._get(name, rid)
            self._refresh_columns(name, rec)
        self._events.emit(f"{_KIND[name]}:updated", rec.to_dict())
        return rec

    def _refresh_columns(self, name: str, rec: Any) -> None:
        attrs = self._cols[name].attrs
        if attrs is None:
            return
        if name == "skills":
            attrs.set(rec.id, rec.success_rate, False, None, rec.metadata)
        else:
            attrs.set(rec.id, rec.reward, rec.success, rec.session_id, rec.metadata)

    def _search(self, name: str, query: str | Any, k: int, allowed: np.ndarray | None,
                threshold: float | None, ef: int | None, adapt: bool = False
                ) -> list[SearchResult]:
        self._check_open()
        threshold = _check_k_threshold(k, threshold)
        q = self._query_vector(query)
        if adapt and self.learning.active:
            q = self.learning.apply(q)
            if ef is None:  # off-distribution queries need a wider beam (LearningConfig)
                ef = max(int(k), math.ceil(self.learning.config.ef_factor
                                           * (self._index_params["ef_search"] or 64)))
        return self._results(name, self._hits(name, q, k, allowed, threshold, ef))

    def _hits(self, name: str, q: np.ndarray, k: int, allowed: Any, threshold: float | None,
              ef: int | None) -> list[tuple[int, float]]:
        """``(id, cosine distance)`` of the index search, best first, over ``threshold``."""
        col = self._cols[name]
        if isinstance(allowed, dict):  # pgvector: the filters become the query's WHERE clause
            if threshold is not None:
                allowed["max_distance"] = 1.0 - threshold
            ids, dists = col.index.search(q, k=int(k), ef=ef, filters=allowed)
        else:
            if len(col.index) == 0 or (allowed is not None and allowed.size == 0):
                return []
            k = min(int(k), len(col.index))  # never allocate more than there is to return
            ids, dists = col.index.search(q, k=k, ef=ef, allowed=allowed)
        hits = [(int(i), float(d)) for i, d in zip(ids, dists) if i >= 0]
        if threshold is not None:
            hits = [(i, d) for i, d in hits if 1.0 - d >= threshold]
        return hits

    def _results(self, name: str, hits: list[tuple[int, float]],
                 scores: Sequence[float] | None = None) -> list[SearchResult]:
        """The hits with their records (one read); hits deleted meanwhile are dropped."""
        rows = self.store.get(name, [i for i, _ in hits], with_embedding=False)
        sc = [None] * len(hits) if scores is None else [float(x) for x in scores]
        return [SearchResult(i, 1.0 - d, d, _record(name, rows[i]), s)
                for (i, d), s in zip(hits, sc) if i in rows]

    def _allowed(self, name: str, min_reward: float | None, success: bool | None,
                 session_id: str | None, where: dict[str, Any] | None) -> np.ndarray | None:
        """Sorted ids passing the filters (from in-memory columns), or None for no filter."""
        if min_reward is None and success is None and session_id is None and not where:
            return {} if self._cols[name].attrs is None else None
        if where:
            where_sql(where)  # validates keys and operators with the documented errors
        if min_reward is not None:
            min_reward = check_reward(min_reward, "min_reward")
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise InvalidTypeError(f"success must be True, False or None, got {success!r}")
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidTypeError(f"session_id must be a string, got {type(session_id).__name__}")
        attrs = self._cols[name].attrs
        if attrs is None:  # pgvector search: pushed into SQL
            return {"min_reward": min_reward, "success": None if success is None else bool(success),
                    "session_id": session_id, "where": where or None}
        return attrs.select(min_reward, success, session_id, where or None)

    # ---- patterns ---------------------------------------------------------------------------
    def store_pattern(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, metadata: dict[str, Any] | None = None,
                      id: int | None = None) -> int:
        """Store a reasoning pattern; returns its id. The task text is embedded unless an
        ``embedding`` is given. ``reward`` must be in [-1, 1].

        >>> db = AgentDB(":memory:", dim=16)
        >>> db.store_pattern("cache API responses", reward=0.8, success=True) >= 1
        True
        """
        values, vec = self._pattern_row(task, embedding, reward, success, session_id, input,
                                        output, critique, metadata)
        rid = self._write_rows("patterns", [(values, vec, _opt_id(id), None)])[0]
        self._emit_rows("patterns", [rid])
        return rid

    def store_patterns(self, patterns: Iterable[dict[str, Any]]) -> list[int]:
        """Store many patterns in one transaction (all or nothing); returns their ids.

        Each item is a dict of :meth:`store_pattern`'s arguments. Texts without an embedding
        are embedded in one batch.

        >>> db = AgentDB(":memory:", dim=16)
        >>> len(db.store_patterns([{"task": "a"}, {"task": "b", "reward": 0.5}]))
        2
        """
        rows = self._pattern_rows(patterns)
        if not rows:
            return []
        ids = self._write_rows("patterns", rows)
        self._emit_rows("patterns", ids)
        return ids

    def search_patterns(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success_only: bool = False,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        adapt: bool = True, rerank: str | None = None,
                        candidates: int | None = None, heads: int = 1,
                        temperature: float = 0.05) -> list[SearchResult]:
        """The ``k`` most similar patterns that pass every filter, best first.

        Filters run inside the index search, so ``k`` results come back whenever ``k``
        patterns match. ``threshold`` drops hits with cosine similarity below it.
        When learning is active (``db.learning``, see :meth:`feedback`) the query goes
        through the learned adapter first and similarities are to the adapted query;
        ``adapt=False`` searches with the raw query.

        ``rerank="attention"``: fetch ``candidates`` hits (default ``max(4k, 20)``) and
        order them by :meth:`agentdb.engines.attention.AttentionService.rerank` -- the
        head-averaged multi-head attention of the query over their stored vectors
        (``heads`` column slices, softmax ``temperature``), computed exactly on the
        vectors, so ``heads=1`` is exact cosine order over a wider HNSW candidate set.
        ``rerank="attention+reward"`` multiplies the attention by the prior
        ``max(0.05, (1 + reward) / 2)``, so of two near-equal memories the one that worked
        comes first. Each hit's ``score`` holds its attention weight (summing to 1 over the
        candidates); ``similarity`` stays the cosine.

        >>> db = AgentDB(":memory:", dim=32)
        >>> _ = db.store_pattern("sort a list", reward=0.9, success=True)
        >>> _ = db.store_pattern("sort a list badly", reward=0.1)
        >>> [r.record.reward for r in db.search_patterns("sort list", success_only=True)]
        [0.9]
        """
        allowed = self._allowed("patterns", min_reward, True if success_only else None,
                                session_id, where)
        if rerank is None:
            return self._search("patterns", task_or_vector, k, allowed, threshold, ef,
                                adapt=bool(adapt))
        n = rerank_candidates(rerank, k, candidates)
        q = self._query_vector(task_or_vector)
        if adapt and self.learning.active:
            q = self.learning.apply(q)
            if ef is None:
                ef = math.ceil(self.learning.config.ef_factor
                               * (self._index_params["ef_search"] or 64))
        self._check_open()
        hits = self._hits("patterns", q, int(n), allowed, threshold,
                          None if ef is None else max(int(ef), int(n)))
        if not hits:
            return []
        vecs = self._pattern_vectors([i for i, _ in hits])
        prior = None
        if rerank == "attention+reward":
            prior = reward_prior(self._rewards("patterns", [i for i, _ in hits]))
        order, scores = self.attention.rerank(q, vecs, heads=heads, temperature=temperature,
                                              prior=prior)
        return self._results("patterns", [hits[j] for j in order[:k]], scores[:k])

    def _rewards(self, name: str, ids: Sequence[int]) -> np.ndarray:
        """Current rewards of records (the in-memory columns, else one store read)."""
        attrs = self._cols[name].attrs
        if attrs is not None:
            with attrs.lock:
                pos = [attrs.pos.get(i) for i in ids]
                if None not in pos:
                    return attrs.reward[np.asarray(pos, np.int64)].astype(np.float64)
        rows = self.store.get(name, list(ids), with_embedding=False)
        return np.array([float(rows[i]["reward"]) if i in rows else 0.0 for i in ids])

    # ---- learning from outcomes ---------------------------------------------------------------
    def _retrieve_ids(self, q: np.ndarray, n: int) -> np.ndarray:
        """Ids of the (at most) ``n`` patterns nearest to ``q``, unfiltered: what the
        current adapter retrieves, the negatives of a feedback event."""
        col = self._cols["patterns"]
        if col.attrs is None:  # pgvector search
            ids, _ = col.index.search(q, k=n, filters={})
        else:
            ids, _ = col.index.search(q, k=max(1, min(n, len(col.index))))
        return np.asarray(ids)

    def _pattern_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored embeddings of pattern ids, in order (``KeyError`` naming an unknown id)."""
        col = self._cols["patterns"]
        if col.attrs is None:  # pgvector: the table is the only copy
            return stored_vectors(self.store, "patterns", ids)
        for i in ids:
            if not col.index.contains(i):
                raise NotFoundError(f"unknown pattern id {i}")
        return np.stack([col.index.get_vector(i) for i in ids])

    # ---- episodes ---------------------------------------------------------------------------
    def store_episodes(self, episodes: Iterable[dict[str, Any]], *,
                       update_skills: bool = True) -> list[int]:
        """Store many episodes in one transaction (all or nothing). With
        ``update_skills=False`` the named skills' statistics are left alone (imports).

        >>> db = AgentDB(":memory:", dim=16)
        >>> len(db.store_episodes([{"task": "a", "critique": "x"}]))
        1
        """
        items = _dict_items(episodes, "episodes")
        if not items:
            return []
        self._embed_missing(items, "task")
        rows, outcomes = [], []
        for n, e in enumerate(items):
            try:
                rid = _opt_id(e.pop("id", None))
                created = _opt_time(e.pop("created_at", None))
                e.pop("updated_at", None)
                values, vec = self._episode_row(e)
                if e:
                    raise InvalidArgumentError(f"unknown episode field(s): {', '.join(sorted(e))}")
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"episodes[{n}]: {exc}") from None
            rows.append((values, vec, rid, created))
            if update_skills:
                for s in json.loads(values["skills"]):
                    outcomes.append((s, bool(values["success"])))
        names = {s for s, _ in outcomes}
        missing = sorted(n for n in names if self.store.find("skills", "name", n) is None)
        if missing:
            raise NotFoundError(f"unknown skill(s): {', '.join(missing)}")

        def record_skills(w: Any) -> None:
            now = time.time()
            for s, ok in outcomes:
                w.execute(
                    "UPDATE skills SET success_rate = (success_rate * uses + ?) / (uses + 1), "
                    "uses = uses + 1, updated_at = ? WHERE name = ?", (1.0 if ok else 0.0, now, s))

        ids = self._write_rows("episodes", rows, extra=record_skills if outcomes else None)
        self._emit_rows("episodes", ids)
        for s in sorted(names):
            rec = self.get_skill(s)
            self._refresh_columns("skills", rec)
            self._events.emit("skill:updated", rec.to_dict())
        return ids

    def search_episodes(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success: bool | None = None,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None
                        ) -> list[SearchResult]:
        """The ``k`` most similar episodes; ``success=False`` keeps only failures.

        >>> db = AgentDB(":memory:", dim=16)
        >>> _ = db.store_episode("deploy", success=False, critique="forgot migrations")
        >>> db.search_episodes("deploy", success=False)[0].record.critique
        'forgot migrations'
        """
        allowed = self._allowed("episodes", min_reward, success, session_id, where)
        return self._search("episodes", task_or_vector, k, allowed, threshold, ef)

    # ---- skills -----------------------------------------------------------------------------
    def store_skill(self, name: str, description: str = "", *, signature: str | None = None,
                    code: str | None = None, success_rate: float = 0.0, uses: int = 0,
                    metadata: dict[str, Any] | None = None, embedding: Any = None,
                    id: int | None = None, created_at: float | None = None) -> int:
        """Store a skill (names are unique); embeds ``"name: description"`` by default.

        >>> db = AgentDB(":memory:", dim=16)
        >>> db.store_skill("grep", "search files") >= 1
        True
        """
        _check_text("name", name, required=True)
        _check_text("description", description)
        _check_text("signature", signature)
        _check_text("code", code)
        rate = _check_rate(success_rate)
        if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 0:
            raise InvalidArgumentError(f"uses must be an integer >= 0, got {uses!r}")
        values = {"name": name, "description": description or "", "signature": signature,
                  "code": code, "success_rate": rate, "uses": int(uses),
                  "metadata": check_metadata(metadata)}
        vec = self._vector(embedding, f"{name}: {description or ''}")
        rid = self._write_rows("skills",
                               [(values, vec, _opt_id(id), _opt_time(created_at))])[0]
        self._emit_rows("skills", [rid])
        return rid

    def get_skill(self, id_or_name: int | str) -> Skill:
        """A skill by id or name (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); _ = db.store_skill("s")
        >>> db.get_skill("s").name
        's'
        """
        self._check_open()
        return self._get("skills", self._skill_id(id_or_name))

    def search_skills(self, query: str | Any, k: int = 5, *,
                      min_success_rate: float | None = None,
                      where: dict[str, Any] | None = None, threshold: float | None = None,
                      ef: int | None = None) -> list[SearchResult]:
        """The ``k`` skills most similar to the query.

        >>> db = AgentDB(":memory:", dim=32)
        >>> _ = db.store_skill("http_retry", "retry HTTP calls with backoff")
        >>> db.search_skills("retry http")[0].record.name
        'http_retry'
        """
        allowed = None
        if min_success_rate is not None or where:
            if where:
                where_sql(where)  # validates keys and operators
            rate = None if min_success_rate is None else _check_rate(min_success_rate)
            attrs = self._cols["skills"].attrs
            if attrs is None:  # pgvector search: the skills table's success_rate column
                allowed = {"min_reward": rate, "where": where or None}
            else:
                allowed = attrs.select(rate, None, None, where or None)
        elif self._cols["skills"].attrs is None:
            allowed = {}
        return self._search("skills", query, k, allowed, threshold, ef)

    # ---- bulk, stats ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Real counts and sizes.

        >>> AgentDB(":memory:", dim=8).stats()["dim"]
        8
        """
        self._check_open()
        files = {n: os.path.getsize(self._index_path(n)) for n in self._cols
                 if not self.store.memory and os.path.exists(self._index_path(n))}
        return {
            "path": self.path,
            "dim": self.dim,
            "backend": backend.BACKEND,
            "store": self.backend_name,
            "search": self.search_mode,
            "embedder": getattr(self.embedder, "name", type(self.embedder).__name__),
            "patterns": self.store.count("patterns"),
            "episodes": self.store.count("episodes"),
            "skills": self.store.count("skills"),
            "generation": self.store.generation,
            "db_bytes": self.store.file_size(),
            "index_memory_bytes": {n: int(c.index.memory_usage()) for n, c in self._cols.items()},
            "index_file_bytes": files,
            "index_status": dict(self.index_status),
            "learning": self.learning.stats(),
        }


# ---- module helpers ---------------------------------------------------------------------------
def _existing_dim(path: str) -> int | None:
    if path == ":memory:" or not Path(path).exists() or Path(path).stat().st_size == 0:
        return None  # SQLite treats an empty file as an empty database
    import sqlite3

    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"'{path}' is not a readable AgentDB store: {exc}") from None
    return int(row[0]) if row else None


def _existing_pg_dim(url: str | None, schema: str, prefix: str) -> int | None:
    """The dim a PostgreSQL store records in its meta table, or None (no store yet)."""
    if not url:
        return None
    from ..storage.pg_backend import existing_dim

    return existing_dim(url, schema, prefix)


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
        raise NotFoundError(f"unknown {_KIND[name]} id {missing[0]}")
    return np.stack([np.asarray(rows[i]["embedding"], np.float32) for i in ids])


def _check_k_threshold(k: Any, threshold: Any) -> float | None:
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


def _check_kind(kind: Any) -> None:
    if kind not in _KIND:
        raise InvalidArgumentError(f"unknown kind {kind!r}: expected patterns, episodes or skills")


def _record(name: str, row: dict[str, Any]) -> Any:
    row = dict(row)
    row.pop("gen", None)
    return _RECORD[name](**row)


def _as_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidTypeError(f"id must be an integer, got {type(value).__name__}")
    return int(value)


def _opt_id(value: Any) -> int | None:
    if value is None:
        return None
    rid = _as_id(value)
    if rid < 1:
        raise InvalidArgumentError(f"id must be >= 1, got {rid}")
    return rid


def _dict_items(items: Iterable[Any], what: str) -> list[dict[str, Any]]:
    if isinstance(items, (str, bytes, dict)):
        raise InvalidTypeError(f"{what} must be a list of dicts, got {type(items).__name__}")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidTypeError(f"{what}[{n}] must be a dict, got {type(item).__name__}")
        out.append(dict(item))
    return out


def _pattern_changes(task: Any, reward: Any, success: Any, session_id: Any, input: Any,
                     output: Any, critique: Any, metadata: Any) -> dict[str, Any]:
    """Validated column values for a pattern update; ``_UNSET`` arguments are left out
    (shared by :meth:`AgentDB.update_pattern` and the cluster's)."""
    values: dict[str, Any] = {}
    if task is not _UNSET:
        _check_text("task", task, required=True)
        values["task"] = task
    if reward is not _UNSET:
        values["reward"] = check_reward(reward)
    if success is not _UNSET:
        values["success"] = _check_success(success)
    for fname, val in (("session_id", session_id), ("input", input), ("output", output),
                       ("critique", critique)):
        if val is not _UNSET:
            _check_text(fname, val)
            values[fname] = val
    if metadata is not _UNSET:
        values["metadata"] = check_metadata(metadata)
    return values


def _check_success(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)):
        return int(bool(value))
    raise InvalidTypeError(f"success must be a bool, got {value!r}")


def _opt_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InvalidArgumentError(
            f"created_at must be a finite epoch time in seconds, got {value!r}")
    return float(value)


def _check_text(name: str, value: Any, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string")
    if len(value) > 1_000_000:
        raise InvalidArgumentError(
            f"{name} is too long ({len(value)} characters; the limit is 1,000,000)")


def _check_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"success_rate must be a number, got {type(value).__name__}")
    r = float(value)
    if not (0.0 <= r <= 1.0):
        raise InvalidArgumentError(f"success_rate must be within [0, 1], got {r}")
    return r


def open(path: str | os.PathLike[str] = ":memory:", **options: Any) -> AgentDB:  # noqa: A001
    """Open (or create) an agent memory: a SQLite file, or ``":memory:"``.

    Options: ``dim`` (default: the store's, else the embedder's, else 384), ``embedder``
    (an object, ``"hashing"`` or ``"st:<model>"``), ``readonly``, ``durability``
    (``"full"``/``"normal"``), ``M``, ``ef_construction``, ``ef_search``, ``threads``,
    ``progress``.

    PostgreSQL (the ``postgres`` extra): ``backend="postgres"`` with ``url=`` (or the
    environment: ``AGENTDB_BACKEND=postgres`` and ``AGENTDB_POSTGRES_URL``; a
    ``postgresql://`` path also works), ``schema``, ``table_prefix``, and ``search`` --
    ``"pgvector"`` (default: SQL with an HNSW index) or ``"native"`` (a native index rebuilt
    from the table on open). ``mirror="postgresql://..."`` (with ``mirror_schema``,
    ``mirror_prefix``) keeps SQLite as the system of record and copies every write to
    PostgreSQL through a durable outbox (:mod:`agentdb.storage.mirror`).

    ``learning`` (:mod:`agentdb.learning`): ``None`` (default: the stored switch; on for a
    new store, where the query adapter stays the identity until the first
    :meth:`AgentDB.feedback`), ``True`` / ``False`` (turn learning on / off, persisted), or a
    dict of :class:`agentdb.learning.LearningConfig` fields (``rank``, ``lr``, ``tau``,
    ``negatives``, ``ewc_lambda``, ``fisher_decay``, ``consolidate_every``, ``save_every``,
    ...) plus ``enabled`` and ``reset`` (discard the stored learning state).

    >>> import agentdb
    >>> with agentdb.open(":memory:", dim=16) as db:
    ...     db.count()
    0
    """
    return AgentDB(path, **options)
