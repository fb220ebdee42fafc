"""Tokenizer for the Cypher subset.

Token kinds:

* ``IDENT``  -- an unquoted name (keywords are ``IDENT`` tokens too; the parser compares them
  case-insensitively through :attr:`Token.upper`);
* ``QIDENT`` -- a backtick-quoted name (never a keyword);
* ``INT`` / ``FLOAT`` / ``STRING`` -- literals, with the decoded Python value in ``value``;
* ``PARAM``  -- ``$name`` (``value`` is the name without ``$``);
* ``OP``     -- punctuation and operators (``value`` is the operator text);
* ``EOF``    -- end of input.

Arrows are not single tokens: ``-->`` is ``-``, ``-``, ``>``, which keeps ``a<-1`` an ordinary
comparison. ``//`` line comments and ``/* */`` block comments are skipped.

>>> [(t.kind, t.value) for t in tokenize("MATCH (n:`My Label`) // hi\\nRETURN n.x <> $p")[:6]]
[('IDENT', 'MATCH'), ('OP', '('), ('IDENT', 'n'), ('OP', ':'), ('QIDENT', 'My Label'), ('OP', ')')]
>>> [t.value for t in tokenize("*1..5 1.5e3 'it\\\\'s'")][:-1]
['*', 1, '..', 5, 1500.0, "it's"]
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import CypherSyntaxError

__all__ = ["Token", "tokenize", "position"]


@dataclass
class Token:
    """One token: ``kind``, decoded ``value``, source ``text`` and position."""

    kind: str
    value: Any
    text: str
    line: int
    column: int
    start: int
    end: int
    upper: str = field(default="", repr=False)

    def describe(self) -> str:
        """How the token is shown in error messages."""
        if self.kind == "EOF":
            return "end of input"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return repr(text) if "'" not in text else '"' + text + '"'


_WS = re.compile(r"\s+")
_DIGITS = re.compile(r"[0-9]+")
_IDENT = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|([0-9]+\.[0-9]+|[0-9]+|\.[0-9]+)([eE][+-]?[0-9]+)?"
)
_OPS2 = ("..", "<>", "!=", "<=", ">=", "+=", "=~")
_OPS1 = set("()[]{},.:|=<>+-*/%^;")
_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "0": "\0",
}


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return starts


def position(text: str, offset: int, starts: list[int] | None = None) -> tuple[int, int]:
    """1-based ``(line, column)`` of ``offset`` in ``text``.

    >>> position("ab\\ncd", 4)
    (2, 2)
    """
    starts = starts if starts is not None else _line_starts(text)
    line = bisect.bisect_right(starts, offset) - 1
    return line + 1, offset - starts[line] + 1


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens (the last one is ``EOF``); raise CypherSyntaxError when bad."""
    if not isinstance(text, str):
        raise CypherSyntaxError(f"query must be a string, got {type(text).__name__}")
    starts = _line_starts(text)
    toks: list[Token] = []
    i = 0
    n = len(text)

    def err(msg: str, at: int) -> CypherSyntaxError:
        line, col = position(text, at, starts)
        return CypherSyntaxError(msg, line, col)

    def add(kind: str, value: Any, s: int, e: int) -> None:
        line, col = position(text, s, starts)
        tok = Token(kind, value, text[s:e], line, col, s, e)
        if kind == "IDENT":
            tok.upper = value.upper()
        toks.append(tok)

    while i < n:
        c = text[i]
        if c.isspace():
            m = _WS.match(text, i)
            i = m.end() if m else i + 1
            continue
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise err("unterminated comment", i)
            i = j + 2
            continue
        if c == "'" or c == '"':
            i = _string(text, i, add, err)
            continue
        if c == "`":
            j = i + 1
            parts: list[str] = []
            while True:
                k = text.find("`", j)
                if k < 0:
                    raise err("unterminated quoted identifier", i)
                parts.append(text[j:k])
                if text.startswith("``", k):
                    parts.append("`")
                    j = k + 2
                    continue
                break
            name = "".join(parts)
            if not name:
                raise err("empty quoted identifier", i)
            add("QIDENT", name, i, k + 1)
            i = k + 1
            continue
        if "0" <= c <= "9" or (c == "." and i + 1 < n and "0" <= text[i + 1] <= "9"
                           and not (toks and toks[-1].kind in ("IDENT", "QIDENT")
                                    and toks[-1].end == i)):
            m = _NUMBER.match(text, i)
            assert m is not None
            s = m.group(0)
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] == "_"):
                raise err(f"invalid number literal {text[i:end + 1]!r}", i)
            low = s.lower()
            if low.startswith("0x"):
                add("INT", int(s[2:], 16), i, end)
            elif low.startswith("0o"):
                add("INT", int(s[2:], 8), i, end)
            elif "." in s or "e" in low:
                try:
                    add("FLOAT", float(s), i, end)
                except OverflowError:  # pragma: no cover - float() returns inf instead
                    raise err(f"float literal out of range {s!r}", i) from None
            else:
                add("INT", int(s), i, end)
            i = end
            continue
        if c == "$":
            m = _IDENT.match(text, i + 1)
            if m:
                add("PARAM", m.group(0), i, m.end())
                i = m.end()
                continue
            m2 = _DIGITS.match(text, i + 1)
            if m2:
                add("PARAM", m2.group(0), i, m2.end())
                i = m2.end()
                continue
            if text.startswith("`", i + 1):
                k = text.find("`", i + 2)
                if k > i + 2:
                    add("PARAM", text[i + 2:k], i, k + 1)
                    i = k + 1
                    continue
            raise err("expected a parameter name after '$'", i)
        m = _IDENT.match(text, i)
        if m:
            add("IDENT", m.group(0), i, m.end())
            i = m.end()
            continue
        two = text[i:i + 2]
        if two in _OPS2:
            add("OP", two, i, i + 2)
            i += 2
            continue
        if c in _OPS1:
            add("OP", c, i, i + 1)
            i += 1
            continue
        raise err(f"unexpected character {c!r}", i)
    line, col = position(text, n, starts)
    toks.append(Token("EOF", None, "", line, col, n, n))
    return toks


