"""Shared helpers for the AgentDB benchmark scripts in ``benchmarks/``.

Contents: importing ``agentdb`` (the installed package; ``<repo>/python`` only with ``--src``)
and describing its backend (native core and SIMD path, or the numpy fallback), the guard that
refuses comparisons with peer libraries on the fallback (unless ``--allow-fallback``),
checking the backend of child processes, loading the ``minilm-pypi-100k`` data set (or a
random stand-in), exact ground truth, recall, timing (median of repeats), BLAS thread
control, an environment header and plain-text tables (whose titles name the backend).

Every script calls, in this order::

    add_backend_options(parser)                       # --src, --allow-fallback
    agentdb, note = import_agentdb(args.src)          # exits when not installed
    require_native_for_peers(agentdb, args.allow_fallback, "agentdb vs hnswlib")  # if peers
    print_header(title, environment(agentdb, note))   # backend line + warnings

Only numpy is required; everything else is optional and detected at run time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

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
    "PYTHONPATH",
)


# --------------------------------------------------------------------------- agentdb

#: The folder holding the source tree's ``agentdb`` package (imported only with ``--src``).
SRC_DIR = REPO_ROOT / "python"

#: Exit codes: agentdb is not installed / a comparison would run on the numpy fallback.
EXIT_NOT_INSTALLED = 2
EXIT_FALLBACK = 3

#: Python code that imports ``agentdb`` and leaves its ``native_info()`` (plus ``file`` and
#: ``package_version``) in ``RESULT``; run in child processes (``probe_backend``) and Ray
#: workers to see which agentdb *they* import.
PROBE_CODE = (
    "import warnings\n"
    "warnings.simplefilter('ignore')\n"
    "import agentdb\n"
    "RESULT = dict(agentdb.native_info())\n"
    "RESULT['file'] = agentdb.__file__\n"
    "RESULT['package_version'] = getattr(agentdb, '__version__', None)\n"
)


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--src`` and ``--allow-fallback`` (read by :func:`import_agentdb` and
    :func:`require_native_for_peers`) to a script's parser."""
    group = parser.add_argument_group("agentdb backend")
    group.add_argument(
        "--src",
        action="store_true",
        help=f"import agentdb from {SRC_DIR} instead of the installed package; its compiled "
        "extension is usually missing there, so this mostly measures the numpy fallback",
    )
    group.add_argument(
        "--allow-fallback",
        action="store_true",
        help="report comparisons with peer libraries even when agentdb runs on its numpy "
        "fallback (tables are then marked FALLBACK)",
    )


def _in_source_tree(path: str | os.PathLike[str] | None) -> bool:
    """True when ``path`` is ``<repo>/python`` or lies under it."""
    if path is None:
        return False
    try:
        resolved = Path(path or ".").resolve()
    except OSError:
        return False
    src = SRC_DIR.resolve()
    return resolved == src or src in resolved.parents


