"""The package's folders are its layers, and imports only go down.

Layers, bottom to top (a module may import its own layer and the ones below):

0. ``agentdb._version``, ``agentdb.errors``     -- the version and the one error hierarchy
1. ``agentdb._native``, ``agentdb.engines``, ``agentdb.about``  -- native core + numpy twins
2. ``agentdb.storage``, ``agentdb.embedders``   -- systems of record, filters, records, models
3. ``agentdb.graph``, ``agentdb.learning``      -- causal graph + Cypher, query adapters
4. ``agentdb.memory``                           -- the memory API (core + embedded engine)
5. ``agentdb.server``, ``agentdb.cluster``, ``agentdb.integrations``
                                                -- HTTP/gRPC + clients, Ray cluster engine,
                                                   LangChain / LangGraph / LlamaIndex stores
6. ``agentdb.mcp``, ``agentdb.cli`` (7: ``agentdb.__main__``) -- MCP server, the command line

``agentdb/__init__.py`` is the public facade on top; nothing imports it. The check reads the
installed (or source) package's files with ``ast``, so it runs in CI against the wheel.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import agentdb

PACKAGE = Path(agentdb.__file__).resolve().parent
LAYERS = [
    ("agentdb._version", 0), ("agentdb.errors", 0),
    ("agentdb._native", 1), ("agentdb.engines", 1), ("agentdb.about", 1),
    ("agentdb.storage", 2), ("agentdb.embedders", 2),
    ("agentdb.graph", 3), ("agentdb.learning", 3),
    ("agentdb.memory", 4),
    ("agentdb.server", 5), ("agentdb.cluster", 5), ("agentdb.integrations", 5),
    ("agentdb.mcp", 6), ("agentdb.cli", 6), ("agentdb.__main__", 7),
]


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ("agentdb", *f.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


MODULES = _modules()


def _layer(module: str) -> int | None:
    found = None
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            found = rank
    return found


def _imports() -> dict[str, set[str]]:
    """module -> the agentdb modules it imports (TYPE_CHECKING imports included)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("agentdb"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                known = sub in MODULES or sub == "agentdb._native"
                edges[name].add(sub if known else target)
    return edges


EDGES = _imports()


def test_every_module_belongs_to_a_layer() -> None:
    assert [m for m in MODULES if m != "agentdb" and _layer(m) is None] == []


def test_no_module_imports_upward_or_the_facade() -> None:
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, targets in EDGES.items() if m != "agentdb" for t in targets
           if t == "agentdb" or (_layer(t) or 0) > (_layer(m) or 0)]
    assert bad == []


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in EDGES.get(v, ()):
            if w == v or w == "agentdb":
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_checker_sees_real_edges() -> None:  # guards against a checker that sees nothing
    assert "agentdb.engines.loader" in EDGES["agentdb.memory.embedded"] | set().union(
        *(EDGES[m] for m in MODULES if m.startswith("agentdb.memory")))
    assert "agentdb.errors" in EDGES["agentdb.storage.sqlite"]
