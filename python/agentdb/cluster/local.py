"""A local AgentDB cluster on this machine: ``agentdb cluster up | status | down``.

:func:`up` starts a Ray head node (plus ``nodes - 1`` extra Ray nodes on the same machine)
bound to 127.0.0.1, an embedded PostgreSQL 16 + pgvector (:mod:`agentdb.storage.pgserver`)
unless a PostgreSQL URL is given, and creates the shard replica actors through
:class:`~agentdb.cluster.db.ClusterDB`. Everything outlives the calling process: the Ray
processes run in their own sessions, the replica actors and their placement groups are
*detached*, and PostgreSQL detaches from its caller. What was started is written to a state
file (``~/.agentdb/cluster.json``, or ``$AGENTDB_CLUSTER_STATE``) that :func:`status`,
:func:`connect` and :func:`down` read.

    >>> from agentdb.cluster import local
    >>> info = local.up(shards=3, replicas=2)          # doctest: +SKIP
    >>> db = local.connect()                           # doctest: +SKIP
    >>> db.store_pattern("parse ISO dates", reward=0.9)  # doctest: +SKIP
    >>> local.status()["shards"][0]["replicas"][0]["state"]  # doctest: +SKIP
    'ready'
    >>> local.down()                                   # doctest: +SKIP

How Ray is kept on loopback: Ray replaces 127.0.0.1 by the host's routable address unless
its "cluster mode" is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which every Ray process
started here inherits, so the GCS, raylets, object managers and workers all listen on
127.0.0.1 only). With cluster mode off ``ray start --address`` refuses to add a node, so extra
nodes are started by ``ray start`` run through a two-line shim that lifts that check and keeps
127.0.0.1 as the node address (:data:`_NODE_SHIM`); every node is a real raylet with its own
object store, so placement groups and node failures behave as on separate machines. On a
real multi-machine cluster none of this applies: see docs/cluster.md.

Stopping: :func:`down` does *not* run ``ray stop`` (which kills every Ray process of the
machine, other clusters' too). Each ``ray start`` runs in a new session whose id is
recorded; :func:`down` signals only the Ray processes of those sessions (raylets first, the
GCS last, like ``ray stop``), then stops the embedded PostgreSQL if :func:`up` started it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ClusterError, InvalidArgumentError
from . import EXTRA_HINT

__all__ = [
    "DEFAULT_STATE_FILE",
    "ENV_STATE",
    "ClusterError",
    "connect",
    "connect_ray",
    "down",
    "read_state",
    "state_path",
    "status",
    "up",
]

#: Environment variable naming the state file (default :data:`DEFAULT_STATE_FILE`).
ENV_STATE = "AGENTDB_CLUSTER_STATE"
#: Where :func:`up` records what it started.
DEFAULT_STATE_FILE = Path("~/.agentdb/cluster.json").expanduser()
#: Default folder of a local cluster's embedded PostgreSQL (``<data_dir>/postgres``).
DEFAULT_DATA_DIR = Path("~/.agentdb/cluster").expanduser()

_STATE_VERSION = 1
_START_TIMEOUT_S = 120.0
_OBJECT_STORE_BYTES = 512 * 1024 * 1024  # per node; replicas exchange only small objects

# ``ray start`` for an extra node on this machine: with cluster mode off (loopback) Ray
# refuses to add a node and would swap 127.0.0.1 for the routable address; lift both.
_NODE_SHIM = (
    "import sys\n"
    "from ray._private import ray_constants, services\n"
    "ray_constants.ENABLE_RAY_CLUSTER = True\n"
    "services.resolve_ip_for_localhost = lambda host: host\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv[0] = 'ray'\n"
    "sys.exit(main())\n"
)


Echo = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# --------------------------------------------------------------------------- state file


def state_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The state file: ``path``, else ``$AGENTDB_CLUSTER_STATE``, else
    :data:`DEFAULT_STATE_FILE`.

        >>> state_path("/tmp/c.json").name
        'c.json'
    """
    raw: Any = path
    if raw is None:
        raw = os.environ.get(ENV_STATE, "").strip() or DEFAULT_STATE_FILE
    return Path(raw).expanduser().resolve()