@dataclass(frozen=True)
class BackendInfo:
    """Which agentdb a process runs: version, native core or numpy fallback, SIMD path per
    kernel, and where the package was imported from (``src``: whether --src asked for the
    source tree)."""

    version: str
    native: bool
    simd: dict[str, str]
    reason: str | None
    forced: str | None
    package_dir: Path | None
    src: bool

    @classmethod
    def from_info(cls, info: Mapping[str, Any], file: str | None, src: bool) -> BackendInfo:
        """Build from a ``native_info()`` dict and the package's ``__file__``."""
        simd = info.get("simd") or {}
        return cls(
            version=str(info.get("version") or info.get("package_version") or "?"),
            native=bool(info.get("native")),
            simd={str(k): str(v) for k, v in dict(simd).items()},
            reason=info.get("reason"),
            forced=info.get("forced"),
            package_dir=Path(file).resolve().parent if file else None,
            src=src,
        )

    @classmethod
    def from_module(cls, agentdb: ModuleType, src: bool) -> BackendInfo:
        """Build from an imported ``agentdb`` module."""
        info = dict(agentdb.native_info())
        info.setdefault("package_version", getattr(agentdb, "__version__", None))
        return cls.from_info(info, getattr(agentdb, "__file__", None), src)

    @property
    def from_source_tree(self) -> bool:
        """True when the package was imported from ``<repo>/python``."""
        return _in_source_tree(self.package_dir)

    @property
    def origin(self) -> str:
        """Where the package came from, e.g. ``installed: /.../site-packages/agentdb``."""
        if self.package_dir is None:
            return "location unknown"
        if not self.from_source_tree:
            return f"installed: {self.package_dir}"
        if self.src:
            return f"source tree, --src: {self.package_dir}"
        return f"SOURCE TREE without --src (PYTHONPATH? editable install?): {self.package_dir}"

    @property
    def simd_path(self) -> str:
        """The SIMD path (``avx512``), or one per kernel when they differ."""
        paths = set(self.simd.values())
        if len(paths) == 1:
            return paths.pop()
        return ",".join(f"{k}={v}" for k, v in sorted(self.simd.items())) or "?"

    @property
    def short(self) -> str:
        """``native avx512`` or ``numpy fallback`` (for table titles)."""
        return f"native {self.simd_path}" if self.native else "numpy fallback"

    def describe(self) -> str:
        """One line: version, backend, SIMD path per kernel (or why the fallback), origin."""
        if self.native:
            simd = " ".join(f"{k}={v}" for k, v in sorted(self.simd.items())) or "?"
            forced = f" (forced by AGENTDB_SIMD={self.forced})" if self.forced else ""
            core = f"backend=native simd: {simd}{forced}"
        else:
            core = f"backend=numpy (fallback: {self.reason or 'native core not loaded'})"
        return f"agentdb {self.version} {core} ({self.origin})"


@dataclass
class _RunState:
    """What this run imported and promised; read by the header and every table title."""

    backend: BackendInfo | None = None
    children: dict[str, BackendInfo] = field(default_factory=dict)
    fallback_allowed: bool = False  # --allow-fallback let a fallback comparison through
    warnings: list[str] = field(default_factory=list)


_RUN = _RunState()


def _die(message: str, code: int) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _warn(message: str) -> None:
    """A warning on stderr now and in the header (:func:`print_header`) later."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)
    _RUN.warnings.append(message)


def _set_child_pythonpath(src: bool) -> list[str]:
    """Make ``PYTHONPATH`` of child processes match the choice: ``<repo>/python`` first with
    --src, absent without. Returns the entries dropped."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    dropped = [p for p in parts if _in_source_tree(p)]
    kept = [p for p in parts if not _in_source_tree(p)]
    if src:
        kept.insert(0, str(SRC_DIR))
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        os.environ.pop("PYTHONPATH", None)
    return dropped


