"""What the sync :class:`~agentdb.server.client.Client` and the
:class:`~agentdb.server.async_client.AsyncClient` share, free of I/O: the error type, request
encoding, the retry policy and the answer decoding, and the Server-Sent Events line parser.

>>> retry_after("2.5")
2.5
>>> outcome("GET", "/x", 503, None, b"", attempt=0, attempts=2)
(0.5, None)
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import time
from collections.abc import Sequence
from typing import Any

from ..errors import AgentDBError, InvalidTypeError, error_class

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "MAX_RETRY_SLEEP", "RETRY_STATUS", "ClientError",
           "SseParser", "compact", "dumps", "error_from", "outcome", "query_body",
           "retry_after", "transport_failure", "vector_list"]

#: Longest sleep a ``Retry-After`` header can cause, in seconds.
MAX_RETRY_SLEEP = 30.0
#: Most vectors the server accepts in one ``POST /vectors``.
MAX_BATCH = 1000
#: Body size ``upsert_vectors`` aims below per request (the server's default limit is 1 MiB).
MAX_BATCH_BYTES = 900_000

STATUS_CODES = {
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
RETRY_STATUS = (429, 503)
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
        return typed_error(code)(status, code, message, retry_after=retry_after)


_TYPED: dict[str, type[ClientError]] = {}


def typed_error(code: str) -> type[ClientError]:
    base = error_class(code)
    if base is AgentDBError:
        return ClientError
    if code not in _TYPED:
        _TYPED[code] = type(f"Client{base.__name__}", (ClientError, base), {})
    return _TYPED[code]


# --------------------------------------------------------------------------- helpers


def vector_list(v: Any) -> list[float]:
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


def dumps(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":"),
                      allow_nan=False).encode()


def retry_after(value: str | None) -> float | None:
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


def compact(body: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values (optional fields the caller did not give)."""
    return {k: v for k, v in body.items() if v is not None}


def query_body(task_or_vector: Any, text_field: str) -> dict[str, Any]:
    if isinstance(task_or_vector, str):
        return {text_field: task_or_vector}
    return {"vector": vector_list(task_or_vector)}


def error_from(status: int, retry_after_header: str | None, data: bytes) -> ClientError:
    """The :class:`ClientError` of an error answer: the server's ``{"error": {"code",
    "message"}}`` when present, else a code from the status.

    >>> error_from(404, None, b'{"error": {"code": "not_found", "message": "no"}}').code
    'not_found'
    """
    code = STATUS_CODES.get(status, "http_error")
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
    return ClientError.of(status, code, message, retry_after=retry_after(retry_after_header))


def outcome(method: str, path: str, status: int, retry_after_header: str | None, data: bytes,
            *, attempt: int, attempts: int) -> tuple[float | None, Any]:
    """What to do with an answer: ``(seconds, None)`` to sleep and retry (429/503 while
    attempts remain), else ``(None, decoded JSON or None for 204)``; an error answer raises.

    >>> outcome("GET", "/x", 200, None, b'{"a": 1}', attempt=0, attempts=1)
    (None, {'a': 1})
    """
    if status in RETRY_STATUS and attempt < attempts - 1:
        wait = retry_after(retry_after_header)
        return min(MAX_RETRY_SLEEP, 0.5 * 2 ** attempt if wait is None else wait), None
    if status >= 400:
        raise error_from(status, retry_after_header, data)
    if status == 204 or not data:
        return None, None
    try:
        return None, json.loads(data)
    except ValueError as exc:
        raise ClientError(status, "bad_response",
                          f"{method} {path}: the answer is not JSON") from exc


def transport_failure(method: str, url: str, path: str, exc: BaseException, *, attempt: int,
                      attempts: int) -> float:
    """A request that got no answer: seconds to sleep before retrying it (``GET`` only, while
    attempts remain), else a ``connection_error`` :class:`ClientError` is raised.

    >>> transport_failure("GET", "http://h", "/x", OSError(), attempt=0, attempts=3)
    0.1
    """
    if method == "GET" and attempt < attempts - 1:
        return min(MAX_RETRY_SLEEP, 0.1 * 2 ** attempt)
    raise ClientError(0, "connection_error", f"{method} {url}{path}: {exc!r}") from exc


class SseParser:
    """Server-Sent Events, one decoded line at a time: :meth:`line` returns an event
    ``{"id", "event", "data"}``, a ``{"retry": seconds}`` or None.

    >>> p = SseParser()
    >>> [p.line(x) for x in ["id: 3", "event: pattern:stored", 'data: {"id": 1}', ""]][-1]
    {'id': 3, 'event': 'pattern:stored', 'data': {'id': 1}}
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def line(self, line: str) -> dict[str, Any] | None:
        """Feed one line (without its line ending)."""
        if not line:
            out = None
            if self._data:
                text = "\n".join(self._data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                out = {"id": _int_or_str(self._id), "event": self._event or "message",
                       "data": payload}
            self._data, self._event = [], ""
            return out
        if line.startswith(":"):
            return None  # comment / heartbeat
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            return {"retry": int(value) / 1000.0}
        return None


def _int_or_str(value: str | None) -> int | str | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value
