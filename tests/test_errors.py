"""The one typed error hierarchy (``agentdb.errors``): each class's wire code, HTTP and gRPC
status, the builtin it also is, what the embedded store raises for each kind of bad input,
and how builtins from below the typed layers are described."""

from __future__ import annotations

import agentdb
import numpy as np
import pytest
from agentdb import errors as E

TABLE = [  # class, code, HTTP, gRPC, builtin it must also be
    (E.InvalidArgumentError, "validation_error", 422, "INVALID_ARGUMENT", ValueError),
    (E.InvalidTypeError, "validation_error", 422, "INVALID_ARGUMENT", TypeError),
    (E.BadRequestError, "bad_request", 400, "INVALID_ARGUMENT", ValueError),
    (E.NotFoundError, "not_found", 404, "NOT_FOUND", KeyError),
    (E.ConflictError, "conflict", 409, "ALREADY_EXISTS", ValueError),
    (E.CypherSyntaxError, "cypher_error", 400, "INVALID_ARGUMENT", E.CypherError),
    (E.StoreError, "unavailable", 503, "FAILED_PRECONDITION", RuntimeError),
    (E.StoreClosedError, "unavailable", 503, "UNAVAILABLE", E.StoreError),
    (E.StoreLockedError, "unavailable", 503, "FAILED_PRECONDITION", E.StoreError),
    (E.IntegrityError, "conflict", 409, "ALREADY_EXISTS", ValueError),
    (E.LearningStateError, "conflict", 409, "FAILED_PRECONDITION", ValueError),
    (E.MigrationError, "migration_failed", 500, "INTERNAL", RuntimeError),
    (E.ClusterError, "unavailable", 503, "UNAVAILABLE", RuntimeError),
    (E.UnauthorizedError, "unauthorized", 401, "UNAUTHENTICATED", E.AgentDBError),
    (E.RateLimitedError, "rate_limited", 429, "RESOURCE_EXHAUSTED", E.AgentDBError),
    (E.PayloadTooLargeError, "payload_too_large", 413, "RESOURCE_EXHAUSTED", E.AgentDBError),
    (E.ForbiddenError, "forbidden", 403, "PERMISSION_DENIED", E.AgentDBError),
]


@pytest.mark.parametrize(("cls", "code", "http", "grpc", "builtin"), TABLE,
                         ids=[row[0].__name__ for row in TABLE])
def test_every_class_knows_its_code_and_statuses(cls, code, http, grpc, builtin) -> None:
    err = cls("what went wrong")
    assert isinstance(err, E.AgentDBError) and isinstance(err, builtin)
    assert (err.code, err.http_status, err.grpc_status) == (code, http, grpc)
    assert str(err) == "what went wrong"  # KeyError would have quoted it
    assert E.describe(err) == E.ErrorInfo(code, http, grpc, "what went wrong")
    assert err.to_dict() == {"code": code, "message": "what went wrong"}


def test_codes_map_back_to_classes() -> None:
    for code in ("validation_error", "bad_request", "not_found", "conflict", "cypher_error",
                 "unavailable", "unauthorized", "rate_limited", "payload_too_large"):
        assert E.error_class(code).code == code
    assert E.error_class("no_such_code") is E.AgentDBError


def test_builtins_from_the_engines_are_described_like_their_typed_twins() -> None:
    assert E.describe(KeyError("unknown id 4")) == E.ErrorInfo(
        "not_found", 404, "NOT_FOUND", "unknown id 4")
    assert E.describe(ValueError("dim mismatch")).code == "validation_error"
    assert E.describe(TypeError("not a vector")).http_status == 422
    hidden = E.describe(KeyError("internal detail"))
    assert (hidden.code, hidden.message) == ("internal_error", "internal error")
    assert E.describe(ZeroDivisionError("x")).http_status == 500


def test_cypher_error_keeps_position_and_pickles() -> None:
    import pickle

    err = E.CypherSyntaxError("expected ')'", 2, 5)
    assert str(err) == "line 2, column 5: expected ')'" and err.message == "expected ')'"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is E.CypherSyntaxError and (back.line, back.column) == (2, 5)
    from agentdb.graph.cypher import CypherError

    assert CypherError is E.CypherError  # one class, re-exported where it always was


def test_the_embedded_store_raises_typed_errors() -> None:
    db = agentdb.open(":memory:", dim=8)
    pid = db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(E.NotFoundError, match="unknown pattern id 999"):
        db.get_pattern(999)
    with pytest.raises(E.InvalidArgumentError, match="dimension|dim"):
        db.store_pattern("t", embedding=[1, 0, 0])
    with pytest.raises(E.InvalidArgumentError):
        db.store_pattern("t", embedding=[np.nan, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(E.InvalidArgumentError, match="reward"):
        db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0], reward=5)
    db.store_skill("s", "d", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(E.ConflictError, match="already exists"):
        db.store_skill("s", "d", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(E.CypherSyntaxError):
        db.graph.query("MATCH (n RETURN n")
    assert db.get_pattern(pid).task == "t"  # nothing stored was lost
    db.close()
    assert db.closed
    with pytest.raises(E.StoreClosedError):
        db.get_pattern(pid)


def test_search_hits_answers_like_search_patterns() -> None:
    db = agentdb.open(":memory:", dim=8)
    rng = np.random.default_rng(1)
    for i in range(200):
        db.store_pattern(f"p{i}", embedding=rng.standard_normal(8), reward=(i % 5) / 5,
                         success=i % 2 == 0, session_id=f"s{i % 3}",
                         metadata={"i": i, "even": i % 2 == 0})
    q = rng.standard_normal(8)
    for kw in ({}, {"min_reward": 0.4}, {"success_only": True}, {"session_id": "s1"},
               {"where": {"i": {"$lt": 50}}}, {"threshold": 0.2},
               {"where": {"i": {"$gt": 10_000}}}):
        hits = db.search_hits(q, 7, ef=200, **kw)
        ref = db.search_patterns(q, 7, ef=200, adapt=False, **kw)
        assert [h["id"] for h in hits] == [r.id for r in ref], kw
        assert [h["metadata"] for h in hits] == [r.record.metadata for r in ref]
        assert np.allclose([h["similarity"] for h in hits], [r.similarity for r in ref])
    with pytest.raises(E.InvalidArgumentError, match="k must be"):
        db.search_hits(q, 0)
    with pytest.raises(E.InvalidTypeError, match="threshold"):
        db.search_hits(q, 3, threshold="high")
    with pytest.raises(E.InvalidArgumentError):
        db.search_hits(q[:4], 3)
    db.close()
    with pytest.raises(E.StoreClosedError):
        db.search_hits(q, 3)
