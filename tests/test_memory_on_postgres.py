"""The whole embedded-memory suite (test_memory.py) once more on PostgreSQL.

The seed system ran its test suite on PostgreSQL with ``AGENTDB_BACKEND=postgres``; so does
this one: ``AGENTDB_BACKEND=postgres python -m pytest tests/test_memory.py`` opens every store
of that file on PostgreSQL + pgvector (each path stands for its own tables; see
``agentdb/memory/locations.py``). Tests about index files or SQLite files themselves are
skipped there with a reason (``files_only`` in test_memory.py). This test runs that command in
a child pytest against the session's PostgreSQL, so the README's one test command covers it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _child import child_env

TESTS = Path(__file__).resolve().parent


@pytest.mark.skipif(os.environ.get("AGENTDB_BACKEND") == "postgres",
                    reason="already running on PostgreSQL")
def test_memory_suite_passes_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    # --basetemp: without it the child's pytest would make /tmp/pytest-of-<user> private again
    # (mode 0700, a pytest safeguard), and the PostgreSQL servers that run as the `pgserver`
    # user with their data below it (this session's, the cluster tests') would lose their
    # own files: seen as a PANIC on "global/pg_control: Permission denied" at a checkpoint.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(TESTS / "test_memory.py"), "-q", "-p",
         "no:cacheprovider", "-rs", "-n", "0",  # one process: this test already has a worker
         "--basetemp", str(tmp_path / "child")],
        cwd=str(TESTS.parent), capture_output=True, text=True, timeout=1200,
        env=child_env(AGENTDB_BACKEND="postgres", AGENTDB_POSTGRES_URL=postgres_url))
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|skipped|failed)",
                                                      proc.stdout.splitlines()[-1])}
    # every test ran except the file-only ones, and those say why
    assert counts.get("passed", 0) >= 200 and counts.get("skipped", 0) <= 12, tail
    assert "SKIPPED" in proc.stdout and "index files" in proc.stdout, tail  # with reasons
    # the session's server still reaches its own files (a checkpoint writes pg_control)
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CHECKPOINT")
        assert conn.execute("SELECT 1").fetchone() == (1,)
