"""PostgresStore through an outage (a restart, a failover to a standby) and past a host that
never answers (a lost machine in a multi-host URL): the pool must reconnect as soon as a
server is back, not after psycopg_pool's growing pauses between attempts (1, 2, 4, 8 s...),
and a URL's own ``connect_timeout`` must bound each host's attempt.

The server is the session's PostgreSQL behind :class:`_tcp_gate.Gate`, a loopback relay the
test shuts and reopens.
"""

from __future__ import annotations

import time

import pytest
from _requires import unavailable

try:
    import psycopg
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    unavailable("POSTGRES", f"PostgreSQL reconnect tests need the 'postgres' extra "
                f"({exc.name} is not installed)", module=True)

from _tcp_gate import BlackHole, Gate  # noqa: E402
from agentdb.storage import StoreError  # noqa: E402
from agentdb.storage.postgres import PostgresStore  # noqa: E402

DIM = 4


def test_writes_resume_at_once_after_an_outage(postgres_url: str, pg_schema: str) -> None:
    # A write fails when the server goes away, which puts both pooled connections in
    # psycopg_pool's reconnect loops. Left to its default pauses (attempts ~1, 3, 7, 15 s
    # after the first failure), a write made when the server is back 8 s later would wait
    # for the attempt at ~15 s and give up after its 4 s (connect_timeout); it must instead
    # get a new connection and commit.
    with Gate(postgres_url) as gate:
        store = PostgresStore(gate.url, dim=DIM, schema=pg_schema, pool_size=2,
                              connect_timeout=4)
        try:
            store.set_meta("probe", "before")
            gate.shut()
            down = time.monotonic()
            with pytest.raises(StoreError, match="PostgreSQL"):
                store.set_meta("probe", "during")
            time.sleep(max(0.0, 8 - (time.monotonic() - down)))
            gate.open()
            store.set_meta("probe", "after")  # raises StoreError on the old pool settings
            assert store.meta("probe") == "after"
        finally:
            store.close()
    with psycopg.connect(postgres_url) as conn:  # nothing half-written on the server
        row = conn.execute(f'SELECT value FROM "{pg_schema}".meta WHERE key = %s',
                           ["probe"]).fetchone()
    assert row == ("after",)


def test_a_host_that_never_answers_costs_the_urls_connect_timeout(
        postgres_url: str, pg_schema: str) -> None:
    # The first host takes connections and never answers. With the URL's connect_timeout=2
    # each attempt moves on to the next host after 2 s; were the store's own 8 s used per
    # host (as a keyword argument overriding the URL did), opening the pool would exceed
    # the store's 8 s bound and raise.
    with Gate(postgres_url) as gate, BlackHole() as hole:
        url = psycopg.conninfo.make_conninfo(
            gate.url, host="127.0.0.1,127.0.0.1", port=f"{hole.port},{gate.port}",
            connect_timeout="2")
        store = PostgresStore(url, dim=DIM, schema=pg_schema, connect_timeout=8)
        try:
            store.set_meta("probe", "two hosts")
            assert store.meta("probe") == "two hosts"
        finally:
            store.close()


def test_the_store_gives_up_after_connect_timeout_while_the_server_is_gone(
        postgres_url: str, pg_schema: str) -> None:
    with Gate(postgres_url) as gate:
        store = PostgresStore(gate.url, dim=DIM, schema=pg_schema, connect_timeout=2)
        try:
            gate.shut()
            with pytest.raises(StoreError, match="no PostgreSQL connection .* within 2s"):
                store.set_meta("probe", "x")
        finally:
            store.close()
