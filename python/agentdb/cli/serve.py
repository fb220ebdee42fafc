"""``agentdb serve``: the HTTP API (and gRPC with ``--grpc-port``) over one store."""

from __future__ import annotations

from typing import Any

import typer

from .common import DB_OPT as db_opt
from .common import err, fail, open_db


def register(app: typer.Typer) -> None:
    """Add these commands to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    @app.command()
    def serve(
        db: str = db_opt,
        host: str = typer.Option("127.0.0.1", help="Address to bind."),
        port: int = typer.Option(8080, help="HTTP port."),
        grpc_port: int = typer.Option(None, "--grpc-port", help="Also serve gRPC on this port."),
        api_keys_file: str = typer.Option(None, "--api-keys-file",
                                          help="API keys, one per line (# comments)."),
        no_auth: bool = typer.Option(False, "--no-auth",
                                     help="No API keys (loopback hosts only)."),
        rate_limit: float = typer.Option(100, "--rate-limit",
                                         help="Requests per minute per key (0 = off)."),
        max_body: int = typer.Option(1 << 20, "--max-body", help="Largest request body, bytes."),
        cors_origin: list[str] = typer.Option(None, "--cors-origin",
                                              help="Allowed CORS origin (repeatable; default: "
                                                   "$AGENTDB_CORS_ORIGIN, else $CORS_ORIGIN, "
                                                   "comma-separated)."),
        cors_credentials: bool = typer.Option(False, "--cors-credentials",
                                              help="Allow credentialed CORS requests."),
        heartbeat: float = typer.Option(15.0, help="SSE heartbeat interval, seconds (0 = off)."),
        replay_buffer: int = typer.Option(1000, "--replay-buffer",
                                          help="Change-feed events kept for resumption."),
        search_threads: int | None = typer.Option(None, "--search-threads",
                                           help="Threads running vector searches (0 = on "
                                                "the event loop; default 2, or 0 with "
                                                "--workers > 1: each process then keeps "
                                                "one core busy)."),
        cypher_timeout: float = typer.Option(30.0, "--cypher-timeout",
                                             help="Seconds a Cypher query may run (a request "
                                                  "may ask for less; 0 = no limit)."),
        cypher_max_rows: int = typer.Option(100_000, "--cypher-max-rows",
                                            help="Rows a Cypher query may return (0 = no "
                                                 "limit)."),
        backup_dir: str | None = typer.Option(None, "--backup-dir",
                                              help="Directory POST /backup writes copies of "
                                                   "the store into (off without it)."),
        forget_every: float | None = typer.Option(
            None, "--forget-every", min=0.001,
            help="Seconds between background passes that remove expired records "
                 "(db.forget(); off without it)."),
        log_level: str = typer.Option("info", "--log-level",
                                      help="critical, error, warning, info, debug or trace."),
        access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                        help="Log every request."),
        workers: int = typer.Option(
            1, "--workers", min=1, max=64,
            help="Processes serving the port: this one (the writer) plus N - 1 read workers "
                 "that answer searches and record reads over the shared, memory-mapped "
                 "index files and forward everything else to the writer (an embedded file "
                 "store only)."),
        checkpoint_every: float = typer.Option(
            60.0, "--checkpoint-every", min=0.0,
            help="With --workers > 1: seconds between saves of the changed index files, "
                 "which the read workers then map again (0 = only on exit)."),
        reload: bool = typer.Option(False, "--reload",
                                    help="Development: restart when a source file of the "
                                         "package changes (HTTP only, not with --grpc-port)."),
    ) -> None:
        """Serve a store over HTTP (and gRPC with --grpc-port); needs the 'server' extra.

        API keys come from AGENTDB_API_KEYS (comma-separated; API_KEYS, the seed system's
        name, when it is unset) and/or --api-keys-file.
        """
        import signal

        from ..server import EXTRA_HINT

        try:
            import uvicorn

            from ..server.app import create_app
            from ..server.auth import load_key_namespaces, resolve_auth
        except ImportError as exc:
            fail(f"{EXTRA_HINT} ({exc})")
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if log_level.lower() not in levels:
            fail(f"--log-level must be one of {', '.join(levels)}, got {log_level!r}")
        for name, val, lo in (("--port", port, 0), ("--max-body", max_body, 1),
                              ("--replay-buffer", replay_buffer, 1)):
            if val < lo:
                fail(f"{name} must be >= {lo}, got {val}")
        if port > 65535 or (grpc_port is not None and not 0 <= grpc_port <= 65535):
            fail("ports must be within 0..65535")
        if rate_limit < 0 or heartbeat < 0:
            fail("--rate-limit and --heartbeat must be >= 0")
        if not cypher_timeout >= 0 or cypher_timeout == float("inf") or cypher_max_rows < 0:
            fail("--cypher-timeout and --cypher-max-rows must be finite and >= 0")
        if search_threads is None:
            search_threads = 2 if workers == 1 else 0
        cypher_limits = dict(cypher_timeout=cypher_timeout or None,
                             cypher_max_rows=cypher_max_rows or None)
        try:
            keys = resolve_auth(host, no_auth, api_keys_file) or []
            bindings = load_key_namespaces(None if no_auth else api_keys_file)
        except ValueError as exc:
            fail(str(exc))
        if reload and grpc_port is not None:
            fail("--reload serves HTTP only: drop --grpc-port")
        if not cors_origin:  # the environment, as the seed system configured it
            import os

            env = os.environ.get("AGENTDB_CORS_ORIGIN") or os.environ.get("CORS_ORIGIN") or ""
            cors_origin = [o.strip() for o in env.split(",") if o.strip()]
        if reload and forget_every is not None:
            fail("--forget-every does not combine with --reload")
        if workers > 1 and (reload or db == ":memory:" or "://" in db):
            fail("--workers needs an embedded file store (read workers open the same file) "
                 "and does not combine with --reload")
        if reload:
            run_reloading(db, host, port, log_level, access_log, dict(
                api_keys=None if no_auth else keys, rate_limit_per_minute=rate_limit,
                max_body_bytes=max_body, cors_origins=list(cors_origin or ()),
                cors_credentials=cors_credentials, heartbeat_seconds=heartbeat,
                replay_buffer=replay_buffer, search_threads=search_threads,
                backup_dir=backup_dir, **cypher_limits))
            return
        with open_db(db, **({} if forget_every is None else {"forget_every": forget_every})
                     ) as d:
            try:
                api = create_app(d, api_keys=None if no_auth else keys,
                                 rate_limit_per_minute=rate_limit, max_body_bytes=max_body,
                                 cors_origins=tuple(cors_origin or ()),
                                 cors_credentials=cors_credentials,
                                 heartbeat_seconds=heartbeat, replay_buffer=replay_buffer,
                                 search_threads=search_threads, backup_dir=backup_dir,
                                 key_namespaces=bindings, **cypher_limits)
            except ValueError as exc:
                fail(str(exc))
            grpc_server = None
            if grpc_port is not None:
                try:
                    from ..server import grpc_service
                except ImportError as exc:
                    fail(f"gRPC is unavailable: {exc}. {EXTRA_HINT}")
                try:
                    grpc_server = grpc_service.serve_grpc(
                        d, host=host, port=grpc_port,
                        keys=None if api.state.keys is None else api.state.scopes.store,
                        scopes=api.state.scopes,
                        limiter=api.state.limiter, hub=api.state.hub,
                        queries=api.state.queries)
                except Exception as exc:  # e.g. the port is taken: one clear line
                    fail(f"cannot start gRPC on {host}:{grpc_port}: {exc}")
            # The store's in-memory columns and caches are long-lived: move them out of the
            # cyclic collector's reach, or every full collection re-walks them (pauses of
            # ~0.3 s per collection with 100k records, seen as p99 spikes on writes).
            import gc

            gc.collect()
            gc.freeze()
            auth = "off (loopback only)" if no_auth else f"{len(keys)} API key(s)"
            err.print(f"agentdb: serving {db} on http://{host}:{port} (auth: {auth}"
                      + (f"; gRPC on {host}:{grpc_port}" if grpc_port is not None else "")
                      + ")", highlight=False, markup=False)
            config = uvicorn.Config(api, host=host, port=port, log_level=log_level.lower(),
                                    access_log=access_log, server_header=False,
                                    timeout_graceful_shutdown=5)
            readers = None
            saver = None
            sockets = None
            if workers > 1:
                from ..server.workers import Checkpointer, ReadWorkers, listen

                d.checkpoint()  # current index files: the read workers map them
                try:
                    tcp = listen(host, port)
                except OSError as exc:
                    fail(f"cannot listen on {host}:{port}: {exc}")
                readers = ReadWorkers(workers, tcp, dict(
                    db=str(d.path), log_level=log_level.lower(), access_log=access_log,
                    api_keys=None if no_auth else list(keys),
                    key_namespaces={k: list(v) for k, v in (bindings or {}).items()},
                    rate_limit_per_minute=rate_limit, max_body_bytes=max_body,
                    cors_origins=list(cors_origin or ()), cors_credentials=cors_credentials,
                    search_threads=search_threads))
                readers.start()
                sockets = [tcp, readers.uds]
                if checkpoint_every > 0:
                    saver = Checkpointer(d, checkpoint_every)
                err.print(f"agentdb: {workers - 1} read worker(s) share the port",
                          highlight=False, markup=False)
            queries = api.state.queries
            namespace_apps = api.state.namespace_apps

            class Server(uvicorn.Server):
                def handle_exit(self, sig: int, frame: Any) -> None:
                    # stopping: cancel the running Cypher queries first (every namespace's),
                    # so their requests end (499) and the graceful shutdown does not wait
                    queries.cancel_all()
                    for sub in list(namespace_apps.values()):
                        sub.state.queries.cancel_all()
                    super().handle_exit(sig, frame)

            def on_sigterm(signum: int, frame: Any) -> None:
                # uvicorn shuts down gracefully, then re-raises SIGTERM: end with exit code 0
                # (stopping gRPC and closing the store, which saves its indexes).
                raise SystemExit(0)

            previous = signal.signal(signal.SIGTERM, on_sigterm)
            try:
                Server(config).run(sockets=sockets)
            finally:
                signal.signal(signal.SIGTERM, previous)
                if saver is not None:
                    saver.stop()
                if readers is not None:
                    readers.stop()
                if grpc_server is not None:
                    grpc_server.stop(grace=2).wait()


def run_reloading(db: str, host: str, port: int, log_level: str, access_log: bool,
                  options: dict[str, Any]) -> None:
    """``agentdb serve --reload``: uvicorn's reloader over
    :func:`agentdb.server.reload.app_from_environment` (the options travel in the
    environment to each new worker)."""
    import json
    import os
    from pathlib import Path

    import uvicorn

    from ..server.reload import ENV

    try:
        memory_path = db if db == ":memory:" or "://" in db else str(Path(db).resolve())
        open_db(memory_path).close()  # fail here, with one line, if the store cannot open
        os.environ[ENV] = json.dumps({"db": memory_path, **options})
    except (TypeError, ValueError) as exc:
        fail(str(exc))
    package = str(Path(__file__).resolve().parents[1])
    err.print(f"agentdb: serving {db} on http://{host}:{port} with --reload (watching "
              f"{package})", highlight=False, markup=False)
    uvicorn.run("agentdb.server.reload:app_from_environment", factory=True, reload=True,
                reload_dirs=[package], host=host, port=port, log_level=log_level.lower(),
                access_log=access_log, server_header=False)
