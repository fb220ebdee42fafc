"""HTTP server benchmark: ``agentdb serve`` under loopback load.

Data: ``../shared/data/minilm-pypi-100k`` relative to the repo root (100k x 384 MiniLM
embeddings, 1000 queries, exact top-100 ground truth), loaded as float32. ``--n`` takes the
first N base rows (ground truth is then recomputed exactly with numpy), ``--queries`` the
first Q queries.

Setup: the store is filled in this process through the embedded API (``agentdb.open(path,
dim=384)``, ``store_patterns`` in batches of ``--batch`` = 1000, row i = pattern ``"pattern
<i>"`` with its embedding) and closed; then the server is started in a **subprocess**::

    AGENTDB_API_KEYS=<key> python -m agentdb.cli serve --db <tmp>/memory.db \
        --port <free port> --rate-limit 0

and polled on ``GET /ready``. Before closing the store, a single-threaded embedded
``search_patterns(q, 10)`` pass over the queries gives the in-process latency the HTTP numbers
can be compared with.

Measured (every request over a keep-alive ``http.client`` connection, one per client thread,
the JSON bodies encoded before the clock starts, answers read but not decoded):

* recall@10 of ``POST /vectors/search`` (``k=10``) against the exact ground truth, one client,
  the first ``--recall-queries`` queries (a sanity check that the server searches the index it
  was given);
* ``POST /vectors/search`` (``k=10``, a random query of the data set per request) and
  ``POST /patterns/store`` (a random base vector as the embedding, so nothing is embedded on
  the server) at each of ``--concurrency`` (1, 16, 64) concurrent clients, for ``--duration``
  seconds (5) or ``--max-requests`` requests per level, whichever comes first: throughput
  (completed requests / wall seconds), p50 / p99 / max latency in ms, and error count; and
  the CPU time of the server process (all threads, from ``/proc``) and of the load generator
  over the level, as a percentage of one core and (server) as CPU ms per request -- with a
  single event loop, ``1000 / srv CPU ms/req`` is the ceiling on throughput.

The load generator runs on the same 2-core machine as the server, so at high concurrency they
compete for the CPU: the numbers are an upper bound on the latency a remote client would see
from the server alone, not a measurement of the server in isolation.

The target (from the server issue): p99 < 10 ms for search at 16 concurrent clients; the run
says whether it was met.

``--pin`` puts the server process on CPU 0 and the load generator on the other CPUs (Linux
``sched_setaffinity``), so the two stop preempting each other: the server then has one core
to itself, which is what a single uvicorn process can use anyway.

``--py-spy FILE`` records the server process with py-spy (when installed) during the load
levels and writes a flame graph (``.svg``) or speedscope JSON (``.json``) to FILE.

agentdb is imported from the installed package (``pip install .``), in this process and in
the server; ``--src`` makes both import ``<repo>/python`` instead (``PYTHONPATH`` of the server
set accordingly), which usually lacks the compiled extension: the numpy fallback. Before the
store is filled, the server's environment is probed (``python -c "import agentdb"`` with the
same interpreter and environment) and its backend printed; once it is up, ``GET /stats``
must report the same backend. A server on another backend than this process stops the run
unless ``--allow-fallback``. The backend is in every table title, and the p99 target is not
judged for a server on the fallback.

Examples::

    python benchmarks/server.py                      # full 100k run
    python benchmarks/server.py --n 20000 --duration 3
    python benchmarks/server.py --n 5000 --duration 1 --json server.json
    python benchmarks/server.py --src --n 2000 --queries 20 --duration 1  # source tree
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    EXIT_FALLBACK,
    add_backend_options,
    check_child_backend,
    environment,
    fmt_float,
    import_agentdb,
    load_dataset,
    log,
    module_version,
    optional_import,
    parse_csv,
    print_header,
    print_table,
    probe_backend,
    recall_at_k,
    write_json,
)

K = 10
API_KEY = "bench-key-0123456789"
TARGET_P99_MS = 10.0
TARGET_CLIENTS = 16


# --------------------------------------------------------------------------- setup


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill_store(mod: ModuleType, path: str, base: np.ndarray, batch: int) -> dict[str, Any]:
    """Store every row as a pattern through the embedded API; returns ids and timings."""
    t0 = time.perf_counter()
    db = mod.open(path, dim=base.shape[1], progress=False)
    ids: list[int] = []
    for s in range(0, base.shape[0], batch):
        items = [{"task": f"pattern {i}", "embedding": base[i]}
                 for i in range(s, min(s + batch, base.shape[0]))]
        ids += db.store_patterns(items)
        if (s // batch) % 20 == 0:
            log(f"stored {s + len(items)}/{base.shape[0]} patterns")
    t_stored = time.perf_counter() - t0
    return {"db": db, "ids": np.asarray(ids, np.int64), "store_seconds": t_stored}


def embedded_baseline(db: Any, queries: np.ndarray, count: int) -> dict[str, float]:
    """Single-threaded in-process ``search_patterns(q, 10)`` latencies (ms)."""
    for q in queries[:20]:
        db.search_patterns(q, K)
    lat = []
    for q in queries[:count]:
        t0 = time.perf_counter()
        db.search_patterns(q, K)
        lat.append(time.perf_counter() - t0)
    arr = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "qps": float(len(arr) / (arr.sum() / 1e3))}


def server_env() -> dict[str, str]:
    """Environment of the server process: this one's (whose ``PYTHONPATH`` ``import_agentdb``
    set for --src or cleared of the source tree) plus the API key."""
    return {**os.environ, "AGENTDB_API_KEYS": API_KEY}


class ServerProcess:
    """``python -m agentdb.cli serve`` in a subprocess, output in a log file."""

    def __init__(self, db_path: str, port: int, log_path: Path, extra: list[str]) -> None:
        self.cmd = [sys.executable, "-m", "agentdb.cli", "serve", "--db", db_path,
                    "--port", str(port), "--rate-limit", "0", *extra]
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=server_env())

    def pin(self) -> str:
        """Server on CPU 0, this process's future threads on the others; a description."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return "not pinned (one CPU)"
        os.sched_setaffinity(self.proc.pid, {cpus[0]})
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):  # threads started already
            os.sched_setaffinity(int(task), {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
        return f"server on CPU {cpus[0]}, load generator on CPU(s) {cpus[1:]}"

    def wait_ready(self, timeout: float) -> float:
        """Poll ``GET /ready`` until 200; returns the seconds it took."""
        t0 = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/ready")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n"
                                   + self.log_tail())
            time.sleep(0.2)

    def stats_backend(self) -> str | None:
        """The ``backend`` field of ``GET /stats`` (``native`` / ``numpy``), None if absent."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/stats", headers=_headers())
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"GET /stats answered {resp.status}: {body[:200]!r}")
        backend = json.loads(body).get("backend")
        return None if backend is None else str(backend)

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> int | None:
        """SIGINT (graceful), then SIGKILL after 20 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- load


@dataclass
class Level:
    """One (endpoint, concurrency) measurement."""

    endpoint: str
    clients: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    lat_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    error_samples: list[str] = field(default_factory=list)
    server_cpu_s: float | None = None  # CPU seconds the server process used (all threads)
    client_cpu_s: float | None = None  # CPU seconds this (load generator) process used
    fixed_pct: dict[float, float] = field(default_factory=dict)  # wrk: percentiles it reported
    generator: str = "python"
    workers: int = 1  # ``agentdb serve --workers``

    def cpu_pct(self, cpu_s: float | None) -> float | None:
        """CPU seconds as a percentage of one core over the level's wall time."""
        return None if cpu_s is None or not self.seconds else 100.0 * cpu_s / self.seconds

    def server_cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return 1e3 * self.server_cpu_s / self.requests

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float | None:
        if p in self.fixed_pct:
            return self.fixed_pct[p]
        return float(np.percentile(self.lat_ms, p)) if self.lat_ms.size else None

    def summary(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "clients": self.clients, "workers": self.workers,
                "requests": self.requests,
                "errors": self.errors, "seconds": self.seconds,
                "throughput_per_s": self.throughput, "p50_ms": self.pct(50),
                "p90_ms": self.pct(90), "p99_ms": self.pct(99),
                "max_ms": float(self.lat_ms.max()) if self.lat_ms.size else None,
                "server_cpu_seconds": self.server_cpu_s,
                "client_cpu_seconds": self.client_cpu_s,
                "server_cpu_ms_per_request": self.server_cpu_ms_per_request(),
                "error_samples": self.error_samples[:5]}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) and of its child
    processes (``serve --workers``: the read workers), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return total
    for task in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            total += process_cpu_seconds(int(kid)) or 0.0
    return total


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    t = os.times()
    return t.user + t.system


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
            "Accept": "application/json"}