def read_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The recorded cluster, or :class:`ClusterError` when there is none (or it is corrupt)."""
    p = state_path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ClusterError(f"no local cluster: state file {p} not found "
                           "(start one with `agentdb cluster up`)") from None
    except OSError as exc:
        raise ClusterError(f"cannot read cluster state file {p}: {exc.strerror or exc}") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClusterError(f"cluster state file {p} is not valid JSON ({exc.msg}); remove it "
                           "if no cluster is running") from None
    if not isinstance(state, dict) or not isinstance(state.get("ray_address"), str):
        raise ClusterError(f"cluster state file {p} is not an AgentDB cluster state "
                           "(no ray_address); remove it if no cluster is running")
    return state


def _write_state(p: Path, state: dict[str, Any]) -> None:
    """Write atomically, readable by the owner only (the PostgreSQL URL may hold a password)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cluster-", suffix=".json", dir=str(p.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- helpers


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT} ({exc})", name=exc.name) from exc
    return ray


def _psutil() -> Any:
    try:
        import psutil
    except ImportError as exc:  # a dependency of pgserver, hence of the 'cluster' extra
        raise ImportError(f"{EXTRA_HINT} (psutil is missing)", name="psutil") from exc
    return psutil


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not _port_open("127.0.0.1", port, 0.5)


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _package_root() -> str:
    """The folder holding the ``agentdb`` package (put on the Ray workers' PYTHONPATH so an
    in-tree checkout works without installing it)."""
    return str(Path(__file__).resolve().parents[2])


def _ray_env(auth_mode: str) -> dict[str, str]:
    """Environment of the Ray processes of a local cluster."""
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep every address on 127.0.0.1
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_AUTH_MODE"] = auth_mode
    root = _package_root()
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


def _tail(text: str, lines: int = 3) -> str:
    """The last meaningful lines of a command's output, on one line."""
    kept = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])[-600:]


def _run_ray_start(args: list[str], env: dict[str, str], what: str,
                   timeout: float) -> int:
    """Run one ``ray start`` in a new session; returns that session's id (= the pid of the
    ``ray start`` process): every Ray process it leaves running belongs to it."""
    try:
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    except OSError as exc:
        raise ClusterError(f"cannot run `ray start` for the {what}: {exc}") from None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        _stop_sessions([proc.pid], grace=5.0)
        raise ClusterError(f"`ray start` for the {what} did not finish within {timeout:g}s: "
                           f"{_tail(out)}") from None
    if proc.returncode != 0:
        _stop_sessions([proc.pid], grace=5.0)
        raise ClusterError(f"`ray start` for the {what} failed (exit {proc.returncode}): "
                           f"{_tail(out)}")
    return proc.pid


def _ray_command() -> list[str]:
    """``ray`` of this interpreter's environment (not whichever is first on PATH)."""
    return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; "
            "sys.argv[0] = 'ray'; sys.exit(main())"]


def _session_processes(sessions: list[int]) -> list[Any]:
    """Live Ray processes of the given session ids (this user's)."""
    psutil = _psutil()
    wanted = {int(s) for s in sessions}
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        pid = proc.info["pid"]
        if pid in (me, 1):
            continue
        try:
            if os.getsid(pid) not in wanted:
                continue
        except OSError:  # gone, or not ours to inspect
            continue
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join([proc.info.get("name") or "", *(proc.info.get("cmdline") or [])])
        if "ray" in text:  # gcs_server, raylet, ray::<Actor>, python -m ray..., ray/...
            found.append(proc)
    return found


