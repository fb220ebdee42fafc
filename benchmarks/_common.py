"""Shared helpers for the AgentDB benchmark scripts (``ann.py`` and ``kernels.py``).

Contents: importing ``agentdb`` (installed package, else ``<repo>/python``), loading the
``minilm-pypi-100k`` data set (or a random stand-in), exact ground truth, recall, timing
(median of repeats), BLAS thread control, an environment header and plain-text tables.

Only numpy is required; everything else is optional and detected at run time.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "minilm-pypi-100k"

#: Environment variables that change BLAS / OpenMP / AgentDB behaviour; echoed in headers.
ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "AGENTDB_SIMD",
    "AGENTDB_NATIVE",
)


# --------------------------------------------------------------------------- imports


def import_agentdb() -> tuple[ModuleType | None, str]:
    """Import ``agentdb``; fall back to ``<repo>/python`` on ``sys.path``.

    Returns ``(module or None, note)``; the note says where it came from or why it failed.
    """
    try:
        import agentdb
    except ImportError as first:
        src = REPO_ROOT / "python"
        if not (src / "agentdb").is_dir():
            return None, f"agentdb not importable ({first})"
        sys.path.insert(0, str(src))
        try:
            import agentdb
        except ImportError as second:  # pragma: no cover - depends on the checkout
            return None, f"agentdb not importable ({second})"
        return agentdb, f"agentdb imported from {src} (not installed)"
    return agentdb, f"agentdb imported from {Path(agentdb.__file__).parent}"


def optional_import(name: str) -> ModuleType | None:
    """Return the module ``name`` or ``None`` when it is not installed (or fails to import)."""
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def module_version(mod: ModuleType | None, dist: str | None = None) -> str:
    """Best-effort version of a module: ``__version__``, else the installed distribution."""
    if mod is None:
        return "-"
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(dist or mod.__name__)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
    return str(version)


# --------------------------------------------------------------------------- BLAS threads


class _OpenBLAS:
    """Minimal ctypes handle on the OpenBLAS numpy links (used when threadpoolctl is absent)."""

    def __init__(self) -> None:
        self.lib: ctypes.CDLL | None = None
        self._set: Any = None
        self._get: Any = None
        self._corename: Any = None
        libs_dir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
        candidates = sorted(glob.glob(str(libs_dir / "*openblas*")))
        for path in candidates:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("scipy_openblas", "openblas"):
                for suffix in ("64_", "_64_", ""):
                    setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    if setter is not None and getter is not None:
                        self.lib, self._set, self._get = lib, setter, getter
                        self._set.argtypes = [ctypes.c_int]
                        self._get.restype = ctypes.c_int
                        core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
                        if core is not None:
                            core.restype = ctypes.c_char_p
                            self._corename = core
                        return

    def get(self) -> int | None:
        """Current OpenBLAS thread count, or None when unknown."""
        return int(self._get()) if self._get is not None else None

    def set(self, n: int) -> bool:
        """Set the OpenBLAS thread count; False when not possible."""
        if self._set is None:
            return False
        self._set(int(n))
        return True

    def corename(self) -> str | None:
        """OpenBLAS kernel family in use (e.g. ``Haswell``), or None when unknown."""
        if self._corename is None:
            return None
        raw = self._corename()
        return raw.decode() if raw else None


_OPENBLAS: _OpenBLAS | None = None


def _openblas() -> _OpenBLAS:
    global _OPENBLAS
    if _OPENBLAS is None:
        _OPENBLAS = _OpenBLAS()
    return _OPENBLAS


def blas_info() -> dict[str, Any]:
    """Describe numpy's BLAS: threads and (OpenBLAS) core name, as far as detectable."""
    info: dict[str, Any] = {"threads": None, "corename": None, "via": None}
    tpc = optional_import("threadpoolctl")
    if tpc is not None:
        for pool in tpc.threadpool_info():
            if pool.get("user_api") == "blas":
                info.update(
                    threads=pool.get("num_threads"),
                    corename=pool.get("architecture"),
                    via="threadpoolctl",
                    library=pool.get("internal_api"),
                )
                break
    if info["threads"] is None:
        ob = _openblas()
        if ob.lib is not None:
            info.update(threads=ob.get(), corename=ob.corename(), via="ctypes", library="openblas")
    return info


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit numpy's BLAS to ``n`` threads inside the block (``None`` = leave as is)."""
    if n is None:
        yield
        return
    tpc = optional_import("threadpoolctl")
    if tpc is not None:
        with tpc.threadpool_limits(limits=n, user_api="blas"):
            yield
        return
    ob = _openblas()
    before = ob.get()
    ob.set(n)
    try:
        yield
    finally:
        if before is not None:
            ob.set(before)