def encode_vector(v: np.ndarray) -> str:
    """A vector as a JSON array (the float32 values, shortest round-trip text)."""
    return "[" + ",".join(np.format_float_positional(x, trim="-") for x in v) + "]"


def run_level(port: int, path: str, bodies: list[bytes], clients: int, duration: float,
              max_requests: int, ok_status: tuple[int, ...], seed: int,
              server_pid: int | None = None) -> Level:
    """``clients`` threads, each on its own keep-alive connection, POSTing random bodies."""
    level = Level(path, clients)
    barrier = threading.Barrier(clients + 1)
    per_thread = max(1, max_requests // clients) if max_requests else 1 << 62
    results: list[tuple[list[float], int, list[str]]] = [([], 0, []) for _ in range(clients)]
    deadline = [0.0]
    headers = _headers()

    def worker(t: int) -> None:
        rng = np.random.default_rng(seed + t)
        picks = rng.integers(0, len(bodies), size=min(per_thread, 20_000))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        lat: list[float] = []
        errors = 0
        samples: list[str] = []
        perf = time.perf_counter
        try:
            conn.request("POST", path, body=bodies[int(picks[0])], headers=headers)  # warm-up
            conn.getresponse().read()
        except OSError as exc:
            samples.append(repr(exc))
        barrier.wait()
        end = deadline[0]
        i = 0
        while i < per_thread:
            body = bodies[int(picks[i % len(picks)])]
            t0 = perf()
            if t0 >= end:
                break
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status in ok_status
            except (OSError, http.client.HTTPException) as exc:
                ok, data = False, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            lat.append(perf() - t0)
            if not ok:
                errors += 1
                if len(samples) < 3:
                    samples.append(data[:200].decode(errors="replace"))
            i += 1
        conn.close()
        results[t] = (lat, errors, samples)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(clients)]
    for th in threads:
        th.start()
    srv0 = process_cpu_seconds(server_pid) if server_pid else None
    own0 = own_cpu_seconds()
    t_start = time.perf_counter()
    deadline[0] = t_start + duration
    barrier.wait()
    for th in threads:
        th.join()
    level.seconds = time.perf_counter() - t_start
    level.client_cpu_s = own_cpu_seconds() - own0
    srv1 = process_cpu_seconds(server_pid) if server_pid else None
    if srv0 is not None and srv1 is not None:
        level.server_cpu_s = srv1 - srv0
    all_lat = [x for lat, _, _ in results for x in lat]
    level.lat_ms = np.asarray(all_lat) * 1e3
    level.requests = len(all_lat)
    level.errors = sum(e for _, e, _ in results)
    level.error_samples = [s for _, _, smp in results for s in smp]
    return level


