"""``python -m benchmarks all``: the runner behind the one benchmark report (markdown, JSON and
a recall/QPS PNG). The benchmark scripts themselves measure speed and are run by hand, never
here; this checks the runner's own behaviour on a cheap script and on recorded numbers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _child import PACKAGE_ROOT, child_env

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "benchmarks" / "__main__.py"


def _runner():
    spec = importlib.util.spec_from_file_location("agentdb_bench_runner", RUNNER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_list_and_unknown_scripts() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks", "all", "--quick", "--list"],
                         cwd=str(REPO), capture_output=True, text=True, timeout=60,
                         env=child_env())
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert {"kernels", "ann", "memory", "graph", "attention", "learning", "embed", "backends",
            "server", "cluster"} <= set(names)
    # every script named exists, and every script of benchmarks/ is in the suite
    scripts = {p.stem for p in (REPO / "benchmarks").glob("*.py")
               if not p.stem.startswith("_")}
    assert set(names) == scripts - set(_runner().NOT_BENCHMARKS)
    bad = subprocess.run([sys.executable, "-m", "benchmarks", "all", "--only", "nope"],
                         cwd=str(REPO), capture_output=True, text=True, timeout=60,
                         env=child_env())
    assert bad.returncode == 2 and "unknown script(s) nope" in bad.stderr


def test_report_from_runs(tmp_path: Path) -> None:
    mod = _runner()
    ann = {"config": {"n": 1000, "queries": 10, "M": 16, "ef_construction": 200},
           "environment": {"agentdb_backend": "agentdb 0.1.0 backend=native"},
           "results": [{"library": "agentdb", "version": "0.1.0", "curve": [
               {"ef": 10, "recall": 0.8, "qps": 5000.0},
               {"ef": 40, "recall": 0.95, "qps": 3000.0}]},
               {"library": "broken", "version": "", "curve": [], "error": "boom"}]}
    runs = [mod.Run("ann", ["--n", "1000"], "ok", 1.5, "## table\nrow 1\n", "", ann,
                    ["NOTE: usearch failed: boom - skipped"]),
            mod.Run("graph", ["--nodes", "10"], "failed (exit 3)", 0.2, "", "Traceback: x",
                    None)]
    env = {"date": "2026-01-01T00:00:00+00:00", "agentdb": "agentdb 0.1.0", "python": "3.11",
           "platform": "linux", "cpu": "cpu", "cores": 2}
    mod.write_report(runs, env, tmp_path, quick=True)
    md = (tmp_path / "report.md").read_text()
    assert "| ann | `--n 1000` | ok | 2 |" in md and "failed (exit 3)" in md
    assert "## table" in md and "Traceback: x" in md  # tables, and why a script failed
    assert "- ann: NOTE: usearch failed: boom - skipped" in md
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["runs"][0]["numbers"]["results"][0]["curve"][1]["recall"] == 0.95
    assert data["quick"] is True and data["runs"][1]["status"] == "failed (exit 3)"
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in data["plot"]
    else:
        png = (tmp_path / "recall_qps.png").read_bytes()
        assert png.startswith(b"\x89PNG") and "recall_qps.png" in md


def test_a_real_quick_run(tmp_path: Path) -> None:
    """One cheap script end to end through the installed package: status, tables, JSON."""
    if Path(PACKAGE_ROOT).resolve() == (REPO / "python").resolve():
        pytest.skip("the benchmark scripts measure the installed package; agentdb is imported "
                    "from the source tree here (pip install . first)")
    out = subprocess.run([sys.executable, "-m", "benchmarks", "all", "--quick", "--only",
                          "kernels", "--out", str(tmp_path), "--timeout", "300"],
                         cwd=str(REPO), capture_output=True, text=True, timeout=400,
                         env=child_env())
    data = json.loads((tmp_path / "report.json").read_text())
    run = data["runs"][0]
    if run["status"] != "ok" and "fallback" in run["stderr_tail"]:
        pytest.skip("the kernels script refuses peer comparisons on the numpy fallback")
    assert out.returncode == 0, (out.stdout[-2000:], run["stderr_tail"])
    assert run["status"] == "ok" and run["numbers"]["environment"]["agentdb_backend"]
    assert "one-to-one distance" in (tmp_path / "report.md").read_text()
    assert "no ANN numbers" in data["plot"]
