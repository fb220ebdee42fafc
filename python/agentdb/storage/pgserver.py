"""An embedded PostgreSQL 16 + pgvector server for AgentDB (the ``postgres`` extra).

The server binaries (``postgres``, ``initdb``, ``pg_ctl`` and the pgvector extension) ship
inside the `pgserver <https://pypi.org/project/pgserver/>`_ wheel, so nothing else has to be
installed. The server listens on a unix socket only (no TCP port), in the data directory
itself (or, when that path is too long for a socket, in a per-user runtime directory).

    >>> from agentdb.storage import pgserver as pgs
    >>> url = pgs.start("/tmp/agentdb-pg")          # doctest: +SKIP
    >>> pgs.status("/tmp/agentdb-pg")["running"]     # doctest: +SKIP
    True
    >>> pgs.stop("/tmp/agentdb-pg")                  # doctest: +SKIP
    True

How it outlives the caller: ``pgserver.get_server(path, cleanup_mode=None)`` runs
``pg_ctl start``, whose postmaster detaches into its own session with its output going to
``DATA_DIR/log``; this module then drops pgserver's in-process handle (its ``atexit`` hook
and its entry in the per-data-dir handle list), so nothing stops the server when Python
exits. :func:`stop` finds it again through ``DATA_DIR/postmaster.pid`` and runs
``pg_ctl stop -m fast`` on the data directory. When run as root, pgserver runs the server
as a dedicated system user (``pgserver``, created if needed), who owns the data directory;
:func:`stop` runs ``pg_ctl`` as the data directory's owner for the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

from ..errors import InvalidArgumentError

__all__ = [
    "DEFAULT_DATA_DIR",
    "ENV_DATA_DIR",
    "EXTRA_HINT",
    "data_dir_path",
    "install",
    "start",
    "status",
    "stop",
]

#: Environment variable that overrides :data:`DEFAULT_DATA_DIR`.
ENV_DATA_DIR = "AGENTDB_POSTGRES_DATA"
#: Where the server keeps its data when neither an argument nor ``AGENTDB_POSTGRES_DATA``
#: names a directory.
DEFAULT_DATA_DIR = Path("~/.agentdb/postgres").expanduser()
#: The message of the ImportError raised when the ``postgres`` extra is missing.
EXTRA_HINT = (
    "PostgreSQL server commands need the 'postgres' extra: pip install 'agentdb[postgres]'"
)

_USER = "postgres"  # pgserver's initdb superuser (trust auth on the unix socket)
_DATABASE = "postgres"
_STOP_TIMEOUT_S = 60


# --------------------------------------------------------------------------- helpers


def _require() -> tuple[ModuleType, ModuleType]:
    """Import ``pgserver`` and ``psycopg`` or raise ImportError(:data:`EXTRA_HINT`)."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (pgserver reads it at import)
            warnings.simplefilter("ignore")
            import pgserver  # type: ignore[import-not-found, import-untyped, unused-ignore]
            import psycopg
    except ImportError as exc:
        raise ImportError(EXTRA_HINT, name=exc.name) from exc
    # pgserver logs failures (with the whole server log) on its logger; without a handler
    # Python's last-resort handler would print them. Errors raised here carry the gist.
    logger = logging.getLogger("pgserver")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    return pgserver, psycopg


def data_dir_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The absolute data directory: ``data_dir``, else ``$AGENTDB_POSTGRES_DATA``, else
    :data:`DEFAULT_DATA_DIR`. Nothing is created or checked.

        >>> data_dir_path("/srv/agentdb/pg").name
        'pg'
    """
    raw: Any = data_dir
    if raw is None:
        raw = os.environ.get(ENV_DATA_DIR, "").strip() or DEFAULT_DATA_DIR
    if not str(raw).strip():
        raise InvalidArgumentError("PostgreSQL data directory path is empty")
    return Path(raw).expanduser().resolve()


def _check_path(path: Path) -> None:
    """Raise ValueError when ``path`` (or the nearest existing ancestor) is not a directory."""
    if path.exists():
        if not path.is_dir():
            raise InvalidArgumentError(
                f"PostgreSQL data directory {path} exists but is not a directory")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidArgumentError(
            f"PostgreSQL data directory {path} is unusable: {parent} is not a directory"
        )


def _prepare(path: Path) -> None:
    """Check ``path`` is usable as a data directory and create it (with parents) if absent.

    Whitespace, quotes and backslashes are refused: pgserver passes the socket directory
    (the data directory) to ``postgres -k`` unquoted, so the server would not start.
    """
    if any(ch.isspace() or ch in "\"'\\" for ch in str(path)):
        raise InvalidArgumentError(
            f"PostgreSQL data directory {str(path)!r} contains whitespace, a quote or a "
            "backslash, which the embedded server cannot use: choose another path"
        )
    _check_path(path)
    if path.exists():
        if not (path / "PG_VERSION").is_file() and any(path.iterdir()):
            raise InvalidArgumentError(
                f"PostgreSQL data directory {path} is not empty and is not a PostgreSQL data "
                "directory (no PG_VERSION file): use an empty or new directory"
            )
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise PermissionError(
                errno.EACCES, "PostgreSQL data directory is not writable", str(path)
            )
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES,
            f"cannot create PostgreSQL data directory {path}: parent directory is not writable",
            str(parent),
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _read_pidfile(path: Path) -> list[str] | None:
    """Lines of ``path/postmaster.pid`` or None when there is no such file."""
    try:
        return (path / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None


def _is_postmaster(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) postgres process."""
    import psutil  # a pgserver dependency

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return "postgres" in proc.name()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # alive but not ours to inspect: assume it is the server
        return True


