"""One typed error hierarchy for the whole package.

Every error AgentDB raises on purpose is an :class:`AgentDBError`. Each class knows its stable
wire ``code`` (what the HTTP API puts in ``{"error": {"code": ...}}``), its ``http_status`` and
its ``grpc_status``; the server, the gRPC service, the client and the CLI all map errors
through this module (:func:`describe`) instead of keeping tables of their own. The classes
also derive from the builtin a Python caller would expect, so ``except KeyError`` still
catches an unknown id and ``except ValueError`` still catches bad input:

=========================  ================  ====  ===================  ================
class                      code              HTTP  gRPC                 also a
=========================  ================  ====  ===================  ================
AgentDBError               internal_error    500   INTERNAL
InvalidArgumentError       validation_error  422   INVALID_ARGUMENT     ValueError
InvalidTypeError           validation_error  422   INVALID_ARGUMENT     TypeError
BadRequestError            bad_request       400   INVALID_ARGUMENT     ValueError
NotFoundError              not_found         404   NOT_FOUND            KeyError
ConflictError              conflict          409   ALREADY_EXISTS       ValueError
EmbedderMismatchError      embedder_mismatch 409   FAILED_PRECONDITION  ValueError
CypherError                cypher_error      400   INVALID_ARGUMENT
QueryTimeoutError          query_timeout     408   DEADLINE_EXCEEDED    TimeoutError
QueryCancelledError        query_cancelled   499   CANCELLED
QueryLimitError            query_limit       400   RESOURCE_EXHAUSTED
StoreError                 unavailable       503   FAILED_PRECONDITION  RuntimeError
StoreClosedError           unavailable       503   UNAVAILABLE          RuntimeError
StoreLockedError           unavailable       503   FAILED_PRECONDITION  RuntimeError
IntegrityError             conflict          409   ALREADY_EXISTS       ValueError
LearningStateError         conflict          409   FAILED_PRECONDITION  ValueError
MigrationError             migration_failed  500   INTERNAL             RuntimeError
ClusterError               unavailable       503   UNAVAILABLE          RuntimeError
UnauthorizedError          unauthorized      401   UNAUTHENTICATED
ForbiddenError             forbidden         403   PERMISSION_DENIED
RateLimitedError           rate_limited      429   RESOURCE_EXHAUSTED
PayloadTooLargeError       payload_too_large 413   RESOURCE_EXHAUSTED
=========================  ================  ====  ===================  ================

>>> from agentdb import errors
>>> e = errors.NotFoundError("unknown pattern id 7")
>>> isinstance(e, KeyError), str(e), e.code, e.http_status, e.grpc_status
(True, 'unknown pattern id 7', 'not_found', 404, 'NOT_FOUND')
>>> errors.describe(ValueError("k must be positive"))  # doctest: +NORMALIZE_WHITESPACE
ErrorInfo(code='validation_error', http_status=422, grpc_status='INVALID_ARGUMENT',
          message='k must be positive')
>>> errors.error_class("conflict").__name__
'ConflictError'
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

__all__ = [
    "AgentDBError",
    "BadRequestError",
    "ClusterError",
    "ConflictError",
    "CypherError",
    "CypherSyntaxError",
    "EmbedderMismatchError",
    "ErrorInfo",
    "ForbiddenError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "LearningStateError",
    "MigrationError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QueryCancelledError",
    "QueryLimitError",
    "QueryTimeoutError",
    "RateLimitedError",
    "StoreClosedError",
    "StoreError",
    "StoreLockedError",
    "UnauthorizedError",
    "describe",
    "error_class",
]


class AgentDBError(Exception):
    """The root of every error AgentDB raises on purpose; ``str(e)`` is the message."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"

    @property
    def message(self) -> str:
        """The human-readable message (the first argument)."""
        return str(self.args[0]) if self.args else self.__class__.__name__

    def __str__(self) -> str:  # KeyError would quote it; every AgentDBError reads the same
        return self.message

    def to_dict(self) -> dict[str, str]:
        """The HTTP API's error body: ``{"code": ..., "message": ...}``.

        >>> ConflictError("skill 'x' already exists").to_dict()
        {'code': 'conflict', 'message': "skill 'x' already exists"}
        """
        return {"code": self.code, "message": str(self)}


# ---- bad input ------------------------------------------------------------------------------
class InvalidArgumentError(AgentDBError, ValueError):
    """An argument is out of range, malformed, of the wrong dimension, NaN/inf, empty or
    oversized; nothing was changed."""

    code = "validation_error"
    http_status = 422
    grpc_status = "INVALID_ARGUMENT"


class InvalidTypeError(AgentDBError, TypeError):
    """An argument has the wrong type (a string where a vector was expected, ...)."""

    code = "validation_error"
    http_status = 422
    grpc_status = "INVALID_ARGUMENT"


class BadRequestError(InvalidArgumentError):
    """The request itself is unreadable (not JSON, not UTF-8)."""

    code = "bad_request"
    http_status = 400


class NotFoundError(AgentDBError, KeyError):
    """An id, name, node or edge that does not exist."""

    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class ConflictError(InvalidArgumentError):
    """The write would break uniqueness (a skill name or an id that already exists)."""

    code = "conflict"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"


class EmbedderMismatchError(ConflictError):
    """A store was opened with another embedder than the one its vectors came from (name,
    dimension or model checksum differ): searching would mix incomparable vectors."""

    code = "embedder_mismatch"
    grpc_status = "FAILED_PRECONDITION"