def set_blas_threads(n: int) -> bool:
    """Set numpy's BLAS thread count for the rest of the process; False if impossible."""
    tpc = optional_import("threadpoolctl")
    if tpc is not None:
        tpc.threadpool_limits(limits=n, user_api="blas")
        return True
    return _openblas().set(n)


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """Base vectors, queries and exact cosine top-k ground truth (row indices)."""

    base: np.ndarray  # (n, d) float32
    queries: np.ndarray  # (q, d) float32
    gt: np.ndarray  # (q, k_gt) int64, best first
    source: str  # human-readable origin


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Return a float32 copy of ``x`` with unit-L2 rows (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32, copy=False)


def exact_topk_cosine(
    base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256
) -> np.ndarray:
    """Exact cosine top-``k`` row ids of ``base`` for each query (best first), chunked."""
    bn = normalize_rows(base)
    qn = normalize_rows(queries)
    k = min(k, bn.shape[0])
    out = np.empty((qn.shape[0], k), dtype=np.int64)
    for start in range(0, qn.shape[0], chunk):
        sims = qn[start : start + chunk] @ bn.T
        if k < sims.shape[1]:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(sims.shape[1]), (sims.shape[0], 1))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def load_dataset(
    n: int | None = None,
    n_queries: int | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    k_gt: int = 10,
    random_dim: int = 384,
    seed: int = 0,
) -> Dataset:
    """Load ``minilm-pypi-100k`` (first ``n`` rows, first ``n_queries`` queries).

    Ground truth comes from ``gt_top100.npy`` for the full base; for a subset it is
    recomputed exactly with numpy. If the folder is absent, random unit vectors are used
    (``n`` defaults to 100000, queries to 1000) and ground truth is computed.
    """
    base_path = data_dir / "base.f16.npy"
    query_path = data_dir / "queries.f16.npy"
    gt_path = data_dir / "gt_top100.npy"
    if base_path.exists() and query_path.exists():
        base_all = np.load(base_path, mmap_mode="r")
        queries_all = np.load(query_path, mmap_mode="r")
        n_full = base_all.shape[0]
        n_eff = n_full if n is None else min(n, n_full)
        q_eff = queries_all.shape[0] if n_queries is None else min(n_queries, queries_all.shape[0])
        base = np.asarray(base_all[:n_eff]).astype(np.float32)
        queries = np.asarray(queries_all[:q_eff]).astype(np.float32)
        if n_eff == n_full and gt_path.exists():
            gt = np.load(gt_path)[:q_eff, :k_gt].astype(np.int64)
            how = "gt_top100.npy"
        else:
            gt = exact_topk_cosine(base, queries, k_gt)
            how = "ground truth recomputed with numpy"
        source = f"{data_dir} (n={n_eff}, queries={q_eff}, {how})"
        return Dataset(base, queries, gt, source)
    rng = np.random.default_rng(seed)
    n_eff = 100_000 if n is None else n
    q_eff = 1000 if n_queries is None else n_queries
    base = normalize_rows(rng.standard_normal((n_eff, random_dim), dtype=np.float32))
    queries = normalize_rows(rng.standard_normal((q_eff, random_dim), dtype=np.float32))
    gt = exact_topk_cosine(base, queries, k_gt)
    source = (
        f"RANDOM gaussian unit vectors (n={n_eff}, queries={q_eff}, d={random_dim}); "
        f"{data_dir} not found"
    )
    return Dataset(base, queries, gt, source)


def recall_at_k(found: np.ndarray, gt: np.ndarray, k: int = 10) -> float:
    """Mean ``|found[:, :k] ∩ gt[:, :k]| / k`` over queries."""
    found = np.asarray(found).reshape(len(gt), -1)[:, :k]
    hits = sum(len(set(f.tolist()) & set(g.tolist())) for f, g in zip(found, gt[:, :k]))
    return hits / (k * len(gt))