_WRK_DONE = """
done = function(summary, latency, requests)
  for _, p in pairs({50, 90, 99}) do
    io.write(string.format("AGDB P%d %d\\n", p, latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format("AGDB MAX %d\\nAGDB REQ %d\\nAGDB US %d\\nAGDB ERR %d\\n",
    latency.max, summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_level_wrk(port: int, path: str, bodies: list[bytes], clients: int, duration: float,
                  tmp: str, server_pid: int | None = None) -> Level:
    """The same level driven by ``wrk`` (C, one thread, ``clients`` keep-alive connections):
    the load generator then takes a few percent of a core instead of a third of one, so the
    numbers show the server rather than Python's HTTP client competing for the 2 CPUs."""
    script = Path(tmp) / f"wrk_{path.strip('/').replace('/', '_')}.lua"
    picks = bodies[:500]
    key = API_KEY
    with open(script, "w") as f:
        f.write("local bodies = {\n" + ",\n".join(
            "[==[" + b.decode() + "]==]" for b in picks) + "\n}\nlocal i = 0\n")
        f.write("request = function()\n  i = (i % #bodies) + 1\n  return wrk.format(\"POST\", "
                f"\"{path}\", {{[\"Content-Type\"]=\"application/json\", "
                f"[\"X-API-Key\"]=\"{key}\"}}, bodies[i])\nend\n")
        f.write(_WRK_DONE)
    level = Level(path, clients, generator="wrk")
    # Warm up like the Python generator does: the first write after opening a big store grows
    # the index (one ~0.4 s copy at 100k), and wrk's coordinated-omission correction would
    # turn that single stall into hundreds of synthetic slow samples.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for b in picks[:3]:
        conn.request("POST", path, body=b, headers=_headers())
        conn.getresponse().read()
    conn.close()
    srv0 = process_cpu_seconds(server_pid) if server_pid else None
    t0 = time.perf_counter()
    proc = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s",
                           "-s", str(script), f"http://127.0.0.1:{port}"],
                          capture_output=True, text=True, check=False)
    level.seconds = time.perf_counter() - t0
    srv1 = process_cpu_seconds(server_pid) if server_pid else None
    if srv0 is not None and srv1 is not None:
        level.server_cpu_s = srv1 - srv0
    vals: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("AGDB "):
            _, name, value = line.split()
            vals[name] = int(value)
    if "REQ" not in vals:
        level.error_samples = [proc.stdout[-300:] + proc.stderr[-300:]]
        level.errors = 1
        return level
    level.requests = vals["REQ"]
    level.errors = vals.get("ERR", 0)
    if vals.get("US"):
        level.seconds = vals["US"] / 1e6
    level.fixed_pct = {50: vals["P50"] / 1e3, 90: vals["P90"] / 1e3, 99: vals["P99"] / 1e3}
    level.lat_ms = np.asarray([vals["MAX"] / 1e3])  # only the max is kept
    return level


