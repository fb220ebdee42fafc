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
from .errors import CypherSyntaxError
from .expressions import Compiler, Fn, Row, err, free_vars
from .graphview import UNBOUNDED_HOPS
from .values import NodeRef, PathRef, RelRef, equals, type_name

__all__ = ["MatchPlan", "compile_exists", "conjuncts"]


def conjuncts(e: A.Expr | None) -> list[A.Expr]:
    """The AND-ed parts of a predicate (flattening nested ANDs)."""
    if e is None:
        return []
    if isinstance(e, A.BoolOp) and e.op == "AND":
        out: list[A.Expr] = []
        for o in e.operands:
            out.extend(conjuncts(o))
        return out
    return [e]


class _NodeSlot:
    __slots__ = ("var", "labels", "props", "props_static", "check", "pattern")

    def __init__(self, pattern: A.NodePattern) -> None:
        self.pattern = pattern
        self.var = pattern.variable
        self.labels = list(pattern.labels)
        self.props: Fn | None = None
        self.props_static = True
        self.check = False  # variable already bound when this position is reached


class _RelSlot:
    __slots__ = ("var", "types", "props", "props_static", "check", "length", "pattern")

    def __init__(self, pattern: A.RelPattern) -> None:
        self.pattern = pattern
        self.var = pattern.variable
        self.types: list[str] | None = list(pattern.types) if pattern.types else None
        self.props: Fn | None = None
        self.props_static = True
        self.check = False
        self.length = pattern.length


class _Step:
    __slots__ = ("rel", "src", "dst", "forward", "direction", "preds")

    def __init__(self, rel: int, src: int, dst: int, forward: bool, direction: str) -> None:
        self.rel = rel
        self.src = src
        self.dst = dst
        self.forward = forward
        self.direction = direction
        self.preds: list[Fn] = []


_FLIP = {"out": "in", "in": "out", "both": "both"}


def _as_dict(v: Any, node: A.Node) -> dict[str, Any]:
    if type(v) is not dict:
        raise err(f"a pattern's property map must be a Map, got {type_name(v)}", node)
    return v  # type: ignore[no-any-return]


