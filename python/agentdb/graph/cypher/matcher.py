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

__all__ = ["MatchPlan", "PatternCompiler", "compile_exists", "conjuncts"]


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
    __slots__ = ("rel", "src", "dst", "forward", "direction", "preds", "ends")

    def __init__(self, rel: int, src: int, dst: int, forward: bool, direction: str) -> None:
        self.rel = rel
        self.src = src
        self.dst = dst
        self.forward = forward
        self.direction = direction
        self.preds: list[Fn] = []
        # variable-length steps: (label, key, value) of an indexed equality on the far node,
        # so the traversal only returns paths ending at the nodes the index names
        self.ends: tuple[str, str, Fn] | None = None


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
        self.taken: list[tuple[A.Expr, Fn]] = []  # every WHERE conjunct checked in this part
        self.chain: _Chain | None = None

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

    def ends_spec(
        self, slot: _NodeSlot, bound: set[str], where: list[tuple[A.Expr, set[str]]],
        scope: Mapping[str, str],
    ) -> tuple[str, str, Fn] | None:
        """An indexed ``(label, key, value)`` equality fixing the far node of a var-length hop.

        Taken from the node's inline map or from a ``v.key = expr`` conjunct of WHERE whose
        other side is computable before the hop. The predicates themselves still run on every
        match; this only narrows what the traversal returns.
        """
        if slot.var is None and slot.pattern.properties is None:
            return None
        cands: list[tuple[str, A.Expr]] = []
        props = slot.pattern.properties
        if isinstance(props, A.MapLiteral) and free_vars(props) <= bound:
            cands.extend(props.items)
        if slot.var is not None:
            for conj, _vars in where:
                m = _equality(conj, slot.var, bound)
                if m is not None and m[0] is not None:
                    cands.append((m[0], m[1]))
        graph = self.mp.compiler.ctx.graph
        if getattr(graph, "index_lookup", None) is None:
            return None  # the view does not implement the optional ends extension
        for lab in slot.labels:
            for key, expr in cands:
                if graph.has_index(lab, key):
                    return lab, key, self.mp.compiler.compile(expr, scope)
        return None

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
        if self.chain is not None:
            return self.chain.run(row, used)
        return self._run(row, used)

    def _run(self, row: Row, used: set[tuple[int, int, int]]) -> Iterator[Row]:
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
            if not self.node_ok(aslot, nid, row, reqs[a]):
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

    def node_ok(self, slot: _NodeSlot, nid: int, row: Row, req: dict[str, Any] | None) -> bool:
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
                if not self.node_ok(tslot, other, row, treq):
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
        ends = None
        if st.ends is not None and dst is None:
            lab, key, f = st.ends
            want = f(row)
            if not _storable(want):
                return  # null, maps, nodes...: no stored property equals them
            ends = graph.index_lookup(lab, {key: want})
            if not ends:
                return
        if ends is None:
            found = graph.var_paths(cur, lo, hi_n, st.direction, rslot.types, dst)
        else:
            found = graph.var_paths(cur, lo, hi_n, st.direction, rslot.types, dst, ends=ends)
        for nodes_l, rels_l in found:
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
            if not self.node_ok(tslot, other, row, treq):
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

    def __init__(self, pp: _PartPlan) -> None:
        self.pp = pp
        self.specs: list[tuple[str, str, Fn, A.Expr | None, bool] | None] = []
        self.reverse = False
        self.preds_all: list[Fn] = []
        self.preds_fast: list[Fn] = []
        self.types: list[list[str] | None] = []
        self.dirs: list[str] = []

    @staticmethod
    def plan(
        pp: _PartPlan, bound: set[str], where: list[tuple[A.Expr, set[str]]],
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
                    m = _equality(conj, n.var, bound)
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
            if not _storable(want):
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
            reqs.append(_as_dict(slot.props(row), slot.pattern) if slot.props is not None
                        else None)
        preds = self.preds_fast if fast else self.preds_all
        types, dirs = list(self.types), list(self.dirs)
        labels = [list(n.labels) for n in pp.nodes]
        if self.reverse:
            allowed.reverse()
            types.reverse()
            labels.reverse()
            dirs = [_FLIP[d] for d in reversed(dirs)]
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
        for ns, es in zip(node_rows, edge_rows):
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
