"""The HTTP routes, one module per group, each with ``register(app, ctx)``; registered in
the order of :data:`GROUPS` (the order of the OpenAPI document)."""

from __future__ import annotations

from . import episodes, graph, learning, patterns, service, skills, vectors
from .context import RouteContext

__all__ = ["GROUPS", "RouteContext"]

GROUPS = (service, vectors, patterns, episodes, skills, learning, graph)
