"""The writing half of the Cypher executor: CREATE, MERGE, SET, REMOVE and DELETE compiled
into row operators over a :class:`~agentdb.graph.cypher.graphview.GraphView`, with the checks on
the property values they store. :mod:`agentdb.graph.cypher.executor` mixes
:class:`WriteCompiler` into its query compiler.

>>> prop_value([1, 2], None)
[1, 2]
>>> prop_map({"a": 1, "b": None}, None)
{'a': 1}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import ast as A
from .errors import CypherError, CypherSyntaxError
from .expressions import (
    Context,
    Fn,
    Row,
    err,
    error_at,
    free_vars,
)
from .functions import INT_MAX, INT_MIN
from .matcher import MatchPlan
from .values import (
    NodeRef,
    PathRef,
    RelRef,
    type_name,
)

__all__ = ["CreateSpec", "Op", "Scope", "WriteCompiler", "exists", "map_arg", "prop_map",
           "prop_value"]

Op = Callable[[Iterable[Row]], Iterable[Row]]
Scope = dict  # name -> kind


def prop_value(v: Any, node: A.Node | None) -> Any:
    """Validate a value about to be stored as a property."""
    t = type(v)
    if t is int or (t is list and any(type(x) is int for x in v)):
        for x in v if t is list else (v,):
            if type(x) is int and not INT_MIN <= x <= INT_MAX:
                raise err("integer property values must fit in 64 bits", node)
    if v is None or t in (bool, int, float, str):
        return v
    if t is list and all(type(x) in (bool, int, float, str) for x in v):
        return list(v)
    raise err(
        "property values must be booleans, numbers, strings or lists of those, "
        f"got {type_name(v)}",
        node,
    )


def prop_map(v: Any, node: A.Node | None) -> dict[str, Any]:
    if type(v) is not dict:
        raise err(f"expected a Map of properties, got {type_name(v)}", node)
    return {k: prop_value(x, node) for k, x in v.items() if x is not None}


def exists(getter: Callable[[int], Any], key: int) -> bool:
    try:
        getter(key)
    except CypherError:
        return False
    return True


def map_arg(m: Any, node: A.Node) -> dict[str, Any]:
    if type(m) is not dict:
        raise err(f"SET n = / += expects a Map, got {type_name(m)}", node)
    return m  # type: ignore[no-any-return]


class CreateSpec:
    """A pattern part to create (CREATE, or MERGE when nothing matched)."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str | None, list[str], Fn | None, bool, A.Node]] = []
        self.rels: list[tuple[str | None, str, Fn | None, str, A.Node]] = []
        self.path_var: str | None = None


