"""Scalar functions and operators with Cypher semantics (null in, null out; int64 integers).

Each function takes the evaluation context first (for graph reads) and the already evaluated
arguments. Type errors raise :class:`~agentdb.errors.CypherError`.

>>> add(1, 2), add("a", 1), add([1], 2), divide(7, -2), modulo(-7, 2), add(None, 1)
(3, 'a1', [1, 2], -3, -1, None)
>>> to_string(1.5), to_string(True), to_integer("42"), to_integer("4.9"), to_float("x")
('1.5', 'true', 42, 4, None)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .errors import CypherError
from .values import NodeRef, PathRef, RelRef, compare, equals, type_name

__all__ = [
    "FUNCTIONS",
    "AGGREGATES",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "power",
    "negate",
    "to_string",
    "to_integer",
    "to_float",
    "check_int",
    "comparison",
    "in_list",
    "string_op",
]

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
MAX_RANGE = 10_000_000

AGGREGATES = frozenset({"count", "collect", "sum", "avg", "min", "max"})


def check_int(v: int) -> int:
    """Raise CypherError when an integer result leaves the int64 range."""
    if v > INT_MAX or v < INT_MIN:
        raise CypherError("integer overflow (results must fit in 64 bits)")
    return v


def _num(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


def to_string(v: Any) -> str | None:
    """Cypher ``toString``."""
    if v is None:
        return None
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        if v != v:
            return "NaN"
        if v in (math.inf, -math.inf):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    raise CypherError(f"toString() cannot convert a {type_name(v)}")


def add(a: Any, b: Any) -> Any:
    """Cypher ``+``: numbers, string concatenation, list concatenation/append."""
    if a is None or b is None:
        return None
    ta = type(a)
    tb = type(b)
    if ta is int and tb is int:
        return check_int(a + b)
    if _num(a) and _num(b):
        return a + b
    if ta is str and (tb is str or _num(b) or tb is bool):
        return a + to_string(b)  # type: ignore[operator]
    if tb is str and (_num(a) or ta is bool):
        return to_string(a) + b  # type: ignore[operator]
    if ta is list:
        return a + b if tb is list else a + [b]
    if tb is list:
        return [a] + b
    raise CypherError(f"cannot add {type_name(a)} and {type_name(b)}")


def _arith_check(a: Any, b: Any, what: str) -> None:
    if not (_num(a) and _num(b)):
        raise CypherError(f"cannot {what} {type_name(a)} and {type_name(b)}")


def subtract(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    _arith_check(a, b, "subtract")
    r = a - b
    return check_int(r) if type(r) is int else r


def multiply(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    _arith_check(a, b, "multiply")
    if type(a) is int and type(b) is int:
        return check_int(a * b)
    try:
        return a * b
    except OverflowError:  # pragma: no cover - float * int of huge ints
        return math.inf


def divide(a: Any, b: Any) -> Any:
    """Cypher ``/``: integer division truncates toward zero; ``x / 0`` is an error for ints."""
    if a is None or b is None:
        return None
    _arith_check(a, b, "divide")
    if type(a) is int and type(b) is int:
        if b == 0:
            raise CypherError("division by zero")
        q = abs(a) // abs(b)
        return check_int(q if (a >= 0) == (b >= 0) else -q)
    a = float(a)
    b = float(b)
    if b == 0.0:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def modulo(a: Any, b: Any) -> Any:
    """Cypher ``%``: the result takes the sign of the dividend (like Java)."""
    if a is None or b is None:
        return None
    _arith_check(a, b, "take the remainder of")
    if type(a) is int and type(b) is int:
        if b == 0:
            raise CypherError("division by zero")
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    if float(b) == 0.0:
        return math.nan
    return math.fmod(float(a), float(b))


def power(a: Any, b: Any) -> Any:
    """Cypher ``^`` (always a float)."""
    if a is None or b is None:
        return None
    _arith_check(a, b, "raise")
    try:
        return math.pow(float(a), float(b))
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError):
        return math.nan


def negate(a: Any) -> Any:
    if a is None:
        return None
    if type(a) is int:
        return check_int(-a)
    if type(a) is float:
        return -a
    raise CypherError(f"cannot negate a {type_name(a)}")


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "%": modulo,
    "^": power,
}


def comparison(op: str, a: Any, b: Any) -> bool | None:
    """Cypher ``= <> < <= > >=`` with null semantics."""
    if op == "=":
        return equals(a, b)
    if op == "<>":
        r = equals(a, b)
        return None if r is None else not r
    c = compare(a, b)
    if c is None:
        return None
    if op == "<":
        return c < 0
    if op == "<=":
        return c <= 0
    if op == ">":
        return c > 0
    return c >= 0


def in_list(x: Any, lst: Any) -> bool | None:
    """Cypher ``x IN list``."""
    if lst is None:
        return None
    if type(lst) is not list:
        raise CypherError(f"IN expects a list on the right, got a {type_name(lst)}")
    if not lst:
        return False
    if x is None:
        return None
    saw_null = False
    for y in lst:
        r = equals(x, y)
        if r is True:
            return True
        if r is None:
            saw_null = True
    return None if saw_null else False


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def string_op(op: str, a: Any, b: Any) -> bool | None:
    """``STARTS WITH``, ``ENDS WITH``, ``CONTAINS``, ``=~`` (null unless both are strings)."""
    if type(a) is not str or type(b) is not str:
        return None
    if op == "STARTS WITH":
        return a.startswith(b)
    if op == "ENDS WITH":
        return a.endswith(b)
    if op == "CONTAINS":
        return b in a
    pat = _REGEX_CACHE.get(b)
    if pat is None:
        try:
            pat = re.compile(b, re.DOTALL)
        except (re.error, OverflowError, RecursionError) as exc:
            raise CypherError(f"invalid regular expression {b!r}: {exc}") from None
        if len(_REGEX_CACHE) > 256:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[b] = pat
    return pat.fullmatch(a) is not None


# ---- conversion functions ------------------------------------------------------------------


def to_integer(v: Any) -> int | None:
    """Cypher ``toInteger``: strings are parsed (null when not a number), floats truncated."""
    if v is None:
        return None
    t = type(v)
    if t is bool:
        return int(v)
    if t is int:
        return v
    if t is float:
        if v != v or v in (math.inf, -math.inf):
            return None
        r = int(v)
        return r if INT_MIN <= r <= INT_MAX else None
    if t is str:
        s = v.strip()
        if "_" in s:
            return None
        try:
            r = int(s)
        except ValueError:
            try:
                return to_integer(float(s))
            except ValueError:
                return None
        return r if INT_MIN <= r <= INT_MAX else None
    raise CypherError(f"toInteger() cannot convert a {type_name(v)}")


def to_float(v: Any) -> float | None:
    """Cypher ``toFloat``: strings are parsed (null when not a number)."""
    if v is None:
        return None
    t = type(v)
    if t is int or t is float:
        return float(v)
    if t is str:
        s = v.strip()
        if "_" in s:
            return None
        try:
            return float(s)
        except ValueError:
            return None
    raise CypherError(f"toFloat() cannot convert a {type_name(v)}")


def to_boolean(v: Any) -> bool | None:
    if v is None:
        return None
    t = type(v)
    if t is bool:
        return v
    if t is str:
        s = v.strip().lower()
        return True if s == "true" else (False if s == "false" else None)
    if t is int:
        return v != 0
    raise CypherError(f"toBoolean() cannot convert a {type_name(v)}")


# ---- the function table --------------------------------------------------------------------

Ctx = Any  # the executor's Context (node_data / rel_data); kept loose to avoid an import cycle


def _want(name: str, v: Any, *types: type) -> None:
    if type(v) not in types:
        expected = " or ".join(
            {int: "Integer", float: "Float", str: "String", list: "List", dict: "Map",
             NodeRef: "Node", RelRef: "Relationship", PathRef: "Path", bool: "Boolean"}[t]
            for t in types
        )
        raise CypherError(f"{name}() expects {expected}, got {type_name(v)}")


def _id(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("id", v, NodeRef, RelRef)
    return v.id


def _labels(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("labels", v, NodeRef)
    return list(ctx.node_data(v.id)[0])


def _type(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("type", v, RelRef)
    return ctx.rel_data(v.id)[0]


def _length(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("length", v, PathRef, list, str)
    return len(v.rels) if type(v) is PathRef else len(v)


def _size(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("size", v, list, str)
    return len(v)


def _nodes(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("nodes", v, PathRef)
    return [NodeRef(n) for n in v.nodes]


def _relationships(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("relationships", v, PathRef)
    return list(v.rels)


def _start_node(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("startNode", v, RelRef)
    return NodeRef(v.start)


def _end_node(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("endNode", v, RelRef)
    return NodeRef(v.end)


def _properties(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("properties", v, NodeRef, RelRef, dict)
    if type(v) is NodeRef:
        return dict(ctx.node_data(v.id)[1])
    if type(v) is RelRef:
        return dict(ctx.rel_data(v.id)[1])
    return dict(v)


def _keys(ctx: Ctx, v: Any) -> Any:
    p = _properties(ctx, v)
    return None if p is None else list(p)


def _head(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("head", v, list)
    return v[0] if v else None


def _last(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("last", v, list)
    return v[-1] if v else None


def _tail(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("tail", v, list)
    return v[1:]


def _abs(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("abs", v, int, float)
    return check_int(abs(v)) if type(v) is int else abs(v)


def _math1(name: str, fn: Callable[[float], float]) -> Callable[[Ctx, Any], Any]:
    def impl(ctx: Ctx, v: Any) -> Any:
        if v is None:
            return None
        _want(name, v, int, float)
        try:
            return float(fn(float(v)))
        except (ValueError, ZeroDivisionError):
            return math.nan
        except OverflowError:
            return math.inf

    return impl


def _round(x: float) -> float:
    if x != x or x in (math.inf, -math.inf):
        return x
    return float(math.floor(x + 0.5))


def _sign(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("sign", v, int, float)
    if v != v:
        return 0
    return (v > 0) - (v < 0)


def _log(x: float) -> float:
    if x == 0:
        return -math.inf
    return math.log(x)


def _log10(x: float) -> float:
    if x == 0:
        return -math.inf
    return math.log10(x)


def _str1(name: str, fn: Callable[[str], Any]) -> Callable[[Ctx, Any], Any]:
    def impl(ctx: Ctx, v: Any) -> Any:
        if v is None:
            return None
        _want(name, v, str)
        return fn(v)

    return impl


def _replace(ctx: Ctx, s: Any, a: Any, b: Any) -> Any:
    if s is None or a is None or b is None:
        return None
    for v in (s, a, b):
        _want("replace", v, str)
    return s.replace(a, b)


def _int_arg(name: str, v: Any) -> int:
    _want(name, v, int)
    return int(v)


def _substring(ctx: Ctx, s: Any, start: Any, length: Any = ...) -> Any:
    if s is None:
        return None
    _want("substring", s, str)
    st = _int_arg("substring", start)
    if st < 0:
        raise CypherError("substring() start must not be negative")
    if length is ...:
        return s[st:]
    if length is None:
        return None
    ln = _int_arg("substring", length)
    if ln < 0:
        raise CypherError("substring() length must not be negative")
    return s[st:st + ln]


def _left(ctx: Ctx, s: Any, n: Any) -> Any:
    if s is None:
        return None
    _want("left", s, str)
    k = _int_arg("left", n)
    if k < 0:
        raise CypherError("left() length must not be negative")
    return s[:k]


def _right(ctx: Ctx, s: Any, n: Any) -> Any:
    if s is None:
        return None
    _want("right", s, str)
    k = _int_arg("right", n)
    if k < 0:
        raise CypherError("right() length must not be negative")
    return s[len(s) - k:] if k else ""


def _split(ctx: Ctx, s: Any, d: Any) -> Any:
    if s is None or d is None:
        return None
    _want("split", s, str)
    _want("split", d, str)
    if d == "":
        return list(s)
    return s.split(d)


def _reverse(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("reverse", v, str, list)
    return v[::-1]


def _range(ctx: Ctx, start: Any, end: Any, step: Any = 1) -> Any:
    a = _int_arg("range", start)
    b = _int_arg("range", end)
    s = _int_arg("range", step)
    if s == 0:
        raise CypherError("range() step must not be zero")
    r = range(a, b + (1 if s > 0 else -1), s)
    if len(r) > MAX_RANGE:
        raise CypherError(f"range() would produce more than {MAX_RANGE} elements")
    return list(r)


def _is_empty(ctx: Ctx, v: Any) -> Any:
    if v is None:
        return None
    _want("isEmpty", v, str, list, dict)
    return len(v) == 0


def _to_string(ctx: Ctx, v: Any) -> Any:
    return to_string(v)


def _to_integer(ctx: Ctx, v: Any) -> Any:
    return to_integer(v)


def _to_float(ctx: Ctx, v: Any) -> Any:
    return to_float(v)


def _to_boolean(ctx: Ctx, v: Any) -> Any:
    return to_boolean(v)


# name -> (min args, max args, implementation(ctx, *args)); coalesce and exists are special-cased
# by the compiler (lazy / structural), aggregates live in the executor.
FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "id": (1, 1, _id),
    "labels": (1, 1, _labels),
    "type": (1, 1, _type),
    "length": (1, 1, _length),
    "size": (1, 1, _size),
    "nodes": (1, 1, _nodes),
    "relationships": (1, 1, _relationships),
    "rels": (1, 1, _relationships),
    "startnode": (1, 1, _start_node),
    "endnode": (1, 1, _end_node),
    "properties": (1, 1, _properties),
    "keys": (1, 1, _keys),
    "head": (1, 1, _head),
    "last": (1, 1, _last),
    "tail": (1, 1, _tail),
    "tostring": (1, 1, _to_string),
    "tointeger": (1, 1, _to_integer),
    "toint": (1, 1, _to_integer),
    "tofloat": (1, 1, _to_float),
    "toboolean": (1, 1, _to_boolean),
    "abs": (1, 1, _abs),
    "ceil": (1, 1, _math1("ceil", math.ceil)),
    "floor": (1, 1, _math1("floor", math.floor)),
    "round": (1, 1, _math1("round", _round)),
    "sqrt": (1, 1, _math1("sqrt", math.sqrt)),
    "exp": (1, 1, _math1("exp", math.exp)),
    "log": (1, 1, _math1("log", _log)),
    "log10": (1, 1, _math1("log10", _log10)),
    "sign": (1, 1, _sign),
    "tolower": (1, 1, _str1("toLower", str.lower)),
    "toupper": (1, 1, _str1("toUpper", str.upper)),
    "lower": (1, 1, _str1("lower", str.lower)),
    "upper": (1, 1, _str1("upper", str.upper)),
    "trim": (1, 1, _str1("trim", str.strip)),
    "ltrim": (1, 1, _str1("ltrim", str.lstrip)),
    "rtrim": (1, 1, _str1("rtrim", str.rstrip)),
    "replace": (3, 3, _replace),
    "substring": (2, 3, _substring),
    "left": (2, 2, _left),
    "right": (2, 2, _right),
    "split": (2, 2, _split),
    "reverse": (1, 1, _reverse),
    "range": (2, 3, _range),
    "isempty": (1, 1, _is_empty),
}
