"""Layer 4, the memory API: :class:`MemoryCore` (the API written once, over an engine's hooks),
:class:`AgentDB` (the embedded engine: SQLite or PostgreSQL + the native index) and
:func:`open`; beside them what works through the API: JSONL import/export (:mod:`.jsonl`),
store migration (:mod:`.migrate`) and progress bars (:mod:`.progress`).

>>> from agentdb.memory import open
>>> open(":memory:", dim=8).count("patterns")
0
"""

from __future__ import annotations

from .core import MemoryCore
from .embedded import AgentDB, open

__all__ = ["AgentDB", "MemoryCore", "open"]
