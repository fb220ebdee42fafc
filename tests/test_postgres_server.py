"""``agentdb.storage.pgserver`` and ``agentdb postgres install|start|stop|status``.

These start a real embedded PostgreSQL 16 + pgvector (pgserver) in a temporary data
directory; every test stops its server in teardown so no postgres process outlives the run.
Skips when the ``postgres`` extra is missing -- or FAILS under ``AGENTDB_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from _child import child_env
from _requires import unavailable

try:
    with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR is not set
        warnings.simplefilter("ignore")
        import pgserver  # noqa: F401  # type: ignore[import-not-found, unused-ignore]
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    unavailable("POSTGRES", f"PostgreSQL server tests need the 'postgres' extra "
                f"({exc.name} is not installed)", module=True)

from agentdb.storage import pgserver as pgs


@pytest.fixture
def data_dir(tmp_path: Path):
    """A fresh (not yet existing) data directory; its server is stopped afterwards."""
    path = tmp_path / "pg"
    try:
        yield path
    finally:
        if path.is_dir():
            pgs.stop(path)


def _cli():
    typer_testing = pytest.importorskip("typer.testing")
    from agentdb.cli import _build_app

    return typer_testing.CliRunner(), _build_app()


def _one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long error lines at the console width


def test_install_initialises_checks_pgvector_and_leaves_it_stopped(data_dir: Path) -> None:
    info = pgs.install(data_dir)
    assert info["data_dir"] == str(data_dir.resolve())
    assert info["postgres_version"].startswith("16")
    assert info["pgvector_version"]
    assert info["url"].startswith("postgresql://")
    assert (data_dir / "PG_VERSION").read_text().strip() == "16"
    st = pgs.status(data_dir)
    assert st["initialized"] and not st["running"]
    assert st["pid"] is None and st["url"] is None and st["postgres_version"] == "16"
    assert pgs.install(data_dir)["pgvector_version"] == info["pgvector_version"]  # idempotent


def test_install_keeps_a_running_server_running(data_dir: Path) -> None:
    url = pgs.start(data_dir)
    pid = pgs.status(data_dir)["pid"]
    assert pgs.install(data_dir)["url"] == url
    st = pgs.status(data_dir)
    assert st["running"] and st["pid"] == pid


def test_lifecycle_start_reuse_stop(data_dir: Path) -> None:
    assert pgs.status(data_dir)["initialized"] is False
    url = pgs.start(data_dir)  # initialises the fresh directory too
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        conn.execute("INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[1,1,0]')")
        rows = conn.execute(
            "SELECT id FROM items ORDER BY embedding <=> '[0.9,0.1,0]' LIMIT 2").fetchall()
    assert [r[0] for r in rows] == [1, 3]

    st = pgs.status(data_dir)
    assert st["running"] and st["initialized"] and st["url"] == url
    assert isinstance(st["pid"], int)

    assert pgs.start(data_dir) == url  # reuses the running server
    assert pgs.status(data_dir)["pid"] == st["pid"]

    assert pgs.stop(data_dir) is True
    st = pgs.status(data_dir)
    assert not st["running"] and st["pid"] is None and st["url"] is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()
    assert pgs.stop(data_dir) is False

    url2 = pgs.start(data_dir)  # restart in the same process: data survived
    with psycopg.connect(url2) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (3,)


def test_server_outlives_the_cli_process(data_dir: Path) -> None:
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-m", "agentdb.cli", "postgres", "start", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # capture_output: returns only if postgres does not hold the pipe open
    assert proc.returncode == 0, proc.stderr
    url = proc.stdout.strip()
    assert proc.stdout == url + "\n"  # just the URL: export AGENTDB_POSTGRES_URL=$(...)
    st = pgs.status(data_dir)
    assert st["running"] and st["url"] == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'"
                            ).fetchone() == ("vector",)


def test_stale_pidfile_is_not_taken_for_a_running_server(data_dir: Path) -> None:
    pgs.install(data_dir)
    pidfile = data_dir / "postmaster.pid"
    # A leftover pid file naming a live process that is not postgres (a reused pid).
    pidfile.write_text(f"{os.getpid()}\n{data_dir}\n0\n5432\n{data_dir}\n\n0 0\nready\n")
    assert pgs.status(data_dir)["running"] is False
    assert pgs.stop(data_dir) is False
    url = pgs.start(data_dir)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pgs.status(data_dir)["pid"] != os.getpid()


def test_cli_start_status_stop_json(data_dir: Path) -> None:
    runner, app = _cli()
    args = ["--data-dir", str(data_dir), "--json"]

    res = runner.invoke(app, ["postgres", "start", *args])
    assert res.exit_code == 0, res.output
    started = json.loads(res.stdout)
    assert started["running"] and started["url"].startswith("postgresql://")

    res = runner.invoke(app, ["postgres", "status", *args])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert st["running"] and st["pid"] == started["pid"] and st["url"] == started["url"]
    with psycopg.connect(st["url"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    res = runner.invoke(app, ["postgres", "start", "--data-dir", str(data_dir)])
    assert res.exit_code == 0 and res.stdout == started["url"] + "\n"  # plain: just the URL

    res = runner.invoke(app, ["postgres", "stop", *args])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"data_dir": str(data_dir.resolve()), "stopped": True}

    res = runner.invoke(app, ["postgres", "status", *args])
    assert json.loads(res.stdout)["running"] is False
    res = runner.invoke(app, ["postgres", "stop", *args])
    assert res.exit_code == 0 and json.loads(res.stdout)["stopped"] is False
    res = runner.invoke(app, ["postgres", "stop", "--data-dir", str(data_dir)])
    assert res.exit_code == 0 and res.stdout.strip() == "not running"


def test_cli_install_plain(data_dir: Path) -> None:
    runner, app = _cli()
    res = runner.invoke(app, ["postgres", "install", "--data-dir", str(data_dir)])
    assert res.exit_code == 0, res.output
    assert "PostgreSQL 16" in res.stdout and "pgvector" in res.stdout
    assert pgs.status(data_dir)["running"] is False


def test_bad_data_dirs(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    for fn in (pgs.install, pgs.start, pgs.stop, pgs.status):
        with pytest.raises(ValueError, match="is not a directory") as err:
            fn(a_file)
        assert str(a_file) in str(err.value)
        with pytest.raises(ValueError, match="is not a directory") as err:
            fn(a_file / "pg")
        assert str(a_file) in str(err.value)

    not_pg = tmp_path / "notpg"
    not_pg.mkdir()
    (not_pg / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a PostgreSQL data directory"):
        pgs.start(not_pg)
    assert sorted(p.name for p in not_pg.iterdir()) == ["keep.txt"]  # untouched
    assert pgs.status(not_pg)["initialized"] is False
    assert pgs.stop(not_pg) is False

    with pytest.raises(ValueError, match="whitespace"):
        pgs.start(tmp_path / "a b")
    assert not (tmp_path / "a b").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write anywhere")
def test_unwritable_parent(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="not writable") as err:
            pgs.start(locked / "pg")
        assert str(locked) in str(err.value)
    finally:
        locked.chmod(0o700)


def test_cli_bad_data_dir_is_one_error_line(tmp_path: Path) -> None:
    runner, app = _cli()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for cmd in ("install", "start", "stop", "status"):
        res = runner.invoke(app, ["postgres", cmd, "--data-dir", str(a_file), "--json"])
        assert res.exit_code == 1
        assert res.stdout == ""
        out = _one_line(res.output)
        assert out.startswith("error:") and str(a_file) in out and "is not a directory" in out


def test_data_dir_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert pgs.DEFAULT_DATA_DIR == Path.home() / ".agentdb" / "postgres"
    monkeypatch.delenv(pgs.ENV_DATA_DIR, raising=False)
    assert pgs.data_dir_path() == pgs.DEFAULT_DATA_DIR.resolve()
    monkeypatch.setenv(pgs.ENV_DATA_DIR, str(tmp_path / "env-pg"))
    assert pgs.data_dir_path() == (tmp_path / "env-pg").resolve()
    st = pgs.status()  # reads only: creates nothing
    assert st["data_dir"] == str((tmp_path / "env-pg").resolve()) and not st["initialized"]
    assert not (tmp_path / "env-pg").exists()
    assert pgs.data_dir_path(tmp_path / "arg") == (tmp_path / "arg").resolve()


def test_missing_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pgserver", None)  # makes `import pgserver` fail
    for fn in (pgs.install, pgs.start, pgs.stop, pgs.status):
        with pytest.raises(ImportError, match=r"'postgres' extra: pip install 'agentdb\[post"):
            fn(tmp_path / "pg")
    assert not (tmp_path / "pg").exists()
    runner, app = _cli()
    res = runner.invoke(app, ["postgres", "start", "--data-dir", str(tmp_path / "pg")])
    assert res.exit_code == 1
    assert "need the 'postgres' extra: pip install 'agentdb[postgres]'" in _one_line(res.output)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="the server runs as another user only when started by root")
def test_stop_works_after_a_parent_folder_became_private(tmp_path: Path) -> None:
    # Under root the server runs as the unprivileged `pgserver` user, and so does pg_ctl. If a
    # parent folder loses its traverse permission after the start (pytest makes
    # /tmp/pytest-of-root private again when a new session starts), pg_ctl can no longer
    # reach the data directory; the server keeps working inside it and stop() must still end
    # it (the same fast shutdown, by signal).
    parent = tmp_path / "parent"
    path = parent / "pg"
    url = pgs.start(path)
    pid = pgs.status(path)["pid"]
    try:
        parent.chmod(0o700)  # root's, private: the `pgserver` user cannot traverse it
        with psycopg.connect(url) as conn:  # the server still answers
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pgs.stop(path) is True
        assert pgs.status(path)["running"] is False
        import psutil  # a pgserver dependency

        gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert gone, "the postmaster is still running"
    finally:
        parent.chmod(0o755)
        if pgs.status(path)["running"]:
            pgs.stop(path)
