"""Serving measurements for ``ann.py``: each library's saved index opened by a fresh process.

Index memory is what a process that serves the index holds, so it is measured where nothing
else is: a child Python process imports the library and loads the queries (the baseline), opens
the saved file with the library's own loader, runs every query once to warm up and then in
timed passes (one query per call, one thread, at one ef; QPS is the median pass), and reports
its resident set (``VmRSS``) growth after opening and after the queries, the open time, QPS
and recall@10. The growth counts every
page the process touched: heap, and mapped file pages alike (an agentdb index opened in place
counts the neighbour lists and walk copy it read; its float32 vectors are read for the re-rank
with ``pread``, through the kernel's page cache, and do not count). agentdb is measured in two
open modes: ``mmap=True`` (the whole file mapped, its pages shared between processes) and
``mmap="vectors"`` (the walk's lists and copy read into private huge pages, the float32
vectors left in the file).

Example (a library without a serving recipe is skipped):
    >>> recipe_for("numpy") is None
    True
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Recipe", "recipe_for", "serve"]


@dataclass(frozen=True)
class Recipe:
    """How a child process opens a saved index and searches it (``{path}``, ``{dim}`` and
    ``{ef}`` are filled in; ``search(q)`` must return the top-10 ids of one query)."""

    imports: str
    open: str
    search: str


_RECIPES = {
    "agentdb": Recipe(
        "import agentdb",
        "index = agentdb.HNSWIndex.load({path!r}, mmap={mmap!r}); index.threads = 1",
        "def search(q):\n    return index.search(q, k=10, ef={ef})[0]",
    ),
    "hnswlib": Recipe(
        "import hnswlib",
        "index = hnswlib.Index(space='cosine', dim={dim}); index.load_index({path!r}); "
        "index.set_ef({ef}); index.set_num_threads(1)",
        "def search(q):\n    return index.knn_query(q, k=10, num_threads=1)[0]",
    ),
    "usearch": Recipe(
        "from usearch.index import Index",
        "index = Index.restore({path!r}); index.expansion_search = {ef}",
        "def search(q):\n    return index.search(q, 10, threads=1).keys",
    ),
    "faiss": Recipe(
        "import faiss; faiss.omp_set_num_threads(1)",
        "index = faiss.read_index({path!r}); index.hnsw.efSearch = {ef}",
        "def search(q):\n    return index.search((q / np.linalg.norm(q))[None, :], 10)[1]",
    ),
}

_CHILD = """
import json, sys, time
import numpy as np
sys.path[:0] = {extra_path!r}
def rss():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
Q = np.load({qpath!r})
gt = np.load({gtpath!r})
{imports}
import gc; gc.collect()
r0 = rss()
t0 = time.perf_counter()
{open}
open_s = time.perf_counter() - t0
r1 = rss()
{search}
found = np.stack([np.asarray(search(q)).reshape(-1)[:10] for q in Q])
passes = []
for _ in range({repeats}):
    t0 = time.perf_counter()
    for q in Q:
        search(q)
    passes.append(time.perf_counter() - t0)
elapsed = sorted(passes)[len(passes) // 2]
r2 = rss()
hits = sum(len(set(map(int, f)) & set(map(int, g))) for f, g in zip(found, gt))
print(json.dumps(dict(open_s=open_s, rss_open=r1 - r0, rss_served=r2 - r0,
                      qps=len(Q) / elapsed, recall=hits / (10 * len(Q)))))
"""


def recipe_for(name: str) -> Recipe | None:
    """The serving recipe of an ``ann.py`` library name (``agentdb-int8`` uses agentdb's;
    the precision is in the file), or None.

    Example:
        >>> recipe_for("agentdb-int8").imports
        'import agentdb'
    """
    base = name.split("-")[0]
    return _RECIPES.get(base)


def serve(name: str, path: str, queries: np.ndarray, gt: np.ndarray, ef: int,
          extra_path: list[str], repeats: int = 3, timeout: float = 1800.0,
          mmap: bool | str = True) -> dict[str, Any]:
    """Run the child for one saved index; returns its numbers (QPS: the median of
    ``repeats`` timed passes after the warm-up; raises RuntimeError with the child's stderr
    if it failed). ``mmap`` is agentdb's open mode (``HNSWIndex.load(mmap=...)``); the other
    libraries have one way to open."""
    recipe = recipe_for(name)
    if recipe is None:
        raise ValueError(f"no serving recipe for {name!r}")
    dim = int(queries.shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        qpath, gtpath = os.path.join(tmp, "q.npy"), os.path.join(tmp, "gt.npy")
        np.save(qpath, np.ascontiguousarray(queries, dtype=np.float32))
        np.save(gtpath, np.ascontiguousarray(gt[:, :10]))
        fill = dict(path=path, dim=dim, ef=ef, mmap=mmap)
        code = _CHILD.format(
            extra_path=extra_path, qpath=qpath, gtpath=gtpath, imports=recipe.imports,
            repeats=max(1, repeats),
            open=recipe.open.format(**fill), search=recipe.search.format(**fill),
        )
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} serving child failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