class CypherError(AgentDBError):
    """A Cypher query could not be parsed, planned or executed.

    ``message`` is the bare message, ``line``/``column`` the 1-based position (or ``None``);
    ``str(e)`` starts with the position when it is known.

    >>> str(CypherError("expected ')'", 1, 17))
    "line 1, column 17: expected ')'"
    """

    code = "cypher_error"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.bare_message: str = message
        self.line: int | None = line
        self.column: int | None = column
        super().__init__(message)

    @property
    def message(self) -> str:  # the bare message, as before the hierarchy existed
        return self.bare_message

    def __str__(self) -> str:
        if self.line is not None and self.column is not None:
            return f"line {self.line}, column {self.column}: {self.bare_message}"
        return self.bare_message

    def __reduce__(self) -> tuple[type, tuple[str, int | None, int | None]]:
        return (type(self), (self.bare_message, self.line, self.column))


class CypherSyntaxError(CypherError):
    """The query text is malformed, or uses syntax this engine does not support."""


class QueryTimeoutError(CypherError, TimeoutError):
    """A query ran past its ``timeout`` (or the server's default) and was stopped; a write
    query that is stopped keeps none of its writes.

    >>> e = QueryTimeoutError("query exceeded its timeout of 2 s")
    >>> isinstance(e, TimeoutError), e.code, e.http_status, e.grpc_status
    (True, 'query_timeout', 408, 'DEADLINE_EXCEEDED')
    """

    code = "query_timeout"
    http_status = 408
    grpc_status = "DEADLINE_EXCEEDED"


class QueryCancelledError(CypherError):
    """A query was cancelled while it ran (its client went away, or the server is stopping);
    a write query that is cancelled keeps none of its writes. HTTP 499 is the de-facto
    "client closed request" status: the client that would read it is usually gone."""

    code = "query_cancelled"
    http_status = 499
    grpc_status = "CANCELLED"


class QueryLimitError(CypherError):
    """A query produced more rows than its ``max_rows`` allows (add ``LIMIT``, aggregate, or
    raise the cap)."""

    code = "query_limit"
    http_status = 400
    grpc_status = "RESOURCE_EXHAUSTED"


# ---- the store ------------------------------------------------------------------------------
class StoreError(AgentDBError, RuntimeError):
    """A store cannot do what was asked (read-only, unreadable, wrong schema)."""

    code = "unavailable"
    http_status = 503
    grpc_status = "FAILED_PRECONDITION"


class StoreClosedError(StoreError):
    """The store (or the cluster handle) has been closed."""

    grpc_status = "UNAVAILABLE"


class StoreLockedError(StoreError):
    """Another process holds the store open for writing."""


class IntegrityError(StoreError, ValueError):
    """A row breaks a constraint (duplicate id or skill name, missing required value).

    Messages start like SQLite's (``UNIQUE constraint failed: skills.name``) so callers that
    recognise those keep working.
    """

    code = "conflict"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"


class LearningStateError(AgentDBError, ValueError):
    """The stored learning state cannot be read (corrupt, truncated or from a newer version)."""

    code = "conflict"
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class MigrationError(AgentDBError, RuntimeError):
    """The destination does not hold what the source holds after the copy."""

    code = "migration_failed"


class ClusterError(AgentDBError, RuntimeError):
    """A cluster operation failed (no replica answered, a local-cluster command failed)."""

    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


# ---- the server -----------------------------------------------------------------------------
class UnauthorizedError(AgentDBError):
    """No API key, or an unknown one."""

    code = "unauthorized"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class ForbiddenError(AgentDBError):
    """A valid API key used outside what it may reach (a namespace it is not bound to)."""

    code = "forbidden"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class RateLimitedError(AgentDBError):
    """The key's request budget is spent; ``retry_after`` says when to try again (s)."""

    code = "rate_limited"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(AgentDBError):
    """The request body is larger than the server accepts."""

    code = "payload_too_large"
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


# ---- mapping --------------------------------------------------------------------------------
class ErrorInfo(NamedTuple):
    """How an exception is reported on the wire."""

    code: str
    http_status: int
    grpc_status: str
    message: str


_INTERNAL = ErrorInfo("internal_error", 500, "INTERNAL", "internal error")


def describe(exc: BaseException) -> ErrorInfo:
    """The wire description of any exception: an :class:`AgentDBError` says it itself; the
    builtins that bad input raises below the typed layers (numpy, the native core) map like
    their typed counterparts; anything else is an internal error whose message is hidden.

    >>> describe(KeyError("unknown id 3")).code
    'not_found'
    >>> describe(ZeroDivisionError("x")).message
    'internal error'
    """
    if isinstance(exc, AgentDBError):
        return ErrorInfo(exc.code, exc.http_status, exc.grpc_status, str(exc))
    if isinstance(exc, KeyError):
        msg = str(exc.args[0]) if exc.args else ""
        if msg.startswith("unknown "):  # the native core's and the numpy twins' wording
            return ErrorInfo("not_found", 404, "NOT_FOUND", msg)
        return _INTERNAL
    if isinstance(exc, (ValueError, TypeError)):
        return ErrorInfo("validation_error", 422, "INVALID_ARGUMENT", str(exc))
    return _INTERNAL


_BY_CODE: dict[str, type[AgentDBError]] = {
    cls.code: cls
    for cls in (AgentDBError, InvalidArgumentError, BadRequestError, NotFoundError,
                ConflictError, EmbedderMismatchError, CypherError, QueryTimeoutError,
                QueryCancelledError, QueryLimitError, StoreError, MigrationError,
                UnauthorizedError, ForbiddenError, RateLimitedError, PayloadTooLargeError)
}


def error_class(code: str) -> type[AgentDBError]:
    """The class a wire ``code`` stands for (:class:`AgentDBError` for an unknown code).

    >>> error_class("not_found").__name__
    'NotFoundError'
    """
    return _BY_CODE.get(code, AgentDBError)

