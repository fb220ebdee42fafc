"""PostgreSQL that outlives its primary: Patroni + etcd on this machine (``--pg-standbys N``).

The cluster's records and its ordered log live in PostgreSQL. :class:`LocalHAPostgres` runs
that PostgreSQL as a primary with ``standbys`` synchronous streaming standbys, failed over by
`Patroni <https://patroni.readthedocs.io>`_ with a one-member etcd as its lock store -- both
maintained projects, nothing home-made decides who is primary. Every process here listens on
127.0.0.1 only. The PostgreSQL binaries (16, with pgvector) are the embedded server's
(``pgserver``); etcd is Debian's ``etcd-server`` (or any ``etcd`` on ``PATH`` /
``$AGENTDB_ETCD``); Patroni comes with the ``cluster`` extra.

How it fails over: Patroni checks its PostgreSQL every second (``loop_wait: 1``). When the
primary's server dies, ``primary_start_timeout: 0`` makes its Patroni hand the leader lock to
the synchronous standby instead of restarting it (a few seconds). When a whole member is lost
(Patroni too), its lock expires after ``ttl`` (20 s, Patroni's minimum) and a standby takes
it. ``synchronous_mode`` means a commit is acknowledged only once a standby has it, and
Patroni only promotes a synchronous standby, so no acknowledged write is lost. The old
primary rejoins as a standby (``pg_rewind``, or a fresh copy when that fails).

Clients reach the primary through :attr:`LocalHAPostgres.url`, a multi-host URL with
``target_session_attrs=read-write``: libpq tries each member and keeps the one that accepts
writes, so a reconnect after a failover lands on the new primary by itself.

    >>> from agentdb.cluster.pg_ha import LocalHAPostgres
    >>> ha = LocalHAPostgres("/tmp/agentdb-ha", standbys=1)   # doctest: +SKIP
    >>> url = ha.start()                                        # doctest: +SKIP
    >>> ha.primary()["name"]                                    # doctest: +SKIP
    'pg0'
    >>> ha.stop()                                               # doctest: +SKIP

A run as root starts Patroni (and so PostgreSQL, which refuses root) as the unprivileged
system user ``pgserver``, as the embedded server does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ClusterError, InvalidArgumentError

__all__ = ["ETCD_HINT", "PATRONI_HINT", "LocalHAPostgres", "etcd_binary"]

ETCD_HINT = ("PostgreSQL failover needs etcd: install Debian's etcd-server "
             "(apt-get install etcd-server), or set AGENTDB_ETCD to an etcd binary")
PATRONI_HINT = ("PostgreSQL failover needs Patroni, which comes with the 'cluster' extra: "
                "pip install 'agentdb[cluster]'")
_STATE = "ha.json"
_RUN_AS = "pgserver"  # the unprivileged user the embedded server runs as under root
_SUN_PATH_MAX = 107  # bytes of a Unix-domain socket's path (sockaddr_un.sun_path, Linux)
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def etcd_binary() -> str:
    """The etcd executable: ``$AGENTDB_ETCD``, else ``etcd`` on ``PATH``; ClusterError naming
    the package otherwise.

    >>> etcd_binary()  # doctest: +SKIP
    '/usr/bin/etcd'
    """
    env = os.environ.get("AGENTDB_ETCD", "").strip()
    found = env if env and os.access(env, os.X_OK) else shutil.which("etcd")
    if not found:
        raise ClusterError(ETCD_HINT)
    return found


def _patroni_available() -> None:
    try:
        import patroni  # noqa: F401
        import yaml  # noqa: F401  (Patroni's own dependency; writes the member configs)
    except ImportError as exc:
        raise ClusterError(f"{PATRONI_HINT} ({exc})") from None


def _bin_dir() -> Path:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import pgserver  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        raise ClusterError(f"{PATRONI_HINT} (pgserver is missing: {exc})") from None
    path = Path(pgserver.__file__).parent / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise ClusterError(f"the embedded PostgreSQL binaries are missing from {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, decoded body) of a GET on loopback; (0, None) when nothing answers."""
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:  # Patroni answers 503 with a JSON body
        try:
            return int(exc.code), json.loads(exc.read() or b"null")
        except ValueError:
            return int(exc.code), None
    except (OSError, ValueError):
        return 0, None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LocalHAPostgres:
    """etcd + ``standbys + 1`` Patroni-managed PostgreSQL members under ``data_dir``.

    ``start()`` starts what is not running (a second call, or a call on a directory an earlier
    run left, resumes the same members and data) and returns :attr:`url`; ``stop()`` stops
    them (data kept). The processes run in sessions of their own, so they outlive the caller
    (``agentdb cluster up --pg-standbys N`` relies on it); ``data_dir/ha.json`` records ports,
    pids and the generated passwords (mode 0600).

    >>> LocalHAPostgres("/tmp/x", standbys=-1)
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: standbys must be an integer >= 0, got -1
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, standbys: int = 1,
                 scope: str = "agentdb", echo: Callable[[str], None] | None = None) -> None:
        if isinstance(standbys, bool) or not isinstance(standbys, int) or standbys < 0:
            raise InvalidArgumentError(f"standbys must be an integer >= 0, got {standbys!r}")
        if not scope.replace("-", "").replace("_", "").isalnum():
            raise InvalidArgumentError(f"scope must be letters, digits, '-' or '_', got {scope!r}")
        self.dir = Path(data_dir).expanduser().resolve()
        if any(ch.isspace() or ch in "\"'\\" for ch in str(self.dir)):
            raise InvalidArgumentError(f"data directory {str(self.dir)!r} contains whitespace, "
                                       "a quote or a backslash: choose another path")
        self.standbys = standbys
        self.scope = scope
        self._say = echo or (lambda _m: None)
        self.state: dict[str, Any] = {}
        sp = self.dir / _STATE
        if sp.exists():
            self.state = json.loads(sp.read_text())
            if len(self.state.get("members", [])) != standbys + 1:
                raise InvalidArgumentError(
                    f"{self.dir} holds {len(self.state['members'])} PostgreSQL members; "
                    f"asked for {standbys + 1} (standbys={standbys})")

    # ---- state --------------------------------------------------------------------------------
    def _save(self) -> None:
        sp = self.dir / _STATE
        tmp = sp.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.state, f, indent=1, sort_keys=True)
        os.replace(tmp, sp)

    def _init_state(self) -> None:
        if self.state:
            return
        ports: list[int] = []
        while len(ports) < 2 * (self.standbys + 2):  # distinct: none is bound before use
            p = _free_port()
            if p not in ports:
                ports.append(p)
        self.state = {
            "scope": self.scope,
            "etcd": {"client_port": ports[0], "peer_port": ports[1], "pid": None},
            "superuser_password": secrets.token_urlsafe(18),
            "replication_password": secrets.token_urlsafe(18),
            "members": [{"name": f"pg{i}", "pg_port": ports[2 + 2 * i],
                         "api_port": ports[3 + 2 * i], "pid": None}
                        for i in range(self.standbys + 1)],
        }

    @property
    def url(self) -> str:
        """The multi-host URL of the whole group; libpq picks the member that takes writes.

        >>> # ha.url -> 'postgresql://postgres:...@127.0.0.1:5433,127.0.0.1:5434/postgres?...'
        """
        if not self.state:
            raise ClusterError(f"no PostgreSQL group in {self.dir}: call start() first")
        hosts = ",".join(f"127.0.0.1:{m['pg_port']}" for m in self.state["members"])
        return (f"postgresql://postgres:{self.state['superuser_password']}@{hosts}/postgres"
                "?target_session_attrs=read-write&connect_timeout=2")

    # ---- processes ----------------------------------------------------------------------------
    def _run_as(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        import pwd

        from pgserver.utils import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
            ensure_prefix_permissions,
            ensure_user_exists,
        )
        ensure_user_exists(_RUN_AS)
        entry = pwd.getpwnam(_RUN_AS)
        import patroni
        import yaml

        for p in (self.dir, Path(patroni.__file__).parent, Path(yaml.__file__).parent,
                  Path(sys.executable).resolve(), _bin_dir()):
            ensure_prefix_permissions(p)  # the user must reach the interpreter and packages
        return entry.pw_uid, entry.pw_gid

    def _spawn(self, args: list[str], log_path: Path, user: tuple[int, int] | None,
               env: dict[str, str] | None = None) -> int:
        with open(log_path, "ab") as log:
            if user is not None:
                os.chown(log_path, *user)
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=str(self.dir),
                env=env, user=user[0] if user else None, group=user[1] if user else None,
                extra_groups=[] if user else None)
        return int(proc.pid)

    def _start_etcd(self) -> None:
        e = self.state["etcd"]
        if _alive(e.get("pid")):
            return
        binary = etcd_binary()
        c, p = e["client_port"], e["peer_port"]
        self._say(f"starting etcd on 127.0.0.1:{c}")
        e["pid"] = self._spawn([
            binary, "--name", "agentdb-etcd", "--data-dir", str(self.dir / "etcd"),
            f"--listen-client-urls=http://127.0.0.1:{c}",
            f"--advertise-client-urls=http://127.0.0.1:{c}",
            f"--listen-peer-urls=http://127.0.0.1:{p}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
            f"--initial-cluster=agentdb-etcd=http://127.0.0.1:{p}",
            "--initial-cluster-state=new", "--logger=zap", "--log-level=warn",
        ], self.dir / "etcd.log", None)
        self._save()
        deadline = time.monotonic() + 30
        while _get_json(f"http://127.0.0.1:{c}/version", 1.0)[0] != 200:
            if not _alive(e["pid"]) or time.monotonic() > deadline:
                raise ClusterError(f"etcd did not start: {self._tail('etcd.log')}")
            time.sleep(0.1)

    @property
    def socket_dir(self) -> Path:
        """Where the members' Unix-domain sockets live: ``<dir>/sock``, or, when that path is
        too long for a socket (``sun_path`` holds 107 bytes, and PostgreSQL refuses to start
        without its socket), a folder in the system's temporary directory named after
        ``dir`` (so a restart finds the same one), removed by :meth:`stop`.

        >>> len(str(LocalHAPostgres("/tmp/" + "x" * 120).socket_dir)) < 90
        True
        """
        sock = self.dir / "sock"
        if len(os.fsencode(sock)) + len("/.s.PGSQL.65535") <= _SUN_PATH_MAX:
            return sock
        tag = hashlib.sha256(os.fsencode(self.dir.resolve())).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"agentdb-pg-{tag}"

    def _config(self, m: dict[str, Any]) -> dict[str, Any]:
        sock = self.socket_dir
        return {
            "scope": self.state["scope"], "namespace": "/agentdb/", "name": m["name"],
            "log": {"level": "WARNING"},
            "restapi": {"listen": f"127.0.0.1:{m['api_port']}",
                        "connect_address": f"127.0.0.1:{m['api_port']}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.state['etcd']['client_port']}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": 20, "loop_wait": 1, "retry_timeout": 5,
                    "primary_start_timeout": 0, "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "synchronous_mode": self.standbys > 0, "synchronous_node_count": 1,
                    "postgresql": {
                        "use_pg_rewind": True, "use_slots": True,
                        "parameters": {"max_connections": 300, "wal_log_hints": "on",
                                       "max_wal_senders": 10, "max_replication_slots": 10,
                                       "wal_keep_size": "256MB", "shared_buffers": "64MB",
                                       "hot_standby": "on", "synchronous_commit": "on"},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{m['pg_port']}",
                "connect_address": f"127.0.0.1:{m['pg_port']}",
                "data_dir": str(self.dir / m["name"]), "bin_dir": str(_bin_dir()),
                "pgpass": str(self.dir / f"{m['name']}.pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres",
                                  "password": self.state["superuser_password"]},
                    "replication": {"username": "replicator",
                                    "password": self.state["replication_password"]},
                },
                "pg_hba": ["local all all trust",
                           "host all all 127.0.0.1/32 scram-sha-256",
                           "host replication replicator 127.0.0.1/32 scram-sha-256"],
                "parameters": {"unix_socket_directories": str(sock)},
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
        }

    def _start_member(self, m: dict[str, Any], user: tuple[int, int] | None) -> None:
        if _alive(m.get("pid")):
            return
        import yaml

        cfg = self.dir / f"{m['name']}.yml"
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(self._config(m), f, sort_keys=False)
        sock = self.socket_dir
        sock.mkdir(exist_ok=True, mode=0o700)
        if user is not None:
            for p in (cfg, sock, self.dir):
                os.chown(p, *user)
            if (self.dir / m["name"]).exists():
                os.chown(self.dir / m["name"], *user)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["HOME"] = str(self.dir)
        self._say(f"starting PostgreSQL member {m['name']} on 127.0.0.1:{m['pg_port']} "
                  f"(Patroni API {m['api_port']})")
        m["pid"] = self._spawn([sys.executable, "-m", "patroni", str(cfg)],
                               self.dir / f"{m['name']}.log", user, env)
        self._save()

    def _tail(self, name: str, lines: int = 8) -> str:
        try:
            text = (self.dir / name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        # PostgreSQL's own FATAL/ERROR lines first: they say why, the last lines only where
        errors = [line for line in text if " FATAL: " in line or " ERROR: " in line][-3:]
        return " | ".join(errors + [line for line in text[-lines:] if line not in errors])[-2000:]

    def start(self, timeout: float = 180.0) -> str:
        """Start etcd and every member that is not running; wait until a primary runs and
        every standby streams (one of them synchronous); return :attr:`url`.

        >>> # url = LocalHAPostgres(path, standbys=2).start()
        """
        _patroni_available()
        _bin_dir()
        etcd_binary()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._init_state()
        self._save()
        user = self._run_as()
        self._start_etcd()
        deadline = time.monotonic() + timeout
        first, *rest = self.state["members"]
        bootstrapped = (self.dir / first["name"] / "PG_VERSION").exists()
        self._start_member(first, user)
        if not bootstrapped:  # the first member initialises; the others copy it
            self._wait(lambda ms: any(x["role"] == "leader" and x["state"] == "running"
                                      for x in ms), deadline, "the first member to bootstrap")
        for m in rest:
            self._start_member(m, user)
        self.wait_ready(max(1.0, deadline - time.monotonic()))
        return self.url

    # ---- views --------------------------------------------------------------------------------
    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the group: ``name``, ``role`` (``leader`` / ``sync_standby`` /
        ``replica``), ``state`` (``running`` / ``streaming`` / ...), ``port``, ``lag``,
        ``timeline``, plus ``pid`` (of the member's Patroni) and ``api_port``; ``[]`` when no
        member answers."""
        for m in self.state.get("members", []):
            code, body = _get_json(f"http://127.0.0.1:{m['api_port']}/cluster", 1.0)
            if code == 200 and isinstance(body, dict):
                by_name = {x["name"]: x for x in self.state["members"]}
                out = []
                for x in body.get("members", []):
                    own = by_name.get(x.get("name"), {})
                    out.append({**x, "pid": own.get("pid"), "api_port": own.get("api_port")})
                return out
        return []

    def primary(self) -> dict[str, Any] | None:
        """The member holding the leader lock with a running server, or None."""
        for x in self.members():
            if x.get("role") == "leader" and x.get("state") == "running":
                return x
        return None

    def _wait(self, ok: Callable[[list[dict[str, Any]]], bool], deadline: float,
              what: str) -> list[dict[str, Any]]:
        while True:
            ms = self.members()
            if ok(ms):
                return ms
            for m in self.state["members"]:
                if m.get("pid") and not _alive(m["pid"]):
                    raise ClusterError(f"Patroni member {m['name']} exited: "
                                       f"{self._tail(m['name'] + '.log')}")
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}; members: "
                                   f"{[(x['name'], x['role'], x['state']) for x in ms]}; "
                                   f"last log lines: {self._tail('pg0.log')}")
            time.sleep(0.25)

    def wait_ready(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Wait until one primary runs, all standbys stream and (with standbys) one of them is
        synchronous; returns :meth:`members`. ClusterError on timeout."""
        n = len(self.state["members"])

        def ok(ms: list[dict[str, Any]]) -> bool:
            if len(ms) != n:
                return False
            leaders = [x for x in ms if x["role"] == "leader" and x["state"] == "running"]
            streaming = [x for x in ms if x["role"] != "leader" and x["state"] == "streaming"]
            sync = [x for x in ms if x["role"] == "sync_standby"]
            return len(leaders) == 1 and len(streaming) == n - 1 and (n == 1 or bool(sync))

        return self._wait(ok, time.monotonic() + timeout, "the PostgreSQL group to be ready")

    def postmaster_pid(self, name: str) -> int | None:
        """The PostgreSQL server's pid of member ``name`` (from ``postmaster.pid``)."""
        try:
            return int((self.dir / name / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_postgres(self, name: str | None = None) -> str:
        """``kill -9`` the PostgreSQL server of member ``name`` (default: the primary), as a
        crash would; returns the member's name. Its Patroni stays up and fails over."""
        if name is None:
            p = self.primary()
            if p is None:
                raise ClusterError("no running primary to kill")
            name = str(p["name"])
        pid = self.postmaster_pid(name)
        if pid is None:
            raise ClusterError(f"member {name} has no running PostgreSQL server")
        os.kill(pid, signal.SIGKILL)
        return name

    def kill_member(self, name: str) -> None:
        """``kill -9`` member ``name`` whole, Patroni and PostgreSQL (a lost machine); the
        others take over once its leader lock expires (``ttl``)."""
        m = next((x for x in self.state["members"] if x["name"] == name), None)
        if m is None:
            raise InvalidArgumentError(f"no member named {name!r}")
        pg = self.postmaster_pid(name)
        for pid in (m.get("pid"), pg):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        m["pid"] = None
        self._save()

    def stop(self, grace: float = 60.0) -> None:
        """Stop every member (Patroni shuts its PostgreSQL down cleanly), then etcd; the data
        stays. Idempotent."""
        if not self.state:
            return
        members = [m for m in self.state["members"] if _alive(m.get("pid"))]
        for m in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(m["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(m["pid"]) for m in members) and time.monotonic() < deadline:
            time.sleep(0.1)
        for m in self.state["members"]:
            for pid in (m.get("pid") if _alive(m.get("pid")) else None,
                        self.postmaster_pid(m["name"])):
                if pid and _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            m["pid"] = None
        e = self.state["etcd"]
        if _alive(e.get("pid")):
            os.kill(int(e["pid"]), signal.SIGTERM)
            end = time.monotonic() + 10
            while _alive(e["pid"]) and time.monotonic() < end:
                time.sleep(0.05)
            if _alive(e["pid"]):
                os.kill(int(e["pid"]), signal.SIGKILL)
        e["pid"] = None
        self._save()
        if self.socket_dir.parent != self.dir:  # the short folder outside dir
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def running(self) -> bool:
        """True while etcd and at least one member's Patroni run."""
        return bool(self.state) and _alive(self.state["etcd"].get("pid")) and any(
            _alive(m.get("pid")) for m in self.state["members"])