class WriteCompiler:
    """The updating clauses of the query compiler (``self.ctx`` and the expression compiler
    come from the executor's query compiler, which extends this)."""

    ctx: Context

    # ---- writing ---------------------------------------------------------------------------

    def _create_spec(self, part: A.PatternPart, scope: Scope, merge: bool) -> CreateSpec:
        """Validate a pattern part for creation; extends ``scope`` with its new variables."""
        spec = CreateSpec()
        what = "MERGE" if merge else "CREATE"
        for node in part.nodes:
            v = node.variable
            if v is not None and v in scope:
                kind = scope[v]
                if kind not in ("node", "any"):
                    raise err(f"variable `{v}` is not a node", node)
                if node.labels or node.properties is not None or (merge and not part.rels):
                    raise err(
                        f"variable `{v}` is already declared; {what} cannot add labels or "
                        "properties to it",
                        node,
                    )
                spec.nodes.append((v, [], None, True, node))
                continue
            props = (
                self.comp.compile(node.properties, scope) if node.properties is not None else None
            )
            spec.nodes.append((v, list(node.labels), props, False, node))
            if v is not None:
                scope[v] = "node"
        for rel in part.rels:
            if rel.length is not None:
                raise err(f"variable-length relationships cannot be used in {what}", rel)
            if len(rel.types) != 1:
                raise err(f"a relationship in {what} needs exactly one type", rel)
            if rel.direction == "both" and not merge:
                raise err("relationships in CREATE must have a direction", rel)
            v = rel.variable
            if v is not None:
                if v in scope:
                    raise err(f"variable `{v}` already declared", rel)
                scope[v] = "rel"
            props = self.comp.compile(rel.properties, scope) if rel.properties is not None else None
            spec.rels.append((v, rel.types[0], props, rel.direction, rel))
        if part.variable is not None:
            if part.variable in scope:
                raise err(f"variable `{part.variable}` already declared", part)
            scope[part.variable] = "path"
            spec.path_var = part.variable
        return spec

    def _run_create(self, spec: CreateSpec, r: Row) -> None:
        graph = self.ctx.graph
        stats = self.ctx.stats
        ids: list[int] = []
        for var, labels, props_fn, reuse, node in spec.nodes:
            if reuse:
                v = r.get(var)  # type: ignore[arg-type]
                if type(v) is not NodeRef:
                    raise err(f"cannot create: `{var}` is {type_name(v)}, not a Node", node)
                ids.append(v.id)
                continue
            props = prop_map(props_fn(r), node) if props_fn is not None else {}
            nid = graph.create_node(list(labels), props)
            stats.nodes_created += 1
            stats.properties_set += len(props)
            if var is not None:
                r[var] = NodeRef(nid)
            ids.append(nid)
        refs: list[RelRef] = []
        for j, (var, typ, props_fn, direction, rel) in enumerate(spec.rels):
            a, b = ids[j], ids[j + 1]
            if direction == "in":
                a, b = b, a
            props = prop_map(props_fn(r), rel) if props_fn is not None else {}
            eid = graph.create_relationship(typ, a, b, props)
            stats.relationships_created += 1
            stats.properties_set += len(props)
            rr = RelRef(eid, a, b)
            refs.append(rr)
            if var is not None:
                r[var] = rr
        if spec.path_var is not None:
            r[spec.path_var] = PathRef(tuple(ids), tuple(refs))

    def create(self, c: A.Create, scope: Scope) -> tuple[Op, Scope]:
        new_scope = dict(scope)
        specs = [self._create_spec(p, new_scope, False) for p in c.patterns]

        def op(rows: Iterable[Row]) -> list[Row]:
            out = []
            for row in list(rows):
                r = dict(row)
                for spec in specs:
                    self._run_create(spec, r)
                out.append(r)
            return out

        return op, new_scope

    def merge(self, c: A.Merge, scope: Scope) -> tuple[Op, Scope]:
        part = c.pattern
        if len(part.rels) > 1:
            raise CypherSyntaxError(
                "unsupported: MERGE of a pattern with more than one relationship",
                part.pos[0],
                part.pos[1],
            )
        create_scope = dict(scope)
        spec = self._create_spec(part, create_scope, True)
        plan = MatchPlan(self.comp, [part], None, scope)
        new_scope = plan.new_scope
        on_create = [self._set_item(i, new_scope) for i in c.on_create]
        on_match = [self._set_item(i, new_scope) for i in c.on_match]
        null_checks: list[tuple[str, Fn, A.Node]] = []
        for node in part.nodes:
            if node.properties is not None and free_vars(node.properties) <= set(scope):
                null_checks.append(("node", self.comp.compile(node.properties, scope), node))
        for rel in part.rels:
            if rel.properties is not None and free_vars(rel.properties) <= set(scope):
                null_checks.append(
                    ("relationship", self.comp.compile(rel.properties, scope), rel)
                )

        def op(rows: Iterable[Row]) -> list[Row]:
            out = []
            for row in list(rows):
                for what, f, node in null_checks:
                    m = f(row)
                    if type(m) is not dict:
                        raise err(f"expected a Map of properties, got {type_name(m)}", node)
                    for k, v in m.items():
                        if v is None:
                            raise err(
                                f"cannot merge {what} using null property value for '{k}'", node
                            )
                matches = list(plan.run(row))
                if matches:
                    for m in matches:
                        m = dict(m)
                        for apply in on_match:
                            apply(m)
                        out.append(m)
                else:
                    r = dict(row)
                    self._run_create(spec, r)
                    for apply in on_create:
                        apply(r)
                    out.append(r)
            return out

        return op, new_scope

    def _target(self, v: Any, node: A.Node, what: str) -> Any:
        if v is None or type(v) in (NodeRef, RelRef):
            return v
        raise err(f"{what} needs a Node or Relationship, got {type_name(v)}", node)

    def _set_property(self, t: Any, key: str, value: Any) -> None:
        graph = self.ctx.graph
        if type(t) is NodeRef:
            graph.set_node_property(t.id, key, value)
            self.ctx.forget_node(t.id)
        else:
            graph.set_relationship_property(t.id, key, value)
            self.ctx.forget_rel(t.id)
        self.ctx.stats.properties_set += 1

    def _props_of(self, t: Any) -> dict[str, Any]:
        if type(t) is NodeRef:
            return self.ctx.node_data(t.id)[1]
        return self.ctx.rel_data(t.id)[1]

    def _set_item(self, item: A.Node, scope: Scope) -> Callable[[Row], None]:
        comp = self.comp
        ctx = self.ctx
        if isinstance(item, A.SetProperty):
            subj = comp.compile(item.target.subject, scope)
            val = comp.compile(item.value, scope)
            key = item.target.key

            def set_prop(row: Row) -> None:
                t = self._target(subj(row), item, "SET")
                v = prop_value(val(row), item)
                if t is None:
                    return
                try:
                    self._set_property(t, key, v)
                except CypherError as exc:
                    raise error_at(exc, item.pos) from None

            return set_prop
        if isinstance(item, A.SetProperties):
            if item.variable not in scope:
                raise err(f"variable `{item.variable}` not defined", item)
            val = comp.compile(item.value, scope)
            var = item.variable
            merge = item.merge

            def set_props(row: Row) -> None:
                t = self._target(row.get(var), item, "SET")
                m = val(row)
                if t is None:
                    return
                if type(m) in (NodeRef, RelRef):
                    m = dict(self._props_of(m))
                newp = {k: prop_value(x, item) for k, x in map_arg(m, item).items()}
                if not merge:
                    for k in list(self._props_of(t)):
                        if k not in newp:
                            self._set_property(t, k, None)
                for k, x in newp.items():
                    self._set_property(t, k, x)

            return set_props
        if isinstance(item, A.SetLabels):
            if item.variable not in scope:
                raise err(f"variable `{item.variable}` not defined", item)
            var = item.variable
            labels = list(item.labels)

            def set_labels(row: Row) -> None:
                t = row.get(var)
                if t is None:
                    return
                if type(t) is not NodeRef:
                    raise err(f"labels can only be set on nodes, not {type_name(t)}", item)
                have = ctx.node_data(t.id)[0]
                for lab in labels:
                    if lab not in have:
                        ctx.graph.add_label(t.id, lab)
                        ctx.forget_node(t.id)
                        have = ctx.node_data(t.id)[0]
                        ctx.stats.labels_added += 1

            return set_labels
        raise err("unsupported SET item", item)  # pragma: no cover

    def set_clause(self, c: A.SetClause, scope: Scope) -> Op:
        items = [self._set_item(i, scope) for i in c.items]

        def op(rows: Iterable[Row]) -> list[Row]:
            rows = list(rows)
            for row in rows:
                for apply in items:
                    apply(row)
            return rows

        return op

    def remove(self, c: A.Remove, scope: Scope) -> Op:
        ctx = self.ctx
        actions: list[Callable[[Row], None]] = []
        for item in c.items:
            if isinstance(item, A.RemoveProperty):
                subj = self.comp.compile(item.target.subject, scope)
                key = item.target.key

                def rm_prop(row: Row, subj: Fn = subj, key: str = key, item: A.Node = item) -> None:
                    t = self._target(subj(row), item, "REMOVE")
                    if t is not None and key in self._props_of(t):
                        self._set_property(t, key, None)

                actions.append(rm_prop)
            elif isinstance(item, A.RemoveLabels):
                if item.variable not in scope:
                    raise err(f"variable `{item.variable}` not defined", item)

                def rm_labels(
                    row: Row, var: str = item.variable, labels: list[str] = item.labels,
                    item: A.Node = item,
                ) -> None:
                    t = row.get(var)
                    if t is None:
                        return
                    if type(t) is not NodeRef:
                        raise err(f"labels can only be removed from nodes, not {type_name(t)}",
                                  item)
                    for lab in labels:
                        if lab in ctx.node_data(t.id)[0]:
                            ctx.graph.remove_label(t.id, lab)
                            ctx.forget_node(t.id)
                            ctx.stats.labels_removed += 1

                actions.append(rm_labels)

        def op(rows: Iterable[Row]) -> list[Row]:
            rows = list(rows)
            for row in rows:
                for act in actions:
                    act(row)
            return rows

        return op

    def delete(self, c: A.Delete, scope: Scope) -> Op:
        fns = [(self.comp.compile(e, scope), e) for e in c.exprs]
        ctx = self.ctx
        detach = c.detach

        def collect(v: Any, nodes: dict[int, None], rels: dict[int, None], e: A.Node) -> None:
            t = type(v)
            if v is None:
                return
            if t is NodeRef:
                nodes[v.id] = None
            elif t is RelRef:
                rels[v.id] = None
            elif t is PathRef:
                for n in v.nodes:
                    nodes[n] = None
                for r in v.rels:
                    rels[r.id] = None
            elif t is list:
                for x in v:
                    collect(x, nodes, rels, e)
            else:
                raise err(f"DELETE expects nodes, relationships or paths, got {type_name(v)}", e)

        def op(rows: Iterable[Row]) -> list[Row]:
            rows = list(rows)
            nodes: dict[int, None] = {}
            rels: dict[int, None] = {}
            for row in rows:
                for f, e in fns:
                    collect(f(row), nodes, rels, e)
            graph = ctx.graph
            live_rels = [eid for eid in rels if exists(ctx.rel_data, eid)]
            live_nodes = [nid for nid in nodes if exists(ctx.node_data, nid)]
            doomed = set(live_rels)
            touching: dict[int, set[int]] = {}
            for nid in live_nodes:
                touching[nid] = {t[0] for t in graph.expand(nid, "both", None)} - doomed
                if touching[nid] and not detach:
                    raise CypherError(
                        f"cannot delete node {nid}: it still has relationships; "
                        "use DETACH DELETE",
                        c.pos[0],
                        c.pos[1],
                    )
            for eid in live_rels:
                graph.delete_relationship(eid)
                ctx.forget_rel(eid)
                ctx.stats.relationships_deleted += 1
            gone: set[int] = set()
            for nid in live_nodes:
                extra = touching[nid] - gone
                graph.delete_node(nid, detach)
                ctx.forget_node(nid)
                for eid in extra:
                    ctx.forget_rel(eid)
                gone |= extra
                ctx.stats.relationships_deleted += len(extra)
                ctx.stats.nodes_deleted += 1
            return rows

        return op
