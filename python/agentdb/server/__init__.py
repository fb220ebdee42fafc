"""The AgentDB server (the ``server`` extra): HTTP (FastAPI + uvicorn, SSE) and gRPC over one
store, with API-key auth and per-key rate limits. Start it with ``agentdb serve``.

Modules: :mod:`.auth` (keys, constant-time checks, token buckets), :mod:`.events` (the change
feed with a bounded replay buffer), :mod:`.app` (the FastAPI application), :mod:`.grpc_service`
(the gRPC service). Importing this package needs nothing beyond numpy; the submodules import
their frameworks.
"""

from __future__ import annotations

from pathlib import Path

EXTRA_HINT = "the AgentDB server needs the 'server' extra: pip install 'agentdb[server]'"

#: The gRPC service definition, shipped in the wheel (generate clients in other languages
#: from it): ``python -c "import agentdb.server as s; print(s.PROTO_PATH)"``.
PROTO_PATH: Path = Path(__file__).with_name("agentdb.proto")

__all__ = ["EXTRA_HINT", "PROTO_PATH"]
