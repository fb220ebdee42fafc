"""``agentdb cluster up | status | add-shard | remove-shard | down``: a local cluster (Ray
replicas + PostgreSQL)."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from .common import JSON_OPT as json_opt
from .common import emit, err, fail, out


def register(app: typer.Typer) -> None:
    """Add these commands to ``app`` (called by :func:`agentdb.cli._build_app`)."""
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
        if info.get("postgres_members"):
            ptable = Table("member", "role", "state", "port", "timeline", "lag",
                           title="PostgreSQL (Patroni)")
            for m in info["postgres_members"]:
                ptable.add_row(str(m.get("name")), str(m.get("role")), str(m.get("state")),
                               str(m.get("port")), str(m.get("timeline")),
                               "-" if m.get("lag") is None else str(m.get("lag")))
            out.print(ptable)

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
        pg_standbys: int = typer.Option(
            0, "--pg-standbys", metavar="N",
            help="Run the embedded PostgreSQL as a primary + N synchronous standbys, failed "
                 "over by Patroni + etcd (needs etcd: apt-get install etcd-server)."),
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
                           pg_standbys=pg_standbys,
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

    @cl_app.command("add-shard")
    def cluster_add_shard(state_file: str = state_opt, as_json: bool = json_opt) -> None:
        """Add a shard online: its replicas load the keys they take over, then the ring
        switches (searches and writes go on meanwhile)."""
        info = cluster_run("add_shard", state_file=state_file)
        if as_json:
            emit(info, True)
            return
        sys.stdout.write(f"added shard {info['added']}; shards {info['shards']}\n")

    @cl_app.command("remove-shard")
    def cluster_remove_shard(
        shard: int = typer.Option(None, "--shard", help="The shard (default: the highest)."),
        timeout: float = typer.Option(None, help="Seconds to wait for the others to load its "
                                                 "keys."),
        state_file: str = state_opt, as_json: bool = json_opt,
    ) -> None:
        """Remove a shard online: the other shards load its keys first, then it stops."""
        info = cluster_run("remove_shard", shard=shard, timeout=timeout, state_file=state_file)
        if as_json:
            emit(info, True)
            return
        sys.stdout.write(f"removed shard {info['shard']}; shards {info['shards']}\n")

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
