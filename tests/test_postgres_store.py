"""PostgresStore against a real PostgreSQL 16 + pgvector (fixtures ``postgres_url`` and
``pg_schema`` in conftest.py): schema migrations, parity with SQLiteStore, filtered search,
bulk paths, checksums, identifier and password hygiene.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _child import child_env
from _requires import unavailable

try:
    import psycopg
    import psycopg_pool  # noqa: F401
    from pgvector.psycopg import register_vector  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    unavailable("POSTGRES", f"PostgreSQL store tests need the 'postgres' extra "
                f"({exc.name} is not installed)", module=True)

from agentdb.storage import SQLiteStore, StoreError  # noqa: E402
from agentdb.storage.filters import where_sql  # noqa: E402
from agentdb.storage.postgres import (  # noqa: E402
    MIGRATIONS,
    SCHEMA_VERSION,
    IntegrityError,
    PostgresStore,
    pg_where_sql,
    sqlite_checksum,
)
from psycopg import sql  # noqa: E402

DIM = 4


@pytest.fixture
def pg(postgres_url: str, pg_schema: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_url, dim=DIM, schema=pg_schema)
    yield store
    store.close()


@pytest.fixture
def extra_schema(postgres_url: str) -> Iterator[str]:
    """A second schema name (created by the store under test), dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _pattern(i: int, **over: Any) -> dict[str, Any]:
    values = {"task": f"task {i}", "reward": (i % 7) / 7 - 0.3, "success": i % 2,
              "session_id": f"s{i % 3}", "input": f"in {i}", "output": None,
              "critique": "c" if i % 4 == 0 else None,
              "metadata": json.dumps({"i": i, "lang": "py" if i % 2 else "go"})}
    values.update(over)
    return values


def _episode(i: int) -> dict[str, Any]:
    return {**_pattern(i), "latency_ms": 12.5 * i, "tokens": 100 + i,
            "skills": json.dumps(["a", f"s{i}"])}


def _skill(i: int) -> dict[str, Any]:
    return {"name": f"skill_{i}", "description": f"does {i}", "signature": "f(x)",
            "code": "def f(x): ...", "success_rate": 0.25 * (i % 5), "uses": i,
            "metadata": json.dumps({"i": i})}


def _vec(rng: np.random.Generator, n: int | None = None, dim: int = DIM) -> np.ndarray:
    shape = (dim,) if n is None else (n, dim)
    return rng.standard_normal(shape).astype(np.float32)


def _strip_times(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k not in ("created_at", "updated_at", "embedding")}
    if "embedding" in d:
        out["embedding"] = d["embedding"].tolist()
    return out


def _query_one(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()


# ---------------------------------------------------------------------------- schema
def test_schema_is_idempotent_and_migrations_recorded_once(postgres_url: str,
                                                          pg_schema: str) -> None:
    a = PostgresStore(postgres_url, dim=DIM, schema=pg_schema)
    b = PostgresStore(postgres_url, dim=DIM, schema=pg_schema)
    try:
        assert a.meta("schema_version") == str(SCHEMA_VERSION)
        assert a.meta("dim") == str(DIM)
        assert b.dim == DIM and a.generation == b.generation == 1  # as SQLiteStore
    finally:
        a.close()
        b.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(sql.SQL("SELECT version, description, applied_at FROM {} "
                                    "ORDER BY version").format(
            sql.Identifier(pg_schema, "schema_migrations"))).fetchall()
        assert [r[0] for r in rows] == [v for v, _, _ in MIGRATIONS]
        assert rows[0][1] and rows[0][2] is not None
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            [pg_schema])}
        assert tables == {"reasoning_patterns", "episodes", "skills", "graph_nodes",
                          "graph_edges", "graph_indexes", "deletions", "meta",
                          "schema_migrations"}
        hnsw = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
                            "AND indexdef LIKE '%%hnsw%%'", [pg_schema]).fetchall()
        assert len(hnsw) == 3
        assert all("vector_cosine_ops" in d and "m='16'" in d and "ef_construction='200'" in d
                   for _, d in hnsw)


def test_concurrent_opens_apply_migrations_once(postgres_url: str, pg_schema: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(postgres_url, dim=DIM, schema=pg_schema, pool_size=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors and len(stores) == 4
    n = _query_one(postgres_url, sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(pg_schema, "schema_migrations")).as_string(None))[0]
    assert n == len(MIGRATIONS)


def test_schema_version_too_new(postgres_url: str, pg_schema: str) -> None:
    PostgresStore(postgres_url, dim=DIM, schema=pg_schema).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (version, description) VALUES (%s, 'future')"
                             ).format(sql.Identifier(pg_schema, "schema_migrations")),
                     [SCHEMA_VERSION + 5])
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 5}; this AgentDB "
                                         rf"reads up to {SCHEMA_VERSION} \(upgrade agentdb\)"):
        PostgresStore(postgres_url, dim=DIM, schema=pg_schema)