def _is_raylet(proc: Any) -> bool:
    name = proc.info.get("name") or ""
    cmd = proc.info.get("cmdline") or [""]
    return name == "raylet" or cmd[0].endswith("/raylet")


def _is_gcs(proc: Any) -> bool:
    name = proc.info.get("name") or ""
    cmd = proc.info.get("cmdline") or [""]
    return name == "gcs_server" or cmd[0].endswith("/gcs_server")


def _stop_sessions(sessions: list[int], grace: float = 10.0) -> int:
    """Stop the Ray processes of ``sessions`` the way ``ray stop`` orders it (raylets, then
    the rest, the GCS last), SIGTERM then SIGKILL after ``grace`` seconds per step.
    Returns how many processes were found."""
    psutil = _psutil()
    procs = _session_processes(sessions)
    if not procs:
        return 0
    steps = [[p for p in procs if _is_raylet(p)],
             [p for p in procs if not _is_raylet(p) and not _is_gcs(p)],
             [p for p in procs if _is_gcs(p)]]
    for step in steps:
        for p in step:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(step, timeout=grace / 3)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
    # Workers started meanwhile (the raylet restarts its agents while dying) and stragglers.
    for _ in range(3):
        left = _session_processes(sessions)
        if not left:
            break
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=5)
    return len(procs)


# --------------------------------------------------------------------------- ray driver


