"""Shared fixtures for the native-core parity test suite.

* ``backend``     - parametrised over ``agentdb.engines.loader.backends()``
                    (ids "numpy" / "native"), so every test using it runs against both
                    implementations of the contract in spec_native.md.
* ``native``      - the native module; skips when the C++ extension did not load, or FAILS
                    when ``AGENTDB_REQUIRE_NATIVE=1`` (CI sets it, so a broken build is loud).
* ``shared_data`` - the real MiniLM embeddings from ``../shared/data/minilm-pypi-100k/``
                    (relative to the repository root), loaded once per session as float32;
                    skips with a clear reason when the folder is absent.
"""

from __future__ import annotations

import os
import pathlib
import sys
import types

import numpy as np
import pytest
from _requires import required, unavailable

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "minilm-pypi-100k"

try:  # a plain checkout without `pip install -e .`: use the in-tree package
    import agentdb  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the suite is invoked
    if required("INSTALLED"):
        pytest.exit("AGENTDB_REQUIRE_INSTALLED=1 but agentdb is not installed: install the "
                    "wheel (bash scripts/build_wheel.sh) first", returncode=3)
    sys.path.insert(0, str(REPO_ROOT / "python"))
    import agentdb  # noqa: F401

if required("INSTALLED") and (REPO_ROOT / "python") in pathlib.Path(agentdb.__file__).parents:
    pytest.exit(f"AGENTDB_REQUIRE_INSTALLED=1 but agentdb was imported from the source tree "
                f"({agentdb.__file__}), not from the installed wheel", returncode=3)

from agentdb.engines import loader as _loader  # noqa: E402

BACKENDS: dict = dict(_loader.backends())
BACKEND_NAMES = [name for name in ("numpy", "native") if name in BACKENDS]


def _native_missing_reason() -> str:
    reason = None
    try:
        reason = _loader.native_info().get("reason")
    except Exception:  # pragma: no cover - reason is informational only
        pass
    return f"native backend (agentdb._native) not available: {reason or 'unknown reason'}"


@pytest.fixture(params=BACKEND_NAMES, ids=BACKEND_NAMES)
def backend(request):
    """The backend module under test ("numpy" always, "native" when it loaded)."""
    return BACKENDS[request.param]


@pytest.fixture
def native():
    """The native backend module; skip (or fail under AGENTDB_REQUIRE_NATIVE=1) if absent."""
    mod = BACKENDS.get("native")
    if mod is None:
        unavailable("NATIVE", _native_missing_reason())
    return mod


@pytest.fixture
def numpy_backend():
    return BACKENDS["numpy"]


@pytest.fixture(params=["native", "numpy"])
def graph_backend(request, monkeypatch):
    """Run the causal graph on the native hypergraph or on its numpy twin (the name)."""
    from agentdb.engines import numpy_graph

    if request.param == "numpy":
        monkeypatch.setattr(_loader, "graph_backend", lambda: numpy_graph)
    elif not hasattr(_loader.backend, "Hypergraph"):
        pytest.skip("native core not built")
    return request.param


@pytest.fixture(scope="session")
def shared_data():
    """MiniLM 384-d float32 embeddings: base (100000, 384), queries (1000, 384), gt (1000, 100)."""
    files = {
        "base": SHARED_DATA_DIR / "base.f16.npy",
        "queries": SHARED_DATA_DIR / "queries.f16.npy",
        "gt": SHARED_DATA_DIR / "gt_top100.npy",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(
            "shared data set minilm-pypi-100k not found (expected "
            f"{SHARED_DATA_DIR}); missing: {', '.join(missing)}"
        )
    return types.SimpleNamespace(
        base=np.load(files["base"]).astype(np.float32),
        queries=np.load(files["queries"]).astype(np.float32),
        gt=np.load(files["gt"]).astype(np.int64),
        path=SHARED_DATA_DIR,
    )


# ---------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """URL of a real PostgreSQL with pgvector for this test session.

    ``AGENTDB_POSTGRES_URL`` when set; else an embedded pgserver instance (PostgreSQL 16 +
    pgvector) in a temporary directory, stopped at the end. Skips with the reason when
    neither is available -- or FAILS under ``AGENTDB_REQUIRE_POSTGRES=1`` (CI sets it).
    """
    url = os.environ.get("AGENTDB_POSTGRES_URL", "").strip()
    if url:
        yield url
        return
    try:
        import pgserver  # type: ignore[import-not-found]
        import psycopg  # noqa: F401
    except ImportError as exc:
        unavailable("POSTGRES",
                    f"PostgreSQL tests need the 'postgres' extra ({exc.name} is not installed)")
    data = tmp_path_factory.mktemp("pgdata")
    srv = pgserver.get_server(str(data), cleanup_mode="stop")
    try:
        with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield srv.get_uri()
    finally:
        srv.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _postgres_for_backend_env(request):
    """``AGENTDB_BACKEND=postgres`` (code written for files, run on PostgreSQL) without
    ``AGENTDB_POSTGRES_URL``: point ``agentdb.open()`` at this session's PostgreSQL, so
    ``AGENTDB_BACKEND=postgres python -m pytest tests/test_memory.py`` works as it is."""
    if (os.environ.get("AGENTDB_BACKEND") != "postgres"
            or os.environ.get("AGENTDB_POSTGRES_URL", "").strip()):
        yield
        return
    os.environ["AGENTDB_POSTGRES_URL"] = request.getfixturevalue("postgres_url")
    try:
        yield
    finally:
        os.environ.pop("AGENTDB_POSTGRES_URL", None)


@pytest.fixture
def pg_schema(postgres_url):
    """A fresh, empty schema name in the session's PostgreSQL (dropped afterwards)."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# ---- parallel runs (pytest-xdist: `-n 2 --dist loadfile --no-loadscope-reorder`, pyproject.toml)
# xdist hands out whole test modules (their module fixtures are built once) in the order below:
# the longest first, so the other worker takes the many short modules meanwhile. The two
# modules that start Ray clusters (and Patroni) hold a lock file shared by the run's workers
# while they run (`ray_exclusive`), so two clusters never compete for these 2 cores, whichever
# workers take them (one may wait for the other). A duplicated node id fails the run: xdist
# would silently run only one of the tests that share it.
# xdist gives each worker one module, then more to a worker with at most 2 tests pending: so
# worker 1 takes the Ray CLI tests (7 tests, ~2 min), worker 2 the PostgreSQL child run (1 test,
# ~1.5 min) and then test_cluster, which by then rarely waits for the lock.
_LONGEST_FIRST = ["test_cluster_cli", "test_memory_on_postgres", "test_cluster"]
_EXCLUSIVE_WAIT = 1800.0  # seconds a Ray module waits for the other one before failing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: set[str] = set()
    dupes = sorted({item.nodeid for item in items if item.nodeid in seen or seen.add(item.nodeid)})
    if dupes:
        raise pytest.UsageError(f"{len(dupes)} test ids are not unique (pytest-xdist would run "
                                f"only one of each): {dupes[:5]}")
    rank = {module: i for i, module in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable within a module


@pytest.fixture(scope="module")
def ray_exclusive(tmp_path_factory: pytest.TempPathFactory):
    """Held while a module that starts Ray clusters runs: an exclusive lock on a file beside
    every worker's temporary folder (so shared by the run's workers)."""
    import fcntl
    import time

    lock_path = tmp_path_factory.getbasetemp().parent / "agentdb-ray-tests.lock"
    with open(lock_path, "a") as lock:
        deadline = time.monotonic() + _EXCLUSIVE_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another worker held {lock_path} for {_EXCLUSIVE_WAIT:.0f} s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
