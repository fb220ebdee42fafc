"""Every call of the HTTP API, written once for both clients.

Each method of :class:`ClientCalls` is a generator: it validates and encodes its arguments,
``yield`` s one :class:`Call` (or several: ``upsert_vectors`` sends chunks) and receives the
decoded answer, then returns the method's result. :func:`sync_api` turns them into the plain
methods of :class:`~agentdb.server.client.Client` (each call sent with its retries) and
:func:`async_api` into the coroutines of :class:`~agentdb.server.async_client.AsyncClient`;
the return annotations are those of the resulting methods.

>>> gen = ClientCalls().health()
>>> next(gen)
Call(method='GET', path='/health', body=None, query=None, retry=True)
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from ..errors import InvalidArgumentError, InvalidTypeError
from .client_common import MAX_BATCH, MAX_BATCH_BYTES, compact, dumps, query_body, vector_list

__all__ = ["Call", "ClientCalls", "api", "async_api", "sync_api"]

T = TypeVar("T", bound=type)


class Call(NamedTuple):
    """One HTTP request of the API: method, path (below the base URL), JSON body, query
    parameters, and whether 429/503 answers may be retried."""

    method: str
    path: str
    body: Any = None
    query: Mapping[str, Any] | None = None
    retry: bool = True


def _call(method: str, path: str, body: Any = None, *, query: Mapping[str, Any] | None = None,
          retry: bool = True) -> Call:
    return Call(method, path, body, query, retry)


def api(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a generator method of :class:`ClientCalls` as a public API call."""
    fn.__agentdb_call__ = True  # type: ignore[attr-defined]
    return fn


def _api_calls() -> list[tuple[str, Callable[..., Any]]]:
    return [(name, fn) for name, fn in vars(ClientCalls).items()
            if getattr(fn, "__agentdb_call__", False)]


def sync_api(cls: T) -> T:
    """Give ``cls`` (which has ``_drive(generator)``) a plain method per API call."""
    for name, fn in _api_calls():
        def method(self: Any, *args: Any, __fn: Callable[..., Any] = fn, **kw: Any) -> Any:
            return self._drive(__fn(self, *args, **kw))

        setattr(cls, name, functools.wraps(fn)(method))
    return cls


def async_api(cls: T) -> T:
    """Give ``cls`` (which has ``async _adrive(generator)``) a coroutine per API call."""
    for name, fn in _api_calls():
        async def method(self: Any, *args: Any, __fn: Callable[..., Any] = fn,
                         **kw: Any) -> Any:
            return await self._adrive(__fn(self, *args, **kw))

        setattr(cls, name, functools.wraps(fn)(method))
    return cls