def _same_dir(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same directory."""
    try:
        return Path(a or ".").resolve() == Path(b or ".").resolve()
    except OSError:
        return False


def import_agentdb(src: bool = False) -> tuple[ModuleType, str]:
    """Import ``agentdb``: the installed package, or with ``src`` the one in ``<repo>/python``.

    Without ``src``, ``<repo>/python`` entries that came from ``PYTHONPATH`` are removed from
    ``sys.path`` first, so the checkout cannot shadow the installed package, and the process
    exits (code ``EXIT_NOT_INSTALLED``) with instructions when agentdb is not installed. With
    ``src``, ``<repo>/python`` goes first on ``sys.path``. Either way ``PYTHONPATH`` in
    ``os.environ`` is set to match, so child processes started afterwards (servers, Ray
    workers) import the same agentdb. A package found under ``<repo>/python`` without
    ``src`` (an editable install, a ``.pth`` file) is reported loudly.

    Returns ``(module, note)``; the note says where the module came from.
    """
    dropped = _set_child_pythonpath(src)
    if src:
        sys.path.insert(0, str(SRC_DIR))
    elif dropped:
        sys.path[:] = [p for p in sys.path if not any(_same_dir(p, d) for d in dropped)]
    try:
        import agentdb
    except ImportError as exc:
        if src:
            _die(f"cannot import agentdb from {SRC_DIR} ({exc})", EXIT_NOT_INSTALLED)
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "agentdb"
        what = "is not installed" if missing else f"is installed but does not import ({exc})"
        ignored = (
            f"\n  (PYTHONPATH entry {', '.join(dropped)} ignored: the source tree is used only "
            "with --src.)"
            if dropped
            else ""
        )
        _die(
            f"agentdb {what} in this Python ({sys.executable}).\n"
            f"  Install it from the checkout, which builds the native core:  pip install "
            f"{REPO_ROOT}\n"
            f"  or pass --src to import {SRC_DIR} instead (usually without the compiled "
            f"extension, i.e. the numpy fallback).{ignored}",
            EXIT_NOT_INSTALLED,
        )
    backend = BackendInfo.from_module(agentdb, src)
    _RUN.backend = backend
    if src:
        note = f"agentdb imported from the source tree {backend.package_dir} (--src)"
        if not backend.from_source_tree:
            _warn(f"--src was given but agentdb came from {backend.package_dir}")
    else:
        note = f"agentdb imported from the installed package {backend.package_dir}"
        if backend.from_source_tree:
            note = f"agentdb imported from {backend.package_dir} WITHOUT --src"
            _warn(
                f"agentdb was imported from the source tree {backend.package_dir} although "
                "--src was not given (an editable install or a .pth file?); its backend: "
                f"{backend.short}"
            )
    if dropped:
        note += f" (ignored PYTHONPATH entry {', '.join(dropped)}: --src uses the source tree)"
    return agentdb, note


def require_native_for_peers(
    agentdb: ModuleType, allow_fallback: bool, what: str, hint: str = ""
) -> None:
    """Exit (code ``EXIT_FALLBACK``) when agentdb runs on its numpy fallback and the script is
    about to report ``what`` -- a comparison with peer libraries -- unless ``allow_fallback``
    (``--allow-fallback``); then the header gets a warning and every table title a FALLBACK
    marker. ``hint`` is added to the error (e.g. how to skip the comparing part)."""
    backend = _RUN.backend or BackendInfo.from_module(agentdb, src=False)
    if backend.native:
        return
    if not allow_fallback:
        origin = (
            f"\n  --src imports {SRC_DIR}, which usually has no compiled extension."
            if backend.src
            else ""
        )
        hint_line = f"\n  {hint}" if hint else ""
        fix = (
            "Unset AGENTDB_NATIVE"
            if "AGENTDB_NATIVE" in (backend.reason or "")
            else f"Install the package with its native core (pip install {REPO_ROOT})"
        )
        _die(
            f"agentdb runs on its numpy fallback ({backend.reason or 'native core not loaded'})"
            f"; refusing to report {what}: it would measure the fallback, not the native "
            f"core.{origin}\n"
            f"  {fix}, or pass --allow-fallback to report the comparison anyway (tables "
            f"marked FALLBACK).{hint_line}",
            EXIT_FALLBACK,
        )
    _RUN.fallback_allowed = True
    _warn(
        f"--allow-fallback: {what} is reported with agentdb on its numpy FALLBACK; its "
        "numbers say nothing about the native core"
    )


def probe_backend(
    env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> BackendInfo:
    """The agentdb a child process (``sys.executable`` with ``env``, default ``os.environ``,
    in ``cwd``) imports, from running :data:`PROBE_CODE` there. Exits with the child's error
    when it cannot import agentdb."""
    code = PROBE_CODE + "import json\nprint(json.dumps(RESULT, default=str))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        _die(f"a child process cannot import agentdb: {tail}", EXIT_NOT_INSTALLED)
    return probed_backend(json.loads(proc.stdout.strip().splitlines()[-1]))


def probed_backend(result: Mapping[str, Any]) -> BackendInfo:
    """The :class:`BackendInfo` of a child from the ``RESULT`` of :data:`PROBE_CODE` (its
    ``src`` is this run's choice: the child was meant to import the same agentdb)."""
    src = _RUN.backend.src if _RUN.backend is not None else False
    return BackendInfo.from_info(result, result.get("file"), src)


def check_child_backend(label: str, child: BackendInfo, allow_fallback: bool) -> None:
    """Print the backend of a child process (``label``: "server", "Ray worker", ...) and exit
    (code ``EXIT_FALLBACK``) unless it runs the same agentdb as this process -- same backend,
    same package folder -- or ``allow_fallback``; table titles then name both backends."""
    print(f"{label} backend: {child.describe()}", flush=True)
    _RUN.children[label] = child
    parent = _RUN.backend
    if parent is None or (
        child.native == parent.native and child.package_dir == parent.package_dir
    ):
        return
    problem = (
        f"the {label} runs a different agentdb than this process: {child.short} from "
        f"{child.package_dir}, here {parent.short} from {parent.package_dir}"
    )
    if not allow_fallback:
        _die(f"{problem}.\n  Pass --allow-fallback to measure anyway.", EXIT_FALLBACK)
    if not child.native:
        _RUN.fallback_allowed = True
    _warn(f"--allow-fallback: {problem}")


def backend_tag() -> str:
    """The backend marker of table titles: ``[native avx512]``, ``[numpy fallback]``, or
    ``[numpy FALLBACK, --allow-fallback]`` when a comparison runs on the fallback; child
    processes on another backend are named too. Empty when agentdb was not imported."""
    backend = _RUN.backend
    if backend is None:
        return ""
    parts = [backend.short]
    fallback = not backend.native
    for label, child in _RUN.children.items():
        fallback = fallback or not child.native
        if child.short != backend.short or child.package_dir != backend.package_dir:
            parts.append(f"{label}: {child.short}")
    if fallback and _RUN.fallback_allowed:
        parts = [p.replace("numpy fallback", "numpy FALLBACK") for p in parts]
        parts.append("--allow-fallback")
    return "[" + ", ".join(parts) + "]"


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
        "agentdb_backend": None,
        "agentdb_native_info": None,
    }
    if agentdb is not None:
        try:
            env["agentdb_native_info"] = agentdb.native_info()
        except Exception as exc:  # noqa: BLE001 - report whatever went wrong
            env["agentdb_native_info"] = f"native_info() failed: {exc!r}"
    backend = _RUN.backend
    if backend is not None:
        env["agentdb_backend"] = backend.describe()
        env["agentdb_native"] = backend.native
        env["agentdb_fallback_allowed"] = _RUN.fallback_allowed
    if extra:
        env["libraries"] = extra
    return env


def print_header(title: str, env: dict[str, Any]) -> None:
    """Print the run header: env variables in effect, BLAS, CPU, the agentdb backend line
    (:meth:`BackendInfo.describe`), ``agentdb.native_info()`` and any backend warnings."""
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
    if env.get("agentdb_backend"):
        print(env["agentdb_backend"])
    print(env["agentdb_import"])
    print(f"agentdb.native_info(): {env['agentdb_native_info']}")
    for warning in _RUN.warnings:
        print(f"WARNING: {warning}")
    print(flush=True)


def print_title(title: str) -> None:
    """Print a section title line, ``## <title> <backend_tag()>``."""
    tag = backend_tag()
    print(f"## {title} {tag}" if tag else f"## {title}")


#: every table :func:`print_table` printed in this run (scripts without a JSON layout of
#: their own write these with ``--json``)
PRINTED_TABLES: list[dict[str, Any]] = []


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], note: str = ""
) -> None:
    """Print a plain-text table; first column left-aligned, the rest right-aligned.

    The title line ends with :func:`backend_tag` (e.g. ``[native avx512]``), so a table
    pasted on its own still says which agentdb backend produced it."""
    cells = [[str(h) for h in headers]] + [
        [("-" if c is None else str(c)) for c in row] for row in rows
    ]
    PRINTED_TABLES.append({"title": title, "headers": cells[0], "rows": cells[1:],
                           "note": note})
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    print_title(title)
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
