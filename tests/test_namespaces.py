"""Namespaces: one store, many agents or users, nothing crossing between them unless asked
(``search_across``); API keys bound to namespaces never read, search, stream (SSE) or query
(Cypher) another namespace's data. Embedded (file and memory), PostgreSQL, HTTP, the client,
backups."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time

import agentdb
import numpy as np
import pytest
from agentdb.errors import InvalidArgumentError, InvalidTypeError, NotFoundError
from agentdb.memory.namespaces import search_across

DIM = 16


def _vec(i: int) -> np.ndarray:
    return np.random.default_rng(700 + i).standard_normal(DIM).astype(np.float32)


def namespace_checks(db) -> None:
    """Isolation on any store with namespaces (a fresh one: counts are exact)."""
    alice, bob = db.namespace("alice"), db.namespace("bob@example.org")
    assert db.namespace("alice") is alice and db.namespace("default") is db
    assert alice.namespace_name == "alice" and db.namespace_name == "default"
    seen: dict[str, list] = {"alice": [], "bob": [], "default": []}
    for name, h in (("alice", alice), ("bob", bob), ("default", db)):
        h.on("*", lambda event, payload, n=name: seen[n].append((event, payload)))

    a = alice.store_pattern("alice deploys with ERR_ALICE_ONLY", embedding=_vec(1),
                            metadata={"who": "alice"})
    b = bob.store_pattern("bob deploys", embedding=_vec(1), metadata={"who": "bob"})
    d = db.store_pattern("default note", embedding=_vec(1))
    assert (alice.count(), bob.count(), db.count()) == (1, 1, 1)
    assert alice.get_pattern(a).task.startswith("alice")
    if b != a:  # separate id spaces: the same id may name different records
        with pytest.raises(NotFoundError):
            alice.get_pattern(b)
    assert bob.get_pattern(b).task == "bob deploys" and db.get_pattern(d).task == "default note"
    for h, task in ((alice, "alice"), (bob, "bob"), (db, "default")):
        for mode in ("vector", "text", "hybrid"):
            q = _vec(1) if mode == "vector" else "deploys ERR_ALICE_ONLY note"
            tasks = [r.record.task for r in h.search_patterns(q, k=10, mode=mode)]
            assert all(t.startswith(task) for t in tasks), (task, mode, tasks)
    assert bob.search_patterns("ERR_ALICE_ONLY", mode="text") == []
    assert bob.find_ids("patterns", where={"who": "alice"}) == []
    # events carry their namespace and reach only that namespace's subscribers
    assert [p["namespace"] for _, p in seen["alice"]] == ["alice"]
    assert [p["namespace"] for _, p in seen["bob"]] == ["bob@example.org"]
    assert [("namespace" in p) for _, p in seen["default"]] == [False]
    # skills: names are unique per namespace
    alice.store_skill("retry", "alice's retry", embedding=_vec(2))
    bob.store_skill("retry", "bob's retry", embedding=_vec(3))
    assert alice.get_skill("retry").description == "alice's retry"
    with pytest.raises(NotFoundError):
        db.get_skill("retry")
    # episodes and forgetting stay inside too
    bob.store_episode("bob episode", embedding=_vec(4), expires_at=time.time() - 1)
    assert alice.forget() == {"patterns": [], "episodes": [], "skills": []}
    assert len(bob.forget()["episodes"]) == 1
    # the causal graph and Cypher
    alice.graph.query("CREATE (e:Event {name: 'alice event'})")
    assert alice.graph.query("MATCH (n) RETURN count(n) AS c") == [{"c": 1}]
    assert bob.graph.query("MATCH (n) RETURN count(n) AS c") == [{"c": 0}]
    assert db.graph.query("MATCH (n:Event) RETURN count(n) AS c") == [{"c": 0}]
    # crossing namespaces only when asked
    hits = search_across(db, ["alice", "bob@example.org", "default"], _vec(1), k=3)
    assert sorted(ns for ns, _ in hits) == ["alice", "bob@example.org", "default"]
    assert db.namespaces() == ["alice", "bob@example.org", "default"]
    for bad, err in (("../x", InvalidArgumentError), ("", InvalidArgumentError),
                     ("a" * 129, InvalidArgumentError), ("a/b", InvalidArgumentError),
                     (7, InvalidTypeError)):
        with pytest.raises(err):
            db.namespace(bad)
    with pytest.raises(InvalidArgumentError, match="nest"):
        alice.namespace("inner")
    with pytest.raises(InvalidArgumentError):
        search_across(db, [], _vec(1))


def test_embedded_in_memory():
    with agentdb.open(":memory:", dim=DIM) as db:
        namespace_checks(db)


def test_file_store_reopen_readonly_backup_and_restore(tmp_path):
    path = str(tmp_path / "m.db")
    with agentdb.open(path, dim=DIM) as db:
        namespace_checks(db)
        info = db.backup(str(tmp_path / "copy.db"))
        assert info["namespaces"]["alice"]["patterns"] == 1
    assert os.path.isdir(path + ".ns")
    with agentdb.open(path, dim=DIM) as db:  # the namespaces come back with their data
        assert db.namespaces() == ["alice", "bob@example.org", "default"]
        assert db.namespace("alice").count() == 1
        assert db.namespace("alice").index_status["patterns"] == "loaded"
    with agentdb.open(path, dim=DIM, readonly=True) as ro:
        assert ro.namespace("alice").count() == 1
        with pytest.raises(NotFoundError, match="carol"):
            ro.namespace("carol")
    from agentdb.memory.backup import restore

    restore(str(tmp_path / "copy.db"), str(tmp_path / "restored.db"))
    with agentdb.open(str(tmp_path / "restored.db"), dim=DIM) as db:
        assert db.namespace("alice").search_patterns(_vec(1), k=1)[0].record.task.startswith(
            "alice")
        assert db.namespace("bob@example.org").get_skill("retry").description == "bob's retry"


def test_postgres_backend(postgres_url, pg_schema):
    for search in ("pgvector", "native"):
        db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, dim=DIM,
                          search=search, table_prefix=search[:3] + "_")
        try:
            namespace_checks(db)
        finally:
            db.close()
        again = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, dim=DIM,
                             search=search, table_prefix=search[:3] + "_")
        try:
            assert again.namespace("alice").count() == 1
        finally:
            again.close()


# ---- the server ----------------------------------------------------------------------------
KEYS = {"admin-key-001": None, "alice-key-01": ["alice"], "bob-key-0001": ["bob"],
        "both-key-001": ["alice", "default"]}
BINDINGS = {k: v for k, v in KEYS.items() if v is not None}


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_http_keys_bound_to_namespaces():
    pytest.importorskip("fastapi")
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient

    with agentdb.open(":memory:", dim=DIM) as db:
        app = create_app(db, api_keys=list(KEYS), key_namespaces=BINDINGS)
        with TestClient(app) as c:
            r = c.post("/ns/alice/patterns/store", json={"task": "alice secret ERR_A",
                                                          "embedding": _vec(1).tolist()},
                       headers=_h("alice-key-01"))
            assert r.status_code == 201
            r = c.post("/ns/bob/patterns/store", json={"task": "bob secret ERR_B",
                                                        "embedding": _vec(1).tolist()},
                       headers=_h("bob-key-0001"))
            assert r.status_code == 201
            c.post("/ns/alice/graph/cypher", json={"query": "CREATE (:Event {name: 'a'})"},
                   headers=_h("alice-key-01"))
            search = {"task": "secret ERR_A ERR_B", "k": 10, "mode": "hybrid"}
            # a bound key: 403 anywhere else, before any store is read
            for path, body in (("/ns/bob/patterns/search", search),
                               ("/patterns/search", search),
                               ("/ns/bob/graph/cypher", {"query": "MATCH (n) RETURN n"}),
                               ("/graph/cypher", {"query": "MATCH (n) RETURN n"}),
                               ("/vectors/search", {"vector": _vec(1).tolist()}),
                               ("/forget", {})):
                r = c.post(path, json=body, headers=_h("alice-key-01"))
                assert r.status_code == 403, (path, r.text)
                assert r.json()["error"]["code"] == "forbidden"
            for path in ("/ns/bob/patterns/1", "/patterns/1", "/stats", "/ns/bob/stats",
                         "/ns/bob/patterns/stream"):
                assert c.get(path, headers=_h("alice-key-01")).status_code == 403, path
            # in its own namespace it sees only its own records
            r = c.post("/ns/alice/patterns/search", json=search, headers=_h("alice-key-01"))
            assert [x["pattern"]["task"] for x in r.json()["results"]] == ["alice secret ERR_A"]
            r = c.post("/ns/alice/graph/cypher", json={"query": "MATCH (n) RETURN n.name AS n"},
                       headers=_h("alice-key-01"))
            assert r.json()["rows"] == [{"n": "a"}]
            r = c.post("/ns/bob/graph/cypher", json={"query": "MATCH (n) RETURN count(n) AS c"},
                       headers=_h("bob-key-0001"))
            assert r.json()["rows"] == [{"c": 0}]
            # an unbound key reaches every namespace; a key bound to two reaches both
            r = c.post("/ns/bob/patterns/search", json=search, headers=_h("admin-key-001"))
            assert [x["pattern"]["task"] for x in r.json()["results"]] == ["bob secret ERR_B"]
            assert c.post("/patterns/search", json=search,
                          headers=_h("admin-key-001")).json()["results"] == []
            assert c.get("/stats", headers=_h("both-key-001")).status_code == 200
            assert c.get("/ns/alice/stats", headers=_h("both-key-001")).status_code == 200
            assert c.get("/ns/bob/stats", headers=_h("both-key-001")).status_code == 403
            # no key, a wrong key, a bad name; open paths need none
            assert c.get("/ns/alice/stats").status_code == 401
            assert c.get("/ns/alice/stats", headers=_h("wrong-key-000")).status_code == 401
            assert c.get("/ns/..x/stats", headers=_h("admin-key-001")).status_code == 422
            assert c.get("/ns/alice/health").json() == {"status": "ok"}
            # an unknown namespace for a key that may not reach it is never created
            assert c.get("/ns/carol/stats", headers=_h("alice-key-01")).status_code == 403
            assert "carol" not in db.namespaces()
    with pytest.raises(ValueError, match="not configured"):
        create_app(agentdb.open(":memory:", dim=DIM), api_keys=["admin-key-001"],
                   key_namespaces={"other-key-01": ["x"]})


def _free_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def test_sse_and_the_client_stay_in_their_namespace():
    pytest.importorskip("uvicorn")
    import uvicorn
    from agentdb.server.app import create_app
    from agentdb.server.client import Client, ClientError

    db = agentdb.open(":memory:", dim=DIM)
    app = create_app(db, api_keys=list(KEYS), key_namespaces=BINDINGS, heartbeat_seconds=0.2,
                     rate_limit_per_minute=0)
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        alice = Client(url, "alice-key-01", namespace="alice", retries=0)
        admin_bob = Client(url, "admin-key-001", namespace="bob", retries=0)
        events: queue.Queue = queue.Queue()
        stop = threading.Event()

        def follow() -> None:
            for ev in alice.stream(reconnect=False, idle_timeout=10):
                events.put(ev)
                if stop.is_set():
                    return

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        time.sleep(0.5)  # the stream is subscribed
        admin_bob.store_pattern("bob's private note", embedding=_vec(5).tolist())
        Client(url, "admin-key-001", retries=0).store_pattern("default note",
                                                              embedding=_vec(6).tolist())
        pid = alice.store_pattern("alice's note", embedding=_vec(7).tolist())
        ev = events.get(timeout=20)  # the first event alice's stream sees is her own
        assert ev["event"] == "pattern:stored" and ev["data"]["id"] == pid
        assert ev["data"]["task"] == "alice's note" and ev["data"]["namespace"] == "alice"
        stop.set()
        assert [h["pattern"]["task"] for h in alice.search_patterns(_vec(5).tolist(), k=5)] == [
            "alice's note"]
        assert alice.namespace == "alice"
        with pytest.raises(ClientError) as err:
            Client(url, "alice-key-01", namespace="bob", retries=0).search_patterns("note")
        assert err.value.status == 403
        with pytest.raises(InvalidArgumentError):
            Client(url, "alice-key-01", namespace="../bob")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        db.close()


def test_keys_file_bindings(tmp_path):
    from agentdb.server.auth import load_key_namespaces, load_keys

    f = tmp_path / "keys"
    f.write_text("admin-key-001\nalice-key-01 alice   # her agents\nteam-key-001 a b\n"
                 "team-key-001 c\n")
    assert load_keys({}, keys_file=f) == ["admin-key-001", "alice-key-01", "team-key-001"]
    assert load_key_namespaces(f) == {"alice-key-01": ["alice"],
                                      "team-key-001": ["a", "b", "c"]}
    f.write_text("alice-key-01 ../etc\n")
    with pytest.raises(InvalidArgumentError, match="keys:1"):
        load_key_namespaces(f)


def test_grpc_namespaces_and_bound_keys():
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("fastapi")
    from agentdb.server import agentdb_pb2 as pb
    from agentdb.server import agentdb_pb2_grpc as pb_grpc
    from agentdb.server.app import create_app
    from agentdb.server.grpc_service import serve_grpc

    def md(key: str, ns: str | None = None) -> tuple:
        return (("authorization", f"Bearer {key}"),
                *((("x-agentdb-namespace", ns),) if ns else ()))

    with agentdb.open(":memory:", dim=DIM) as db:
        db.namespace("alice").store_pattern("alice's note", embedding=_vec(1))
        db.store_pattern("default note", embedding=_vec(1))
        app = create_app(db, api_keys=list(KEYS), key_namespaces=BINDINGS)
        server = serve_grpc(db, port=0, keys=app.state.scopes.store, scopes=app.state.scopes,
                            limiter=app.state.limiter, hub=app.state.hub,
                            queries=app.state.queries)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.agentdb_port}",
                                        options=[("grpc.enable_http_proxy", 0)])
        try:
            stub = pb_grpc.AgentDBStub(channel)
            req = pb.SearchPatternsRequest(vector=_vec(1).tolist(), k=5)

            def tasks(key: str, ns: str | None = None) -> list[str]:
                return [r.pattern.task for r in stub.SearchPatterns(req, metadata=md(key, ns)
                                                                    ).results]

            assert tasks("alice-key-01", "alice") == ["alice's note"]
            assert tasks("admin-key-001") == ["default note"]
            assert tasks("admin-key-001", "alice") == ["alice's note"]
            assert tasks("both-key-001") == ["default note"]
            for key, ns in (("alice-key-01", None), ("alice-key-01", "bob"),
                            ("bob-key-0001", "alice"), ("both-key-001", "bob")):
                with pytest.raises(grpc.RpcError) as err:
                    tasks(key, ns)
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, (key, ns)
            with pytest.raises(grpc.RpcError) as err:
                stub.Cypher(pb.CypherRequest(query="MATCH (n) RETURN n"),
                            metadata=md("alice-key-01"))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.RpcError) as err:
                tasks("admin-key-001", "../x")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # the change feed of a namespace carries that namespace's events only
            stream = stub.StreamPatterns(pb.StreamPatternsRequest(), metadata=md(
                "alice-key-01", "alice"), timeout=20)
            with pytest.raises(grpc.RpcError) as err:
                next(iter(stub.StreamPatterns(pb.StreamPatternsRequest(),
                                              metadata=md("alice-key-01", "bob"), timeout=5)))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            time.sleep(0.3)
            db.store_pattern("default again", embedding=_vec(2))
            pid = db.namespace("alice").store_pattern("alice again", embedding=_vec(3))
            ev = next(iter(stream))
            assert ev.event == "pattern:stored" and json.loads(ev.data)["id"] == pid
            stream.cancel()
        finally:
            channel.close()
            server.stop(None).wait()