def _running(path: Path) -> dict[str, Any] | None:
    """Postmaster facts from ``postmaster.pid`` when its process is alive, else None."""
    lines = _read_pidfile(path)
    if not lines:
        return None
    try:
        pid = int(lines[0].strip())
    except ValueError:
        return None
    if not _is_postmaster(pid):
        return None
    field = [line.strip() for line in lines] + [""] * 8
    return {"pid": pid, "port": field[3], "socket_dir": field[4], "host": field[5],
            "state": field[7]}


def _url(info: dict[str, Any]) -> str:
    """psycopg/libpq connection URL for a running postmaster (unix socket when it has one)."""
    port = info["port"] or "5432"
    if info["socket_dir"]:
        host = quote(info["socket_dir"], safe="/")
        return f"postgresql://{_USER}@/{_DATABASE}?host={host}&port={port}"
    host = info["host"] or "127.0.0.1"
    return f"postgresql://{_USER}@{host}:{port}/{_DATABASE}"


def _log_tail(path: Path) -> str:
    """The last non-empty line of the server log, for one-line error messages."""
    try:
        lines = [ln.strip() for ln in (path / "log").read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def _server_lock(pgserver: ModuleType) -> Iterator[None]:
    """pgserver's inter-process lock (the one ``get_server`` takes), when it has one."""
    lock = getattr(getattr(pgserver, "PostgresServer", None), "_lock", None)
    if lock is None:
        yield
        return
    with lock:
        yield


def _clear_stale_pidfile(pgserver: ModuleType, path: Path) -> None:
    """Remove a ``postmaster.pid`` whose process is gone (crash, reboot, reused pid).

    pgserver would otherwise take a reused pid for a running server and hand out a URL
    that does not work.
    """
    with _server_lock(pgserver):
        if _read_pidfile(path) is not None and _running(path) is None:
            with contextlib.suppress(FileNotFoundError):
                (path / "postmaster.pid").unlink()


def _launch(pgserver: ModuleType, path: Path) -> None:
    """Start (or reuse) the server on ``path`` through pgserver, detached from this process."""
    cls = getattr(pgserver, "PostgresServer", None)
    instances: dict[Any, Any] = getattr(cls, "_instances", {})
    instances.pop(path, None)  # a handle from earlier in this process may be stale
    try:
        server = pgserver.get_server(path, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        what = "timed out" if isinstance(exc, subprocess.TimeoutExpired) else "failed"
        tail = _log_tail(path)
        raise RuntimeError(
            f"PostgreSQL server on {path} {what} to start"
            + (f": {tail}" if tail else "")
            + f" (log: {path / 'log'})"
        ) from exc
    # Let go of pgserver's handle so nothing stops the server when this process exits.
    with contextlib.suppress(Exception):
        atexit.unregister(server._cleanup)
    with contextlib.suppress(Exception):
        server.global_process_id_list.get_and_remove(os.getpid())
    instances.pop(path, None)


def _ensure_vector(psycopg: ModuleType, url: str) -> tuple[str, str]:
    """``CREATE EXTENSION IF NOT EXISTS vector``; returns (server version, pgvector version)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=30) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute(
            "SELECT current_setting('server_version'), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def _pg_ctl_user(path: Path) -> int | None:
    """As root, the data directory's owner (pg_ctl refuses to run as root); else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    owner = path.stat().st_uid
    return owner if owner != 0 else None


# --------------------------------------------------------------------------- public API


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describe the server on ``data_dir`` (default :func:`data_dir_path`); never starts it.

    Returns ``{"data_dir", "initialized", "running", "pid", "url", "postgres_version"}``;
    ``pid`` and ``url`` are None when it is not running, ``postgres_version`` is the data
    directory's major version (``"16"``) or None when it is not initialised.

        >>> status("/tmp/agentdb-pg")  # doctest: +SKIP
        {'data_dir': '/tmp/agentdb-pg', 'initialized': True, 'running': False, 'pid': None,
         'url': None, 'postgres_version': '16'}
    """
    path = data_dir_path(data_dir)
    _require()
    _check_path(path)
    version_file = path / "PG_VERSION"
    initialized = version_file.is_file()
    info = _running(path) if initialized else None
    return {
        "data_dir": str(path),
        "initialized": initialized,
        "running": info is not None,
        "pid": info["pid"] if info else None,
        "url": _url(info) if info else None,
        "postgres_version": version_file.read_text().strip() if initialized else None,
    }


def start(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start the server on ``data_dir`` (initialising it if needed), or reuse the one already
    running there; make sure pgvector is installed in the ``postgres`` database and return
    the connection URL. The server keeps running after this process exits: stop it with
    :func:`stop`.

        >>> import psycopg
        >>> url = start("/tmp/agentdb-pg")  # doctest: +SKIP
        >>> psycopg.connect(url).execute("SELECT 1").fetchone()  # doctest: +SKIP
        (1,)
    """
    path = data_dir_path(data_dir)
    pgserver, psycopg = _require()
    _prepare(path)
    _clear_stale_pidfile(pgserver, path)
    _launch(pgserver, path)
    info = _running(path)
    if info is None:
        tail = _log_tail(path)
        raise RuntimeError(
            f"PostgreSQL server on {path} is not running after start"
            + (f": {tail}" if tail else "")
            + f" (log: {path / 'log'})"
        )
    url = _url(info)
    _ensure_vector(psycopg, url)
    return url


def stop(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the server on ``data_dir`` with ``pg_ctl stop -m fast`` (open sessions are
    disconnected, data is flushed). True if one was running and is now stopped, False when
    none was running.

        >>> stop("/tmp/agentdb-pg")  # doctest: +SKIP
        True
        >>> stop("/tmp/agentdb-pg")  # doctest: +SKIP
        False
    """
    path = data_dir_path(data_dir)
    pgserver, _ = _require()
    _check_path(path)
    if not (path / "PG_VERSION").is_file():
        return False
    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    with _server_lock(pgserver):
        if _running(path) is None:
            return False
        cmd = [str(pg_ctl), "-D", str(path), "-m", "fast", "-w", "-t", str(_STOP_TIMEOUT_S),
               "stop"]
        user = _pg_ctl_user(path)
        kwargs: dict[str, Any] = {"user": user} if user is not None else {}
        proc = subprocess.run(cmd, cwd=str(path), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False, **kwargs)
        if proc.returncode != 0 and user is not None and _running(path) is not None:
            # pg_ctl ran as the server's unprivileged user and could not reach the data
            # directory (a parent folder lost its traverse permission since the start; the
            # server itself works inside it): ask for the same fast shutdown by signal
            _signal_fast_shutdown(path)
        if proc.returncode != 0 and _running(path) is not None:
            detail = " ".join((proc.stderr or proc.stdout).split())
            raise RuntimeError(f"could not stop PostgreSQL server on {path}: {detail}")
    return True


def _signal_fast_shutdown(path: Path) -> None:
    """SIGINT to the postmaster of ``path`` (PostgreSQL's "fast" shutdown, what ``pg_ctl stop
    -m fast`` sends), then wait up to the stop timeout for it to exit."""
    import signal
    import time

    info = _running(path)
    if info is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(info["pid"], signal.SIGINT)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline and _running(path) is not None:
        time.sleep(0.1)


def install(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Initialise the data directory if needed, start the server briefly and create the
    pgvector extension to prove it works. Leaves the server stopped unless it was already
    running.

    Returns ``{"data_dir", "postgres_version", "pgvector_version", "url"}``; ``url`` is
    the one :func:`start` returns (it only connects while the server runs).

        >>> install("/tmp/agentdb-pg")  # doctest: +SKIP
        {'data_dir': '/tmp/agentdb-pg', 'postgres_version': '16.2', 'pgvector_version': '0.6.2',
         'url': 'postgresql://postgres@/postgres?host=/tmp/agentdb-pg&port=5432'}
    """
    path = data_dir_path(data_dir)
    pgserver, psycopg = _require()
    _prepare(path)
    was_running = _running(path) is not None
    try:
        url = start(path)
        pg_version, vector_version = _ensure_vector(psycopg, url)
    finally:
        if not was_running:
            stop(path)
    return {"data_dir": str(path), "postgres_version": pg_version,
            "pgvector_version": vector_version, "url": url}