def test_dimension_mismatch(postgres_url: str, pg_schema: str) -> None:
    PostgresStore(postgres_url, dim=DIM, schema=pg_schema).close()
    with pytest.raises(ValueError, match=r"dimension mismatch: .* stores dim 4, opened with "
                                         r"dim 8"):
        PostgresStore(postgres_url, dim=8, schema=pg_schema)
    s = PostgresStore(postgres_url, dim=0, schema=pg_schema)  # 0: use the stored dim
    assert s.dim == DIM
    s.close()


def test_readonly(postgres_url: str, pg_schema: str) -> None:
    with pytest.raises(FileNotFoundError):
        PostgresStore(postgres_url, dim=DIM, schema=pg_schema, readonly=True)
    w = PostgresStore(postgres_url, dim=DIM, schema=pg_schema)
    with w.write() as tx:
        w.insert(tx, "patterns", _pattern(1), np.ones(DIM, np.float32))
    r = PostgresStore(postgres_url, dim=DIM, schema=pg_schema, readonly=True)
    try:
        assert r.count("patterns") == 1 and r.readonly
        with pytest.raises(StoreError, match="read-only"), r.write():
            pass
    finally:
        r.close()
        w.close()


def test_identifier_validation(postgres_url: str) -> None:
    for bad in ("x; drop table", "Public", "1abc", "a" * 42, "", 'a"b'):
        with pytest.raises(ValueError, match="invalid schema name") as info:
            PostgresStore(postgres_url, dim=DIM, schema=bad)
        assert repr(bad) in str(info.value)
    for bad in ("A", "a-b", "x" * 21, "p; drop"):
        with pytest.raises(ValueError, match="invalid table_prefix"):
            PostgresStore(postgres_url, dim=DIM, table_prefix=bad)


def test_password_never_shown(postgres_url: str, pg_schema: str) -> None:
    secret = "s3cr3t-Passw0rd"
    url = f"postgresql://agent:{secret}@127.0.0.1:1/memdb"
    with pytest.raises(StoreError) as info:
        PostgresStore(url, dim=DIM, schema=pg_schema, connect_timeout=2)
    msg = str(info.value)
    assert secret not in msg and "127.0.0.1" in msg and "memdb" in msg
    # a working URL that carries a password (pgserver trusts local connections)
    good = postgres_url.replace("postgres:@", f"postgres:{secret}@", 1)
    if good == postgres_url:  # AGENTDB_POSTGRES_URL of another shape: use a query parameter
        good = postgres_url + ("&" if "?" in postgres_url else "?") + f"password={secret}"
    try:
        s = PostgresStore(good, dim=DIM, schema=pg_schema)
    except StoreError as exc:  # the server checks passwords: the error must not show it
        assert secret not in str(exc)
        return
    try:
        assert secret not in repr(s) and secret not in s.path and "***" in s.path
        s.close()
        with pytest.raises(StoreError) as info2:
            s.count("patterns")
        assert secret not in str(info2.value)
    finally:
        s.close()


def test_two_schemas_are_isolated(postgres_url: str, pg_schema: str,
                                  extra_schema: str) -> None:
    a = PostgresStore(postgres_url, dim=DIM, schema=pg_schema)
    b = PostgresStore(postgres_url, dim=DIM, schema=extra_schema)
    c = PostgresStore(postgres_url, dim=DIM, schema=pg_schema, table_prefix="other_")
    try:
        with a.write() as w:
            a.insert(w, "patterns", _pattern(1), np.ones(DIM, np.float32))
            a.insert(w, "patterns", _pattern(2), np.ones(DIM, np.float32))
        with b.write() as w:
            b.insert(w, "patterns", _pattern(3), np.ones(DIM, np.float32))
        assert (a.count("patterns"), b.count("patterns"), c.count("patterns")) == (2, 1, 0)
        assert a.generation == b.generation == 2 and c.generation == 1
        assert b.get("patterns", [1])[1]["task"] == "task 3"
        with b.write() as w:
            b.delete(w, "patterns", [1])
        assert a.count("patterns") == 2 and a.deleted_since("patterns", -1) == []
    finally:
        a.close()
        b.close()
        c.close()


