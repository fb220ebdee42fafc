"""One rule for tests whose optional dependencies are missing: skip, or fail in CI.

``unavailable("SERVER", reason)`` skips the test (or the whole module, when called at import
time) with ``reason`` -- unless ``AGENTDB_REQUIRE_SERVER=1`` is set, as ``.ci/run`` does, in
which case it fails loudly, so CI never passes by skipping what it is meant to test.
The flags in use: NATIVE, POSTGRES, SERVER, CLUSTER, FAILOVER (Patroni + etcd), EMBED (the
ONNX embedder and its model), INTEGRATIONS (MCP, LangChain, LangGraph, LlamaIndex), INSTALLED
(the suite runs against an installed wheel, not `<repo>/python`).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required(flag: str) -> bool:
    """True when ``AGENTDB_REQUIRE_<flag>=1`` is set (CI sets every flag it needs)."""
    return os.environ.get(f"AGENTDB_REQUIRE_{flag}", "").strip() == "1"


def unavailable(flag: str, reason: str, *, module: bool = False) -> NoReturn:
    """Skip with ``reason`` (the whole module when ``module``), or fail when ``flag`` is required.

    >>> unavailable("SERVER", "the server extra is missing", module=True)  # doctest: +SKIP
    """
    if required(flag):
        pytest.fail(f"AGENTDB_REQUIRE_{flag}=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module)