def _string(text: str, i: int, add: Any, err: Any) -> int:
    quote = text[i]
    j = i + 1
    n = len(text)
    out: list[str] = []
    while True:
        if j >= n:
            raise err("unterminated string literal", i)
        c = text[j]
        if c == quote:
            add("STRING", "".join(out), i, j + 1)
            return j + 1
        if c == "\\":
            if j + 1 >= n:
                raise err("unterminated string literal", i)
            e = text[j + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
                continue
            if e in "uU":
                width = 4 if e == "u" else 8
                digits = text[j + 2:j + 2 + width]
                if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise err("invalid unicode escape in string literal", j)
                code = int(digits, 16)
                if code > 0x10FFFF:
                    raise err("invalid unicode escape in string literal", j)
                out.append(chr(code))
                j += 2 + width
                continue
            raise err(f"invalid escape sequence '\\{e}' in string literal", j)
        out.append(c)
        j += 1


def bracket_pairs(toks: list[Token]) -> list[int]:
    """For each token, the index of its matching bracket (``-1`` when none).

    >>> bracket_pairs(tokenize("( [ ] )"))
    [3, 2, 1, 0, -1]
    """
    pairs = [-1] * len(toks)
    stack: list[int] = []
    closers = {")": "(", "]": "[", "}": "{"}
    for idx, t in enumerate(toks):
        if t.kind != "OP":
            continue
        if t.value in ("(", "[", "{"):
            stack.append(idx)
        elif t.value in closers:
            if stack and toks[stack[-1]].value == closers[t.value]:
                j = stack.pop()
                pairs[j] = idx
                pairs[idx] = j
            else:
                stack.clear()  # mismatched: the parser reports it; stop pairing across it
    return pairs
