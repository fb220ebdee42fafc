"""``agentdb.cluster.local`` and ``agentdb cluster up | status | down``.

The lifecycle tests start a real local cluster (Ray head bound to 127.0.0.1 on a free port,
an embedded PostgreSQL in a temporary folder) through the CLI in *subprocesses* -- so they
also check that the cluster outlives the command that started it -- and stop it again,
checking that no Ray or PostgreSQL process of it is left. Tiny on purpose (dim 16, 2 shards x
1 replica, a few records); every subprocess has a timeout. Skips when ray is not installed
unless ``AGENTDB_REQUIRE_CLUSTER=1``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from _child import child_env
from _requires import unavailable

try:
    import ray  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    unavailable("CLUSTER", f"cluster CLI tests need ray ({exc})", module=True)

from agentdb.cluster import EXTRA_HINT, local

pytestmark = pytest.mark.usefixtures("ray_exclusive")  # one Ray module at a time
TIMEOUT = 240  # seconds, per subprocess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(state: Path) -> dict[str, str]:
    # COLUMNS: rich must not wrap table rows / error lines
    return child_env(AGENTDB_CLUSTER_STATE=str(state), COLUMNS="200")


def _cli(state: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentdb.cli", "cluster", *args],
                          env=_env(state), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _py(state: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(state),
                          capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _alive(pids: list[int]) -> list[int]:
    psutil = pytest.importorskip("psutil")
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _cluster_pids(state: dict) -> list[int]:
    """Pids of every Ray process of the recorded sessions (what `down` must stop)."""
    return [p.pid for p in local._session_processes(state["ray_sessions"])]


def _require_postgres() -> None:
    try:
        with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR is not set
            warnings.simplefilter("ignore")
            import pgserver  # noqa: F401  # type: ignore[import-not-found, unused-ignore]
        import psycopg  # noqa: F401
    except ImportError as exc:
        unavailable("POSTGRES", f"the local cluster needs the 'postgres' extra ({exc.name})")
    pytest.importorskip("typer")
    pytest.importorskip("rich")


@pytest.fixture
def cluster_paths(tmp_path: Path):
    """A state file and data folder; whatever a failing test left running is stopped."""
    state = tmp_path / "state" / "cluster.json"
    data = tmp_path / "data"
    try:
        yield state, data
    finally:
        if state.exists():
            try:
                local.down(state_file=state)
            except Exception:  # best effort: the test already failed
                pass
        pg = data / "postgres"
        if (pg / "PG_VERSION").exists():
            from agentdb.storage import pgserver as postgres_server

            postgres_server.stop(pg)


# --------------------------------------------------------------------------- no cluster


def test_status_and_down_without_a_cluster_are_clear_errors(tmp_path: Path) -> None:
    state = tmp_path / "nothing.json"
    with pytest.raises(local.ClusterError, match="no local cluster.*agentdb cluster up"):
        local.status(state_file=state)
    with pytest.raises(local.ClusterError, match="no local cluster"):
        local.down(state_file=state)
    for cmd in ("status", "down"):
        proc = _cli(state, cmd, timeout=60)
        assert proc.returncode == 1, proc
        err = _one_line(proc.stderr)
        assert err.startswith("error: no local cluster: state file") and str(state) in err
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_state_file_location_and_bad_contents(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local.ENV_STATE, raising=False)
    assert local.state_path() == local.DEFAULT_STATE_FILE.resolve()
    monkeypatch.setenv(local.ENV_STATE, str(tmp_path / "env.json"))
    assert local.state_path() == (tmp_path / "env.json").resolve()
    assert local.state_path(tmp_path / "arg.json") == (tmp_path / "arg.json").resolve()
    bad = tmp_path / "env.json"
    bad.write_text("{not json")
    with pytest.raises(local.ClusterError, match="not valid JSON"):
        local.read_state()
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(local.ClusterError, match="no ray_address"):
        local.status()
    proc = _cli(bad, "status", timeout=60)
    assert proc.returncode == 1 and "no ray_address" in _one_line(proc.stderr)


def test_up_refuses_a_busy_port_and_bad_arguments(tmp_path: Path) -> None:
    state = tmp_path / "c.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(local.ClusterError, match=f"port {port} .* in use"):
            local.up(port=port, state_file=state)
    assert not state.exists()
    for kw in ({"shards": 0}, {"replicas": 0}, {"nodes": 0}, {"port": 80}):
        with pytest.raises(ValueError):
            local.up(state_file=state, **kw)
    proc = _cli(state, "up", "--shards", "0", timeout=60)
    assert proc.returncode == 1 and "shards must be an integer >= 1" in _one_line(proc.stderr)
    # An unreachable PostgreSQL is found before anything is started.
    proc = _cli(state, "up", "--port", str(_free_port()), "--postgres-url",
                f"postgresql://nobody@127.0.0.1:{_free_port()}/x", timeout=60)
    assert proc.returncode == 1, proc
    assert "cannot connect to PostgreSQL" in _one_line(proc.stderr)
    assert not state.exists()


def test_missing_ray_names_the_cluster_extra(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match="'cluster' extra"):
        local.up(state_file=tmp_path / "c.json")
    typer_testing = pytest.importorskip("typer.testing")
    from agentdb.cli import _build_app

    result = typer_testing.CliRunner().invoke(
        _build_app(), ["cluster", "up", "--state-file", str(tmp_path / "c.json")])
    assert result.exit_code == 1
    assert EXTRA_HINT in _one_line(result.output)
    assert not (tmp_path / "c.json").exists()


# --------------------------------------------------------------------------- lifecycle


def test_up_status_down(cluster_paths: tuple[Path, Path]) -> None:
    _require_postgres()
    state, data = cluster_paths
    port = _free_port()
    # A stale state file (its cluster is gone) does not block `up`.
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"ray_address": f"127.0.0.1:{_free_port()}",
                                 "ray_sessions": [], "postgres_url": "postgresql://x@/y"}))

    proc = _cli(state, "up", "--shards", "2", "--replicas", "1", "--nodes", "1", "--port",
                str(port), "--data-dir", str(data), "--dim", "16", "--namespace", "clitest",
                "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert info["ray_address"] == f"127.0.0.1:{port}"
    assert info["namespace"] == "clitest" and info["postgres_started"] is True
    assert [s["shard"] for s in info["shards"]] == [0, 1]
    assert all(len(s["replicas"]) == 1 and s["replicas"][0]["state"] == "ready"
               for s in info["shards"])
    assert [n["ip"] for n in info["nodes"]] == ["127.0.0.1"] and info["nodes"][0]["head"]
    assert info["warnings"] == []

    recorded = json.loads(state.read_text())
    assert state.stat().st_mode & 0o777 == 0o600
    assert recorded["ray_address"] == info["ray_address"]
    assert recorded["postgres_url"] == info["postgres_url"]
    assert (recorded["namespace"], recorded["shards"], recorded["replicas"]) == ("clitest", 2, 1)
    ray_pids = _cluster_pids(recorded)
    from agentdb.storage import pgserver as postgres_server

    pg_pid = postgres_server.status(data / "postgres")["pid"]
    assert ray_pids and pg_pid  # still running after the `up` process exited

    # Another process uses the cluster: writes land on the replicas.
    proc = _py(state, """
        import numpy as np
        from agentdb.cluster import local
        db = local.connect()
        vecs = np.random.default_rng(0).standard_normal((40, 16)).astype("float32")
        ids = db.store_patterns([{"task": f"t{i}", "embedding": v} for i, v in enumerate(vecs)])
        hits = db.search_patterns(vecs[3], k=3)
        assert hits[0].id == ids[3], hits
        print(db.last_seq)
        db.close()
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seq = int(proc.stdout.split()[-1])

    proc = _cli(state, "status", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    st = json.loads(proc.stdout)
    assert st["log_seq"] == seq
    reps = [r for s in st["shards"] for r in s["replicas"]]
    assert sum(r["vectors"] for r in reps) == 40
    assert all(r["state"] == "ready" and r["applied_seq"] == seq and r["lag"] == 0
               and r["node_ip"] == "127.0.0.1" and r["alive"] for r in reps)

    proc = _cli(state, "status")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replicas" in proc.stdout and "nodes" in proc.stdout
    assert proc.stdout.count("ready") == 2 and f"127.0.0.1:{port}" in proc.stdout

    # Resharding online: the 40 records spread over 3 shards, then back over 2.
    proc = _cli(state, "add-shard", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    added = json.loads(proc.stdout)
    assert added["added"] == 2 and added["shards"] == [0, 1, 2]
    assert json.loads(state.read_text())["shards"] == 3
    st = json.loads(_cli(state, "status", "--json").stdout)
    assert [s["shard"] for s in st["shards"]] == [0, 1, 2]
    assert sum(r["vectors"] for s in st["shards"] for r in s["replicas"]) == 40
    proc = _cli(state, "remove-shard", "--shard", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "removed shard 0; shards [1, 2]" in proc.stdout
    st = json.loads(_cli(state, "status", "--json").stdout)
    assert [s["shard"] for s in st["shards"]] == [1, 2]
    assert sum(r["vectors"] for s in st["shards"] for r in s["replicas"]) == 40
    proc = _cli(state, "remove-shard", "--shard", "7")
    assert proc.returncode == 1 and "7" in _one_line(proc.stderr)

    proc = _cli(state, "up", "--port", str(_free_port()), "--data-dir", str(data))
    assert proc.returncode == 1
    assert "already running" in _one_line(proc.stderr)

    temp_dir = Path(recorded["ray_temp_dir"])
    assert temp_dir.is_dir()
    proc = _cli(state, "down")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded PostgreSQL stopped" in proc.stdout
    assert not state.exists() and not temp_dir.exists()
    assert _alive(ray_pids) == [] and _alive([pg_pid]) == []
    assert local._session_processes(recorded["ray_sessions"]) == []
    assert postgres_server.status(data / "postgres")["running"] is False

    proc = _cli(state, "status")
    assert proc.returncode == 1 and "no local cluster" in _one_line(proc.stderr)

    # A failure after Ray and PostgreSQL started (the store has dim 16) undoes everything.
    port = _free_port()
    proc = _cli(state, "up", "--shards", "2", "--replicas", "1", "--port", str(port),
                "--data-dir", str(data), "--dim", "32")
    assert proc.returncode == 1
    assert "dimension mismatch" in _one_line(proc.stderr)
    assert not state.exists()
    assert postgres_server.status(data / "postgres")["running"] is False
    psutil = pytest.importorskip("psutil")
    marker = f"agentdb-ray-{os.getuid()}-{port}"
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if any(marker in part for part in p.info["cmdline"] or [])]
    assert _alive(left) == []
    assert not (Path(recorded["ray_temp_dir"]).parent / marker).exists()


def test_two_nodes_spread_replicas_and_external_postgres(cluster_paths: tuple[Path, Path],
                                                         postgres_url: str,
                                                         pg_schema: str) -> None:
    """``--nodes 2``: a second raylet on this machine (also on 127.0.0.1); the two replicas of
    each shard are placed on different nodes. With ``--postgres-url`` nothing of PostgreSQL
    is started or stopped."""
    _require_postgres()
    state, _ = cluster_paths
    prefix = f"cli{os.getpid()}_"
    proc = _cli(state, "up", "--shards", "1", "--replicas", "2", "--nodes", "2", "--port",
                str(_free_port()), "--postgres-url", postgres_url, "--dim", "16",
                "--schema", pg_schema, "--table-prefix", prefix, "--namespace", prefix,
                "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert info["postgres_started"] is False and info["postgres_data_dir"] is None
    assert (info["schema"], info["table_prefix"]) == (pg_schema, prefix)
    assert len(info["nodes"]) == 2 and all(n["ip"] == "127.0.0.1" for n in info["nodes"])
    reps = info["shards"][0]["replicas"]
    assert [r["state"] for r in reps] == ["ready", "ready"]
    assert reps[0]["node_id"] != reps[1]["node_id"]
    recorded = json.loads(state.read_text())
    assert len(recorded["ray_sessions"]) == 2
    pids = _cluster_pids(recorded)

    proc = _cli(state, "down", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["postgres_stopped"] is False and out["ray_processes_stopped"] >= len(pids)
    assert _alive(pids) == []
    import psycopg

    with psycopg.connect(postgres_url, connect_timeout=10) as conn:  # left running
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_up_with_pg_standbys_runs_patroni_and_down_stops_it(
        cluster_paths: tuple[Path, Path]) -> None:
    _require_postgres()
    from agentdb.cluster.pg_ha import etcd_binary

    try:
        import patroni  # noqa: F401

        etcd_binary()
    except (ImportError, local.ClusterError) as exc:
        unavailable("FAILOVER", f"PostgreSQL failover needs patroni and etcd ({exc})")
    state, data = cluster_paths
    proc = _cli(state, "up", "--pg-standbys", "1", "--postgres-url", "postgresql://x@/y")
    assert proc.returncode == 1 and "cannot be combined" in _one_line(proc.stderr)
    proc = _cli(state, "up", "--shards", "1", "--replicas", "1", "--port", str(_free_port()),
                "--data-dir", str(data), "--dim", "16", "--namespace", "hacli",
                "--pg-standbys", "1", "--json")
    pids: list[int] = []
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        info = json.loads(proc.stdout)
        assert info["postgres_url"].count("127.0.0.1:") == 2  # a multi-host URL
        assert "target_session_attrs=read-write" in info["postgres_url"]
        roles = sorted(m["role"] for m in info["postgres_members"])
        assert roles == ["leader", "sync_standby"], info["postgres_members"]
        recorded = json.loads(state.read_text())
        ha = json.loads((Path(recorded["postgres_ha_dir"]) / "ha.json").read_text())
        pids = [m["pid"] for m in ha["members"]] + [ha["etcd"]["pid"]]
        assert len(_alive(pids)) == 3  # etcd and both Patroni members outlive `up`
        proc = _py(state, """
            import numpy as np
            from agentdb.cluster import local
            db = local.connect()
            v = np.ones(16, dtype="float32")
            rid = db.store_pattern("on the primary", embedding=v)
            assert db.search_patterns(v, k=1)[0].id == rid
            db.close()
        """)
        assert proc.returncode == 0, proc.stderr[-3000:]
        proc = _cli(state, "status")
        assert proc.returncode == 0 and "PostgreSQL (Patroni)" in proc.stdout
        assert "sync_standby" in proc.stdout
    finally:
        proc = _cli(state, "down")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _alive(pids) == []
