"""The memory API written once: :class:`MemoryCore`, over an engine's hooks.

The embedded store (:class:`agentdb.memory.embedded.AgentDB`) and the cluster
(:class:`agentdb.cluster.db.ClusterDB`) subclass it and provide the engine protocol
(see the class docstring).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from ..errors import (
    ConflictError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
)
from ..learning.learner import Learner, check_feedback_reward
from ..storage.events import Callback
from ..storage.records import (
    Episode,
    Pattern,
    Skill,
    check_metadata,
    check_reward,
    check_vector,
)
from .forgetting import check_dedupe, expiry, forget_filters, merged_reward
from .validation import (
    KIND,
    TEXT_FIELDS,
    UNSET,
    as_id,
    check_kind,
    check_rate,
    check_success,
    check_text,
    dict_items,
    opt_id,
    opt_time,
    pattern_changes,
    to_record,
)

__all__ = ["MemoryCore"]


#: HNSW beam of the duplicate check of ``store_pattern(dedupe=...)``.
_DEDUPE_EF = 256

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

    def __enter__(self) -> MemoryCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run (every call then raises ``StoreClosedError``)."""
        return self._closed

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event, payload)`` after each matching committed write.

        >>> from agentdb import AgentDB
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

    def query_vector(self, query: str | Any) -> np.ndarray:
        """A query as the store searches it: text is embedded with the store's embedder, a
        vector is checked (dimension, finite values) and returned as float32.

        >>> from agentdb import AgentDB
        >>> with AgentDB(":memory:", dim=16) as db:
        ...     db.query_vector("parse ISO dates").shape
        (16,)
        """
        if isinstance(query, str):
            if not query.strip():
                raise InvalidArgumentError("query text is empty")
            return check_vector(self.embedder.embed([query])[0], self.dim, "query")
        return check_vector(query, self.dim, "query")

    def _pattern_row(self, task: str, embedding: Any, reward: Any, success: Any,
                     session_id: Any, input: Any, output: Any, critique: Any,
                     metadata: Any, expires_at: float | None = None
                     ) -> tuple[dict[str, Any], np.ndarray]:
        check_text("task", task, required=True)
        for fname, val in (("session_id", session_id), ("input", input), ("output", output),
                           ("critique", critique)):
            check_text(fname, val)
        values = {"task": task, "reward": check_reward(reward), "success": check_success(success),
                  "session_id": session_id, "input": input, "output": output,
                  "critique": critique, "metadata": check_metadata(metadata),
                  "expires_at": expires_at}
        return values, self._vector(embedding, None if embedding is not None else task)

    def _pattern_rows(self, patterns: Iterable[dict[str, Any]]
                      ) -> list[tuple[dict[str, Any], np.ndarray, int | None, float | None]]:
        """Validate pattern dicts into ``(values, vector, id, created_at)`` rows (texts without
        an embedding are embedded in one batch); errors name the item."""
        items = dict_items(patterns, "patterns")
        if not items:
            return []
        self._embed_missing(items, "task")
        rows = []
        for n, p in enumerate(items):
            try:
                values, vec = self._pattern_row(
                    p.pop("task", None), p.pop("embedding", None), p.pop("reward", 0.0),
                    p.pop("success", False), p.pop("session_id", None), p.pop("input", None),
                    p.pop("output", None), p.pop("critique", None), p.pop("metadata", None),
                    expiry(p.pop("ttl", None), p.pop("expires_at", None)))
                uses = p.pop("uses", None)
                if uses is not None:
                    if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or \
                            uses < 1:
                        raise InvalidArgumentError(f"uses must be an integer >= 1, got {uses!r}")
                    values["uses"] = int(uses)
                rid = opt_id(p.pop("id", None))
                created = opt_time(p.pop("created_at", None))
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
        event = f"{KIND[name]}:{action}"
        if not self._events._subs:
            return
        for rec in self._get_many(name, ids):
            self._events.emit(event, rec.to_dict())

    def _get_many(self, name: str, ids: Sequence[int]) -> list[Any]:
        rows = self.store.get(name, ids)
        return [to_record(name, rows[i]) for i in ids if i in rows]

    def get_pattern(self, id: int) -> Pattern:
        """A pattern by id (``KeyError`` if unknown).

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); i = db.store_pattern("t")
        >>> db.get_pattern(i).task
        't'
        """
        return self._get("patterns", id)

    def update_pattern(self, id: int, *, task: str = UNSET, embedding: Any = None,
                       reward: float = UNSET, success: bool = UNSET,
                       session_id: str | None = UNSET, input: str | None = UNSET,
                       output: str | None = UNSET, critique: str | None = UNSET,
                       metadata: dict[str, Any] | None = UNSET, ttl: Any = UNSET,
                       expires_at: Any = UNSET) -> Pattern:
        """Change some fields of a pattern; returns the updated record. A new ``task``
        without an ``embedding`` is re-embedded. ``ttl`` (seconds from now) or
        ``expires_at`` (epoch seconds; None: never) sets when it expires.

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); i = db.store_pattern("t")
        >>> db.update_pattern(i, reward=1.0, success=True).reward
        1.0
        """
        rid = as_id(id)
        self._get("patterns", rid)
        values = pattern_changes(task, reward, success, session_id, input, output, critique,
                                  metadata)
        values.update(_expiry_change(ttl, expires_at))
        vec = None
        if embedding is not None:
            vec = check_vector(embedding, self.dim)
        elif "task" in values:
            vec = self._vector(None, values["task"])
        return self._update("patterns", rid, values, vec)

    def delete_pattern(self, id: int) -> None:
        """Delete a pattern (``KeyError`` if unknown).

        >>> from agentdb import AgentDB
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

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8)
        >>> a = db.store_pattern("a", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        >>> b = db.store_pattern("b", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
        >>> ctx = db.synthesize_context([1, 0.1, 0, 0, 0, 0, 0, 0], k=2, temperature=0.1)
        >>> [i for i, _ in ctx["weights"]] == [a, b], round(sum(w for _, w in ctx["weights"]), 6)
        (True, 1.0)
        """
        hits = self.search_patterns(query, k, min_reward=min_reward, success_only=success_only,
                                    session_id=session_id, where=where, adapt=adapt)
        if not hits:
            return {"vector": np.zeros(self.dim, np.float32), "weights": [], "records": []}
        q = self.query_vector(query)
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

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8)
        >>> a = db.store_pattern("a", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        >>> b = db.store_pattern("b", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
        >>> db.feedback([1, 0.2, 0, 0, 0, 0, 0, 0], b, reward=1.0)["updated"]
        True
        """
        q, pos, negs = self.feedback_inputs(query, pattern_id, None, self.learning,
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

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8)
        >>> ids = [db.store_pattern(f"p{i}", embedding=np.eye(8)[i]) for i in range(3)]
        >>> db.feedback_trajectory(np.eye(8)[0], ids, 1.0, used=ids[2])["updated"]
        True
        """
        if isinstance(retrieved_ids, (str, bytes)) or not isinstance(retrieved_ids, Iterable):
            raise InvalidTypeError("retrieved_ids must be a sequence of pattern ids")
        retrieved = [as_id(i) for i in retrieved_ids]
        if not retrieved and used is None:
            raise InvalidArgumentError("retrieved_ids is empty and no used= pattern was given")
        positive = retrieved[0] if used is None else used
        q, pos, negs = self.feedback_inputs(query, positive, retrieved, self.learning,
                                             reward=outcome_reward)
        return self.learning.learn(q, pos, negs, outcome_reward)

    def feedback_inputs(self, query: str | Any, pattern_id: int,
                         retrieved: Sequence[int] | None, learner: Learner, *, reward: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated ``(query, positive vector, negative vectors)`` for one feedback event;
        negatives are ``retrieved`` minus the positive, else what ``learner``'s adapter
        retrieves now (used by :meth:`feedback` and by
        :class:`agentdb.learning.EphemeralLearningAgent`, which trains its own learner).

        >>> from agentdb import AgentDB
        >>> with AgentDB(":memory:", dim=16) as db:
        ...     a = db.store_pattern("parse ISO dates")
        ...     b = db.store_pattern("retry HTTP calls")
        ...     q, pos, negs = db.feedback_inputs("dates", a, [a, b], db.learning, reward=1.0)
        ...     (q.shape, pos.shape, negs.shape)
        ((16,), (16,), (1, 16))
        """
        self._check_open()
        pid = as_id(pattern_id)
        check_feedback_reward(reward)
        q = self.query_vector(query)
        neg_ids = [i for i in dict.fromkeys(retrieved or ()) if i != pid]
        if not neg_ids:
            n = learner.config.negatives
            ids = self._retrieve_ids(learner.apply(q), n + 1)
            neg_ids = [int(i) for i in ids if i >= 0 and i != pid][:n]
        vecs = self._pattern_vectors([pid, *neg_ids])
        return q, vecs[0], vecs[1:]

    def _episode_row(self, e: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
        task = e.pop("task", None)
        check_text("task", task, required=True)
        values: dict[str, Any] = {"task": task}
        for fname in TEXT_FIELDS:
            val = e.pop(fname, None)
            check_text(fname, val)
            values[fname] = val
        values["reward"] = check_reward(e.pop("reward", 0.0))
        values["success"] = check_success(e.pop("success", False))
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
        values["expires_at"] = expiry(e.pop("ttl", None), e.pop("expires_at", None))
        emb = e.pop("embedding", None)
        return values, self._vector(emb, None if emb is not None else task)

    def _episode_rows(self, episodes: Iterable[dict[str, Any]]
                      ) -> tuple[list[tuple[dict[str, Any], np.ndarray, int | None, float | None]],
                                 list[tuple[str, bool]]]:
        """Validated rows of an episode batch (missing embeddings filled in one call) and the
        ``(skill name, success)`` outcomes they report; an error names the episode's index."""
        items = dict_items(episodes, "episodes")
        if items:
            self._embed_missing(items, "task")
        rows, outcomes = [], []
        for n, e in enumerate(items):
            try:
                rid = opt_id(e.pop("id", None))
                created = opt_time(e.pop("created_at", None))
                e.pop("updated_at", None)
                values, vec = self._episode_row(e)
                if e:
                    raise InvalidArgumentError(f"unknown episode field(s): {', '.join(sorted(e))}")
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"episodes[{n}]: {exc}") from None
            rows.append((values, vec, rid, created))
            outcomes += [(s, bool(values["success"])) for s in json.loads(values["skills"])]
        return rows, outcomes

    def store_episode(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, latency_ms: float | None = None,
                      tokens: int | None = None, skills: Sequence[str] | None = None,
                      metadata: dict[str, Any] | None = None, id: int | None = None,
                      ttl: Any = None, expires_at: Any = None) -> int:
        """Store a Reflexion episode; returns its id. Each skill named in ``skills`` has its
        ``uses`` and running ``success_rate`` updated in the same transaction. ``ttl`` /
        ``expires_at``: when it expires, as in ``store_pattern``.

        >>> from agentdb import AgentDB
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
            "metadata": metadata, "id": id, "ttl": ttl, "expires_at": expires_at}])[0]

    def get_episode(self, id: int) -> Episode:
        """An episode by id (``KeyError`` if unknown).

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); i = db.store_episode("t")
        >>> db.get_episode(i).task
        't'
        """
        return self._get("episodes", id)

    def update_episode(self, id: int, *, reward: float = UNSET, success: bool = UNSET,
                       critique: str | None = UNSET, output: str | None = UNSET,
                       latency_ms: float | None = UNSET, tokens: int | None = UNSET,
                       metadata: dict[str, Any] | None = UNSET, ttl: Any = UNSET,
                       expires_at: Any = UNSET) -> Episode:
        """Change the outcome fields of an episode (its task and skills stay); returns the
        updated record and fires ``episode:updated``. ``ttl`` / ``expires_at`` as in
        :meth:`update_pattern`.

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); i = db.store_episode("t")
        >>> db.update_episode(i, critique="retry sooner").critique
        'retry sooner'
        """
        rid = as_id(id)
        old = self._get("episodes", rid)
        probe: dict[str, Any] = {"task": old.task, "embedding": old.embedding}
        for fname, val in (("reward", reward), ("success", success), ("critique", critique),
                           ("output", output), ("latency_ms", latency_ms), ("tokens", tokens),
                           ("metadata", metadata)):
            if val is not UNSET:
                probe[fname] = val
        values, _ = self._episode_row(dict(probe))  # the same validation as store_episode
        changed = {k: values[k] for k in probe if k not in ("task", "embedding")}
        changed.update(_expiry_change(ttl, expires_at))
        return self._update("episodes", rid, changed, None)

    def delete_episode(self, id: int) -> None:
        """Delete an episode (``KeyError`` if unknown).

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); db.delete_episode(db.store_episode("t"))
        """
        self._delete("episodes", id)

    def critique_summary(self, task: str | Any, k: int = 5) -> list[str]:
        """Critiques of the ``k`` most similar *failed* episodes, most similar first,
        without duplicates — the Reflexion memory to put in the next prompt.

        >>> from agentdb import AgentDB
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
        return as_id(id_or_name)

    def update_skill(self, id_or_name: int | str, *, name: str = UNSET,
                     description: str = UNSET, signature: str | None = UNSET,
                     code: str | None = UNSET, success_rate: float = UNSET,
                     uses: int = UNSET, metadata: dict[str, Any] | None = UNSET,
                     embedding: Any = None, ttl: Any = UNSET, expires_at: Any = UNSET
                     ) -> Skill:
        """Change some fields of a skill; a new name or description is re-embedded.
        ``ttl`` / ``expires_at`` as in :meth:`update_pattern`.

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); _ = db.store_skill("s")
        >>> db.update_skill("s", success_rate=0.5).success_rate
        0.5
        """
        rid = self._skill_id(id_or_name)
        old = self._get("skills", rid)
        values: dict[str, Any] = {}
        for fname, val in (("name", name), ("description", description),
                           ("signature", signature), ("code", code)):
            if val is not UNSET:
                check_text(fname, val, required=fname == "name")
                values[fname] = val
        if success_rate is not UNSET:
            values["success_rate"] = check_rate(success_rate)
        if uses is not UNSET:
            if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 0:
                raise InvalidArgumentError(f"uses must be an integer >= 0, got {uses!r}")
            values["uses"] = int(uses)
        if metadata is not UNSET:
            values["metadata"] = check_metadata(metadata)
        values.update(_expiry_change(ttl, expires_at))
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

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); _ = db.store_skill("s"); db.delete_skill("s")
        """
        self._delete("skills", self._skill_id(id_or_name))

    def count(self, kind: str = "patterns") -> int:
        """Number of records of a kind ("patterns", "episodes", "skills").

        >>> from agentdb import AgentDB
        >>> AgentDB(":memory:", dim=8).count("skills")
        0
        """
        check_kind(kind)
        return self.store.count(kind)

    def recent(self, kind: str = "patterns", limit: int = 10) -> list[Any]:
        """The ``limit`` most recently stored records of a kind, newest first.

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); _ = db.store_pattern("a"); _ = db.store_pattern("b")
        >>> [p.task for p in db.recent("patterns", 5)]
        ['b', 'a']
        """
        check_kind(kind)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidArgumentError(f"limit must be an integer in 1..1000, got {limit!r}")
        ids = self.find_ids(kind)[-limit:][::-1]
        return [self._get(kind, int(i)) for i in ids]

    def find_ids(self, kind: str = "patterns", *, min_reward: float | None = None,
                 success: bool | None = None, session_id: str | None = None,
                 where: dict[str, Any] | None = None, before: float | None = None
                 ) -> list[int]:
        """Ids of every record of a kind that passes the filters (ascending), without a
        search: ``min_reward`` (the success rate for skills), ``success``, ``session_id``, a
        metadata ``where`` (the search filters' language) and ``before`` (stored before
        this time, epoch seconds).

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8)
        >>> _ = db.store_pattern("a", metadata={"lang": "py"}); _ = db.store_pattern("b")
        >>> db.find_ids("patterns", where={"lang": "py"})
        [1]
        """
        check_kind(kind)
        self._check_open()
        if before is not None:
            if isinstance(before, bool) or not isinstance(before, (int, float, np.integer,
                                                                   np.floating)):
                raise InvalidTypeError(f"before must be a time in epoch seconds, got {before!r}")
            if not math.isfinite(float(before)):
                raise InvalidArgumentError(f"before must be finite, got {before}")
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidTypeError(f"session_id must be a string, got {type(session_id).__name__}")
        return [int(i) for i in self.store.filter_ids(kind, min_reward=min_reward,
                                                      success=success, session_id=session_id,
                                                      where=where, created_before=before)]

    def delete_patterns(self, *, session_id: str | None = None,
                        where: dict[str, Any] | None = None,
                        before: float | None = None) -> int:
        """Delete every pattern of a session, matching a metadata ``where`` and/or stored
        ``before`` a time (epoch seconds); the filters combine with AND and at least one is
        needed. One ``pattern:deleted`` event per pattern; returns how many were deleted.

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8)
        >>> _ = db.store_pattern("a", session_id="s1"); _ = db.store_pattern("b")
        >>> db.delete_patterns(session_id="s1"), db.count()
        (1, 1)
        """
        if session_id is None and not where and before is None:
            raise InvalidArgumentError("delete_patterns needs session_id, where or before "
                                       "(it never deletes everything by default)")
        ids = self.find_ids("patterns", session_id=session_id, where=where, before=before)
        if ids:
            self._delete_many("patterns", ids)
        return len(ids)

    def _delete_many(self, name: str, ids: list[int], reason: str | None = None) -> None:
        """Delete existing records (an engine may do it in one transaction; ``reason`` goes
        into the events when given)."""
        for rid in ids:
            try:
                self._delete(name, rid)
            except NotFoundError:  # deleted meanwhile by another writer
                continue

    def forget(self, kinds: str | Sequence[str] | None = None, *, older_than: Any = None,
               reward_below: float | None = None, unused_for: Any = None,
               where: dict[str, Any] | None = None) -> dict[str, list[int]]:
        """Remove expired records for good and, when criteria are given, the records that
        meet all of them; returns the removed ids per kind. ``kinds``: a kind or a list of
        them (default: patterns, episodes and skills). Criteria: ``older_than`` (seconds or
        a ``timedelta``: stored that long ago), ``reward_below`` (the success rate for
        skills), ``unused_for`` (not updated for that long: a near-duplicate merge
        (``store_pattern(dedupe=...)``), an update or a skill's recorded use counts as use)
        and a metadata ``where``. One ``<kind>:deleted`` event per record, with ``reason``
        ``"expired"`` or ``"forgotten"``. ``open(..., forget_every=seconds)`` runs the
        expired part in the background.

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8)
        >>> a = db.store_pattern("a", reward=-0.5); b = db.store_pattern("b", reward=0.9)
        >>> db.forget("patterns", reward_below=0)
        {'patterns': [1]}
        """
        self._check_open()
        now = time.time()
        kinds_t, crit = forget_filters(kinds, older_than, reward_below, unused_for, where, now)
        out: dict[str, list[int]] = {}
        for kind in kinds_t:
            expired = [int(i) for i in self.store.filter_ids(kind, expired=True)]
            chosen = [] if crit is None else [
                int(i) for i in self.store.filter_ids(kind, **crit)]
            if expired:
                self._delete_many(kind, expired, reason="expired")
            if chosen:
                self._delete_many(kind, chosen, reason="forgotten")
            out[kind] = sorted(expired + chosen)
        return out

    def _dedupe_guard(self) -> AbstractContextManager[Any]:
        """What makes the duplicate check and the write one step (an engine's write lock)."""
        return nullcontext()

    def _merge_duplicate(self, values: dict[str, Any], vec: np.ndarray,
                         dedupe: Any) -> int | None:
        """``store_pattern(dedupe=...)``: fold the new pattern into the most similar stored
        one when their cosine similarity is at least ``dedupe`` -- one more use, the reward
        the running mean, the new success flag, texts the new ones where given, metadata
        merged (new keys win), the new expiry if one was given -- and return its id; None
        when none is that close (or ``dedupe`` is None)."""
        threshold = check_dedupe(dedupe)
        if threshold is None:
            return None
        # a wide beam: a near-duplicate the walk misses would be stored twice
        hits = self.search_patterns(vec, 1, threshold=threshold, adapt=False, ef=_DEDUPE_EF)
        if not hits:
            return None
        old = hits[0].record
        changes: dict[str, Any] = {
            "uses": int(old.uses) + 1,
            "reward": merged_reward(old.reward, old.uses, values["reward"]),
            "success": values["success"],
            "metadata": json.dumps({**old.metadata, **json.loads(values["metadata"])},
                                   allow_nan=False, ensure_ascii=False),
        }
        for fname in ("input", "output", "critique"):
            if values.get(fname) is not None:
                changes[fname] = values[fname]
        if values.get("expires_at") is not None:
            changes["expires_at"] = values["expires_at"]
        self._update("patterns", old.id, changes, None)
        return int(old.id)

    def iter_records(self, kind: str, batch: int = 2000) -> Iterable[Any]:
        """Every unexpired record of a kind, in id order (with embeddings).

        >>> from agentdb import AgentDB
        >>> db = AgentDB(":memory:", dim=8); _ = db.store_pattern("t")
        >>> [p.task for p in db.iter_records("patterns")]
        ['t']
        """
        check_kind(kind)
        for rows in self.store.iter_rows(kind, batch=batch):
            now = time.time()
            for row in rows:
                exp = row.get("expires_at")
                if exp is None or exp > now:
                    yield to_record(kind, row)


def _expiry_change(ttl: Any, expires_at: Any) -> dict[str, Any]:
    """The ``expires_at`` column change of an update (none when both are ``UNSET``;
    ``expires_at=None`` clears the expiry)."""
    if ttl is UNSET and expires_at is UNSET:
        return {}
    if ttl is not UNSET and expires_at is not UNSET:
        raise InvalidArgumentError("give ttl or expires_at, not both")
    if ttl is not UNSET:
        if ttl is None:
            raise InvalidArgumentError("ttl must be a number of seconds (use expires_at=None "
                                       "to clear the expiry)")
        return {"expires_at": expiry(ttl=ttl)}
    return {"expires_at": expiry(expires_at=expires_at)}
