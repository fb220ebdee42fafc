"""The planning half of MATCH: each pattern part gets an anchor (the node to start from,
chosen by index, label and equality), WHERE is split into conjuncts placed where their
variables become bound, and the hops are laid out rightwards then leftwards from the anchor.
:class:`~agentdb.graph.cypher.matcher.MatchPlan` executes the plan.

>>> from agentdb.graph.cypher.parser import parse
>>> [type(c).__name__ for c in conjuncts(parse("MATCH (a) WHERE a.x = 1 AND a.y = 2 RETURN a")
...                                       .clauses[0].where)]
['Comparison', 'Comparison']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from . import ast as A
from .budget import active
from .expressions import Fn, Row, err, free_vars
from .graphview import UNBOUNDED_HOPS
from .values import NodeRef, PathRef, RelRef, equals, type_name

__all__ = ["FLIP", "PartPlan", "as_dict", "conjuncts", "equality", "storable"]


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


FLIP = {"out": "in", "in": "out", "both": "both"}


def as_dict(v: Any, node: A.Node) -> dict[str, Any]:
    if type(v) is not dict:
        raise err(f"a pattern's property map must be a Map, got {type_name(v)}", node)
    return v  # type: ignore[no-any-return]


class PartPlan:
    """The plan of one pattern part."""

    def __init__(self, mp: Any, part: A.PatternPart) -> None:  # mp: the MatchPlan
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
        self.chain: Any = None  # the matcher's chain of this part, once built

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
                        m = equality(conj, v, bound)
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
                m = equality(conj, slot.var, bound)
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

    # ---- description (EXPLAIN) --------------------------------------------------------------
    def pattern_text(self) -> str:
        """The pattern part as Cypher-like text (variables, labels, types, lengths)."""
        def node(sl: _NodeSlot) -> str:
            props = " {...}" if sl.pattern.properties is not None else ""
            return "(" + (sl.var or "") + "".join(f":{lab}" for lab in sl.labels) + props + ")"

        def rel(rs: _RelSlot) -> str:
            inner = (rs.var or "") + (":" + "|".join(rs.types) if rs.types else "")
            if rs.length is not None:
                lo, hi = rs.length
                inner += f"*{'' if lo is None else lo}..{'' if hi is None else hi}"
            d = rs.pattern.direction
            return ("<-" if d == "in" else "-") + f"[{inner}]" + ("->" if d == "out" else "-")

        text = node(self.nodes[0])
        for rs, sl in zip(self.rels, self.nodes[1:]):
            text += rel(rs) + node(sl)
        return (self.path_var + " = " if self.path_var else "") + text

    def describe(self) -> list[str]:
        """How this part is matched: its anchor, then each step (EXPLAIN)."""
        a = self.nodes[self.anchor]
        who = f"({a.var or self.anchor})"
        lines = [self.pattern_text()]
        if self.chain is not None:
            lines.append(self.chain.describe())
            return lines
        if self.anchor_mode == "bound":
            lines.append(f"anchor {who}: already bound")
        elif self.anchor_mode == "id":
            lines.append(f"anchor {who}: node by id(...)")
        elif self.anchor_mode == "find":
            keys = ", ".join(k for k, _ in self.anchor_where_eq) or "inline map"
            lines.append(f"anchor {who}: property lookup on :{self.anchor_label or '*'} "
                         f"({keys}; an index when one is declared)")
        elif self.anchor_mode == "label":
            lines.append(f"anchor {who}: label scan :{self.anchor_label}")
        else:
            lines.append(f"anchor {who}: all nodes")
        for st in self.steps:
            rs, dst = self.rels[st.rel], self.nodes[st.dst]
            types = ":" + "|".join(rs.types) if rs.types else "any type"
            if rs.length is None:
                lines.append(f"expand {st.direction} {types} to ({dst.var or st.dst})")
            else:
                lo, hi = rs.length
                how = f"native paths {lo}..{'64' if hi is None else hi} {st.direction} {types}"
                if st.ends is not None:
                    how += f", ends from index {st.ends[0]}.{st.ends[1]}"
                lines.append(f"{how} to ({dst.var or st.dst})")
        return lines

    def build_steps(self) -> None:
        a = self.anchor
        steps: list[_Step] = []
        for j in range(a, len(self.rels)):
            steps.append(_Step(j, j, j + 1, True, self.rels[j].pattern.direction))
        for j in range(a - 1, -1, -1):
            steps.append(_Step(j, j + 1, j, False, FLIP[self.rels[j].pattern.direction]))
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
                reqs.append(as_dict(slot.props(row), slot.pattern))
            else:
                reqs.append(None)
        rreqs: list[dict[str, Any] | None] = []
        for rslot in self.rels:
            if rslot.props is not None and rslot.props_static:
                rreqs.append(as_dict(rslot.props(row), rslot.pattern))
            else:
                rreqs.append(None)
        a = self.anchor
        aslot = self.nodes[a]
        n = len(self.nodes)
        k = len(self.rels)
        budget = active()
        for nid in self._candidates(row, reqs[a]):
            if budget is not None:
                budget.tick()
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
                    req = as_dict(slot.props(row), slot.pattern)
                if req is not None:
                    props.update(req)
            for key, f in self.anchor_where_eq:
                v = f(row)
                if key in props and equals(props[key], v) is not True:
                    return ()
                props[key] = v
            if not all(storable(v) for v in props.values()):
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
                m = req if req is not None else as_dict(slot.props(row), slot.pattern)
                for key, want in m.items():
                    if equals(props.get(key), want) is not True:
                        return False
        return True

    def _rel_ok(self, rslot: _RelSlot, eid: int, row: Row, req: dict[str, Any] | None) -> bool:
        if rslot.props is None:
            return True
        props = self.mp.compiler.ctx.rel_data(eid)[1]
        m = req if req is not None else as_dict(rslot.props(row), rslot.pattern)
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
            budget = active()
            for t in graph.expand(cur, st.direction, rslot.types):
                if budget is not None:
                    budget.tick()
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
            if not storable(want):
                return  # null, maps, nodes...: no stored property equals them
            ends = graph.index_lookup(lab, {key: want})
            if not ends:
                return
        if ends is None:
            found = graph.var_paths(cur, lo, hi_n, st.direction, rslot.types, dst)
        else:
            found = graph.var_paths(cur, lo, hi_n, st.direction, rslot.types, dst, ends=ends)
        budget = active()
        for nodes_l, rels_l in found:
            if budget is not None:
                budget.tick()
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


def storable(v: Any) -> bool:
    """Could a stored property value equal ``v``? (Only such values go to ``find_nodes``.)"""
    t = type(v)
    if t in _SCALARS:
        return True
    return t is list and all(type(x) in _SCALARS for x in v)


def equality(conj: A.Expr, var: str, bound: set[str]) -> tuple[str | None, A.Expr] | None:
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
