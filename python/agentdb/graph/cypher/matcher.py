"""Pattern matching: planning and executing the patterns of a MATCH clause.

Planning (once per clause, when the query is compiled):

* each comma-separated pattern part is *anchored* on its most selective node: a variable bound
  by an earlier clause or part; else ``id(v) = expr``; else a node with property equalities
  (from its inline map or from ``v.p = expr`` conjuncts of WHERE whose other side is already
  computable), preferring an indexed ``(label, property)`` (``GraphView.has_index``), then any
  label with equalities, then equalities alone; else a labelled node; else all nodes. Ties go
  to inline-map equalities over WHERE ones, then to the leftmost node;
* parts are ordered greedily: the next part is the one whose anchor is best given the variables
  already bound (so parts sharing variables are joined, unrelated parts form a cartesian
  product);
* from the anchor the part is expanded rightwards, then leftwards, with ``GraphView.expand`` for
  single hops and ``GraphView.var_paths`` for variable-length hops (walking a relationship
  leftwards flips its direction; the returned trail is reversed back into pattern order, and
  the far node is passed as ``dst`` when it is already bound);
* WHERE is split into AND-ed conjuncts, each evaluated as soon as all its variables are bound
  (before the anchor, after the anchor, after any hop, or once the path variable exists).

Execution enumerates matches depth-first for each input row. Relationships are unique within
one MATCH clause (no relationship, identified by ``(edge id, start, end)``, is bound twice);
nodes may repeat.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from . import ast as A
from .budget import active
from .errors import CypherSyntaxError
from .expressions import Compiler, Fn, Row, err, free_vars
from .planner import FLIP, PartPlan, as_dict, conjuncts, equality, storable
from .values import NodeRef, PathRef, RelRef

__all__ = ["MatchPlan", "PatternCompiler", "compile_exists", "conjuncts"]

class _Chain:
    """A fixed-length pattern part answered by the view's native ``match_chain``.

    Used when the view offers ``match_chain`` and ``index_lookup`` (the causal graph does),
    the part has 1-3 single hops with direction (``-->`` / ``<--``), no relationship property
    maps, no variable bound before the clause and no variable repeated in it. Every node
    position with an indexed equality (inline map or a WHERE conjunct computable before the
    part) becomes an allowed-id set; the traversal starts from the end with a set (the left
    end when both or neither have one) and keeps Cypher's relationship uniqueness. Labels and
    property maps the sets do not guarantee, and the WHERE conjuncts not consumed by a set,
    are checked on each row as before.
    """

    def __init__(self, pp: PartPlan) -> None:
        self.pp = pp
        self.specs: list[tuple[str, str, Fn, A.Expr | None, bool] | None] = []
        self.reverse = False
        self.preds_all: list[Fn] = []
        self.preds_fast: list[Fn] = []
        self.types: list[list[str] | None] = []
        self.dirs: list[str] = []

    @staticmethod
    def plan(
        pp: PartPlan, bound: set[str], where: list[tuple[A.Expr, set[str]]],
        scope: Mapping[str, str],
    ) -> _Chain | None:
        graph = pp.mp.compiler.ctx.graph
        if getattr(graph, "match_chain", None) is None:
            return None
        if getattr(graph, "index_lookup", None) is None:
            return None
        if not 1 <= len(pp.rels) <= 3:
            return None
        if pp.anchor_mode not in ("find", "label", "all"):
            return None
        node_vars = [n.var for n in pp.nodes if n.var is not None]
        if len(set(node_vars)) != len(node_vars) or any(v in bound for v in node_vars):
            return None
        for r in pp.rels:
            if r.length is not None or r.props is not None or r.pattern.direction == "both":
                return None
            if r.var is not None and (r.var in bound or r.var in node_vars):
                return None
        for n in pp.nodes:
            if n.props is not None and not n.props_static:
                return None
        ch = _Chain(pp)
        for r in pp.rels:
            ch.dirs.append(r.pattern.direction)
            ch.types.append(r.types)
        consumed: set[int] = set()
        for n in pp.nodes:
            spec = None
            cands: list[tuple[str, A.Expr, A.Expr | None]] = []
            props = n.pattern.properties
            if isinstance(props, A.MapLiteral) and free_vars(props) <= bound:
                cands.extend((k, x, None) for k, x in props.items)
            if n.var is not None:
                for conj, _vars in where:
                    m = equality(conj, n.var, bound)
                    if m is not None and m[0] is not None:
                        cands.append((m[0], m[1], conj))
            for lab in n.labels:
                for key, expr, conj in cands:
                    if spec is None and graph.has_index(lab, key):
                        inline_only = (
                            conj is None and isinstance(props, A.MapLiteral)
                            and len(props.items) == 1
                        )
                        spec = (lab, key, pp.mp.compiler.compile(expr, scope), conj, inline_only)
            ch.specs.append(spec)
            if spec is not None and spec[3] is not None:
                consumed.add(id(spec[3]))
        ch.reverse = ch.specs[0] is None and ch.specs[-1] is not None
        ch.preds_all = [f for _c, f in pp.taken]
        ch.preds_fast = [f for c, f in pp.taken if id(c) not in consumed]
        return ch

    def describe(self) -> str:
        """One line for EXPLAIN: the native chain match and its index sets."""
        sets = [f"{j}: index {sp[0]}.{sp[1]}" for j, sp in enumerate(self.specs) if sp]
        side = "right" if self.reverse else "left"
        return (f"native chain match, {len(self.dirs)} hop(s) from the {side} end"
                + (f", allowed-id sets at {'; '.join(sets)}" if sets else ""))

    def _checks(self, fast: bool, exact: list[bool]) -> list[int]:
        """Positions whose labels / property map still need a per-row check."""
        out = []
        for j, (n, spec) in enumerate(zip(self.pp.nodes, self.specs)):
            labels = set() if exact[j] else set(n.labels)
            props = n.props is not None
            if fast and spec is not None:
                labels.discard(spec[0])  # the index only holds nodes with that label
                props = props and not spec[4]
            if labels or props:
                out.append(j)
        return out

    def run(self, row: Row, used: set[tuple[int, int, int]]) -> Iterator[Row]:
        pp = self.pp
        graph = pp.mp.compiler.ctx.graph
        allowed: list[Any] = []
        fast = True
        for spec in self.specs:
            if spec is None:
                allowed.append(None)
                continue
            lab, key, f, _conj, _inline = spec
            want = f(row)
            if not storable(want):
                return  # null, maps, nodes...: no stored property equals them
            if type(want) is not str and not (type(want) in (int, bool) or (
                    type(want) is float and want == want)):
                fast = False  # lists / NaN: keep every check
            ids = graph.index_lookup(lab, {key: want})
            if not ids:
                return
            allowed.append(ids)
        reqs: list[dict[str, Any] | None] = []
        for slot in pp.nodes:
            reqs.append(as_dict(slot.props(row), slot.pattern) if slot.props is not None
                        else None)
        preds = self.preds_fast if fast else self.preds_all
        types, dirs = list(self.types), list(self.dirs)
        labels = [list(n.labels) for n in pp.nodes]
        if self.reverse:
            allowed.reverse()
            types.reverse()
            labels.reverse()
            dirs = [FLIP[d] for d in reversed(dirs)]
        node_tab, edge_tab, exact = graph.match_chain(types, dirs, allowed, labels)
        if self.reverse:
            node_tab = node_tab[:, ::-1]
            edge_tab = edge_tab[:, ::-1]
            exact = exact[::-1]
        node_checks = [(j, pp.nodes[j]) for j in self._checks(fast, exact)]
        node_rows = node_tab.tolist()
        edge_rows = edge_tab.tolist()
        node_vars = [(j, sl.var) for j, sl in enumerate(pp.nodes) if sl.var is not None]
        rel_vars = [(j, rs.var) for j, rs in enumerate(pp.rels) if rs.var is not None]
        outs = [d == "out" for d in self.dirs]
        path_var = pp.path_var
        # relationships are needed for bindings and for uniqueness against other parts
        need_rels = bool(rel_vars) or path_var is not None or len(pp.mp.parts) > 1
        rels: list[tuple[int, int, int]] = []
        budget = active()
        tick = budget.tick if budget is not None else None
        for ns, es in zip(node_rows, edge_rows):
            if tick is not None:
                tick()
            if need_rels:
                rels = [
                    (e, ns[k], ns[k + 1]) if outs[k] else (e, ns[k + 1], ns[k])
                    for k, e in enumerate(es)
                ]
                if used and any(t in used for t in rels):
                    continue
            if node_checks and not all(
                pp.node_ok(sl, ns[j], row, reqs[j]) for j, sl in node_checks
            ):
                continue
            r = dict(row)
            for j, v in node_vars:
                r[v] = NodeRef(ns[j])
            if need_rels:
                for j, v in rel_vars:
                    r[v] = RelRef(*rels[j])
                if path_var is not None:
                    r[path_var] = PathRef(tuple(ns), tuple(RelRef(*t) for t in rels))
            if preds and not all(p(r) is True for p in preds):
                continue
            if not need_rels:
                yield r
                continue
            used.update(rels)
            try:
                yield r
            finally:
                used.difference_update(rels)


class MatchPlan:
    """The compiled patterns (+ WHERE) of one MATCH clause, or of a pattern predicate."""

    def __init__(
        self,
        compiler: Compiler,
        patterns: list[A.PatternPart],
        where: A.Expr | None,
        scope: Mapping[str, str],
        existential: bool = False,
    ) -> None:
        self.compiler = compiler
        self.scope = dict(scope)
        declared = self._declare(patterns, existential)
        self.new_vars: list[str] = list(declared)
        full_scope = dict(scope)
        full_scope.update(declared)
        self.new_scope = full_scope
        parts = [PartPlan(self, p) for p in patterns]
        # property maps: static when computable from the variables bound before the clause
        for pp in parts:
            for slot in pp.nodes:
                if slot.pattern.properties is not None:
                    slot.props = compiler.compile(slot.pattern.properties, full_scope)
                    slot.props_static = free_vars(slot.pattern.properties) <= set(scope)
            for rslot in pp.rels:
                if rslot.pattern.properties is not None:
                    rslot.props = compiler.compile(rslot.pattern.properties, full_scope)
                    rslot.props_static = free_vars(rslot.pattern.properties) <= set(scope)
        conj = [(c, free_vars(c)) for c in conjuncts(where)]
        compiled = {id(c): compiler.predicate(c, full_scope) for c, _ in conj}
        # order the parts greedily by anchor quality, choosing each part's anchor
        bound = set(scope)
        remaining = list(parts)
        ordered: list[PartPlan] = []
        while remaining:
            best = None
            for pp in remaining:
                score, choice = pp.choose_anchor(bound, conj)
                if best is None or score < best[0]:
                    best = (score, choice, pp)
            assert best is not None
            _, choice, pp = best
            pp.apply_anchor(choice, full_scope)
            pp.build_steps()
            remaining.remove(pp)
            ordered.append(pp)
            bound |= _part_vars(pp.part)
        self.parts = ordered
        # mark positions whose variable is already bound when reached; push predicates down
        pending = list(conj)

        taken: list[tuple[A.Expr, Fn]] = []

        def take(now_bound: set[str]) -> list[Fn]:
            ready = [c for c in pending if c[1] <= now_bound]
            for c in ready:
                pending.remove(c)
                taken.append((c[0], compiled[id(c[0])]))
            return [compiled[id(c[0])] for c in ready]

        bound = set(scope)
        self.start_preds = take(bound)
        for pp in ordered:
            before = set(bound)
            taken = pp.taken
            aslot = pp.nodes[pp.anchor]
            aslot.check = aslot.var is not None and aslot.var in bound
            if aslot.var is not None:
                bound.add(aslot.var)
            pp.anchor_preds = take(bound)
            for st in pp.steps:
                rslot = pp.rels[st.rel]
                tslot = pp.nodes[st.dst]
                rslot.check = rslot.var is not None and rslot.var in bound
                tslot.check = tslot.var is not None and tslot.var in bound
                if rslot.length is not None and not tslot.check:
                    st.ends = pp.ends_spec(tslot, bound, conj, full_scope)
                if rslot.var is not None:
                    bound.add(rslot.var)
                if tslot.var is not None:
                    bound.add(tslot.var)
                st.preds = take(bound)
            if pp.path_var is not None:
                bound.add(pp.path_var)
            pp.end_preds = take(bound)
            pp.chain = _Chain.plan(pp, before, conj, full_scope)
        if pending:  # pragma: no cover - compile() already rejected unknown variables
            raise err("WHERE refers to unknown variables", pending[0][0])

    def _declare(self, patterns: list[A.PatternPart], existential: bool) -> dict[str, str]:
        scope = self.scope
        declared: dict[str, str] = {}
        for part in patterns:
            if part.variable is not None:
                pv = part.variable
                if pv in scope or pv in declared:
                    raise err(f"variable `{pv}` already declared", part)
                declared[pv] = "path"
            for node in part.nodes:
                v = node.variable
                if v is None:
                    continue
                kind = declared.get(v, scope.get(v))
                if kind is None:
                    declared[v] = "node"
                elif kind not in ("node", "any"):
                    raise err(f"variable `{v}` is a {_KIND_NAMES[kind]}, not a node", node)
            for rel in part.rels:
                v = rel.variable
                if v is None:
                    continue
                if v in declared:
                    kind = declared[v]
                    if kind in ("rel", "rels"):
                        raise err(
                            f"relationship variable `{v}` is used more than once in a pattern",
                            rel,
                        )
                    raise err(f"variable `{v}` is a {_KIND_NAMES[kind]}, not a relationship", rel)
                kind = scope.get(v)
                if kind is None:
                    declared[v] = "rels" if rel.length is not None else "rel"
                    continue
                if rel.length is not None:
                    raise CypherSyntaxError(
                        f"unsupported: variable-length relationship `{v}` bound by an earlier "
                        "clause",
                        rel.pos[0],
                        rel.pos[1],
                    )
                if kind not in ("rel", "any"):
                    raise err(f"variable `{v}` is a {_KIND_NAMES[kind]}, not a relationship", rel)
        del existential
        return declared

    def describe(self) -> list[str]:
        """The parts in the order they are matched, each with its anchor and steps."""
        out: list[str] = []
        for i, pp in enumerate(self.parts):
            lines = pp.describe()
            out.append(f"part {i + 1}: {lines[0]}")
            out.extend("  " + line for line in lines[1:])
        return out

    def run(self, row: Row) -> Iterator[Row]:
        """All extensions of ``row`` matching the patterns and WHERE."""
        if self.start_preds and not all(p(row) is True for p in self.start_preds):
            return iter(())
        return self._parts(0, row, set())

    def _parts(self, i: int, row: Row, used: set[tuple[int, int, int]]) -> Iterator[Row]:
        if i == len(self.parts):
            yield row
            return
        for r in self.parts[i].run(row, used):
            yield from self._parts(i + 1, r, used)


_KIND_NAMES = {
    "node": "node",
    "rel": "relationship",
    "rels": "list of relationships",
    "path": "path",
    "any": "value",
}


def _part_vars(part: A.PatternPart) -> set[str]:
    out = {n.variable for n in part.nodes if n.variable}
    out |= {r.variable for r in part.rels if r.variable}
    if part.variable:
        out.add(part.variable)
    return out  # type: ignore[return-value]


def compile_exists(compiler: Compiler, e: A.PatternPredicate, scope: Mapping[str, str]) -> Fn:
    """A pattern used as a predicate: true when at least one match exists."""
    if e.pattern.variable is not None:
        raise err("a pattern predicate cannot declare a path variable", e)
    plan = MatchPlan(compiler, [e.pattern], None, scope, existential=True)

    def f(row: Row) -> Any:
        for _ in plan.run(row):
            return True
        return False

    return f


class PatternCompiler(Compiler):
    """The expression compiler that also compiles pattern predicates
    (``WHERE (a)-[:R]->(b)``, ``EXISTS { ... }``) into matcher plans."""

    def _c_PatternPredicate(self, e: A.PatternPredicate, scope: Mapping[str, str], aggs: Any) -> Fn:
        return compile_exists(self, e, scope)