class ClientCalls:
    """The API calls as generators (see the module docstring); clients inherit the helpers."""

    url: str
    api_key: str | None
    timeout: float
    retries: int

    def _configure(self, url: str, api_key: str | None, timeout: float, retries: int,
                   namespace: str | None = None) -> urllib.parse.SplitResult:
        """Check and keep the settings both clients share; returns the parsed URL (with
        ``/ns/<namespace>`` appended when a namespace is given)."""
        if namespace is not None and namespace != "default":
            from ..memory.namespaces import check_name

            url = url.rstrip("/") + "/ns/" + check_name(namespace)
        self.namespace = namespace or "default"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(
                f"url must be http://host[:port] or https://..., got {url!r}")
        if retries < 0:
            raise InvalidArgumentError(f"retries must be >= 0, got {retries}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = float(timeout)
        self.retries = int(retries)
        return parts

    @staticmethod
    def _id(id: Any) -> str:
        return urllib.parse.quote(str(id), safe="")

    # ---- service --------------------------------------------------------------------------
    @api
    def health(self) -> dict[str, Any]:
        """Liveness: ``{"status": "ok"}`` (no key needed).

        >>> Client("http://127.0.0.1:8080").health()   # doctest: +SKIP
        {'status': 'ok'}
        """
        return (yield _call("GET", "/health"))

    @api
    def ready(self) -> dict[str, Any]:
        """Readiness: ``{"status": "ready", "patterns": n}``; a closed store raises
        ``ClientError`` with status 503 at once (no retries)."""
        return (yield _call("GET", "/ready", retry=False))

    @api
    def stats(self) -> dict[str, Any]:
        """The server's ``db.stats()``: counts, dimension, sizes, index status."""
        return (yield _call("GET", "/stats"))

    # ---- patterns -------------------------------------------------------------------------
    @api
    def store_pattern(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None,
                      metadata: dict[str, Any] | None = None, ttl: float | None = None,
                      expires_at: float | None = None, dedupe: float | None = None) -> int:
        """Store a reasoning pattern; returns its id. The server embeds ``task`` unless an
        ``embedding`` is given. ``ttl`` (seconds) / ``expires_at`` (epoch seconds): when it
        expires; ``dedupe``: fold it into a stored pattern at least that similar (that
        pattern's id comes back), as ``AgentDB.store_pattern``.

        >>> c.store_pattern("cache API responses", reward=0.8, success=True)  # doctest: +SKIP
        1
        """
        body = compact({
            "task": task, "reward": reward, "success": success, "sessionId": session_id,
            "input": input, "output": output, "critique": critique, "metadata": metadata,
            "embedding": None if embedding is None else vector_list(embedding),
            "ttl": ttl, "expiresAt": expires_at, "dedupe": dedupe})
        return int((yield _call("POST", "/patterns/store", body))["id"])

    @api
    def get_pattern(self, id: int, *, include_embedding: bool = False) -> dict[str, Any]:
        """A pattern by id (``ClientError`` with status 404 if unknown)."""
        query = {"includeEmbedding": "true"} if include_embedding else None
        return (yield _call("GET", f"/patterns/{self._id(id)}", query=query))

    @api
    def delete_pattern(self, id: int) -> None:
        """Delete a pattern (``ClientError`` with status 404 if unknown)."""
        (yield _call("DELETE", f"/patterns/{self._id(id)}"))

    @api
    def delete_patterns(self, *, session_id: str | None = None,
                        where: dict[str, Any] | None = None,
                        before: float | None = None) -> int:
        """Delete every pattern of a session, matching ``where`` and/or stored ``before`` a
        time (at least one filter); returns how many were deleted.

        >>> c.delete_patterns(session_id="s-old")  # doctest: +SKIP
        3
        """
        query = {"sessionId": session_id, "before": before,
                 "where": None if where is None else json.dumps(where)}
        return int((yield _call("DELETE", "/patterns", query=query))["deleted"])

    @api
    def search_patterns(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success_only: bool = False,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        adapt: bool = True, rerank: str | None = None,
                        candidates: int | None = None, heads: int | None = None,
                        temperature: float | None = None, diversity: float | None = None,
                        mode: str | None = None, text_weight: float | None = None
                        ) -> list[dict[str, Any]]:
        """The ``k`` most similar patterns to a text or a vector, best first:
        ``[{"id", "similarity", "distance", "pattern": {...}}, ...]``.

        ``adapt=False`` searches with the raw query even when the server's learning is
        active. ``rerank="attention"`` / ``"attention+reward"`` re-ranks ``candidates``
        hits (default ``max(4k, 20)``) by attention (``heads`` dividing the dimension,
        default 1; softmax ``temperature``, default 0.05); each hit then has a ``score``.
        ``candidates``, ``heads`` and ``temperature`` need ``rerank`` (else ``422``).
        ``diversity`` (0..1) picks the ``k`` hits from ``candidates`` by maximal marginal
        relevance instead (not with ``rerank``). ``mode="text"`` / ``"hybrid"`` rank by the
        full-text index or fuse it with the vector ranking (``text_weight``, default 0.5).

        >>> hits = c.search_patterns("sort a list", k=3, success_only=True)  # doctest: +SKIP
        >>> hits[0]["pattern"]["task"]                                       # doctest: +SKIP
        'sort a list'
        >>> c.search_patterns("sort a list", k=3, rerank="attention")[0]["score"]  # doctest: +SKIP
        0.71
        """
        body = query_body(task_or_vector, "task")
        body.update(compact({"k": k, "minReward": min_reward,
                              "successOnly": True if success_only else None,
                              "sessionId": session_id, "where": where,
                              "threshold": threshold, "ef": ef,
                              "adapt": None if adapt else False, "rerank": rerank,
                              "candidates": candidates, "heads": heads,
                              "temperature": temperature, "diversity": diversity,
                              "mode": mode, "textWeight": text_weight}))
        return (yield _call("POST", "/patterns/search", body))["results"]

    @api
    def synthesize_context(self, task_or_vector: str | Any, k: int = 5, *,
                           temperature: float = 0.05, adapt: bool = True,
                           min_reward: float | None = None, success_only: bool = False,
                           session_id: str | None = None,
                           where: dict[str, Any] | None = None) -> dict[str, Any]:
        """An attention-weighted summary of the ``k`` patterns most relevant to the query:
        ``{"vector": [...], "weights": [{"id", "weight"}, ...], "results": [hit, ...]}``
        (weights are ``softmax(cos / temperature)``, summing to 1; ``vector`` is the
        weighted sum of the stored embeddings). Filters as in :meth:`search_patterns`.

        >>> ctx = c.synthesize_context("sort a list", k=3)       # doctest: +SKIP
        >>> [w["id"] for w in ctx["weights"]]                    # doctest: +SKIP
        [4, 1, 9]
        """
        body = query_body(task_or_vector, "task")
        body.update(compact({"k": k, "temperature": temperature,
                              "adapt": None if adapt else False, "minReward": min_reward,
                              "successOnly": True if success_only else None,
                              "sessionId": session_id, "where": where}))
        return (yield _call("POST", "/patterns/context", body))

    # ---- learning -------------------------------------------------------------------------
    @api
    def feedback(self, task_or_vector: str | Any, pattern_id: int, reward: float = 1.0
                 ) -> dict[str, Any]:
        """Pattern ``pattern_id`` was the right memory for the query (``reward`` > 0) or a
        wrong one (< 0; in [-1, 1]): one step of the server's learned query adapter.
        Returns ``{"updated": True, "loss", "pPositive", "rankBefore", "updates"}`` or
        ``{"updated": False, "reason"}``; an unknown id raises ``ClientError`` 404.

        >>> c.feedback("sort a list", pid, reward=1.0)["updated"]   # doctest: +SKIP
        True
        """
        body = query_body(task_or_vector, "task")
        body.update({"patternId": int(pattern_id), "reward": reward})
        return (yield _call("POST", "/feedback", body))

    @api
    def feedback_trajectory(self, task_or_vector: str | Any, retrieved_ids: Iterable[int],
                            outcome_reward: float, *, used: int | None = None
                            ) -> dict[str, Any]:
        """The outcome of one retrieval step: the query, the ids it retrieved (best first),
        the one acted on (``used``, default the first) and the outcome in [-1, 1]. Returns
        what :meth:`feedback` returns."""
        body = query_body(task_or_vector, "task")
        body.update(compact({"retrievedIds": [int(i) for i in retrieved_ids],
                              "outcomeReward": outcome_reward,
                              "used": None if used is None else int(used)}))
        return (yield _call("POST", "/feedback/trajectory", body))

    @api
    def learning_stats(self) -> dict[str, Any]:
        """The server's ``db.learning.stats()`` (``enabled``, ``active``, ``updates``,
        ``last_loss``, ``adapter_norm``, ..., snake_case keys as in ``/stats``)."""
        return (yield _call("GET", "/learning"))

    def _learning(self, action: str) -> dict[str, Any]:
        return (yield _call("POST", f"/learning/{action}"))

    @api
    def learning_enable(self) -> dict[str, Any]:
        """Turn learning on (adapted searches, feedback learns); returns the stats."""
        return (yield from self._learning("enable"))

    @api
    def learning_disable(self) -> dict[str, Any]:
        """Turn learning off (raw queries, feedback ignored; the adapter is kept)."""
        return (yield from self._learning("disable"))

    @api
    def learning_reset(self) -> dict[str, Any]:
        """Forget the learned adapter (back to the identity); returns the stats."""
        return (yield from self._learning("reset"))

    @api
    def learning_consolidate(self) -> dict[str, Any]:
        """Mark a task boundary for EWC++; returns the stats."""
        return (yield from self._learning("consolidate"))

    # ---- episodes -------------------------------------------------------------------------
    @api
    def store_episode(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, latency_ms: float | None = None,
                      tokens: int | None = None, skills: Sequence[str] | None = None,
                      metadata: dict[str, Any] | None = None, ttl: float | None = None,
                      expires_at: float | None = None) -> int:
        """Store a Reflexion episode; returns its id. Skills named in ``skills`` must exist.
        ``ttl`` / ``expires_at`` as in :meth:`store_pattern`.

        >>> c.store_episode("deploy", success=False, critique="forgot migrations")  # doctest: +SKIP
        3
        """
        body = compact({
            "task": task, "reward": reward, "success": success, "sessionId": session_id,
            "input": input, "output": output, "critique": critique, "latencyMs": latency_ms,
            "tokens": tokens, "skills": None if skills is None else list(skills),
            "metadata": metadata,
            "embedding": None if embedding is None else vector_list(embedding),
            "ttl": ttl, "expiresAt": expires_at})
        return int((yield _call("POST", "/episodes/store", body))["id"])

    @api
    def get_episode(self, id: int, *, include_embedding: bool = False) -> dict[str, Any]:
        """An episode by id (``ClientError`` with status 404 if unknown)."""
        query = {"includeEmbedding": "true"} if include_embedding else None
        return (yield _call("GET", f"/episodes/{self._id(id)}", query=query))

    @api
    def delete_episode(self, id: int) -> None:
        """Delete an episode (``ClientError`` with status 404 if unknown)."""
        (yield _call("DELETE", f"/episodes/{self._id(id)}"))

    @api
    def search_episodes(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success: bool | None = None,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        diversity: float | None = None, candidates: int | None = None,
                        mode: str | None = None, text_weight: float | None = None
                        ) -> list[dict[str, Any]]:
        """The ``k`` most similar episodes; ``success=False`` keeps only failures, ``True``
        only successes, ``None`` both. Hits: ``{"id", "similarity", "distance", "episode"}``.
        ``diversity`` / ``candidates`` / ``mode`` / ``text_weight`` as in
        :meth:`search_patterns`.
        """
        body = query_body(task_or_vector, "task")
        body.update(compact({"k": k, "minReward": min_reward, "success": success,
                              "sessionId": session_id, "where": where,
                              "threshold": threshold, "ef": ef, "diversity": diversity,
                              "candidates": candidates, "mode": mode,
                              "textWeight": text_weight}))
        return (yield _call("POST", "/episodes/search", body))["results"]

    # ---- skills ---------------------------------------------------------------------------
    @api
    def store_skill(self, name: str, description: str = "", *, signature: str | None = None,
                    code: str | None = None, metadata: dict[str, Any] | None = None,
                    embedding: Any = None, ttl: float | None = None,
                    expires_at: float | None = None) -> int:
        """Store a skill (names are unique: an existing name raises ``ClientError`` 409);
        returns its id. ``ttl`` / ``expires_at`` as in :meth:`store_pattern`.

        >>> c.store_skill("http_retry", "retry HTTP calls with backoff")  # doctest: +SKIP
        1
        """
        body = compact({"name": name, "description": description, "signature": signature,
                         "code": code, "metadata": metadata,
                         "embedding": None if embedding is None else vector_list(embedding),
                         "ttl": ttl, "expiresAt": expires_at})
        return int((yield _call("POST", "/skills/store", body))["id"])

    @api
    def get_skill(self, id: int) -> dict[str, Any]:
        """A skill by id (``ClientError`` with status 404 if unknown)."""
        return (yield _call("GET", f"/skills/{self._id(id)}"))

    @api
    def delete_skill(self, id: int) -> None:
        """Delete a skill (``ClientError`` with status 404 if unknown)."""
        (yield _call("DELETE", f"/skills/{self._id(id)}"))

    @api
    def search_skills(self, query: str | Any, k: int = 5, *,
                      min_success_rate: float | None = None,
                      where: dict[str, Any] | None = None, threshold: float | None = None,
                      ef: int | None = None, diversity: float | None = None,
                      candidates: int | None = None, mode: str | None = None,
                      text_weight: float | None = None) -> list[dict[str, Any]]:
        """The ``k`` skills most similar to a text or a vector:
        ``[{"id", "similarity", "distance", "skill": {...}}, ...]`` (``diversity`` /
        ``candidates`` / ``mode`` / ``text_weight`` as in :meth:`search_patterns`)."""
        body = query_body(query, "query")
        body.update(compact({"k": k, "minSuccessRate": min_success_rate, "where": where,
                              "threshold": threshold, "ef": ef, "diversity": diversity,
                              "candidates": candidates, "mode": mode,
                              "textWeight": text_weight}))
        return (yield _call("POST", "/skills/search", body))["results"]

    # ---- backups --------------------------------------------------------------------------
    @api
    def backup(self, name: str) -> dict[str, Any]:
        """Have the server copy its store (``db.backup``) into ``name`` in its
        ``--backup-dir``: ``{"name", "generation", "records", "rebuiltOnOpen"}``
        (``ClientError`` 404 when the server keeps no backups, 409 when the name exists).

        >>> c.backup("nightly.db")["records"]["patterns"]  # doctest: +SKIP
        1200
        """
        return (yield _call("POST", "/backup", {"name": name}))

    @api
    def forget(self, kinds: str | Sequence[str] | None = None, *,
               older_than: float | None = None, reward_below: float | None = None,
               unused_for: float | None = None, where: dict[str, Any] | None = None
               ) -> dict[str, list[int]]:
        """Have the server remove expired records and, with criteria (AND; seconds for the
        ages), the records meeting them (``db.forget``); the removed ids per kind.

        >>> c.forget("patterns", reward_below=0.0)  # doctest: +SKIP
        {'patterns': [4, 9]}
        """
        ks = None if kinds is None else ([kinds] if isinstance(kinds, str) else list(kinds))
        body = compact({"kinds": ks, "olderThan": older_than, "rewardBelow": reward_below,
                        "unusedFor": unused_for, "where": where})
        return (yield _call("POST", "/forget", body))["removed"]

    # ---- raw vectors ----------------------------------------------------------------------
    @api
    def upsert_vectors(self, vectors: Iterable[Mapping[str, Any]]) -> list[int]:
        """Upsert ``[{"id"?, "vector", "metadata"?, "task"?}, ...]``; returns the ids in order.

        An existing id gets the new vector / metadata; a new one is stored as a pattern. Long
        lists are sent in several requests (at most 1000 vectors and about 900 kB each), so
        a failure part-way leaves the earlier requests applied.

        >>> import numpy as np
        >>> items = [{"vector": np.ones(16)}, {"id": 5, "vector": [0.1] * 16}]
        >>> c.upsert_vectors(items)  # doctest: +SKIP
        [7, 5]
        """
        ids: list[int] = []
        chunk: list[bytes] = []
        size = 0
        for item in vectors:
            if not isinstance(item, Mapping) or "vector" not in item:
                raise InvalidTypeError("each item must be a mapping with a 'vector'")
            doc = compact(dict(item))
            doc["vector"] = vector_list(item["vector"])
            enc = dumps(doc)
            if chunk and (len(chunk) >= MAX_BATCH or size + len(enc) > MAX_BATCH_BYTES):
                ids += yield from self._upsert_chunk(chunk)
                chunk, size = [], 0
            chunk.append(enc)
            size += len(enc) + 1
        if chunk:
            ids += yield from self._upsert_chunk(chunk)
        return ids

    def _upsert_chunk(self, encoded: list[bytes]) -> list[int]:
        raw = json.loads(b'{"vectors":[' + b",".join(encoded) + b"]}")
        return [int(i) for i in (yield _call("POST", "/vectors", raw))["ids"]]

    @api
    def search_vectors(self, vector: Any, k: int = 10, *, ef: int | None = None,
                       min_reward: float | None = None, success_only: bool = False,
                       session_id: str | None = None, where: dict[str, Any] | None = None,
                       threshold: float | None = None, diversity: float | None = None,
                       candidates: int | None = None) -> list[dict[str, Any]]:
        """Nearest stored vectors: ``[{"id", "similarity", "distance", "metadata"}, ...]``
        (``diversity`` / ``candidates`` as in :meth:`search_patterns`).

        >>> c.search_vectors(np.ones(16), k=3)[0]["id"]  # doctest: +SKIP
        7
        """
        body = {"vector": vector_list(vector)}
        body.update(compact({"k": k, "ef": ef, "minReward": min_reward,
                              "successOnly": True if success_only else None,
                              "sessionId": session_id, "where": where,
                              "threshold": threshold, "diversity": diversity,
                              "candidates": candidates}))
        return (yield _call("POST", "/vectors/search", body))["results"]

    @api
    def delete_vector(self, id: int) -> None:
        """Delete a stored vector (its pattern); ``ClientError`` 404 if unknown."""
        (yield _call("DELETE", f"/vectors/{self._id(id)}"))

    # ---- graph ----------------------------------------------------------------------------
    @api
    def cypher(self, query: str, /, *, timeout: float | None = None,
               max_rows: int | None = None, **params: Any) -> list[dict[str, Any]]:
        """Run a Cypher query; returns the rows as dicts keyed by column. Parameters are
        passed as keywords (``$name`` in the query). A syntax error raises ``ClientError``
        400 (code ``cypher_error``) with the line and column in its message. ``timeout``
        (seconds) and ``max_rows`` bound the query on the server (at most the server's own
        limits): past them ``QueryTimeoutError`` / ``QueryLimitError``.

        >>> c.cypher("MATCH (n) RETURN count(n) AS n")          # doctest: +SKIP
        [{'n': 0}]
        >>> c.cypher("MATCH (n) WHERE n.id = $id RETURN n", id=3)  # doctest: +SKIP
        [...]
        """
        body: dict[str, Any] = {"query": query}
        if params:
            body["params"] = params
        if timeout is not None:
            body["timeout"] = timeout
        if max_rows is not None:
            body["maxRows"] = max_rows
        answer = (yield _call("POST", "/graph/cypher", body))
        columns = answer.get("columns") or []
        rows = answer.get("rows") or []
        return [row if isinstance(row, dict) else dict(zip(columns, row)) for row in rows]