def connect_ray(address: str, namespace: str, *, auth_mode: str | None = None) -> Any:
    """``ray.init`` on the local cluster at ``address`` (``host:port``) from this process,
    keeping loopback addresses as they are. Returns the ``ray`` module. A no-op when Ray
    is already initialised here."""
    host, port = _split_address(address)
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if loopback:
        # Read by Ray at import and by processes started from here; patch the imported
        # constant too, or Ray swaps 127.0.0.1 for the routable address and cannot connect.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if auth_mode and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = auth_mode
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _require_ray()
    if ray.is_initialized():
        return ray
    if loopback:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    if not _port_open(host if host != "localhost" else "127.0.0.1", port):
        raise ClusterError(f"no Ray cluster answers at {address} (stopped? run "
                           "`agentdb cluster down` to clean up, then `agentdb cluster up`)")
    try:
        ray.init(address=address, namespace=namespace, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    except Exception as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    return ray


def _cluster_db_class() -> Any:
    try:
        from .db import ClusterDB
    except ImportError as exc:
        if exc.name in ("ray", "psycopg", "psycopg_pool", "pgvector"):
            raise ImportError(f"{EXTRA_HINT} ({exc})", name=exc.name) from exc
        raise
    return ClusterDB


# --------------------------------------------------------------------------- up


def _stale(state: dict[str, Any]) -> bool:
    """True when the recorded cluster is gone (no process left and no GCS answering)."""
    host, port = _split_address(state["ray_address"])
    if _port_open(host, port, 0.5):
        return False
    try:
        return not _session_processes(list(state.get("ray_sessions") or []))
    except ImportError:
        return True


def up(*, shards: int = 3, replicas: int = 2, postgres_url: str | None = None,
       data_dir: str | os.PathLike[str] | None = None, nodes: int = 1, port: int = 6379,
       namespace: str = "agentdb", dim: int | None = None, schema: str = "public",
       table_prefix: str = "", num_cpus: int | None = None,
       object_store_memory: int = _OBJECT_STORE_BYTES, pgvector_index: bool = True,
       ready_timeout: float = 180.0, state_file: str | os.PathLike[str] | None = None,
       echo: Echo | None = None, pg_standbys: int = 0) -> dict[str, Any]:
    """Start a local cluster; returns what :func:`status` returns plus what was started.

    * Ray head on ``127.0.0.1:port`` (+ ``nodes - 1`` nodes on this machine), each node with
      ``num_cpus`` CPUs (default: this machine's CPUs split between the nodes, at least 1) and
      an object store of ``object_store_memory`` bytes;
    * PostgreSQL: ``postgres_url``, else an embedded server on ``<data_dir>/postgres``
      (``data_dir`` default ``~/.agentdb/cluster``), started if it is not running; with
      ``pg_standbys=N`` (N >= 1) instead a primary + N synchronous standbys failed over by
      Patroni + etcd in ``<data_dir>/postgres-ha`` (:mod:`.pg_ha`), reached through a
      multi-host URL;
    * the replica actors of ``shards`` x ``replicas`` through ``ClusterDB`` (a data set that
      already has a cluster ring keeps its shards and replicas; the result shows the real
      layout), ready before this returns.

    Raises :class:`ClusterError` (nothing is left running) on failure, and when the state
    file names a cluster that is still running.
    """
    say = echo or _quiet
    for label, v, lo in (("shards", shards, 1), ("replicas", replicas, 1), ("nodes", nodes, 1),
                         ("port", port, 1024), ("pg_standbys", pg_standbys, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InvalidArgumentError(f"{label} must be an integer >= {lo}, got {v!r}")
    if port > 65535:
        raise InvalidArgumentError(f"port must be <= 65535, got {port}")
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int)
                                 or num_cpus < 1):
        raise InvalidArgumentError(f"num_cpus must be an integer >= 1, got {num_cpus!r}")
    if object_store_memory < 80 * 1024 * 1024:
        raise InvalidArgumentError("object_store_memory must be at least 80 MiB (Ray's minimum)")
    _require_ray()
    _psutil()
    sp = state_path(state_file)
    old: dict[str, Any] | None = None
    if sp.exists():
        try:
            old = read_state(sp)
        except ClusterError:
            old = None
        if old is not None and not _stale(old):
            raise ClusterError(f"a local cluster is already running at {old['ray_address']} "
                               f"(state file {sp}): run `agentdb cluster down` first")
        say(f"removing stale state file {sp}")
        with contextlib.suppress(FileNotFoundError):
            sp.unlink()
    if not _port_free(port):
        raise ClusterError(f"port {port} on 127.0.0.1 is in use: choose another with --port")
    if postgres_url is not None:
        if pg_standbys:
            raise InvalidArgumentError("pg_standbys starts a PostgreSQL group of its own: it "
                                       "cannot be combined with postgres_url")
        _check_postgres(postgres_url)

    auth_mode = os.environ.get("RAY_AUTH_MODE", "").strip() or "disabled"
    env = _ray_env(auth_mode)
    per_node = num_cpus or max(1, (os.cpu_count() or 1) // nodes)
    temp_dir = Path(tempfile.gettempdir()) / f"agentdb-ray-{os.getuid()}-{port}"
    address = f"127.0.0.1:{port}"
    sessions: list[int] = []
    pg_dir: Path | None = None
    ha_dir: Path | None = None
    pg_started = False
    state: dict[str, Any] = {}
    warnings: list[str] = []
    try:
        say(f"starting Ray head on {address}")
        taken = {port}  # a port picked here is not bound until Ray starts: never pick twice

        def fresh() -> int:
            for _ in range(100):
                p = _free_port()
                if p not in taken:
                    taken.add(p)
                    return p
            raise ClusterError("no free port on 127.0.0.1")

        client_port = fresh()
        sessions.append(_run_ray_start([
            *_ray_command(), "start", "--head", "--node-ip-address=127.0.0.1",
            f"--port={port}", "--include-dashboard=false", "--disable-usage-stats",
            f"--dashboard-port={fresh()}", f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={fresh()}", "--min-worker-port=0",
            "--max-worker-port=0", f"--num-cpus={per_node}",
            f"--object-store-memory={int(object_store_memory)}", f"--temp-dir={temp_dir}",
        ], env, "head node", _START_TIMEOUT_S))
        for i in range(1, nodes):
            say(f"starting Ray node {i + 1}/{nodes}")
            sessions.append(_run_ray_start([
                sys.executable, "-c", _NODE_SHIM, "start", f"--address={address}",
                "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                f"--dashboard-agent-listen-port={fresh()}", "--min-worker-port=0",
                "--max-worker-port=0", f"--num-cpus={per_node}",
                f"--object-store-memory={int(object_store_memory)}",
            ], env, f"node {i + 1}", _START_TIMEOUT_S))
        url = postgres_url
        if url is None and pg_standbys:
            from .pg_ha import LocalHAPostgres

            ha_dir = Path(data_dir or os.environ.get("AGENTDB_CLUSTER_DATA", "").strip()
                          or DEFAULT_DATA_DIR).expanduser().resolve() / "postgres-ha"
            ha = LocalHAPostgres(ha_dir, standbys=pg_standbys, echo=say)
            was_running = ha.running()
            say(f"{'using' if was_running else 'starting'} PostgreSQL with {pg_standbys} "
                f"synchronous standby(s) under Patroni + etcd in {ha_dir}")
            url = ha.start()
            pg_started = True
        elif url is None:
            from ..storage import pgserver as pgs

            pg_dir = Path(data_dir or os.environ.get("AGENTDB_CLUSTER_DATA", "").strip()
                          or DEFAULT_DATA_DIR).expanduser().resolve() / "postgres"
            try:
                was_running = bool(pg_dir.is_dir() and pgs.status(pg_dir)["running"])
                say(f"{'using' if was_running else 'starting'} embedded PostgreSQL on {pg_dir}")
                url = pgs.start(pg_dir)
            except ImportError as exc:
                raise ClusterError(f"{EXTRA_HINT} ({exc})") from None
            except (RuntimeError, ValueError, OSError) as exc:
                raise ClusterError(" ".join(str(exc).split())) from None
            # A server left running by an earlier `up` whose Ray is gone is still ours to stop.
            pg_started = not was_running or bool(
                old and old.get("postgres_started")
                and old.get("postgres_data_dir") == str(pg_dir))
        state = {
            "version": _STATE_VERSION, "ray_address": address,
            "ray_client_address": f"ray://127.0.0.1:{client_port}",
            "ray_temp_dir": str(temp_dir), "ray_sessions": sessions, "nodes": nodes,
            "num_cpus_per_node": per_node, "auth_mode": auth_mode,
            "postgres_url": url, "postgres_data_dir": str(pg_dir) if pg_dir else None,
            "postgres_started": pg_started, "postgres_ha_dir": str(ha_dir) if ha_dir else None,
            "pg_standbys": pg_standbys, "namespace": namespace, "schema": schema,
            "table_prefix": table_prefix, "shards": shards, "replicas": replicas,
            "created_at": time.time(),
        }
        _write_state(sp, state)  # written early: `down` can clean up after a failure below
        say(f"creating {shards} shards x {replicas} replicas")
        ray = connect_ray(address, namespace, auth_mode=auth_mode)
        quiet = logging.getLogger("ray.actor")  # "restartable detached actor in a placement
        level = quiet.level                      # group" warning: expected here, not news
        quiet.setLevel(logging.ERROR)
        try:
            started = time.monotonic()
            db = _cluster_db_class()(
                None, url, shards=shards, replicas=replicas, dim=dim, schema=schema,
                table_prefix=table_prefix, namespace=namespace, ready_timeout=ready_timeout,
                pgvector_index=pgvector_index)
            try:  # the constructor waits for one ready replica per shard; `up` for all
                db.wait_ready(max(1.0, ready_timeout - (time.monotonic() - started)))
                info = _collect_status(ray, state)
            finally:
                db.close()
        finally:
            quiet.setLevel(level)
            ray.shutdown()
        layout = info.get("ring") or {}
        state["shards"] = len(layout.get("shards") or []) or shards
        state["replicas"] = max((len(s["replicas"]) for s in info["shards"]), default=replicas)
        _write_state(sp, state)
        if (state["shards"], state["replicas"]) != (shards, replicas):
            warnings.append(
                f"the data in PostgreSQL already belongs to a cluster of {state['shards']} "
                f"shards x {state['replicas']} replicas, which it keeps (asked for {shards} x "
                f"{replicas}); use another --data-dir / --table-prefix for a new cluster, or "
                "ClusterDB.add_shard() to grow it")
            say(f"warning: {warnings[-1]}")
    except BaseException as exc:
        _rollback(sessions, pg_dir if pg_started else None, sp, temp_dir,
                  ha_dir if pg_started else None, pg_standbys)
        if isinstance(exc, (ClusterError, ImportError, KeyboardInterrupt, SystemExit)):
            raise
        msg = " ".join(str(exc).split())[:500]
        raise ClusterError(f"cluster up failed: {type(exc).__name__}: {msg}") from exc
    return {**_public_state(state, sp), **info, "warnings": warnings}


def _rollback(sessions: list[int], pg_dir: Path | None, sp: Path, temp_dir: Path,
              ha_dir: Path | None = None, pg_standbys: int = 0) -> None:
    """Undo a failed :func:`up`: stop what it started and forget the state file."""
    if ha_dir is not None:
        with contextlib.suppress(Exception):
            from .pg_ha import LocalHAPostgres

            LocalHAPostgres(ha_dir, standbys=pg_standbys).stop()
    with contextlib.suppress(Exception):
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    with contextlib.suppress(Exception):
        _stop_sessions(sessions, grace=5.0)
    if pg_dir is not None:
        with contextlib.suppress(Exception):
            from ..storage import pgserver as pgs

            pgs.stop(pg_dir)
    with contextlib.suppress(FileNotFoundError):
        sp.unlink()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _check_postgres(url: str) -> None:
    """Fail fast (before starting Ray) when ``url`` does not accept connections."""
    try:
        import psycopg
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT} (psycopg is missing)", name="psycopg") from exc
    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ClusterError(f"cannot connect to PostgreSQL ({detail})") from None


def _public_state(state: dict[str, Any], sp: Path) -> dict[str, Any]:
    keep = ("ray_address", "ray_client_address", "postgres_url", "postgres_data_dir",
            "postgres_started", "namespace", "schema", "table_prefix", "replicas")
    return {"state_file": str(sp), **{k: state.get(k) for k in keep}}


# --------------------------------------------------------------------------- status


def _replica_handles_status(ray: Any, namespace: str, shard: int, replicas: int,
                            timeout: float) -> list[dict[str, Any]]:
    refs: list[tuple[int, Any]] = []
    out: dict[int, dict[str, Any]] = {}
    for r in range(replicas):
        name = f"{namespace}/shard{shard}/replica{r}"
        try:
            h = ray.get_actor(name, namespace=namespace)
        except ValueError:
            out[r] = {"replica": r, "state": "missing", "alive": False}
            continue
        try:
            ref = h.status.options(concurrency_group="control").remote()
        except Exception:  # an actor class without the "control" group
            ref = h.status.remote()
        refs.append((r, ref))
    deadline = time.monotonic() + timeout
    for r, ref in refs:
        try:
            st = dict(ray.get(ref, timeout=max(0.1, deadline - time.monotonic())), alive=True)
        except Exception as exc:
            cause = getattr(exc, "cause", None) or exc
            st = {"replica": r, "state": "unreachable", "alive": False,
                  "error": f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}"
                  if str(cause) else type(cause).__name__}
        out[r] = st
    return [out[r] for r in range(replicas)]


