"""AgentDB on a cluster: shards of native indexes as Ray actors, PostgreSQL as the ordered,
durable log (the ``cluster`` extra). See docs/cluster.md.

``from agentdb.cluster import ClusterDB`` needs ray and psycopg; :mod:`.ring` needs neither.
"""

from __future__ import annotations

from typing import Any

EXTRA_HINT = "the AgentDB cluster needs the 'cluster' extra: pip install 'agentdb[cluster]'"

__all__ = ["EXTRA_HINT", "ClusterDB", "HashRing"]


def __getattr__(name: str) -> Any:
    if name == "HashRing":
        from .ring import HashRing

        return HashRing
    if name == "ClusterDB":
        try:
            from .db import ClusterDB
        except ImportError as exc:
            if exc.name in ("ray", "psycopg", "psycopg_pool", "pgvector"):
                raise ImportError(EXTRA_HINT) from exc
            raise
        return ClusterDB
    raise AttributeError(name)
