"""Every docstring example in the package runs (the style rule: a runnable example on every
public function). Modules whose optional extra is missing are skipped, not failed."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import agentdb
import pytest

PACKAGE = Path(agentdb.__file__).resolve().parent
SKIP_PARTS = {"__main__", "agentdb_pb2", "agentdb_pb2_grpc"}


def _module_names() -> list[str]:
    names = []
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = ("agentdb", *f.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] in SKIP_PARTS:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                ) -> None:
    monkeypatch.chdir(tmp_path)  # examples that create files leave nothing behind
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra (typer, fastapi, ray, mcp, ...) is missing
        pytest.skip(f"{name}: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # each example sees a copy of its module's globals
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