def _collect_status(ray: Any, state: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """What ``ClusterDB.status()`` returns, read-only: the ring and log position from
    PostgreSQL, each replica's own status by actor name, Ray's nodes. (A ``ClusterDB`` is not
    opened for this: its constructor (re)creates missing replicas and waits for them.)"""
    from .log import ClusterLog

    log = ClusterLog(state["postgres_url"], schema=state.get("schema", "public"),
                     table_prefix=state.get("table_prefix", ""))
    try:
        seq = log.max_seq()
        ring = log.load_ring() or {"shards": list(range(int(state.get("shards") or 0)))}
        stored_replicas = log.get_meta("replicas")
    finally:
        log.close()
    replicas = int(stored_replicas or state.get("replicas") or 1)
    namespace = state.get("namespace", "agentdb")
    shards = []
    for s in ring.get("shards", []):
        reps = []
        for st in _replica_handles_status(ray, namespace, int(s), replicas, timeout):
            applied = st.get("applied_seq")
            reps.append({"replica": st.get("replica"), "state": st.get("state"),
                         "applied_seq": applied,
                         "lag": None if applied is None else max(0, seq - int(applied)),
                         "vectors": st.get("vectors"), "node_id": st.get("node_id"),
                         "node_ip": st.get("node_ip"), "pid": st.get("pid"),
                         "alive": bool(st.get("alive")), "last_error": st.get("last_error"),
                         "error": st.get("error")})
        shards.append({"shard": int(s), "replicas": reps})
    nodes = [{"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
              "alive": bool(n.get("Alive")), "head": "node:__internal_head__" in
              (n.get("Resources") or {}), "resources": n.get("Resources", {})}
             for n in ray.nodes()]
    nodes.sort(key=lambda n: (not n["head"], not n["alive"], str(n["node_id"])))
    pg_members: list[dict[str, Any]] = []
    if state.get("postgres_ha_dir"):  # Patroni's view of the PostgreSQL group
        from .pg_ha import LocalHAPostgres

        with contextlib.suppress(Exception):
            ha = LocalHAPostgres(state["postgres_ha_dir"],
                                 standbys=int(state.get("pg_standbys") or 1))
            pg_members = [{k: m.get(k) for k in ("name", "role", "state", "port", "timeline",
                                                  "lag")} for m in ha.members()]
    return {"log_seq": seq, "ring": ring, "namespace": namespace, "shards": shards,
            "nodes": nodes, "postgres_members": pg_members}


def status(*, state_file: str | os.PathLike[str] | None = None,
           timeout: float = 3.0) -> dict[str, Any]:
    """The recorded cluster's layout and health: the state file's facts plus ``log_seq``,
    ``ring``, ``shards`` (each replica's ``state``, ``applied_seq``, ``lag``, ``vectors``,
    ``node_id``, ``node_ip``, ``alive``) and ``nodes``. :class:`ClusterError` when there is no
    cluster or it does not answer."""
    sp = state_path(state_file)
    state = read_state(sp)
    ray = connect_ray(state["ray_address"], state.get("namespace", "agentdb"),
                      auth_mode=state.get("auth_mode"))
    try:
        info = _collect_status(ray, state, timeout)
    except ClusterError:
        raise
    except Exception as exc:
        raise ClusterError(f"cannot read the cluster status: {type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:300]}") from None
    finally:
        ray.shutdown()
    return {**_public_state(state, sp), **info}


def connect(*, state_file: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """A :class:`~agentdb.cluster.db.ClusterDB` on the recorded local cluster (this process
    becomes a Ray driver of it). ``kwargs`` go to ``ClusterDB`` (e.g. ``ef_search``)."""
    state = read_state(state_file)
    connect_ray(state["ray_address"], state.get("namespace", "agentdb"),
                auth_mode=state.get("auth_mode"))
    cls = _cluster_db_class()
    opts = {"shards": state.get("shards", 3), "replicas": state.get("replicas", 2),
            "schema": state.get("schema", "public"),
            "table_prefix": state.get("table_prefix", ""),
            "namespace": state.get("namespace", "agentdb"), **kwargs}
    return cls(None, state["postgres_url"], **opts)


# --------------------------------------------------------------------------- resharding


def _reshard(state_file: str | os.PathLike[str] | None, change: Any) -> dict[str, Any]:
    """Run ``change(db)`` on a handle to the recorded cluster, record the new shard count,
    and disconnect; returns the change's result with the ring's shards."""
    sp = state_path(state_file)
    state = read_state(sp)
    db = connect(state_file=sp)
    try:
        result = change(db)
        shards = sorted(int(x) for x in db.ring.shards)
    finally:
        db.close()
        _disconnect(state["ray_address"])
    _write_state(sp, {**state, "shards": len(shards)})
    return {**result, "shards": shards}


def add_shard(*, state_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Add a shard to the recorded cluster online (``ClusterDB.add_shard``: its replicas
    load the keys they take over, then the ring switches): ``{"added", "shards"}``."""
    return _reshard(state_file, lambda db: {"added": int(db.add_shard())})


def remove_shard(shard: int | None = None, *,
                 state_file: str | os.PathLike[str] | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
    """Remove a shard (default: the highest id) online; its keys move to the others
    (``ClusterDB.remove_shard``): its report plus ``shards``."""
    return _reshard(state_file, lambda db: dict(db.remove_shard(shard, timeout)))


# --------------------------------------------------------------------------- down


def _disconnect(address: str) -> None:
    """``ray.shutdown()`` when this process is a driver of the cluster at ``address`` (or it
    would print the errors of the processes being stopped)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    try:
        gcs = ray.get_runtime_context().gcs_address
    except Exception:
        gcs = None
    if gcs is None or gcs == address or gcs.endswith(f":{_split_address(address)[1]}"):
        ray.shutdown()


def down(*, state_file: str | os.PathLike[str] | None = None,
         grace: float = 10.0) -> dict[str, Any]:
    """Stop the recorded cluster: its Ray processes (only those :func:`up` started), the
    embedded PostgreSQL if :func:`up` started it (its data stays), Ray's temporary folder;
    then remove the state file. :class:`ClusterError` when there is no state file."""
    sp = state_path(state_file)
    state = read_state(sp)
    _disconnect(state["ray_address"])
    sessions = [int(s) for s in state.get("ray_sessions") or []]
    stopped = _stop_sessions(sessions, grace=grace) if sessions else 0
    left = _session_processes(sessions) if sessions else []
    if left:
        raise ClusterError(f"{len(left)} Ray processes of the cluster are still running "
                           f"(pids {', '.join(str(p.pid) for p in left[:8])}); state file "
                           f"{sp} kept")
    pg_stopped = False
    if state.get("postgres_started") and state.get("postgres_ha_dir"):
        from .pg_ha import LocalHAPostgres

        try:
            LocalHAPostgres(state["postgres_ha_dir"],
                            standbys=int(state.get("pg_standbys") or 1)).stop()
            pg_stopped = True
        except Exception as exc:
            raise ClusterError(f"Ray stopped, but the PostgreSQL group in "
                               f"{state['postgres_ha_dir']} did not stop: "
                               f"{' '.join(str(exc).split())[:300]}") from None
    elif state.get("postgres_started") and state.get("postgres_data_dir"):
        from ..storage import pgserver as pgs

        try:
            pg_stopped = pgs.stop(state["postgres_data_dir"])
        except Exception as exc:
            raise ClusterError(f"Ray stopped, but the embedded PostgreSQL on "
                               f"{state['postgres_data_dir']} did not stop: "
                               f"{' '.join(str(exc).split())[:300]}") from None
    temp_dir = state.get("ray_temp_dir")
    if temp_dir and Path(temp_dir).name.startswith("agentdb-ray-"):
        shutil.rmtree(temp_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        sp.unlink()
    return {"state_file": str(sp), "ray_address": state["ray_address"],
            "ray_processes_stopped": stopped, "postgres_stopped": pg_stopped,
            "postgres_data_dir": state.get("postgres_data_dir") or state.get("postgres_ha_dir")}