class _PartPlan:
    """The plan of one pattern part."""

    def __init__(self, mp: MatchPlan, part: A.PatternPart) -> None:
        self.mp = mp
        self.part = part
        self.nodes = [_NodeSlot(n) for n in part.nodes]
        self.rels = [_RelSlot(r) for r in part.rels]
        self.path_var = part.variable
        self.anchor = 0
        self.anchor_mode = "all"
        self.anchor_label: str | None = None
        self.anchor_where_eq: list[tuple[str, Fn]] = []
        self.anchor_id: Fn | None = None
        self.anchor_inline = False
        self.anchor_preds: list[Fn] = []
        self.end_preds: list[Fn] = []
        self.steps: list[_Step] = []

    # ---- planning --------------------------------------------------------------------------

    def choose_anchor(
        self, bound: set[str], where: list[tuple[A.Expr, set[str]]]
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """Best anchor given ``bound`` variables: ``(score, choice)`` (lower score is better)."""
        best: tuple[tuple[int, ...], dict[str, Any]] | None = None
        graph = self.mp.compiler.ctx.graph
        for j, slot in enumerate(self.nodes):
            choice: dict[str, Any] = {"index": j}
            v = slot.var
            if v is not None and v in bound:
                score: tuple[int, ...] = (0, 0, j)
                choice["mode"] = "bound"
            else:
                inline_keys: list[str] = []
                props = slot.pattern.properties
                inline_ok = props is not None and free_vars(props) <= bound
                if inline_ok and isinstance(props, A.MapLiteral):
                    inline_keys = [k for k, _ in props.items]
                id_expr = None
                where_eq: list[tuple[str, A.Expr]] = []
                if v is not None:
                    for conj, _vars in where:
                        m = _equality(conj, v, bound)
                        if m is None:
                            continue
                        key, other = m
                        if key is None:
                            id_expr = id_expr or other
                        else:
                            where_eq.append((key, other))
                keys = inline_keys + [k for k, _ in where_eq]
                has_eq = bool(keys) or (inline_ok and isinstance(props, A.Parameter))
                choice["where_eq"] = where_eq
                choice["inline"] = inline_ok
                src_rank = 0 if inline_ok else 1
                if id_expr is not None:
                    score = (1, 0, j)
                    choice["mode"] = "id"
                    choice["id_expr"] = id_expr
                elif has_eq and slot.labels:
                    indexed = None
                    for lab in slot.labels:
                        for k in keys:
                            if graph.has_index(lab, k):
                                indexed = lab
                                break
                        if indexed:
                            break
                    choice["mode"] = "find"
                    if indexed is not None:
                        score = (2, src_rank, j)
                        choice["label"] = indexed
                    else:
                        score = (3, src_rank, j)
                        choice["label"] = slot.labels[0]
                elif has_eq:
                    score = (4, src_rank, j)
                    choice["mode"] = "find"
                    choice["label"] = None
                elif slot.labels:
                    score = (5, 0, j)
                    choice["mode"] = "label"
                    choice["label"] = slot.labels[0]
                else:
                    score = (6, 0, j)
                    choice["mode"] = "all"
            if best is None or score < best[0]:
                best = (score, choice)
        assert best is not None
        return best

    def apply_anchor(self, choice: dict[str, Any], scope: Mapping[str, str]) -> None:
        comp = self.mp.compiler
        self.anchor = choice["index"]
        self.anchor_mode = choice["mode"]
        self.anchor_label = choice.get("label")
        if self.anchor_mode == "id":
            self.anchor_id = comp.compile(choice["id_expr"], scope)
        if self.anchor_mode == "find":
            self.anchor_where_eq = [(k, comp.compile(x, scope)) for k, x in choice["where_eq"]]
            self.anchor_inline = choice["inline"]

    def build_steps(self) -> None:
        a = self.anchor
        steps: list[_Step] = []
        for j in range(a, len(self.rels)):
            steps.append(_Step(j, j, j + 1, True, self.rels[j].pattern.direction))
        for j in range(a - 1, -1, -1):
            steps.append(_Step(j, j + 1, j, False, _FLIP[self.rels[j].pattern.direction]))
        self.steps = steps

    # ---- execution -------------------------------------------------------------------------

    def run(self, row: Row, used: set[tuple[int, int, int]]) -> Iterator[Row]:
        reqs: list[dict[str, Any] | None] = []
        for slot in self.nodes:
            if slot.props is not None and slot.props_static:
                reqs.append(_as_dict(slot.props(row), slot.pattern))
            else:
                reqs.append(None)
        rreqs: list[dict[str, Any] | None] = []
        for rslot in self.rels:
            if rslot.props is not None and rslot.props_static:
                rreqs.append(_as_dict(rslot.props(row), rslot.pattern))
            else:
                rreqs.append(None)
        a = self.anchor
        aslot = self.nodes[a]
        n = len(self.nodes)
        k = len(self.rels)
        for nid in self._candidates(row, reqs[a]):
            if not self._node_ok(aslot, nid, row, reqs[a]):
                continue
            r = row
            if aslot.var is not None and not aslot.check:
                r = dict(row)
                r[aslot.var] = NodeRef(nid)
            if self.anchor_preds and not all(p(r) is True for p in self.anchor_preds):
                continue
            ids: list[int] = [0] * n
            ids[a] = nid
            segs: list[Any] = [None] * k
            seg_nodes: list[Any] = [None] * k
            yield from self._step(0, r, ids, segs, seg_nodes, used, reqs, rreqs)

    def _candidates(self, row: Row, req: dict[str, Any] | None) -> Any:
        graph = self.mp.compiler.ctx.graph
        mode = self.anchor_mode
        slot = self.nodes[self.anchor]
        if mode == "bound":
            v = row.get(slot.var)  # type: ignore[arg-type]
            if v is None:
                return ()
            if type(v) is not NodeRef:
                raise err(f"variable `{slot.var}` is a {type_name(v)}, not a Node", slot.pattern)
            return (v.id,)
        if mode == "id":
            assert self.anchor_id is not None
            v = self.anchor_id(row)
            if type(v) is float and v.is_integer():
                v = int(v)  # id(n) = 5.0 holds for node 5
            if type(v) is not int or not self.mp.compiler.ctx.node_exists(v):
                return ()
            return (v,)
        if mode == "find":
            props: dict[str, Any] = {}
            if self.anchor_inline:
                if req is None and slot.props is not None:
                    req = _as_dict(slot.props(row), slot.pattern)
                if req is not None:
                    props.update(req)
            for key, f in self.anchor_where_eq:
                v = f(row)
                if key in props and equals(props[key], v) is not True:
                    return ()
                props[key] = v
            if not all(_storable(v) for v in props.values()):
                return ()  # null, maps, nodes...: no stored property can equal them
            if not props:
                return graph.node_ids(self.anchor_label)
            return graph.find_nodes(self.anchor_label, props)
        if mode == "label":
            return graph.node_ids(self.anchor_label)
        return graph.node_ids()

    def _node_ok(self, slot: _NodeSlot, nid: int, row: Row, req: dict[str, Any] | None) -> bool:
        if slot.check:
            v = row.get(slot.var)  # type: ignore[arg-type]
            if v is None:
                return False
            if type(v) is not NodeRef:
                raise err(f"variable `{slot.var}` is a {type_name(v)}, not a Node", slot.pattern)
            if v.id != nid:
                return False
        if slot.labels or slot.props is not None:
            labels, props = self.mp.compiler.ctx.node_data(nid)
            for lab in slot.labels:
                if lab not in labels:
                    return False
            if slot.props is not None:
                m = req if req is not None else _as_dict(slot.props(row), slot.pattern)
                for key, want in m.items():
                    if equals(props.get(key), want) is not True:
                        return False
        return True

    def _rel_ok(self, rslot: _RelSlot, eid: int, row: Row, req: dict[str, Any] | None) -> bool:
        if rslot.props is None:
            return True
        props = self.mp.compiler.ctx.rel_data(eid)[1]
        m = req if req is not None else _as_dict(rslot.props(row), rslot.pattern)
        for key, want in m.items():
            if equals(props.get(key), want) is not True:
                return False
        return True

    def _step(
        self,
        si: int,
        row: Row,
        ids: list[int],
        segs: list[Any],
        seg_nodes: list[Any],
        used: set[tuple[int, int, int]],
        reqs: list[dict[str, Any] | None],
        rreqs: list[dict[str, Any] | None],
    ) -> Iterator[Row]:
        if si == len(self.steps):
            if self.path_var is not None:
                pn = [ids[0]]
                pr: list[RelRef] = []
                for j in range(len(self.rels)):
                    pn.extend(seg_nodes[j][1:])
                    pr.extend(segs[j])
                row = dict(row)
                row[self.path_var] = PathRef(tuple(pn), tuple(pr))
            if self.end_preds and not all(p(row) is True for p in self.end_preds):
                return
            yield row
            return
        st = self.steps[si]
        rslot = self.rels[st.rel]
        tslot = self.nodes[st.dst]
        treq = reqs[st.dst]
        rreq = rreqs[st.rel]
        cur = ids[st.src]
        graph = self.mp.compiler.ctx.graph
        bind_rel = rslot.var is not None and not rslot.check
        bind_node = tslot.var is not None and not tslot.check
        if rslot.length is None:
            bound_rel = None
            if rslot.check:
                bound_rel = row.get(rslot.var)  # type: ignore[arg-type]
                if bound_rel is None:
                    return
                if type(bound_rel) is not RelRef:
                    raise err(
                        f"variable `{rslot.var}` is a {type_name(bound_rel)}, not a Relationship",
                        rslot.pattern,
                    )
            for t in graph.expand(cur, st.direction, rslot.types):
                if type(t) is not tuple:
                    t = tuple(t)
                if t in used:
                    continue
                eid, s, e = t
                if bound_rel is not None and (bound_rel.id, bound_rel.start, bound_rel.end) != t:
                    continue
                other = e if s == cur else s
                if not self._rel_ok(rslot, eid, row, rreq):
                    continue
                if not self._node_ok(tslot, other, row, treq):
                    continue
                rr = RelRef(eid, s, e)
                r = row
                if bind_rel or bind_node:
                    r = dict(row)
                    if bind_rel:
                        r[rslot.var] = rr  # type: ignore[index]
                    if bind_node:
                        r[tslot.var] = NodeRef(other)  # type: ignore[index]
                ids[st.dst] = other
                segs[st.rel] = (rr,)
                seg_nodes[st.rel] = (ids[st.rel], ids[st.rel + 1])
                if st.preds and not all(p(r) is True for p in st.preds):
                    continue
                used.add(t)
                try:
                    yield from self._step(si + 1, r, ids, segs, seg_nodes, used, reqs, rreqs)
                finally:
                    used.discard(t)
            return
        lo, hi = rslot.length
        hi_n = UNBOUNDED_HOPS if hi is None else hi
        dst = None
        if tslot.check:
            v = row.get(tslot.var)  # type: ignore[arg-type]
            if v is None:
                return
            if type(v) is not NodeRef:
                raise err(f"variable `{tslot.var}` is a {type_name(v)}, not a Node", tslot.pattern)
            dst = v.id
        if hi_n < lo:
            return
        for nodes_l, rels_l in graph.var_paths(cur, lo, hi_n, st.direction, rslot.types, dst):
            rel_t = [t if type(t) is tuple else tuple(t) for t in rels_l]
            if len(nodes_l) != len(rel_t) + 1 or not lo <= len(rel_t) <= hi_n:
                continue
            if any(t in used for t in rel_t) or len(set(rel_t)) != len(rel_t):
                continue
            other = nodes_l[-1]
            if dst is not None and other != dst:
                continue
            if rslot.props is not None and not all(
                self._rel_ok(rslot, t[0], row, rreq) for t in rel_t
            ):
                continue
            if not self._node_ok(tslot, other, row, treq):
                continue
            refs = [RelRef(t[0], t[1], t[2]) for t in rel_t]
            nl = list(nodes_l)
            if not st.forward:
                refs.reverse()
                nl.reverse()
            r = row
            if bind_rel or bind_node:
                r = dict(row)
                if bind_rel:
                    r[rslot.var] = list(refs)  # type: ignore[index]
                if bind_node:
                    r[tslot.var] = NodeRef(other)  # type: ignore[index]
            ids[st.dst] = other
            segs[st.rel] = refs
            seg_nodes[st.rel] = nl
            if st.preds and not all(p(r) is True for p in st.preds):
                continue
            used.update(rel_t)
            try:
                yield from self._step(si + 1, r, ids, segs, seg_nodes, used, reqs, rreqs)
            finally:
                used.difference_update(rel_t)


_SCALARS = (bool, int, float, str)


def _storable(v: Any) -> bool:
    """Could a stored property value equal ``v``? (Only such values go to ``find_nodes``.)"""
    t = type(v)
    if t in _SCALARS:
        return True
    return t is list and all(type(x) in _SCALARS for x in v)


def _equality(conj: A.Expr, var: str, bound: set[str]) -> tuple[str | None, A.Expr] | None:
    """``var.key = expr`` -> ``(key, expr)``, ``id(var) = expr`` -> ``(None, expr)``."""
    if not (isinstance(conj, A.Comparison) and conj.ops == ["="]):
        return None
    left, right = conj.operands
    for x, y in ((left, right), (right, left)):
        if (
            isinstance(x, A.Property)
            and isinstance(x.subject, A.Variable)
            and x.subject.name == var
        ):
            key: str | None = x.key
        elif (
            isinstance(x, A.FunctionCall)
            and x.name == "id"
            and len(x.args) == 1
            and isinstance(x.args[0], A.Variable)
            and x.args[0].name == var
        ):
            key = None
        else:
            continue
        fv = free_vars(y)
        if var in fv or not fv <= bound:
            continue
        if any(isinstance(n, (A.PatternPredicate, A.CountStar)) or (
            isinstance(n, A.FunctionCall) and n.name in ("count", "collect", "sum", "avg", "min",
                                                         "max")) for n in A.walk(y)):
            continue
        return key, y
    return None


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
        parts = [_PartPlan(self, p) for p in patterns]
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
        ordered: list[_PartPlan] = []
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

        def take(now_bound: set[str]) -> list[Fn]:
            ready = [c for c in pending if c[1] <= now_bound]
            for c in ready:
                pending.remove(c)
            return [compiled[id(c[0])] for c in ready]

        bound = set(scope)
        self.start_preds = take(bound)
        for pp in ordered:
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
                if rslot.var is not None:
                    bound.add(rslot.var)
                if tslot.var is not None:
                    bound.add(tslot.var)
                st.preds = take(bound)
            if pp.path_var is not None:
                bound.add(pp.path_var)
            pp.end_preds = take(bound)
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

