"""The installed package is complete: one version everywhere, the files a wheel must carry,
the console script, ``agentdb --version`` and ``python -m agentdb``.

CI (``.ci/run``) installs the repaired manylinux wheel into a fresh virtualenv and sets
``AGENTDB_REQUIRE_INSTALLED=1``: then a file missing from the wheel, or a suite that imported
``<repo>/python`` instead of the wheel, fails here. In a plain checkout (source tree on the
path) the checks that need an installed distribution are skipped.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import agentdb
import pytest
from _child import child_env
from _requires import unavailable
from agentdb import about

PACKAGE_DIR = Path(agentdb.__file__).resolve().parent
REPO_PYTHON = Path(__file__).resolve().parents[1] / "python"


def _distribution() -> importlib.metadata.Distribution:
    if REPO_PYTHON in PACKAGE_DIR.parents:
        unavailable("INSTALLED", f"agentdb is imported from the source tree ({PACKAGE_DIR})")
    try:
        return importlib.metadata.distribution("agentdb")
    except importlib.metadata.PackageNotFoundError:
        unavailable("INSTALLED", "no installed 'agentdb' distribution")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120,
                          env=child_env(**env), check=False)


def test_one_version_everywhere() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", agentdb.__version__)
    assert agentdb.native_info()["version"] == agentdb.__version__
    for mod in agentdb.backends().values():  # the C++ core is stamped by the build
        assert mod.native_info()["version"] == agentdb.__version__
    assert about.info()["version"] == agentdb.__version__
    pyproject = (REPO_PYTHON.parent / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'^version = "([^"]+)"', pyproject, flags=re.M)
    assert declared and declared.group(1) == agentdb.__version__, "pyproject.toml disagrees"


def test_installed_distribution_matches_the_imported_package() -> None:
    dist = _distribution()
    assert dist.version == agentdb.__version__
    assert Path(dist.locate_file("agentdb/__init__.py")).resolve() == PACKAGE_DIR / "__init__.py"


def test_wheel_carries_its_files() -> None:
    dist = _distribution()
    files = {str(f) for f in dist.files or []}
    must = ["agentdb/py.typed", "agentdb/server/agentdb.proto", "agentdb/__main__.py",
            "agentdb/server/agentdb_pb2.py", "agentdb/server/agentdb_pb2_grpc.py"]
    missing = [f for f in must if f not in files]
    assert not missing, f"missing from the installed wheel: {missing}"
    if "native" in agentdb.backends():
        assert any(re.fullmatch(r"agentdb/_native\..*\.so", f) for f in files), files
    # nothing of the source tree's tooling leaks into the package
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/", "cpp/"))]


def test_console_script_is_declared_and_installed() -> None:
    dist = _distribution()
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"agentdb": "agentdb.cli:main"}
    exe = Path(sys.executable).parent / "agentdb"
    path = str(exe) if exe.is_file() else shutil.which("agentdb")
    assert path, "the 'agentdb' command is not installed beside the interpreter nor on PATH"
    proc = _run(path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"agentdb {agentdb.__version__} ")


def test_version_report_names_the_backend_and_simd_paths() -> None:
    proc = _run(sys.executable, "-m", "agentdb")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"agentdb {agentdb.__version__} (Python ")
    info = agentdb.native_info()
    if info["native"]:
        simd = ", ".join(f"{k}={v}" for k, v in sorted(info["simd"].items()))
        assert lines[1].startswith("backend: native C++ core") and simd in lines[1]
    else:
        assert lines[1].startswith("backend: numpy fallback")
    assert str(PACKAGE_DIR) in proc.stdout

    as_json = _run(sys.executable, "-m", "agentdb", "--version", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["version"] == agentdb.__version__
    assert data["native_info"]["simd"] == info["simd"]


def test_version_report_says_when_the_fallback_runs() -> None:
    proc = _run(sys.executable, "-W", "ignore", "-m", "agentdb", "--version",
                AGENTDB_NATIVE="0")
    assert proc.returncode == 0, proc.stderr
    assert "backend: numpy fallback (disabled by AGENTDB_NATIVE=0)" in proc.stdout


def test_python_dash_m_runs_the_cli_and_help_lists_version() -> None:
    pytest.importorskip("typer", reason="the cli extra (typer) is not installed")
    proc = _run(sys.executable, "-m", "agentdb", "--help", COLUMNS="200")
    assert proc.returncode == 0, proc.stderr
    assert "--version" in proc.stdout and "demo" in proc.stdout


def test_proto_is_shipped_and_matches_the_generated_stubs() -> None:
    from agentdb.server import PROTO_PATH

    text = PROTO_PATH.read_text(encoding="utf-8")
    try:
        from agentdb.server import agentdb_pb2
    except ImportError as exc:
        unavailable("SERVER", f"protobuf is missing ({exc})")
    service = agentdb_pb2.DESCRIPTOR.services_by_name["AgentDB"]
    assert set(re.findall(r"^\s*rpc\s+(\w+)\s*\(", text, flags=re.M)) == {
        m.name for m in service.methods}
    assert agentdb_pb2.DESCRIPTOR.package == re.search(r"^package\s+([\w.]+);", text,
                                                      flags=re.M).group(1)