# --------------------------------------------------------------------------- timing


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def settle(seconds: float = 0.3) -> None:
    """Sleep briefly so worker threads of the previous measurement stop spinning.

    OpenBLAS and OpenMP pools busy-wait for a while after each parallel call; on a small
    machine that steals the core the next measurement needs.
    """
    time.sleep(seconds)


def time_per_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.2) -> float:
    """Seconds per call of ``fn``: median over ``repeats`` timed loops.

    The loop count is calibrated (like ``timeit.autorange``) so one loop takes at least
    ``min_time`` seconds; one untimed warm-up call is made first.
    """
    fn()
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time or number >= 1 << 24:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.1))
    per_call = [elapsed / number]
    for _ in range(max(1, repeats) - 1):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - t0) / number)
    return statistics.median(per_call)


def time_stmt(
    stmt: str, namespace: dict[str, Any], repeats: int = 5, min_time: float = 0.2
) -> float:
    """Seconds per execution of ``stmt`` via ``timeit`` (no extra Python call layer).

    The loop count is calibrated with ``Timer.autorange`` to at least ``min_time`` seconds;
    the result is the median over ``repeats`` loops.
    """
    timer = timeit.Timer(stmt, globals=namespace)
    timer.timeit(1)  # warm-up
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_time or number >= 1 << 24:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.1))
    per_call = [elapsed / number]
    per_call += [t / number for t in timer.repeat(max(1, repeats) - 1, number)]
    return statistics.median(per_call)


# --------------------------------------------------------------------------- output


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(
    agentdb: ModuleType | None, note: str, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Collect environment facts for the header / JSON output."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "env": {name: os.environ.get(name) for name in ENV_VARS},
        "blas": blas_info(),
        "agentdb_import": note,
        "agentdb_native_info": None,
    }
    if agentdb is not None:
        try:
            env["agentdb_native_info"] = agentdb.native_info()
        except Exception as exc:  # noqa: BLE001 - report whatever went wrong
            env["agentdb_native_info"] = f"native_info() failed: {exc!r}"
    if extra:
        env["libraries"] = extra
    return env


def print_header(title: str, env: dict[str, Any]) -> None:
    """Print the run header: env variables in effect, BLAS, CPU, agentdb.native_info()."""
    print(f"# {title}")
    print(f"python {env['python']}, numpy {env['numpy']}, {env['cpu_count']} CPUs: {env['cpu']}")
    env_str = ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env["env"].items())
    print(f"env: {env_str}")
    blas = env["blas"]
    print(
        f"numpy BLAS: {blas.get('library') or '?'} core={blas.get('corename') or '?'} "
        f"threads={blas.get('threads') if blas.get('threads') is not None else '?'}"
        f" (via {blas.get('via') or 'n/a'})"
    )
    if env.get("libraries"):
        print("libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()))
    print(env["agentdb_import"])
    print(f"agentdb.native_info(): {env['agentdb_native_info']}")
    print(flush=True)


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], note: str = ""
) -> None:
    """Print a plain-text table; first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [
        [("-" if c is None else str(c)) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    print(f"## {title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    if note:
        for note_line in note.splitlines():
            print(f"   {note_line}")
    print(flush=True)


def fmt_float(x: float | None, digits: int = 3) -> str | None:
    """Format a float with ``digits`` decimals; None passes through (printed as '-')."""
    return None if x is None else f"{x:.{digits}f}"


def fmt_ratio(x: float | None) -> str | None:
    """Format a ratio like ``1.23x``."""
    return None if x is None else f"{x:.2f}x"


def log(msg: str) -> None:
    """Progress line on stderr (kept out of the tables on stdout)."""
    print(f"... {msg}", file=sys.stderr, flush=True)


def parse_csv(text: str, cast: Callable[[str], Any] = str) -> list[Any]:
    """Split a comma-separated option value."""
    return [cast(part.strip()) for part in text.split(",") if part.strip()]


def _json_default(obj: object) -> object:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (numpy scalars converted)."""
    Path(path).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"wrote {path}")
