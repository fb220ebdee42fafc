"""The ``agentdb`` command line (typer + rich; the ``cli`` extra).

    agentdb demo                       # the README's main job
    agentdb --version                  # version, native core, SIMD paths (= python -m agentdb)
    agentdb init --db memory.db
    agentdb store "parse ISO dates" --reward 0.9 --success --db memory.db
    agentdb search "parse dates" -k 3 --success-only --json --db memory.db
    agentdb get 1 | delete 1 | stats | import FILE | export FILE
    export AGENTDB_POSTGRES_URL=$(agentdb postgres start)   # install | start | stop | status
    AGENTDB_API_KEYS=... agentdb serve --db memory.db --port 8080  # HTTP API (docs/api.md)
    agentdb cluster up --shards 3 --replicas 2  # status | down (docs/cluster.md)
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["main"]

_EXTRA_HINT = "the agentdb CLI needs the 'cli' extra: pip install 'agentdb[cli]'"


def _build_app() -> Any:
    import typer
    from rich.console import Console
    from rich.table import Table

    from .. import memory
    from ..errors import describe
    from ..memory.jsonl import export_jsonl, import_jsonl

    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="AgentDB: memory for AI agents (SQLite + native HNSW).")
    out = Console()
    err = Console(stderr=True)
    kinds = {"pattern": "patterns", "episode": "episodes", "skill": "skills"}

    db_opt = typer.Option("memory.db", "--db", help="Store file (or :memory:).")
    json_opt = typer.Option(False, "--json", help="Machine-readable JSON output.")

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", "-V",
                                     help="Print the version and the native core's SIMD paths "
                                          "(add --json for JSON) and exit."),
    ) -> None:
        """AgentDB: memory for AI agents (SQLite + native HNSW)."""
        # `--version` is answered in main() before typer runs (so it works without the cli
        # extra); the option is declared here so that --help lists it.

    def fail(msg: str) -> None:
        from rich.markup import escape  # "agentdb[postgres]" is text, not a style tag

        err.print(f"[red]error:[/red] {escape(msg)}", markup=True, highlight=False)
        raise typer.Exit(1)

    def open_db(path: str, **kw: Any) -> Any:
        try:
            return memory.open(path, **kw)
        except Exception as exc:  # one clear line, no traceback
            fail(f"{type(exc).__name__}: {exc}")

    def emit(obj: Any, as_json: bool) -> None:
        if as_json:
            sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        else:
            out.print(obj)

    def kind_of(kind: str) -> str:
        if kind not in kinds:
            fail(f"unknown kind {kind!r}: expected pattern, episode or skill")
        return kinds[kind]

    def parse_json(text: str | None, what: str) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}")

    @app.command()
    def init(db: str = db_opt, dim: int = typer.Option(384, help="Embedding dimension."),
             as_json: bool = json_opt) -> None:
        """Create an empty store (or check an existing one)."""
        with open_db(db, dim=dim) as d:
            emit({"db": db, "dim": d.dim, "patterns": d.count()}, as_json)

    @app.command()
    def store(text: str = typer.Argument(..., help="Task (pattern/episode) or skill name."),
              db: str = db_opt,
              kind: str = typer.Option("pattern", help="pattern, episode or skill."),
              reward: float = typer.Option(0.0, help="Reward in [-1, 1]."),
              success: bool = typer.Option(False, "--success/--failure"),
              session: str = typer.Option(None, help="Session id."),
              critique: str = typer.Option(None), input: str = typer.Option(None),
              output: str = typer.Option(None),
              description: str = typer.Option("", help="Skill description."),
              metadata: str = typer.Option(None, help="JSON object."),
              as_json: bool = json_opt) -> None:
        """Store one record; prints its id."""
        meta = parse_json(metadata, "--metadata")
        with open_db(db) as d:
            try:
                k = kind_of(kind)
                if k == "skills":
                    rid = d.store_skill(text, description, metadata=meta)
                elif k == "episodes":
                    rid = d.store_episode(text, reward=reward, success=success,
                                          session_id=session, critique=critique, input=input,
                                          output=output, metadata=meta)
                else:
                    rid = d.store_pattern(text, reward=reward, success=success,
                                          session_id=session, critique=critique, input=input,
                                          output=output, metadata=meta)
            except (ValueError, TypeError, KeyError) as exc:
                fail(str(exc))
            emit({"id": rid, "kind": kind} if as_json else f"stored {kind} {rid}", as_json)

    @app.command()
    def search(query: str, db: str = db_opt, k: int = typer.Option(5, "-k", "--k"),
               kind: str = typer.Option("pattern"),
               min_reward: float = typer.Option(None, "--min-reward"),
               success_only: bool = typer.Option(False, "--success-only"),
               session: str = typer.Option(None),
               where: str = typer.Option(None, help='Metadata filter as JSON, e.g. '
                                                    '\'{"lang": "py"}\'.'),
               threshold: float = typer.Option(None, help="Minimum cosine similarity."),
               as_json: bool = json_opt) -> None:
        """Search by text."""
        flt = parse_json(where, "--where")
        with open_db(db, readonly=True) as d:
            try:
                k_ = kind_of(kind)
                if k_ == "patterns":
                    hits = d.search_patterns(query, k=k, min_reward=min_reward,
                                             success_only=success_only, session_id=session,
                                             where=flt, threshold=threshold)
                elif k_ == "episodes":
                    hits = d.search_episodes(query, k=k, min_reward=min_reward,
                                             success=True if success_only else None,
                                             session_id=session, where=flt,
                                             threshold=threshold)
                else:
                    hits = d.search_skills(query, k=k, where=flt, threshold=threshold)
            except (ValueError, TypeError, KeyError) as exc:
                fail(str(exc))
            if as_json:
                emit([h.to_dict() for h in hits], True)
                return
            table = Table("id", "similarity", "text", "reward", "success")
            for h in hits:
                r = h.record
                table.add_row(str(h.id), f"{h.similarity:.3f}", getattr(r, "task", None)
                              or getattr(r, "name", ""), str(getattr(r, "reward", "")),
                              str(getattr(r, "success", "")))
            out.print(table)

    @app.command()
    def get(id: int, db: str = db_opt, kind: str = typer.Option("pattern"),
            as_json: bool = json_opt) -> None:
        """Print one record."""
        with open_db(db, readonly=True) as d:
            k = kind_of(kind)
            try:
                rec = {"patterns": d.get_pattern, "episodes": d.get_episode,
                       "skills": d.get_skill}[k](id)
            except KeyError as exc:
                fail(describe(exc).message)
            emit(rec.to_dict(), as_json)

    @app.command()
    def delete(id: int, db: str = db_opt, kind: str = typer.Option("pattern"),
               as_json: bool = json_opt) -> None:
        """Delete one record."""
        with open_db(db) as d:
            k = kind_of(kind)
            try:
                {"patterns": d.delete_pattern, "episodes": d.delete_episode,
                 "skills": d.delete_skill}[k](id)
            except KeyError as exc:
                fail(describe(exc).message)
            emit({"deleted": id, "kind": kind} if as_json else f"deleted {kind} {id}", as_json)

    @app.command()
    def stats(db: str = db_opt, as_json: bool = json_opt) -> None:
        """Counts and sizes."""
        with open_db(db, readonly=True) as d:
            emit(d.stats(), as_json)

    @app.command("import")
    def import_(path: str, db: str = db_opt,
                keep_ids: bool = typer.Option(False, "--keep-ids"),
                as_json: bool = json_opt) -> None:
        """Import a JSONL file (progress bar on long imports)."""
        with open_db(db, progress=not as_json) as d:
            try:
                counts = import_jsonl(d, path, keep_ids=keep_ids, progress=not as_json)
            except (ValueError, OSError) as exc:
                fail(str(exc))
            emit(counts, as_json)

    @app.command()
    def export(path: str, db: str = db_opt,
               kind: list[str] = typer.Option(None, "--kind", help="Repeatable."),
               no_embeddings: bool = typer.Option(False, "--no-embeddings"),
               as_json: bool = json_opt) -> None:
        """Export to a JSONL file."""
        with open_db(db, readonly=True) as d:
            ks = tuple(kind_of(k) for k in kind) if kind else ("patterns", "episodes",
                                                                "skills")
            try:
                counts = export_jsonl(d, path, kinds=ks, embeddings=not no_embeddings,
                                      progress=not as_json)
            except (ValueError, OSError) as exc:
                fail(str(exc))
            emit(counts, as_json)

    @app.command()
    def demo(db: str = typer.Option("agentdb-demo.db", "--db"),
             n: int = typer.Option(10_000, "--n", help="Patterns to ingest."),
             queries: int = typer.Option(200, "--queries"),
             data: str = typer.Option(None, "--data", help="Data set folder."),
             as_json: bool = json_opt) -> None:
        """Build a memory from real data, search it, print timings (the main job)."""
        from .demo import run_demo

        if n < 1 or queries < 1:
            fail("--n and --queries must be >= 1")
        report = run_demo(db, n=n, queries=queries, data_dir=data,
                          echo=None if as_json else out.print, progress=not as_json)
        if as_json:
            emit(report, True)

    # ---------------------------------------------------------------------- agentdb serve
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
                                              help="Allowed CORS origin (repeatable)."),
        cors_credentials: bool = typer.Option(False, "--cors-credentials",
                                              help="Allow credentialed CORS requests."),
        heartbeat: float = typer.Option(15.0, help="SSE heartbeat interval, seconds (0 = off)."),
        replay_buffer: int = typer.Option(1000, "--replay-buffer",
                                          help="Change-feed events kept for resumption."),
        search_threads: int = typer.Option(2, "--search-threads",
                                           help="Threads running vector searches (0 = on "
                                                "the event loop)."),
        log_level: str = typer.Option("info", "--log-level",
                                      help="critical, error, warning, info, debug or trace."),
        access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                        help="Log every request."),
    ) -> None:
        """Serve a store over HTTP (and gRPC with --grpc-port); needs the 'server' extra.

        API keys come from AGENTDB_API_KEYS (comma-separated) and/or --api-keys-file.
        """
        import ipaddress
        import signal

        from ..server import EXTRA_HINT

        try:
            import uvicorn

            from ..server.app import create_app
            from ..server.auth import load_keys
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
        try:
            keys = load_keys(keys_file=api_keys_file)
        except ValueError as exc:
            fail(str(exc))
        if no_auth:
            if keys:
                fail("--no-auth cannot be combined with API keys (AGENTDB_API_KEYS or "
                     "--api-keys-file)")
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                fail(f"--no-auth only binds to a loopback host (127.0.0.1, ::1, localhost), "
                     f"not {host!r}")
        elif not keys:
            fail("no API keys: set AGENTDB_API_KEYS or --api-keys-file (or use --no-auth on a "
                 "loopback host)")
        with open_db(db) as d:
            try:
                api = create_app(d, api_keys=None if no_auth else keys,
                                 rate_limit_per_minute=rate_limit, max_body_bytes=max_body,
                                 cors_origins=tuple(cors_origin or ()),
                                 cors_credentials=cors_credentials,
                                 heartbeat_seconds=heartbeat, replay_buffer=replay_buffer,
                                 search_threads=search_threads)
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
                        d, host=host, port=grpc_port, keys=api.state.keys,
                        limiter=api.state.limiter, hub=api.state.hub)
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
                                    timeout_graceful_shutdown=10)

            def on_sigterm(signum: int, frame: Any) -> None:
                # uvicorn shuts down gracefully, then re-raises SIGTERM: end with exit code 0
                # (stopping gRPC and closing the store, which saves its indexes).
                raise SystemExit(0)

            previous = signal.signal(signal.SIGTERM, on_sigterm)
            try:
                uvicorn.Server(config).run()
            finally:
                signal.signal(signal.SIGTERM, previous)
                if grpc_server is not None:
                    grpc_server.stop(grace=2).wait()

    # ------------------------------------------------ agentdb postgres install|start|stop|status
    pg_app = typer.Typer(no_args_is_help=True,
                         help="Embedded PostgreSQL 16 + pgvector server (the 'postgres' extra).")
    app.add_typer(pg_app, name="postgres")
    pg_dir_opt = typer.Option(None, "--data-dir", metavar="PATH",
                              help="Data directory (default: $AGENTDB_POSTGRES_DATA, "
                                   "else ~/.agentdb/postgres).")

    def pg_run(name: str, data_dir: str | None) -> Any:
        from ..storage import pgserver as postgres_server

        try:
            return getattr(postgres_server, name)(data_dir)
        except Exception as exc:  # one clear line, no traceback
            msg = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            fail(msg or type(exc).__name__)

    def pg_print(*lines: str) -> None:  # plain writes: rich would wrap long URLs
        sys.stdout.write("".join(line + "\n" for line in lines))

    @pg_app.command("install")
    def pg_install(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Initialise the data directory and check pgvector works (leaves it stopped)."""
        info = pg_run("install", data_dir)
        if as_json:
            emit(info, True)
        else:
            pg_print(f"data dir: {info['data_dir']}",
                     f"PostgreSQL {info['postgres_version']}, "
                     f"pgvector {info['pgvector_version']}",
                     f"url (while running): {info['url']}")

    @pg_app.command("start")
    def pg_start(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Start (or reuse) the server; print its URL. It keeps running after this command."""
        url = pg_run("start", data_dir)
        if as_json:
            emit(pg_run("status", data_dir), True)
        else:
            pg_print(url)  # export AGENTDB_POSTGRES_URL=$(agentdb postgres start)

    @pg_app.command("stop")
    def pg_stop(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Stop the server (fast shutdown); says so when none was running."""
        from ..storage.pgserver import data_dir_path

        stopped = pg_run("stop", data_dir)
        if as_json:
            emit({"data_dir": str(data_dir_path(data_dir)), "stopped": stopped}, True)
        else:
            pg_print("stopped" if stopped else "not running")

    @pg_app.command("status")
    def pg_status(data_dir: str = pg_dir_opt, as_json: bool = json_opt) -> None:
        """Show whether the data directory is initialised and the server running."""
        info = pg_run("status", data_dir)
        if as_json:
            emit(info, True)
        elif info["running"]:
            pg_print(f"running (pid {info['pid']}): {info['url']}")
        else:
            state = "stopped" if info["initialized"] else "not initialised"
            pg_print(f"{state}: {info['data_dir']}")

    # ------------------------------------------------------ agentdb cluster up|status|down
    cl_app = typer.Typer(no_args_is_help=True,
                         help="A local AgentDB cluster: Ray shard replicas + PostgreSQL "
                              "(the 'cluster' extra; docs/cluster.md).")
    app.add_typer(cl_app, name="cluster")
    state_opt = typer.Option(None, "--state-file", metavar="PATH",
                             help="State file (default: $AGENTDB_CLUSTER_STATE, else "
                                  "~/.agentdb/cluster.json).")

    def cluster_run(name: str, **kw: Any) -> Any:
        from ..cluster import EXTRA_HINT as CLUSTER_HINT
        from ..cluster import local

        try:
            return getattr(local, name)(**kw)
        except ImportError as exc:
            msg = str(exc)
            fail(msg if CLUSTER_HINT in msg else f"{CLUSTER_HINT} ({msg})")
        except (local.ClusterError, ValueError) as exc:
            fail(" ".join(str(exc).split()))
        except Exception as exc:  # one clear line, no traceback
            fail(f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}")

    def masked(url: str | None) -> str:
        from urllib.parse import urlsplit, urlunsplit

        if not url:
            return "-"
        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
        return url

    def cluster_tables(info: dict[str, Any]) -> None:
        names = {n["node_id"]: f"node{i}" for i, n in enumerate(info.get("nodes") or [])}
        colors = {"ready": "green", "building": "yellow"}
        sys.stdout.write(
            f"ray {info.get('ray_address')} (namespace {info.get('namespace')})\n"
            f"postgres {masked(info.get('postgres_url'))}\n"
            f"log seq {info.get('log_seq')}, ring shards "
            f"{(info.get('ring') or {}).get('shards')}\n")
        table = Table("shard", "replica", "state", "applied seq", "lag", "vectors", "node",
                      title="replicas")
        for sh in info.get("shards") or []:
            for r in sh["replicas"]:
                state = str(r.get("state"))
                node = r.get("node_id")
                where = f"{names.get(node, (node or '-')[:8])} {r.get('node_ip') or ''}"
                table.add_row(str(sh["shard"]), str(r.get("replica")),
                              f"[{colors.get(state, 'red')}]{state}[/]",
                              "-" if r.get("applied_seq") is None else str(r["applied_seq"]),
                              "-" if r.get("lag") is None else str(r["lag"]),
                              "-" if r.get("vectors") is None else str(r["vectors"]),
                              where.strip())
        out.print(table)
        ntable = Table("node", "node id", "ip", "alive", "head", "CPU", title="nodes")
        for n in info.get("nodes") or []:
            res = n.get("resources") or {}
            ntable.add_row(names.get(n["node_id"], "?"), str(n["node_id"])[:12], str(n["ip"]),
                           "[green]yes[/]" if n.get("alive") else "[red]no[/]",
                           "yes" if n.get("head") else "", f"{res.get('CPU', 0):g}")
        out.print(ntable)

    @cl_app.command("up")
    def cluster_up(
        shards: int = typer.Option(3, help="Shards (hash-ring partitions)."),
        replicas: int = typer.Option(2, help="Replicas per shard."),
        postgres_url: str = typer.Option(None, "--postgres-url", metavar="URL",
                                         help="PostgreSQL with pgvector (default: an embedded "
                                              "server in --data-dir)."),
        data_dir: str = typer.Option(None, "--data-dir", metavar="PATH",
                                     help="Folder of the embedded PostgreSQL (default: "
                                          "$AGENTDB_CLUSTER_DATA, else ~/.agentdb/cluster)."),
        nodes: int = typer.Option(1, help="Ray nodes to start on this machine."),
        port: int = typer.Option(6379, help="Ray head (GCS) port on 127.0.0.1."),
        namespace: str = typer.Option("agentdb", help="Ray namespace of the actors."),
        dim: int = typer.Option(None, help="Embedding dimension of a new store (default 384)."),
        schema: str = typer.Option("public", help="PostgreSQL schema of the tables."),
        table_prefix: str = typer.Option("", help="Prefix of the PostgreSQL table names."),
        pgvector_index: bool = typer.Option(
            True, "--pgvector-index/--no-pgvector-index",
            help="Keep pgvector's HNSW indexes on the tables (the replicas do not use them; "
                 "dropping them speeds up ingest ~70x)."),
        state_file: str = state_opt,
        as_json: bool = json_opt,
    ) -> None:
        """Start Ray (head + --nodes - 1 nodes) on 127.0.0.1, PostgreSQL and the replicas.

        Everything keeps running after this command; stop it with `agentdb cluster down`.
        """
        def say(msg: str) -> None:
            err.print(f"agentdb: {msg}", highlight=False, markup=False)

        info = cluster_run("up", shards=shards, replicas=replicas, postgres_url=postgres_url,
                           data_dir=data_dir, nodes=nodes, port=port, namespace=namespace,
                           dim=dim, schema=schema, table_prefix=table_prefix,
                           pgvector_index=pgvector_index, state_file=state_file,
                           echo=None if as_json else say)
        if as_json:
            emit(info, True)
            return
        cluster_tables(info)
        sys.stdout.write(f"state file: {info['state_file']}\n"
                         "use it: from agentdb.cluster import local; db = local.connect()\n")

    @cl_app.command("status")
    def cluster_status(state_file: str = state_opt, as_json: bool = json_opt) -> None:
        """Shards x replicas (state, applied seq, lag, node) and the Ray nodes."""
        info = cluster_run("status", state_file=state_file)
        if as_json:
            emit(info, True)
        else:
            cluster_tables(info)

    @cl_app.command("down")
    def cluster_down(state_file: str = state_opt, as_json: bool = json_opt) -> None:
        """Stop the cluster's Ray processes and the PostgreSQL that `up` started.

        The data stays in PostgreSQL; the state file is removed."""
        info = cluster_run("down", state_file=state_file)
        if as_json:
            emit(info, True)
            return
        pg = ("; embedded PostgreSQL stopped (data kept in "
              f"{info['postgres_data_dir']})" if info["postgres_stopped"] else "")
        sys.stdout.write(f"stopped {info['ray_processes_stopped']} Ray processes at "
                         f"{info['ray_address']}{pg}\n")

    @app.command()
    def migrate(
        source: str = typer.Option(..., "--from", help="SQLite file or postgresql:// URL."),
        destination: str = typer.Option(..., "--to", help="postgresql:// URL or SQLite file."),
        schema: str = typer.Option("public", help="PostgreSQL schema of the tables."),
        table_prefix: str = typer.Option("", help="Prefix of the PostgreSQL table names."),
        batch: int = typer.Option(2000, help="Rows per destination transaction."),
        verify: bool = typer.Option(True, "--verify/--no-verify",
                                    help="Compare counts and checksums at the end."),
        as_json: bool = json_opt,
    ) -> None:
        """Copy a store between SQLite and PostgreSQL (resumable; verifies every table)."""
        from ..memory.migrate import migrate as run_migration

        try:
            report = run_migration(source, destination, schema=schema,
                                   table_prefix=table_prefix, batch=batch, verify=verify,
                                   progress=None if not as_json else False)
        except Exception as exc:  # one clear line, no traceback
            fail(f"{type(exc).__name__}: {exc}")
        if as_json:
            emit(report, True)
            return
        table = Table("table", "source", "destination", "copied", "checksum")
        for name, r in report.items():
            ok = r.get("checksum_ok")
            table.add_row(name, str(r.get("source")), str(r.get("destination")),
                          str(r.get("copied")), "-" if ok is None else ("ok" if ok else "DIFF"))
        out.print(table)

    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``agentdb`` command.

    >>> main(["--version"])  # doctest: +ELLIPSIS
    agentdb ...
    0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("--version", "-V"):  # works without the cli extra
        from ..about import report

        sys.stdout.write(report(as_json="--json" in args[1:]) + "\n")
        return 0
    try:
        app = _build_app()
    except ImportError as exc:
        sys.stderr.write(f"{_EXTRA_HINT} ({exc})\n")
        return 2
    try:
        app(args=args, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
