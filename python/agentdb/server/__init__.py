"""The AgentDB server (the ``server`` extra): HTTP (FastAPI + uvicorn, SSE) and gRPC over one
store, with API-key auth and per-key rate limits. Start it with ``agentdb serve``.

Modules: :mod:`.auth` (keys, constant-time checks, token buckets), :mod:`.events` (the change
feed with a bounded replay buffer), :mod:`.app` (the FastAPI application), :mod:`.grpc_service`
(the gRPC service). Importing this package needs nothing beyond numpy; the submodules import
their frameworks.
"""

from __future__ import annotations

EXTRA_HINT = "the AgentDB server needs the 'server' extra: pip install 'agentdb[server]'"

__all__ = ["EXTRA_HINT"]
