"""The MCP tools and resources of an AgentDB store: patterns, Reflexion episodes, skills, the
causal graph, read-only Cypher, feedback and stats.

Each tool is a typed function (the SDK derives its JSON schema from the signature and the
docstring); a failure -- bad arguments, an unknown id, a malformed Cypher query -- becomes a
tool error whose text starts with the error's stable code (``not_found: unknown pattern id
9``), never a crashed server.

>>> TOOL_NAMES[:3]
('pattern_store', 'pattern_search', 'pattern_get')
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

from ..errors import AgentDBError, InvalidArgumentError, describe
from ..graph.cypher import is_read_only

__all__ = ["EXTRA_HINT", "RECENT_LIMIT", "TOOL_NAMES", "register"]

EXTRA_HINT = "the AgentDB MCP server needs the 'mcp' extra: pip install 'agentdb[mcp]'"

#: Records listed by the ``agentdb://<kind>/recent`` resources.
RECENT_LIMIT = 20
TOOL_NAMES = (
    "pattern_store", "pattern_search", "pattern_get", "pattern_update", "pattern_delete",
    "reflexion_store", "reflexion_retrieve", "reflexion_critique_summary",
    "skill_create", "skill_search", "skill_record_outcome",
    "causal_add_event", "causal_add_edge", "causal_add_chain", "causal_query_paths",
    "cypher_query", "learning_feedback", "db_stats",
)


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN/inf become None (JSON has no spelling for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _hits(hits: list[Any]) -> dict[str, Any]:
    return {"results": [_jsonable(h.to_dict()) for h in hits], "count": len(hits)}


def register(server: Any, db: Any, *, allow_writes: bool = False) -> None:
    """Add AgentDB's tools and resources to an ``mcp`` ``MCPServer`` over ``db``.

    ``allow_writes``: let ``cypher_query`` run CREATE / MERGE / SET / DELETE / REMOVE
    (refused by default; the typed tools still write).

    >>> register  # doctest: +ELLIPSIS
    <function register at ...>
    """
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    destructive = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                  open_world_hint=False)

    def tool(annotations: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                try:
                    return fn(*args, **kwargs)
                except (AgentDBError, ValueError, TypeError, KeyError) as exc:
                    info = describe(exc)
                    if info.code == "internal_error":
                        raise
                    raise ToolError(f"{info.code}: {info.message}") from None

            server.add_tool(guarded, name=fn.__name__, description=fn.__doc__,
                            annotations=annotations)
            return fn
        return wrap

    # ---- patterns --------------------------------------------------------------------------
    @tool(writes)
    def pattern_store(task: str, reward: float = 0.0, success: bool = False,
                      session_id: str | None = None, critique: str | None = None,
                      input: str | None = None, output: str | None = None,  # noqa: A002
                      metadata: dict[str, Any] | None = None, ttl: float | None = None,
                      dedupe: float | None = None) -> dict[str, Any]:
        """Store a reasoning pattern: what the agent did (task), how well it went (reward in
        [-1, 1], success), optional input/output/critique, session id and JSON metadata.
        ttl: seconds until it expires. dedupe (e.g. 0.95): fold it into a stored pattern at
        least that similar instead (its uses + 1, reward averaged). Returns its id."""
        pid = db.store_pattern(task, reward=reward, success=success, session_id=session_id,
                               critique=critique, input=input, output=output, metadata=metadata,
                               ttl=ttl, dedupe=dedupe)
        return {"id": pid}

    @tool(read_only)
    def pattern_search(query: str, k: int = 5, min_reward: float | None = None,
                       success_only: bool = False, session_id: str | None = None,
                       where: dict[str, Any] | None = None,
                       threshold: float | None = None,
                       diversity: float | None = None, mode: str = "vector") -> dict[str, Any]:
        """Find the stored patterns most similar to a task description, best first. Filters:
        min_reward, success_only, session_id, where (metadata: {"key": value} or operators
        $eq $ne $gt $gte $lt $lte $in $nin $exists), threshold (minimum cosine similarity).
        diversity (0..1): skip near-duplicates of hits already picked (0 = similarity
        order). mode: "vector" (default: by embedding), "text" (the words, e.g. error
        codes and names) or "hybrid" (both fused)."""
        return _hits(db.search_patterns(query, k=k, min_reward=min_reward,
                                        success_only=success_only, session_id=session_id,
                                        where=where, threshold=threshold,
                                        diversity=diversity, mode=mode))

    @tool(read_only)
    def pattern_get(id: int) -> dict[str, Any]:  # noqa: A002
        """Read one pattern by id."""
        return _jsonable(db.get_pattern(id).to_dict())

    @tool(writes)
    def pattern_update(id: int, reward: float | None = None,  # noqa: A002
                       success: bool | None = None, critique: str | None = None,
                       metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change a pattern's reward, success flag, critique or metadata (omitted fields keep
        their values). Returns the updated pattern."""
        changes = {k: v for k, v in (("reward", reward), ("success", success),
                                     ("critique", critique), ("metadata", metadata))
                   if v is not None}
        if not changes:
            raise InvalidArgumentError("nothing to update: give reward, success, critique "
                                       "or metadata")
        return _jsonable(db.update_pattern(id, **changes).to_dict())

    @tool(destructive)
    def pattern_delete(id: int) -> dict[str, Any]:  # noqa: A002
        """Delete one pattern by id."""
        db.delete_pattern(id)
        return {"deleted": id}

    @tool(destructive)
    def memory_forget(kinds: list[str] | None = None, older_than: float | None = None,
                      reward_below: float | None = None, unused_for: float | None = None,
                      where: dict[str, Any] | None = None) -> dict[str, Any]:
        """Remove expired memories for good and, when criteria are given, the memories that
        meet all of them: older_than / unused_for in seconds, reward_below, a metadata where.
        kinds: patterns, episodes, skills (default all). Returns the removed ids per kind."""
        return {"removed": db.forget(kinds, older_than=older_than, reward_below=reward_below,
                                     unused_for=unused_for, where=where)}

    # ---- episodes (Reflexion) ----------------------------------------------------------------
    @tool(writes)
    def reflexion_store(task: str, reward: float = 0.0, success: bool = False,
                        critique: str | None = None, session_id: str | None = None,
                        input: str | None = None, output: str | None = None,  # noqa: A002
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store an episode with its self-critique (the Reflexion loop: try, critique, store;
        later, retrieve the critiques of similar failed attempts). Returns its id."""
        eid = db.store_episode(task, reward=reward, success=success, critique=critique,
                               session_id=session_id, input=input, output=output,
                               metadata=metadata)
        return {"id": eid}

    @tool(read_only)
    def reflexion_retrieve(query: str, k: int = 5, only_failures: bool = False,
                           only_successes: bool = False, min_reward: float | None = None,
                           session_id: str | None = None,
                           diversity: float | None = None) -> dict[str, Any]:
        """Find past episodes similar to a task, best first (optionally only failures or only
        successes, a minimum reward, one session; diversity 0..1 skips near-duplicates)."""
        if only_failures and only_successes:
            raise InvalidArgumentError("only_failures and only_successes exclude each other")
        success = False if only_failures else True if only_successes else None
        return _hits(db.search_episodes(query, k=k, success=success, min_reward=min_reward,
                                        session_id=session_id, diversity=diversity))

    @tool(read_only)
    def reflexion_critique_summary(task: str, k: int = 5) -> dict[str, Any]:
        """The critiques of the k failed episodes most similar to a task (distinct, most
        similar first): lessons to read before trying again."""
        critiques = db.critique_summary(task, k=k)
        return {"critiques": critiques, "count": len(critiques)}

    # ---- skills --------------------------------------------------------------------------
    @tool(writes)
    def skill_create(name: str, description: str = "", signature: str | None = None,
                     code: str | None = None,
                     metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a reusable skill (unique name, description, optional signature and code).
        Returns its id."""
        sid = db.store_skill(name, description, signature=signature, code=code,
                             metadata=metadata)
        return {"id": sid}

    @tool(read_only)
    def skill_search(query: str, k: int = 5, threshold: float | None = None,
                     where: dict[str, Any] | None = None,
                     diversity: float | None = None) -> dict[str, Any]:
        """Find the skills whose name and description best match a need, best first
        (diversity 0..1 skips near-duplicates)."""
        return _hits(db.search_skills(query, k=k, threshold=threshold, where=where,
                                      diversity=diversity))

    @tool(writes)
    def skill_record_outcome(skill: str, success: bool) -> dict[str, Any]:
        """Record one use of a skill (by name, or id as a string) and whether it worked; the
        skill's uses and success rate are updated. Returns the skill."""
        key: int | str = int(skill) if skill.isdigit() else skill
        old = db.get_skill(key)
        uses = int(old.uses) + 1
        rate = (float(old.success_rate) * old.uses + (1.0 if success else 0.0)) / uses
        return _jsonable(db.update_skill(key, uses=uses, success_rate=rate).to_dict())

    # ---- causal graph ----------------------------------------------------------------------
    @tool(writes)
    def causal_add_event(name: str, type: str | None = None,  # noqa: A002
                         labels: list[str] | None = None, pattern_id: int | None = None,
                         episode_id: int | None = None,
                         properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """Add an event node to the causal graph (label Event unless labels are given; type
        such as root_cause / symptom / outcome; optional link to a pattern or episode)."""
        props = dict(properties or {})
        props["name"] = name
        if type is not None:
            props["type"] = type
        nid = db.graph.add_event(labels or "Event", pattern_id=pattern_id,
                                 episode_id=episode_id, **props)
        return {"id": nid}

    @tool(writes)
    def causal_add_edge(causes: list[int], effects: list[int], type: str = "CAUSED_BY",  # noqa: A002
                        confidence: float = 1.0,
                        properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record that the cause events led to the effect events (a hyperedge; confidence in
        [0, 1]). Returns the edge id."""
        eid = db.graph.add_causal_edge(causes, effects, type=type, confidence=confidence,
                                       **(properties or {}))
        return {"id": eid}

    @tool(writes)
    def causal_add_chain(events: list[int], type: str = "CAUSED_BY",  # noqa: A002
                         confidence: float = 1.0) -> dict[str, Any]:
        """Record a chain e1 -> e2 -> ... -> en: one edge per consecutive pair plus a chain
        hyperedge over all of them. Returns the chain edge id and the pair edge ids."""
        chain, pairs = db.graph.add_causal_chain(events, type=type, confidence=confidence)
        return {"chain_id": chain, "edge_ids": pairs}

    @tool(read_only)
    def causal_query_paths(outcome_id: int, max_depth: int = 5, limit: int = 10,
                           root_type: str | None = "root_cause",
                           edge_type: str = "CAUSED_BY") -> dict[str, Any]:
        """The most confident causal chains that end in an outcome event (from events of
        root_type; null for any), with their confidence products."""
        paths = db.graph.query_causal_path(outcome_id, max_depth=max_depth, limit=limit,
                                           root_type=root_type, edge_type=edge_type)
        return {"paths": _jsonable(paths), "count": len(paths)}

    @tool(read_only if not allow_writes else writes)
    def cypher_query(query: str, params: dict[str, Any] | None = None,
                     timeout: float = 30.0, max_rows: int = 10_000) -> dict[str, Any]:
        """Run a Cypher query over the causal graph and return its rows, e.g.
        MATCH (a:Event)-[:CAUSED_BY*1..3]->(b:Event {name: $n}) RETURN a.name. Read-only
        unless the server was started with --allow-writes. Bounded: past ``timeout`` seconds
        (at most 300) the query stops with a timeout error; more than ``max_rows`` rows (at
        most 100000) is an error too (add LIMIT or aggregate)."""
        if not allow_writes and not is_read_only(query):
            raise InvalidArgumentError(
                "this MCP server runs read-only Cypher (no CREATE, MERGE, SET, DELETE or "
                "REMOVE); start it with --allow-writes to change the graph with Cypher")
        rows = db.graph.query(query, params or {}, timeout=min(timeout, 300.0),
                              max_rows=min(max_rows, 100_000))
        return {"rows": json.loads(json.dumps(_jsonable(rows), default=str)),
                "count": len(rows)}

    # ---- learning and stats ----------------------------------------------------------------
    @tool(writes)
    def learning_feedback(query: str, pattern_id: int, reward: float = 1.0) -> dict[str, Any]:
        """Tell the store that, for this query, the pattern was the right memory (reward in
        [-1, 1]); its query adapter learns from it and later searches rank accordingly."""
        out = db.feedback(query, pattern_id, reward)
        return {"ok": True, "update": _jsonable(out if isinstance(out, dict) else {})}

    @tool(read_only)
    def db_stats() -> dict[str, Any]:
        """Counts of patterns, episodes, skills, graph nodes and edges, the embedder and the
        backend."""
        return _stats()

    def _stats() -> dict[str, Any]:
        out = dict(db.stats())
        out.pop("path", None)  # the store's file path is not the agent's business
        return json.loads(json.dumps(_jsonable(out), default=str))

    # ---- resources -------------------------------------------------------------------------
    @server.resource("agentdb://stats", name="stats", mime_type="application/json",
                     description="Counts and configuration of this AgentDB store.")
    def stats_resource() -> str:
        return json.dumps(_stats())

    def recent(kind: str) -> Callable[[], str]:
        def read() -> str:
            records = [_jsonable(r.to_dict()) for r in db.recent(kind, RECENT_LIMIT)]
            return json.dumps({kind: records}, default=str)
        return read

    for kind in ("patterns", "episodes", "skills"):
        server.resource(f"agentdb://{kind}/recent", name=f"recent-{kind}",
                        mime_type="application/json",
                        description=f"The {RECENT_LIMIT} most recently stored {kind}.")(
            recent(kind))
