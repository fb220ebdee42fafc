"""A small HTTP client for ``agentdb serve`` (standard library only).

It mirrors the embedded API, but records come back as plain dicts shaped like the server's
JSON (camelCase field names, see ``docs/api.md``), and ids are ints::

    >>> import agentdb
    >>> c = agentdb.Client("http://127.0.0.1:8080", api_key="my-secret-key")  # doctest: +SKIP
    >>> pid = c.store_pattern("parse dates", reward=0.9, success=True)       # doctest: +SKIP
    >>> c.search_patterns("parse ISO dates", k=5, min_reward=0.5)[0]["id"] == pid  # doctest: +SKIP
    True
    >>> for ev in c.stream(kinds=["pattern"]):                                # doctest: +SKIP
    ...     print(ev["id"], ev["event"], ev["data"]["id"])

Behaviour:

* **Errors** raise :class:`ClientError` with the HTTP status and the server's stable
  ``code`` and ``message`` (``404`` for an unknown id, ``401`` for a missing or wrong key,
  ``422`` for a bad dimension, ...). Transport failures (refused connection, reset, timeout)
  raise it too, with ``status == 0`` and code ``connection_error`` or ``timeout``.
* **Retries.** ``429`` and ``503`` are retried up to ``retries`` times, sleeping what the
  ``Retry-After`` header says (capped at 30 s; an exponential backoff when it is absent). A
  refused or reset connection is retried the same number of times for ``GET`` requests only
  (other methods are not resent, except once when a reused keep-alive connection turns out to
  have been closed by the server before it answered).
* **Keep-alive.** Each thread reuses one ``http.client`` connection to the server; a
  connection the server has closed is detected and replaced before it is reused. A ``Client``
  can therefore be shared by threads.
* **Vectors** may be lists, tuples or numpy arrays (anything with ``.tolist()``).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import AgentDBError, InvalidArgumentError, InvalidTypeError, error_class

__all__ = ["Client", "ClientError"]

#: Longest sleep a ``Retry-After`` header can cause, in seconds.
MAX_RETRY_SLEEP = 30.0
#: Most vectors the server accepts in one ``POST /vectors``.
MAX_BATCH = 1000
#: Body size ``upsert_vectors`` aims below per request (the server's default limit is 1 MiB).
MAX_BATCH_BYTES = 900_000

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
_RETRY_STATUS = (429, 503)
# Errors that mean "the request did not get an answer": the connection was refused, reset,
# or closed by the server before a status line arrived.
_CONNECTION_ERRORS = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    http.client.IncompleteRead,
)


class ClientError(AgentDBError):
    """An error answer from the server (or a transport failure, with ``status == 0``).

    ``status`` is the HTTP status, ``code`` the server's stable error code
    (``not_found``, ``unauthorized``, ``validation_error``, ``rate_limited``, ...) and
    ``message`` its human-readable message. ``retry_after`` is the ``Retry-After`` header in
    seconds when the server sent one. An answer with a known code is also an instance of the
    matching :mod:`agentdb.errors` class, so the same ``except NotFoundError`` (or
    ``except KeyError``) works over HTTP as on an embedded store.

    >>> e = ClientError(404, "not_found", "pattern 7 not found")
    >>> e.status, e.code, str(e)
    (404, 'not_found', '404 not_found: pattern 7 not found')
    >>> from agentdb.errors import NotFoundError
    >>> isinstance(ClientError.of(404, "not_found", "pattern 7 not found"), NotFoundError)
    True
    """

    def __init__(self, status: int, code: str, message: str, *,
                 retry_after: float | None = None) -> None:
        Exception.__init__(self, status, code, message)
        self.status = status
        self.code = code  # type: ignore[misc]  # the server's code, per instance
        self.http_status = status  # type: ignore[misc]
        self._message = message
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return self._message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self._message}"

    @classmethod
    def of(cls, status: int, code: str, message: str, *,
           retry_after: float | None = None) -> ClientError:
        """The error for a server's answer: a ``ClientError`` that is also the
        :mod:`agentdb.errors` class of ``code`` (a plain one for an unknown code)."""
        return _typed(code)(status, code, message, retry_after=retry_after)


_TYPED: dict[str, type[ClientError]] = {}


def _typed(code: str) -> type[ClientError]:
    base = error_class(code)
    if base is AgentDBError:
        return ClientError
    if code not in _TYPED:
        _TYPED[code] = type(f"Client{base.__name__}", (ClientError, base), {})
    return _TYPED[code]


# --------------------------------------------------------------------------- helpers


def _vector(v: Any) -> list[float]:
    """A JSON-able list of floats from a list, tuple or numpy array."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise InvalidTypeError(f"a vector must be a sequence of numbers, got {type(v).__name__}")
    return [float(x) for x in v]


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays that slipped into metadata or params
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise InvalidTypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _dumps(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":"),
                      allow_nan=False).encode()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values (optional fields the caller did not give)."""
    return {k: v for k, v in body.items() if v is not None}


def _query_body(task_or_vector: Any, text_field: str) -> dict[str, Any]:
    if isinstance(task_or_vector, str):
        return {text_field: task_or_vector}
    return {"vector": _vector(task_or_vector)}


def _socket_dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle keep-alive connection was closed by the peer (or has junk to read)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle connection is readable only at EOF (or on an error)


# --------------------------------------------------------------------------- client


class Client:
    """HTTP client for an AgentDB server.

    ``url`` is the server's base URL (``http://host:port``, optionally with a path prefix;
    ``https://`` works too), ``api_key`` is sent as ``Authorization: Bearer <key>``.
    ``timeout`` is the socket timeout of each request in seconds, ``retries`` how many times a
    ``429``/``503`` answer (and, for ``GET``, a refused or reset connection) is retried.

    >>> c = Client("http://127.0.0.1:8080/", api_key="k" * 8, timeout=2.0, retries=0)
    >>> c.url
    'http://127.0.0.1:8080'
    >>> c.close()
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 retries: int = 3) -> None:
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
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()
        self._sleep = time.sleep  # replaceable in tests

    def __repr__(self) -> str:
        return f"Client({self.url!r}, api_key={'***' if self.api_key else None})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every keep-alive connection this client opened (it can still be used after:
        new connections are opened on demand)."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # ---- transport ----------------------------------------------------------------------
    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's keep-alive connection and whether it is being reused."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and not _socket_dropped(conn):
            return conn, True
        if conn is not None:
            conn.close()
        conn = self._new_connection(self.timeout)
        self._local.conn = conn
        with self._conns_lock:
            self._conns = [c for c in self._conns if c.sock is not None] + [conn]
        return conn, False

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "agentdb-python-client"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _send_once(self, method: str, path: str, payload: bytes | None
                   ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn, reused = self._connection()
        try:
            conn.request(method, path, body=payload, headers=self._headers(payload is not None))
            resp = conn.getresponse()
            data = resp.read()
        except _CONNECTION_ERRORS:
            self._drop_connection()
            if reused:
                # A keep-alive connection the server closed just as we sent (its idle timeout
                # raced our request, after the check in _connection): the request did not
                # reach the application, so one attempt on a fresh connection is safe.
                conn, _ = self._connection()
                try:
                    conn.request(method, path, body=payload,
                                 headers=self._headers(payload is not None))
                    resp = conn.getresponse()
                    data = resp.read()
                except BaseException:
                    self._drop_connection()
                    raise
            else:
                raise
        except BaseException:
            self._drop_connection()
            raise
        if resp.will_close:
            self._drop_connection()
        return resp.status, resp.msg, data

    def _request(self, method: str, path: str, body: Any = None, *,
                 query: Mapping[str, Any] | None = None, retry: bool = True) -> Any:
        """Send one request (with retries); the decoded JSON answer, or None for ``204``."""
        target = self._prefix + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                target += "?" + urllib.parse.urlencode(q)
        payload = None if body is None else _dumps(body)
        attempts = (self.retries if retry else 0) + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                status, headers, data = self._send_once(method, target, payload)
            except socket.timeout as exc:
                raise ClientError(0, "timeout", f"{method} {path}: no answer within "
                                  f"{self.timeout:g} s") from exc
            except (*_CONNECTION_ERRORS, OSError) as exc:
                if method == "GET" and not last:
                    self._sleep(min(MAX_RETRY_SLEEP, 0.1 * 2 ** attempt))
                    continue
                raise ClientError(0, "connection_error",
                                  f"{method} {self.url}{path}: {exc!r}") from exc
            if status in _RETRY_STATUS and not last:
                wait = _retry_after(headers.get("Retry-After"))
                if wait is None:
                    wait = 0.5 * 2 ** attempt
                self._sleep(min(MAX_RETRY_SLEEP, wait))
                continue
            if status >= 400:
                raise self._error(status, headers, data)
            if status == 204 or not data:
                return None
            try:
                return json.loads(data)
            except ValueError as exc:
                raise ClientError(status, "bad_response",
                                  f"{method} {path}: the answer is not JSON") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _error(status: int, headers: http.client.HTTPMessage, data: bytes) -> ClientError:
        code = _STATUS_CODES.get(status, "http_error")
        message = data.decode("utf-8", "replace").strip() or http.client.responses.get(
            status, "error")
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            err = doc.get("error")
            if isinstance(err, dict):
                code = str(err.get("code") or code)
                message = str(err.get("message") or message)
            elif "detail" in doc:  # a framework default answer
                message = json.dumps(doc["detail"]) if not isinstance(
                    doc["detail"], str) else doc["detail"]
        return ClientError.of(status, code, message,
                              retry_after=_retry_after(headers.get("Retry-After")))

    @staticmethod
    def _id(id: Any) -> str:
        return urllib.parse.quote(str(id), safe="")

    # ---- service --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Liveness: ``{"status": "ok"}`` (no key needed).

        >>> Client("http://127.0.0.1:8080").health()   # doctest: +SKIP
        {'status': 'ok'}
        """
        return self._request("GET", "/health")

    def ready(self) -> dict[str, Any]:
        """Readiness: ``{"status": "ready", "patterns": n}``; a closed store raises
        ``ClientError`` with status 503 at once (no retries)."""
        return self._request("GET", "/ready", retry=False)

    def stats(self) -> dict[str, Any]:
        """The server's ``db.stats()``: counts, dimension, sizes, index status."""
        return self._request("GET", "/stats")

    # ---- patterns -------------------------------------------------------------------------
    def store_pattern(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None,
                      metadata: dict[str, Any] | None = None) -> int:
        """Store a reasoning pattern; returns its id. The server embeds ``task`` unless an
        ``embedding`` is given.

        >>> c.store_pattern("cache API responses", reward=0.8, success=True)  # doctest: +SKIP
        1
        """
        body = _compact({
            "task": task, "reward": reward, "success": success, "sessionId": session_id,
            "input": input, "output": output, "critique": critique, "metadata": metadata,
            "embedding": None if embedding is None else _vector(embedding)})
        return int(self._request("POST", "/patterns/store", body)["id"])

    def get_pattern(self, id: int, *, include_embedding: bool = False) -> dict[str, Any]:
        """A pattern by id (``ClientError`` with status 404 if unknown)."""
        query = {"includeEmbedding": "true"} if include_embedding else None
        return self._request("GET", f"/patterns/{self._id(id)}", query=query)

    def delete_pattern(self, id: int) -> None:
        """Delete a pattern (``ClientError`` with status 404 if unknown)."""
        self._request("DELETE", f"/patterns/{self._id(id)}")

    def search_patterns(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success_only: bool = False,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        adapt: bool = True, rerank: str | None = None,
                        candidates: int | None = None, heads: int | None = None,
                        temperature: float | None = None) -> list[dict[str, Any]]:
        """The ``k`` most similar patterns to a text or a vector, best first:
        ``[{"id", "similarity", "distance", "pattern": {...}}, ...]``.

        ``adapt=False`` searches with the raw query even when the server's learning is
        active. ``rerank="attention"`` / ``"attention+reward"`` re-ranks ``candidates``
        hits (default ``max(4k, 20)``) by attention (``heads`` dividing the dimension,
        default 1; softmax ``temperature``, default 0.05); each hit then has a ``score``.
        ``candidates``, ``heads`` and ``temperature`` need ``rerank`` (else ``422``).

        >>> hits = c.search_patterns("sort a list", k=3, success_only=True)  # doctest: +SKIP
        >>> hits[0]["pattern"]["task"]                                       # doctest: +SKIP
        'sort a list'
        >>> c.search_patterns("sort a list", k=3, rerank="attention")[0]["score"]  # doctest: +SKIP
        0.71
        """
        body = _query_body(task_or_vector, "task")
        body.update(_compact({"k": k, "minReward": min_reward,
                              "successOnly": True if success_only else None,
                              "sessionId": session_id, "where": where,
                              "threshold": threshold, "ef": ef,
                              "adapt": None if adapt else False, "rerank": rerank,
                              "candidates": candidates, "heads": heads,
                              "temperature": temperature}))
        return self._request("POST", "/patterns/search", body)["results"]

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
        body = _query_body(task_or_vector, "task")
        body.update(_compact({"k": k, "temperature": temperature,
                              "adapt": None if adapt else False, "minReward": min_reward,
                              "successOnly": True if success_only else None,
                              "sessionId": session_id, "where": where}))
        return self._request("POST", "/patterns/context", body)

    # ---- learning -------------------------------------------------------------------------
    def feedback(self, task_or_vector: str | Any, pattern_id: int, reward: float = 1.0
                 ) -> dict[str, Any]:
        """Pattern ``pattern_id`` was the right memory for the query (``reward`` > 0) or a
        wrong one (< 0; in [-1, 1]): one step of the server's learned query adapter.
        Returns ``{"updated": True, "loss", "pPositive", "rankBefore", "updates"}`` or
        ``{"updated": False, "reason"}``; an unknown id raises ``ClientError`` 404.

        >>> c.feedback("sort a list", pid, reward=1.0)["updated"]   # doctest: +SKIP
        True
        """
        body = _query_body(task_or_vector, "task")
        body.update({"patternId": int(pattern_id), "reward": reward})
        return self._request("POST", "/feedback", body)

    def feedback_trajectory(self, task_or_vector: str | Any, retrieved_ids: Iterable[int],
                            outcome_reward: float, *, used: int | None = None
                            ) -> dict[str, Any]:
        """The outcome of one retrieval step: the query, the ids it retrieved (best first),
        the one acted on (``used``, default the first) and the outcome in [-1, 1]. Returns
        what :meth:`feedback` returns."""
        body = _query_body(task_or_vector, "task")
        body.update(_compact({"retrievedIds": [int(i) for i in retrieved_ids],
                              "outcomeReward": outcome_reward,
                              "used": None if used is None else int(used)}))
        return self._request("POST", "/feedback/trajectory", body)

    def learning_stats(self) -> dict[str, Any]:
        """The server's ``db.learning.stats()`` (``enabled``, ``active``, ``updates``,
        ``last_loss``, ``adapter_norm``, ..., snake_case keys as in ``/stats``)."""
        return self._request("GET", "/learning")

    def _learning(self, action: str) -> dict[str, Any]:
        return self._request("POST", f"/learning/{action}")

    def learning_enable(self) -> dict[str, Any]:
        """Turn learning on (adapted searches, feedback learns); returns the stats."""
        return self._learning("enable")

    def learning_disable(self) -> dict[str, Any]:
        """Turn learning off (raw queries, feedback ignored; the adapter is kept)."""
        return self._learning("disable")

    def learning_reset(self) -> dict[str, Any]:
        """Forget the learned adapter (back to the identity); returns the stats."""
        return self._learning("reset")

    def learning_consolidate(self) -> dict[str, Any]:
        """Mark a task boundary for EWC++; returns the stats."""
        return self._learning("consolidate")

    # ---- episodes -------------------------------------------------------------------------
    def store_episode(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, latency_ms: float | None = None,
                      tokens: int | None = None, skills: Sequence[str] | None = None,
                      metadata: dict[str, Any] | None = None) -> int:
        """Store a Reflexion episode; returns its id. Skills named in ``skills`` must exist.

        >>> c.store_episode("deploy", success=False, critique="forgot migrations")  # doctest: +SKIP
        3
        """
        body = _compact({
            "task": task, "reward": reward, "success": success, "sessionId": session_id,
            "input": input, "output": output, "critique": critique, "latencyMs": latency_ms,
            "tokens": tokens, "skills": None if skills is None else list(skills),
            "metadata": metadata,
            "embedding": None if embedding is None else _vector(embedding)})
        return int(self._request("POST", "/episodes/store", body)["id"])

    def get_episode(self, id: int, *, include_embedding: bool = False) -> dict[str, Any]:
        """An episode by id (``ClientError`` with status 404 if unknown)."""
        query = {"includeEmbedding": "true"} if include_embedding else None
        return self._request("GET", f"/episodes/{self._id(id)}", query=query)

    def delete_episode(self, id: int) -> None:
        """Delete an episode (``ClientError`` with status 404 if unknown)."""
        self._request("DELETE", f"/episodes/{self._id(id)}")

    def search_episodes(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success: bool | None = None,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None
                        ) -> list[dict[str, Any]]:
        """The ``k`` most similar episodes; ``success=False`` keeps only failures, ``True``
        only successes, ``None`` both. Hits: ``{"id", "similarity", "distance", "episode"}``.
        """
        body = _query_body(task_or_vector, "task")
        body.update(_compact({"k": k, "minReward": min_reward, "success": success,
                              "sessionId": session_id, "where": where,
                              "threshold": threshold, "ef": ef}))
        return self._request("POST", "/episodes/search", body)["results"]

    # ---- skills ---------------------------------------------------------------------------
    def store_skill(self, name: str, description: str = "", *, signature: str | None = None,
                    code: str | None = None, metadata: dict[str, Any] | None = None,
                    embedding: Any = None) -> int:
        """Store a skill (names are unique: an existing name raises ``ClientError`` 409);
        returns its id.

        >>> c.store_skill("http_retry", "retry HTTP calls with backoff")  # doctest: +SKIP
        1
        """
        body = _compact({"name": name, "description": description, "signature": signature,
                         "code": code, "metadata": metadata,
                         "embedding": None if embedding is None else _vector(embedding)})
        return int(self._request("POST", "/skills/store", body)["id"])

    def get_skill(self, id: int) -> dict[str, Any]:
        """A skill by id (``ClientError`` with status 404 if unknown)."""
        return self._request("GET", f"/skills/{self._id(id)}")

    def delete_skill(self, id: int) -> None:
        """Delete a skill (``ClientError`` with status 404 if unknown)."""
        self._request("DELETE", f"/skills/{self._id(id)}")

    def search_skills(self, query: str | Any, k: int = 5, *,
                      min_success_rate: float | None = None,
                      where: dict[str, Any] | None = None, threshold: float | None = None,
                      ef: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` skills most similar to a text or a vector:
        ``[{"id", "similarity", "distance", "skill": {...}}, ...]``."""
        body = _query_body(query, "query")
        body.update(_compact({"k": k, "minSuccessRate": min_success_rate, "where": where,
                              "threshold": threshold, "ef": ef}))
        return self._request("POST", "/skills/search", body)["results"]

    # ---- raw vectors ----------------------------------------------------------------------
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
            doc = _compact(dict(item))
            doc["vector"] = _vector(item["vector"])
            enc = _dumps(doc)
            if chunk and (len(chunk) >= MAX_BATCH or size + len(enc) > MAX_BATCH_BYTES):
                ids += self._upsert_chunk(chunk)
                chunk, size = [], 0
            chunk.append(enc)
            size += len(enc) + 1
        if chunk:
            ids += self._upsert_chunk(chunk)
        return ids

    def _upsert_chunk(self, encoded: list[bytes]) -> list[int]:
        raw = json.loads(b'{"vectors":[' + b",".join(encoded) + b"]}")
        return [int(i) for i in self._request("POST", "/vectors", raw)["ids"]]

    def search_vectors(self, vector: Any, k: int = 10, *, ef: int | None = None,
                       min_reward: float | None = None, success_only: bool = False,
                       session_id: str | None = None, where: dict[str, Any] | None = None,
                       threshold: float | None = None) -> list[dict[str, Any]]:
        """Nearest stored vectors: ``[{"id", "similarity", "distance", "metadata"}, ...]``.

        >>> c.search_vectors(np.ones(16), k=3)[0]["id"]  # doctest: +SKIP
        7
        """
        body = {"vector": _vector(vector)}
        body.update(_compact({"k": k, "ef": ef, "minReward": min_reward,
                              "successOnly": True if success_only else None,
                              "sessionId": session_id, "where": where,
                              "threshold": threshold}))
        return self._request("POST", "/vectors/search", body)["results"]

    def delete_vector(self, id: int) -> None:
        """Delete a stored vector (its pattern); ``ClientError`` 404 if unknown."""
        self._request("DELETE", f"/vectors/{self._id(id)}")

    # ---- graph ----------------------------------------------------------------------------
    def cypher(self, query: str, /, **params: Any) -> list[dict[str, Any]]:
        """Run a Cypher query; returns the rows as dicts keyed by column. Parameters are
        passed as keywords (``$name`` in the query). A syntax error raises ``ClientError``
        400 (code ``cypher_error``) with the line and column in its message.

        >>> c.cypher("MATCH (n) RETURN count(n) AS n")          # doctest: +SKIP
        [{'n': 0}]
        >>> c.cypher("MATCH (n) WHERE n.id = $id RETURN n", id=3)  # doctest: +SKIP
        [...]
        """
        body: dict[str, Any] = {"query": query}
        if params:
            body["params"] = params
        answer = self._request("POST", "/graph/cypher", body)
        columns = answer.get("columns") or []
        rows = answer.get("rows") or []
        return [row if isinstance(row, dict) else dict(zip(columns, row)) for row in rows]

    # ---- change feed ----------------------------------------------------------------------
    def stream(self, *, last_event_id: int | str | None = None,
               kinds: Iterable[str] | None = None, reconnect: bool = True,
               idle_timeout: float = 60.0) -> Iterator[dict[str, Any]]:
        """Follow the change feed (``GET /patterns/stream``, Server-Sent Events).

        Yields ``{"id": int, "event": "pattern:stored" | ..., "data": dict}``; heartbeats
        (comment lines) are skipped. ``kinds`` widens the feed (``["pattern", "episode",
        "skill"]``). With ``last_event_id`` the server first replays the buffered events after
        it; an ``event: reset`` means some were lost and the store should be re-read.

        When the connection drops (or nothing, not even a heartbeat, arrives for
        ``idle_timeout`` seconds) and ``reconnect`` is true, it reconnects with
        ``Last-Event-ID`` set to the last id seen, waiting the server's ``retry:`` delay (or
        0.5 s, growing on repeated failures); after ``retries`` failed reconnections in a row
        it raises ``ClientError``. Stop by breaking out of the loop (the connection is
        closed).

        >>> for ev in c.stream(last_event_id=41):   # doctest: +SKIP
        ...     if ev["event"] == "pattern:stored":
        ...         print(ev["data"]["task"])
        """
        query: dict[str, str] = {}
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            query["kinds"] = ",".join(kinds)
        target = self._prefix + "/patterns/stream"
        if query:
            target += "?" + urllib.parse.urlencode(query)
        last_id = None if last_event_id is None else str(last_event_id)
        delay = 0.5
        failures = 0
        while True:
            conn = self._new_connection(idle_timeout)
            try:
                headers = self._headers(False)
                headers["Accept"] = "text/event-stream"
                headers["Cache-Control"] = "no-cache"
                if last_id is not None:
                    headers["Last-Event-ID"] = last_id
                try:
                    conn.request("GET", target, headers=headers)
                    resp = conn.getresponse()
                except (*_CONNECTION_ERRORS, OSError) as exc:
                    failures += 1
                    if not reconnect or failures > self.retries:
                        raise ClientError(0, "connection_error",
                                          f"GET {self.url}/patterns/stream: {exc!r}") from exc
                    self._sleep(min(MAX_RETRY_SLEEP, delay * 2 ** (failures - 1)))
                    continue
                if resp.status != 200:
                    data = resp.read()
                    if resp.status in _RETRY_STATUS and reconnect and failures < self.retries:
                        failures += 1
                        wait = _retry_after(resp.getheader("Retry-After"))
                        self._sleep(min(MAX_RETRY_SLEEP, delay if wait is None else wait))
                        continue
                    raise self._error(resp.status, resp.msg, data)
                failures = 0
                for event in _parse_sse(resp):
                    if "retry" in event:
                        delay = event["retry"]
                        continue
                    if event["id"] is not None:
                        last_id = str(event["id"])
                    yield event
                # the server ended the stream normally (e.g. a slow subscriber was dropped)
            except (*_CONNECTION_ERRORS, OSError) as exc:  # includes socket.timeout
                if not reconnect:
                    raise ClientError(0, "connection_error",
                                      f"GET {self.url}/patterns/stream: {exc!r}") from exc
            finally:
                conn.close()
            if not reconnect:
                return
            self._sleep(delay)


def _parse_sse(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Events of an SSE body: ``{"id", "event", "data"}``, and ``{"retry": seconds}``."""
    data: list[str] = []
    event = ""
    ev_id: str | None = None
    while True:
        raw = resp.readline()
        if not raw:
            return  # EOF: the connection ended (an unfinished event is dropped, as in browsers)
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                yield {"id": _int_or_str(ev_id), "event": event or "message", "data": payload}
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue  # comment / heartbeat
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            if "\0" not in value:
                ev_id = value
        elif name == "retry" and value.isdigit():
            yield {"retry": int(value) / 1000.0}


def _int_or_str(value: str | None) -> int | str | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value