def test_importing_agentdb_does_not_import_psycopg() -> None:
    code = ("import sys; import agentdb, agentdb.storage; "
            "assert 'psycopg' not in sys.modules, 'psycopg imported'; "
            "assert 'agentdb.storage.postgres' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env())


# ---------------------------------------------------------------------------- parity
def _same_ops(store: Any, rng: np.random.Generator) -> dict[str, Any]:
    """One script of operations; returns what the store answered."""
    out: dict[str, Any] = {}
    vecs = _vec(rng, 12)
    with store.write() as w:
        ids = [store.insert(w, "patterns", _pattern(i), vecs[i], created_at=1000.0 + i)
               for i in range(8)]
        ids.append(store.insert(w, "patterns", _pattern(50), vecs[8], row_id=50,
                                created_at=5.0))
        ids.append(store.insert(w, "patterns", _pattern(9), vecs[9], created_at=6.0))
        store.insert(w, "episodes", _episode(1), vecs[10], created_at=7.0)
        store.insert(w, "skills", _skill(1), vecs[11], created_at=8.0)
    out["ids"] = ids
    out["gen1"] = store.generation
    with store.write() as w:
        store.update(w, "patterns", ids[1], {"reward": 0.99, "metadata": '{"i": 99}'})
        store.update(w, "patterns", ids[2], {"task": "new"}, embedding=np.ones(DIM))
        store.delete(w, "patterns", [ids[3], ids[4]])
    with pytest.raises(KeyError, match="unknown pattern id 12345"), store.write() as w:
        store.update(w, "patterns", 12345, {"reward": 0.1})
    with pytest.raises(ValueError, match="unknown patterns field"), store.write() as w:
        store.update(w, "patterns", ids[0], {"bogus": 1})
    out["gen2"] = store.generation
    out["get"] = {k: _strip_times(v) for k, v in store.get("patterns", ids).items()}
    out["get_noemb"] = {k: _strip_times(v) for k, v in
                        store.get("patterns", ids[:3], with_embedding=False).items()}
    out["created"] = {k: v["created_at"] for k, v in store.get("patterns", ids).items()}
    out["types"] = {k: type(v).__name__ for k, v in store.get("patterns", [ids[0]])[ids[0]
                                                                                     ].items()}
    out["episode"] = _strip_times(store.get("episodes", [1])[1])
    out["skill"] = _strip_times(store.find("skills", "name", "skill_1"))
    out["find_none"] = store.find("skills", "name", "nope")
    out["find_task"] = _strip_times(store.find("patterns", "task", "new"))
    out["existing"] = sorted(store.existing("patterns", [*ids, 777]))
    out["count"] = [store.count(t) for t in ("patterns", "episodes", "skills")]
    out["iter_all"] = [[_strip_times(r) for r in b] for b in store.iter_rows("patterns",
                                                                           batch=3)]
    out["iter_since"] = [[_strip_times(r) for r in b]
                         for b in store.iter_rows("patterns", since_gen=1,
                                                  columns="id, embedding, gen")]
    out["deleted"] = sorted(store.deleted_since("patterns", 0))
    out["deleted_late"] = store.deleted_since("patterns", out["gen2"])
    scal = store.scalar_columns("patterns", ("reward", "success", "session_id", "metadata"))
    out["scalar"] = [(r[0], r[1], bool(r[2]), r[3], json.loads(r[4])) for r in scal]
    with store.write() as w:  # ids are never reused after deletes
        out["after_delete"] = store.insert(w, "patterns", _pattern(60), vecs[0])
    store.set_meta("index_gen:patterns", "7")
    out["meta"] = (store.meta("index_gen:patterns"), store.meta("nope"), store.generation)
    return out


def test_crud_parity_with_sqlite(pg: PostgresStore) -> None:
    lite = SQLiteStore(":memory:", dim=DIM)
    try:
        a = _same_ops(lite, np.random.default_rng(7))
        b = _same_ops(pg, np.random.default_rng(7))
    finally:
        lite.close()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    assert b["ids"][-2:] == [50, 51]  # explicit id moved the sequence past it
    assert b["types"]["success"] == "bool" and b["types"]["metadata"] == "dict"
    assert b["types"]["created_at"] == "float" and b["types"]["embedding"] == "ndarray"
    assert pg.get("patterns", [1])[1]["embedding"].dtype == np.float32


def test_write_rolls_back_and_gens_advance_once(pg: PostgresStore) -> None:
    v = np.ones(DIM, np.float32)
    with pg.write() as w:
        pg.insert(w, "patterns", _pattern(1), v)
        pg.insert(w, "patterns", _pattern(2), v)
        assert pg.pending_gen == 2
    assert pg.generation == 2 and pg.meta("generation") == "2"
    with pytest.raises(RuntimeError, match="boom"), pg.write() as w:
        pg.insert(w, "patterns", _pattern(3), v)
        raise RuntimeError("boom")
    assert pg.count("patterns") == 2 and pg.generation == 2
    with pytest.raises(StoreError, match="nested"), pg.write(), pg.write():
        pass
    assert {r["gen"] for b in pg.iter_rows("patterns") for r in b} == {2}


def test_concurrent_writers_get_distinct_generations(postgres_url: str,
                                                     pg_schema: str) -> None:
    stores = [PostgresStore(postgres_url, dim=DIM, schema=pg_schema, pool_size=2)
              for _ in range(3)]
    gens: list[int] = []
    lock = threading.Lock()

    def work(s: PostgresStore) -> None:
        for i in range(10):
            with s.write() as w:
                s.insert(w, "patterns", _pattern(i), np.ones(DIM, np.float32))
                with lock:
                    gens.append(s.pending_gen)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(gens) == list(range(2, 32))
        assert stores[0].meta("generation") == "31"
    finally:
        for s in stores:
            s.close()


def test_bad_input_errors(pg: PostgresStore) -> None:
    with pg.write() as w:
        with pytest.raises(ValueError, match="dimension mismatch"):
            pg.insert(w, "patterns", _pattern(1), np.ones(DIM + 1, np.float32))
        with pytest.raises(ValueError, match="NaN"):
            pg.insert(w, "patterns", _pattern(1), np.array([1, np.nan, 0, 0], np.float32))
        with pytest.raises(ValueError, match="unknown table 'pattern'"):
            pg.insert(w, "patterns"[:-1], _pattern(1), np.ones(DIM, np.float32))
        with pytest.raises(ValueError, match="patterns.reward must be a number"):
            pg.insert(w, "patterns", _pattern(1, reward="high"), np.ones(DIM, np.float32))
        with pytest.raises(ValueError, match="invalid JSON"):
            pg.insert(w, "patterns", _pattern(1, metadata="{oops"), np.ones(DIM, np.float32))
        with pytest.raises(IntegrityError, match="NOT NULL constraint failed: patterns.task"):
            pg.insert(w, "patterns", _pattern(1, task=None), np.ones(DIM, np.float32))
    for call in (lambda: pg.count("nope"), lambda: pg.get("nope", [1]),
                 lambda: pg.search("nope", np.ones(DIM), 1), lambda: pg.export_vectors("x")):
        with pytest.raises(ValueError, match="unknown table"):
            call()
    with pytest.raises(ValueError, match="unknown column"):
        list(pg.iter_rows("patterns", columns="id; drop table x"))
    with pytest.raises(ValueError, match="unknown column"):
        pg.find("patterns", "1=1 OR task", "x")
    assert pg.count("patterns") == 0


def test_unique_violations_read_like_sqlite(pg: PostgresStore) -> None:
    v = np.ones(DIM, np.float32)
    with pg.write() as w:
        pg.insert(w, "skills", _skill(1), v)
        pg.insert(w, "patterns", _pattern(1), v, row_id=5)
    with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: skills\.name"), \
            pg.write() as w:
        pg.insert(w, "skills", _skill(1), v)
    with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: patterns\.id"), \
            pg.write() as w:
        pg.insert(w, "patterns", _pattern(2), v, row_id=5)
    assert pg.count("skills") == 1 and pg.count("patterns") == 1


def test_graph_round_trip(pg: PostgresStore) -> None:
    lite = SQLiteStore(":memory:", dim=DIM)
    try:
        for s in (lite, pg):
            with s.write() as w:
                s.put_graph_node(w, 1, ["Pattern"], {"patternId": 3, "name": "x"})
                s.put_graph_node(w, 2, ["Episode", "Failure"], {"w": 0.5, "tags": ["a"]})
                s.put_graph_node(w, 3, [], {})
                s.put_graph_edge(w, 10, "CAUSES", [1], [2, 3], 0.75, 123.5, {"why": "t"})
                s.put_graph_edge(w, 11, "RELATES", [2], [3], 1.0, 124.0, {})
            with s.write() as w:
                s.put_graph_node(w, 3, ["Late"], {"v": None})  # replace
                s.put_graph_edge(w, 11, "RELATES", [2], [1], 0.5, 125.0, {"k": 1})
                s.delete_graph(w, [], [10])
            s.add_graph_index("Pattern", "patternId")
            s.add_graph_index("Pattern", "patternId")
            s.add_graph_index("Episode", "w")
        assert list(pg.graph_nodes()) == list(lite.graph_nodes())
        assert list(pg.graph_edges()) == list(lite.graph_edges())
        assert pg.graph_indexes() == lite.graph_indexes() == [("Episode", "w"),
                                                              ("Pattern", "patternId")]
        with pytest.raises(ValueError), pg.write() as w:
            pg.put_graph_node(w, 4, [], {"x": float("nan")})
    finally:
        lite.close()


# ---------------------------------------------------------------------------- filters
_METAS: list[dict[str, Any]] = [
    {"x": 5}, {"x": "abc"}, {"x": True}, {"x": False}, {"x": None}, {}, {"x": [1, 2]},
    {"x": {"a": 1}}, {"x": 1.0}, {"x": 2**63 + 5}, {"x": 2**53 + 1}, {"x": 1e16},
    {"x": 0.1}, {"x": -3}, {"x": 2.5}, {"x": "5"}, {"x": ""}, {"x": "Zebra"},
    {"x": "zebra"}, {"x": "éclair"}, {"x": 1}, {"x": 0}, {"x": -0.0}, {"x": 1e300},
    {"x": 9007199254740993}, {"x": 9007199254740992.0}, {"x": 10**20},
    {"a": {"b": 1}}, {"a": {"b": "q"}}, {"a": {"b": None}}, {"a": 5}, {"a": [{"b": 1}]},
    {"a": {"0": 7}}, {"a": [7]}, {"a-b": 1, "k_2": "v"}, {"0": "zero"},
    {"x": 3, "y": "s", "lang": "py", "n": {"deep": {"er": 2}}},
]
_VALUES: list[Any] = [
    5, 1, 0, -3, 2.5, 0.1, 1.0, 1e16, True, False, None, "abc", "5", "", "Zebra", "a", "z",
    "éclair", 9007199254740993, 9007199254740992.0, 2**63 - 1, -(2**63), float("inf"),
    float("-inf"), float("nan"), 1e300, 10**18 + 1,
]


def _filter_table() -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    for key in ("x", "a.b", "a.0", "a-b", "0", "k_2", "missing", "a", "n.deep.er"):
        for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
            table += [{key: {op: v}} for v in _VALUES]
        table += [{key: v} for v in _VALUES]
        table += [{key: {"$exists": True}}, {key: {"$exists": False}},
                  {key: {"$in": [5, "abc", None]}}, {key: {"$in": [1, 2.5, "Zebra", True]}},
                  {key: {"$in": [None]}}, {key: {"$nin": [5, "abc"]}},
                  {key: {"$nin": [5, None]}}, {key: {"$nin": [True]}},
                  {key: {"$nin": [float("nan"), 1]}}, {key: {"$in": ("a", "zebra")}}]
    table += [{"x": {"$gt": 0, "$lt": 6}}, {"x": 3, "y": "s"},
              {"x": {"$gte": "a", "$lt": "zz"}}, {"lang": "py", "x": {"$ne": None}}]
    return table


def test_where_filters_match_sqlite(pg: PostgresStore) -> None:
    lite = SQLiteStore(":memory:", dim=DIM)
    rng = np.random.default_rng(3)
    try:
        with lite.write() as w1, pg.write() as w2:
            for i, m in enumerate(_METAS):
                vals = _pattern(i, metadata=json.dumps(m))
                e = _vec(rng)
                lite.insert(w1, "patterns", vals, e, row_id=i + 1)
                pg.insert(w2, "patterns", vals, e, row_id=i + 1)
        table = _filter_table()
        assert len(table) > 1000
        for f in table:
            want = lite.select_ids("patterns", *where_sql(f))
            got = pg.filter_ids("patterns", where=f)
            assert got.dtype == np.int64
            assert got.tolist() == want.tolist(), f
        # the scalar filters combine with where, as in select_ids
        want = lite.select_ids("patterns", "reward >= ? AND success = ? AND session_id = ? AND "
                               + where_sql({"x": {"$gte": 0}})[0],
                               [0.1, 1, "s1", *where_sql({"x": {"$gte": 0}})[1]])
        got = pg.filter_ids("patterns", min_reward=0.1, success=True, session_id="s1",
                            where={"x": {"$gte": 0}})
        assert got.tolist() == want.tolist()
    finally:
        lite.close()


@pytest.mark.parametrize("bad", [
    {"x y": 1}, {"": 1}, {"a..b": 1}, {"x": {"$bad": 1}}, {"x": {}}, {"x": {"$in": []}},
    {"x": {"$nin": 3}}, {"x": [1, 2]}, {"x": {"$eq": {"a": 1}}}, {"x": {"$in": [[1]]}},
    {1: 2},
])
def test_where_validation_errors_match(bad: dict[Any, Any]) -> None:
    with pytest.raises(ValueError) as want:
        where_sql(bad)
    with pytest.raises(ValueError) as got:
        pg_where_sql(bad)
    assert str(got.value) == str(want.value)


def test_where_type_error_and_empty() -> None:
    with pytest.raises(TypeError, match="where must be a dict"):
        pg_where_sql([("x", 1)])  # type: ignore[arg-type]
    assert pg_where_sql(None) == ("TRUE", []) and pg_where_sql({}) == ("TRUE", [])
    with pytest.raises(OverflowError):
        pg_where_sql({"x": 2**64})


# ---------------------------------------------------------------------------- search
def _brute(x: np.ndarray, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[list[int],
                                                                           np.ndarray]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1.0 - xn @ (q / np.linalg.norm(q))
    order = np.argsort(d, kind="stable")[:k]
    return ids[order].tolist(), d[order]


def test_search_returns_exact_neighbours(postgres_url: str, pg_schema: str) -> None:
    dim = 16
    s = PostgresStore(postgres_url, dim=dim, schema=pg_schema)
    rng = np.random.default_rng(11)
    x = _vec(rng, 300, dim)
    try:
        with s.write() as w:
            ids = np.array(s.bulk_insert(w, "patterns", [_pattern(i) for i in range(300)], x))
        for qi in range(10):
            q = _vec(rng, None, dim)
            got_ids, got_d = s.search("patterns", q, 10, ef_search=200)
            want_ids, want_d = _brute(x, q, 10, ids)
            assert got_ids.dtype == np.int64 and got_d.dtype == np.float32
            assert got_ids.tolist() == want_ids, qi
            np.testing.assert_allclose(got_d, want_d, atol=1e-5)
        # an exact match comes first at distance ~0; max_distance trims
        got_ids, got_d = s.search("patterns", x[17], 5, max_distance=1e-4)
        assert got_ids.tolist() == [ids[17]] and abs(got_d[0]) < 1e-5
        # k larger than the table: every row, nearest first
        all_ids, all_d = s.search("patterns", x[0], 500)
        assert len(all_ids) == 300 and np.all(np.diff(all_d) >= -1e-6)
    finally:
        s.close()


def test_selective_filters_still_return_k(postgres_url: str, pg_schema: str) -> None:
    dim = 8
    s = PostgresStore(postgres_url, dim=dim, schema=pg_schema)
    rng = np.random.default_rng(5)
    n = 3000
    x = _vec(rng, n, dim)
    rows = [_pattern(i, metadata=json.dumps({"grp": "rare" if i % 500 == 7 else "common",
                                             "i": i}),
                     session_id="needle" if i % 600 == 3 else "hay") for i in range(n)]
    try:
        with s.write() as w:
            ids = np.array(s.bulk_insert(w, "patterns", rows, x))
        with s._conn() as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(s._q["patterns"]))
        meta = [json.loads(r["metadata"]) for r in rows]
        rare = np.array([m["grp"] == "rare" for m in meta])
        q = _vec(rng, None, dim)
        # what plain pgvector returns for the filtered query (post-filtered HNSW candidates)
        w_sql, w_params = pg_where_sql({"grp": "rare"})
        with s._conn() as conn, conn.transaction():
            conn.execute("SET LOCAL hnsw.ef_search = 40")
            naive = conn.execute(sql.SQL("SELECT id FROM {} WHERE " + w_sql +
                                         " ORDER BY embedding <=> %b LIMIT 6").format(
                s._q["patterns"]), [*w_params, q]).fetchall()
        assert len(naive) < 6  # HNSW candidates filtered afterwards: the fallback's reason
        got_ids, _ = s.search("patterns", q, 6, where={"grp": "rare"})
        want_ids, _ = _brute(x[rare], q, 6, ids[rare])
        assert got_ids.tolist() == want_ids
        # the same query many times: psycopg prepares it after a few runs, and the exact
        # fallback must not reuse that plan's HNSW scan (it did: 2 of 6 after the 5th run)
        for _ in range(12):
            assert s.search("patterns", q, 6, where={"grp": "rare"})[0].tolist() == want_ids
        # fewer matches than k: all of them
        got_ids, _ = s.search("patterns", q, 10, session_id="needle")
        needle = np.array([r["session_id"] == "needle" for r in rows])
        assert sorted(got_ids.tolist()) == sorted(ids[needle].tolist())
        # combined filters
        mask = np.array([r["success"] == 1 and r["reward"] >= 0.1 and m["i"] < 1500
                         for r, m in zip(rows, meta)])
        got_ids, _ = s.search("patterns", q, 7, success=True, min_reward=0.1,
                              where={"i": {"$lt": 1500}}, ef_search=10)
        assert got_ids.tolist() == _brute(x[mask], q, 7, ids[mask])[0][:len(got_ids)]
        assert len(got_ids) == 7
        got = s.filter_ids("patterns", where={"grp": "rare"})
        assert got.tolist() == sorted(ids[rare].tolist())
    finally:
        s.close()


def test_search_argument_validation(pg: PostgresStore) -> None:
    q = np.ones(DIM, np.float32)
    for ef in (0, 1001, -5, True, 2.5, "40"):
        with pytest.raises(ValueError, match="ef_search"):
            pg.search("patterns", q, 3, ef_search=ef)  # type: ignore[arg-type]
    for k in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            pg.search("patterns", q, k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimension mismatch"):
        pg.search("patterns", np.ones(DIM + 2), 3)
    with pytest.raises(ValueError, match="NaN"):
        pg.search("patterns", np.array([np.nan, 1, 1, 1]), 3)
    with pytest.raises(ValueError, match="skills have no session_id"):
        pg.search("skills", q, 3, session_id="x")
    assert pg.search("patterns", q, 3, ef_search=1)[0].tolist() == []
    assert pg.search("patterns", q, 3, ef_search=1000)[0].dtype == np.int64


# ---------------------------------------------------------------------------- bulk paths
def test_bulk_insert_is_all_or_nothing(pg: PostgresStore) -> None:
    rng = np.random.default_rng(2)
    x = _vec(rng, 5)
    with pg.write() as w:
        ids = pg.bulk_insert(w, "patterns", [_pattern(i) for i in range(5)], x)
    assert ids == [1, 2, 3, 4, 5] and pg.count("patterns") == 5
    got = pg.get("patterns", ids)
    for i, rid in enumerate(ids):
        assert got[rid]["embedding"].tolist() == x[i].tolist()
        assert got[rid]["metadata"] == json.loads(_pattern(i)["metadata"])
        assert got[rid]["gen"] == 2
    bad_nan = x.copy()
    bad_nan[3, 1] = np.nan
    cases = [
        ([_pattern(i) for i in range(5)], bad_nan, ValueError, "row 3: embedding"),
        ([_pattern(i) for i in range(5)], x[:, :3], ValueError, "dimension mismatch"),
        ([*[_pattern(i) for i in range(4)], _pattern(4, task=None)], x, IntegrityError,
         "NOT NULL constraint failed: patterns.task"),
        ([*[_pattern(i) for i in range(4)], _pattern(4, tokens=3)], x, ValueError,
         "unknown patterns field"),
        ([_pattern(i, reward="x" if i == 2 else 0.1) for i in range(5)], x, ValueError,
         "row 2: patterns.reward"),
    ]
    for rows, emb, exc, msg in cases:
        with pytest.raises(exc, match=msg), pg.write() as w:
            pg.insert(w, "patterns", _pattern(99), x[0])  # written first in the same tx
            pg.bulk_insert(w, "patterns", rows, emb)
        assert pg.count("patterns") == 5, msg
    # a failure raised by the server during COPY (duplicate skill name) rolls back too
    skills = [_skill(i) for i in range(4)] + [_skill(1)]
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed: skills.name"), \
            pg.write() as w:
        pg.bulk_insert(w, "skills", skills, x)
    assert pg.count("skills") == 0
    with pg.write() as w:  # ids keep increasing after failed reservations
        more = pg.bulk_insert(w, "episodes", [_episode(i) for i in range(3)], x[:3])
        assert pg.bulk_insert(w, "episodes", [], np.empty((0, DIM), np.float32)) == []
    assert len(more) == 3 and pg.get("episodes", more)[more[0]]["skills"] == ["a", "s0"]


def test_upsert_rows_is_idempotent(pg: PostgresStore) -> None:
    rng = np.random.default_rng(4)
    lite = SQLiteStore(":memory:", dim=DIM)
    try:
        x = _vec(rng, 6)
        with lite.write() as w:
            for i in range(6):
                lite.insert(w, "patterns", _pattern(i), x[i], row_id=10 * (i + 1))
        rows = [r for b in lite.iter_rows("patterns") for r in b]
    finally:
        lite.close()
    for _ in range(2):
        with pg.write() as w:
            pg.upsert_rows(w, "patterns", rows)
    assert pg.count("patterns") == 6
    got = pg.get("patterns", [r["id"] for r in rows])
    for r in rows:
        g = got[r["id"]]
        assert g["created_at"] == r["created_at"] and g["updated_at"] == r["updated_at"]
        assert _strip_times({**g, "gen": 0}) == _strip_times({**r, "gen": 0})
    changed = [{**rows[0], "reward": 0.42, "metadata": {"changed": True}}]
    with pg.write() as w:
        pg.upsert_rows(w, "patterns", changed)
    g = pg.get("patterns", [rows[0]["id"]])[rows[0]["id"]]
    assert g["reward"] == 0.42 and g["metadata"] == {"changed": True} and g["gen"] == 4
    with pg.write() as w:  # the sequence moved past the largest upserted id
        assert pg.insert(w, "patterns", _pattern(7), x[0]) == 61
    with pytest.raises(ValueError, match="row 0: updated_at is required"), pg.write() as w:
        pg.upsert_rows(w, "patterns", [{k: v for k, v in rows[1].items()
                                        if k != "updated_at"}])


def test_export_vectors_equals_stored(pg: PostgresStore) -> None:
    ids0, v0 = pg.export_vectors("patterns")
    assert ids0.shape == (0,) and v0.shape == (0, DIM) and v0.dtype == np.float32
    rng = np.random.default_rng(9)
    x = _vec(rng, 257)
    x[5] = [1e-38, -3.4e38, 0.1, -0.0]
    with pg.write() as w:
        ids = pg.bulk_insert(w, "patterns", [_pattern(i) for i in range(257)], x)
        pg.delete(w, "patterns", [ids[0]])
    got_ids, got = pg.export_vectors("patterns")
    assert got_ids.dtype == np.int64 and got.dtype == np.float32
    assert got_ids.tolist() == ids[1:]
    assert got.tobytes() == x[1:].tobytes()  # bit-exact


def test_checksum_matches_sqlite(pg: PostgresStore) -> None:
    rng = np.random.default_rng(12)
    lite = SQLiteStore(":memory:", dim=DIM)
    try:
        with lite.write() as w:
            for i in range(40):
                meta = {"i": i, "f": i / 3, "big": 1e16, "neg": -0.0, "s": "é",
                        "nested": {"b": [1, 2.5, None], "a": True}}
                lite.insert(w, "patterns", _pattern(i, metadata=json.dumps(meta)), _vec(rng))
                lite.insert(w, "episodes", _episode(i), _vec(rng))
                lite.insert(w, "skills", _skill(i), _vec(rng))
            lite.delete(w, "patterns", [3, 4])
        for table in ("patterns", "episodes", "skills"):
            rows = [r for b in lite.iter_rows(table, batch=7) for r in b]
            with pg.write() as w:
                pg.upsert_rows(w, table, rows[::-1])  # order must not matter
            assert pg.checksum(table) == sqlite_checksum(lite, table), table
            assert pg.checksum(table).startswith(f"{len(rows)}:")
        before = pg.checksum("patterns")
        with pg.write() as w:
            pg.update(w, "patterns", 5, {"critique": "changed"})
        assert pg.checksum("patterns") != before != sqlite_checksum(lite, "episodes")
    finally:
        lite.close()


def test_file_size_and_close(postgres_url: str, pg_schema: str) -> None:
    s = PostgresStore(postgres_url, dim=DIM, schema=pg_schema)
    assert s.file_size() > 0
    assert s.memory is False and s.schema == pg_schema and s.prefix == ""
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.count("patterns")


def test_large_dim_store_has_no_hnsw_but_searches(postgres_url: str, pg_schema: str) -> None:
    dim = 2048  # above pgvector's HNSW limit (2000): the store works, searches are exact
    s = PostgresStore(postgres_url, dim=dim, schema=pg_schema)
    rng = np.random.default_rng(8)
    x = _vec(rng, 20, dim)
    try:
        with s.write() as w:
            ids = np.array(s.bulk_insert(w, "skills", [_skill(i) for i in range(20)], x))
        got, _ = s.search("skills", x[3], 5, min_reward=0.5)
        mask = np.array([_skill(i)["success_rate"] >= 0.5 for i in range(20)])
        assert got.tolist() == _brute(x[mask], x[3], 5, ids[mask])[0]
        assert s.scalar_columns("skills", ())[:2] == [(1,), (2,)]
    finally:
        s.close()
    n = _query_one(postgres_url, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND "
                   "indexdef LIKE '%%hnsw%%'", pg_schema)[0]
    assert n == 0