def search_recall(port: int, bodies: list[bytes], gt: np.ndarray, row_of_id: np.ndarray
                  ) -> tuple[float, int]:
    """recall@10 of ``/vectors/search`` over the first ``len(bodies)`` queries."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    found = np.full((len(bodies), K), -1, np.int64)
    errors = 0
    for i, body in enumerate(bodies):
        conn.request("POST", "/vectors/search", body=body, headers=_headers())
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            errors += 1
            continue
        ids = [int(h["id"]) for h in json.loads(data)["results"]][:K]
        rows = [int(row_of_id[x]) if 0 <= x < len(row_of_id) else -1 for x in ids]
        found[i, : len(rows)] = rows
    conn.close()
    return recall_at_k(found, gt[: len(bodies)], K), errors


def start_py_spy(pid: int, out: str, seconds: float) -> subprocess.Popen | None:
    """``py-spy record`` of the server for ``seconds`` (None when py-spy is missing)."""
    exe = shutil.which("py-spy")
    if exe is None:
        log("py-spy not found: no profile recorded (pip install py-spy)")
        return None
    fmt = "speedscope" if out.endswith(".json") else "flamegraph"
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(max(1, seconds))),
           "--rate", "250", "--format", fmt, "--output", out, "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=100_000, help="first N base rows (default 100000)")
    p.add_argument("--queries", type=int, default=1000, help="first Q queries (default 1000)")
    p.add_argument("--batch", type=int, default=1000, help="fill batch size (default 1000)")
    p.add_argument("--concurrency", default="1,16,64", help="client counts (default 1,16,64)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per level (default 5)")
    p.add_argument("--max-requests", type=int, default=0,
                   help="cap on requests per level (default 0 = only the duration)")
    p.add_argument("--recall-queries", type=int, default=200,
                   help="queries for the recall@10 check (default 200)")
    p.add_argument("--endpoints", default="search,store",
                   help="which loads to run: search, store (default both)")
    p.add_argument("--ready-timeout", type=float, default=600.0,
                   help="seconds to wait for the server's /ready (default 600)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra argument for 'agentdb serve' (repeatable)")
    p.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: wrk (C; default when installed) or python threads")
    p.add_argument("--pin", action="store_true",
                   help="server on CPU 0, load generator on the other CPUs")
    p.add_argument("--py-spy", default=None, metavar="FILE",
                   help="record the server with py-spy during the search levels")
    p.add_argument("--workers", default="1",
                   help="comma-separated --workers values of agentdb serve, each measured in "
                        "this run (default 1; e.g. 1,2 compares one process with two)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query choice (default 0)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and log")
    add_backend_options(p)
    args = p.parse_args(argv)

    mod, note = import_agentdb(args.src)
    env = environment(mod, note, {
        name: module_version(optional_import(name)) for name in ("fastapi", "uvicorn", "starlette")
    })
    print_header("AgentDB HTTP server benchmark (benchmarks/server.py)", env)
    server_backend = probe_backend(server_env())
    check_child_backend("server", server_backend, args.allow_fallback)
    env["server_backend"] = server_backend.describe()
    concurrency = parse_csv(args.concurrency, int)
    workers = parse_csv(args.workers, int)
    endpoints = parse_csv(args.endpoints)

    log(f"loading data from {args.data}")
    data = load_dataset(args.n, args.queries, data_dir=args.data, k_gt=K)
    n, dim = data.base.shape
    print(f"data: {data.source}")
    tmp = tempfile.mkdtemp(prefix="agentdb-server-bench-")
    db_path = os.path.join(tmp, "memory.db")
    server: ServerProcess | None = None
    levels: list[Level] = []
    out: dict[str, Any] = {"environment": env, "args": vars(args) | {"data": str(args.data)},
                           "data": data.source}
    try:
        log(f"filling the store with {n} patterns (batches of {args.batch})")
        fill = fill_store(mod, db_path, data.base, args.batch)
        ids = fill["ids"]
        row_of_id = np.full(int(ids.max()) + 1, -1, np.int64)
        row_of_id[ids] = np.arange(n)
        log("embedded search baseline")
        baseline = embedded_baseline(fill["db"], data.queries, min(len(data.queries), 500))
        t0 = time.perf_counter()
        fill["db"].close()
        close_s = time.perf_counter() - t0
        print(f"store: {n} patterns, dim {dim}, filled in {fill['store_seconds']:.1f} s "
              f"(+{close_s:.1f} s close)")
        out["fill"] = {"store_seconds": fill["store_seconds"], "close_seconds": close_s}
        out["embedded_baseline"] = baseline

        search_bodies = [f'{{"vector":{encode_vector(q)},"k":{K}}}'.encode()
                         for q in data.queries]
        rng = np.random.default_rng(args.seed)
        store_rows = rng.integers(0, n, size=min(n, 2000))
        store_bodies = [(f'{{"task":"bench store {j}","reward":0.5,'
                         f'"embedding":{encode_vector(data.base[r])}}}').encode()
                        for j, r in enumerate(store_rows)]
        spec = {"search": ("/vectors/search", search_bodies, (200,)),
                "store": ("/patterns/store", store_bodies, (200, 201))}
        use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk"))
        out["load_generator"] = "wrk" if use_wrk else "python"
        print(f"load generator: {'wrk (C, 1 thread)' if use_wrk else 'python threads'}")
        out["servers"] = []
        for w in workers:
            try:
                port = free_port()
                extra = [*args.server_arg, *(["--workers", str(w)] if w > 1 else [])]
                server = ServerProcess(db_path, port, Path(tmp) / f"server{w}.log", extra)
                log("starting: " + " ".join(server.cmd))
                if args.pin:
                    out["pinning"] = server.pin()
                    print(f"pinning: {out['pinning']}")
                ready_s = server.wait_ready(args.ready_timeout)
                if w > 1:  # the read workers take connections once they answer
                    time.sleep(3.0)
                stats_backend = server.stats_backend()
                print(f"server (--workers {w}): pid {server.proc.pid}, port {port}, ready "
                      f"after {ready_s:.1f} s, GET /stats backend={stats_backend}")
                out["servers"].append({"workers": w, "cmd": server.cmd,
                                       "ready_seconds": ready_s,
                                       "backend": server_backend.describe(),
                                       "stats_backend": stats_backend})
                expected = "native" if server_backend.native else "numpy"
                if stats_backend not in (None, expected):
                    print(f"error: the running server reports backend={stats_backend}, its "
                          f"environment probe said {expected}", file=sys.stderr)
                    raise SystemExit(EXIT_FALLBACK)
                if w == workers[0]:
                    n_recall = min(args.recall_queries, len(search_bodies))
                    log(f"recall@10 over {n_recall} queries")
                    recall, recall_errors = search_recall(port, search_bodies[:n_recall],
                                                          data.gt, row_of_id)
                    out["recall_at_10"] = recall
                    out["recall_errors"] = recall_errors
                spy = None
                if args.py_spy and w == workers[0]:
                    spy = start_py_spy(server.proc.pid, args.py_spy,
                                       len(endpoints) * len(concurrency) * (args.duration + 1))
                for name in endpoints:
                    path, bodies, ok = spec[name]
                    for c in concurrency:
                        log(f"{path}: {c} client(s), --workers {w}, {args.duration:g} s")
                        if use_wrk:
                            level = run_level_wrk(port, path, bodies, c, args.duration, tmp,
                                                  server.proc.pid)
                        else:
                            level = run_level(port, path, bodies, c, args.duration,
                                              args.max_requests, ok, args.seed + 1000 * c,
                                              server.proc.pid)
                        level.workers = w
                        levels.append(level)
                        if level.errors:
                            log(f"  {level.errors} errors, e.g. {level.error_samples[:1]}")
                        time.sleep(0.5)
                if spy is not None:
                    _, err = spy.communicate(timeout=300)
                    if spy.returncode:
                        log(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
                    else:
                        print(f"py-spy profile of the server: {args.py_spy}")
            finally:
                if server is not None:
                    code = server.stop()
                    if code not in (0, -signal.SIGINT, 130, None):
                        log(f"server exited with {code}; log tail:\n{server.log_tail()}")
                server = None
    finally:
        if server is not None:
            code = server.stop()
            if code not in (0, -signal.SIGINT, 130, None):
                log(f"server exited with {code}; log tail:\n{server.log_tail()}")
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for lv in levels:
        rows.append([lv.endpoint, lv.workers, lv.clients, lv.requests, lv.errors,
                     fmt_float(lv.throughput, 0), fmt_float(lv.pct(50), 2),
                     fmt_float(lv.pct(99), 2),
                     fmt_float(float(lv.lat_ms.max()) if lv.lat_ms.size else None, 1),
                     fmt_float(lv.cpu_pct(lv.server_cpu_s), 0),
                     fmt_float(lv.server_cpu_ms_per_request(), 3),
                     fmt_float(lv.cpu_pct(lv.client_cpu_s), 0)])
    rows.append(["embedded search_patterns (in-process)", None, 1, None, None,
                 fmt_float(baseline["qps"], 0), fmt_float(baseline["p50_ms"], 2),
                 fmt_float(baseline["p99_ms"], 2), None, None, None, None])
    print_table(
        f"loopback load, n={n}, dim={dim}, k={K}, {args.duration:g} s per level",
        ["endpoint", "workers", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms",
         "max ms",
         "srv CPU%", "srv CPU ms/req", "gen CPU%"],
        rows,
        note=f"recall@10 of /vectors/search: {recall:.4f} over {n_recall} queries"
             f"{f' ({recall_errors} failed)' if recall_errors else ''}\n"
             "load generator and server share the machine's "
             f"{os.cpu_count()} CPUs; latency includes the client's own HTTP work\n"
             "srv CPU% / gen CPU%: CPU time of the server / load-generator process over the "
             "level's wall time (100 = one core busy; with --workers, the read workers "
             "included)",
    )
    if len(workers) > 1:
        first = {(lv.endpoint, lv.clients): lv for lv in levels if lv.workers == workers[0]}
        ratio_rows = []
        for lv in levels:
            ref = first.get((lv.endpoint, lv.clients))
            if lv.workers == workers[0] or ref is None or not ref.throughput:
                continue
            ratio_rows.append([lv.endpoint, lv.clients, f"{ref.throughput:.0f}",
                               f"{lv.throughput:.0f}", f"{lv.throughput / ref.throughput:.2f}x",
                               fmt_float(ref.pct(99), 2), fmt_float(lv.pct(99), 2)])
        print_table(f"--workers {workers[1:]} against --workers {workers[0]} (same run)",
                    ["endpoint", "clients", f"req/s w={workers[0]}", "req/s", "ratio",
                     f"p99 ms w={workers[0]}", "p99 ms"], ratio_rows)
    target = next((lv for lv in levels
                   if lv.endpoint == "/vectors/search" and lv.clients == TARGET_CLIENTS
                   and lv.workers == workers[-1]), None)
    if target is not None and target.lat_ms.size and not server_backend.native:
        print(f"target p99 < {TARGET_P99_MS:g} ms for /vectors/search at {TARGET_CLIENTS} "
              "clients: not judged (the server runs agentdb's numpy fallback; the target is "
              "for the native core)")
        out["target"] = {"p99_ms": target.pct(99), "met": None, "fallback": True}
    elif target is not None and target.lat_ms.size:
        p99 = target.pct(99) or 0.0
        met = p99 < TARGET_P99_MS and target.errors == 0
        print(f"target p99 < {TARGET_P99_MS:g} ms for /vectors/search at {TARGET_CLIENTS} "
              f"clients: {'MET' if met else 'NOT MET'} (p99 {p99:.2f} ms, "
              f"{target.errors} errors)")
        out["target"] = {"p99_ms": p99, "met": met}
    else:
        print(f"target: not measured (needs /vectors/search at {TARGET_CLIENTS} clients)")
    out["levels"] = [lv.summary() for lv in levels]
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
