"""Errors raised by the Cypher engine.

Every problem with a query -- bad syntax, an unknown variable, a type error while evaluating,
a missing parameter -- is a :class:`CypherError`. Syntax problems (including syntax this engine
does not support) are the subclass :class:`CypherSyntaxError`. Both carry the 1-based ``line``
and ``column`` of the offending token when it is known, and the message starts with them:

>>> err = CypherSyntaxError("expected ')' but found 'WHERE'", 1, 17)
>>> str(err)
"line 1, column 17: expected ')' but found 'WHERE'"
>>> (err.line, err.column, err.message)
(1, 17, "expected ')' but found 'WHERE'")
>>> str(CypherError("missing parameter $x"))
'missing parameter $x'
"""

from __future__ import annotations

__all__ = ["CypherError", "CypherSyntaxError"]


class CypherError(Exception):
    """A query could not be parsed, planned or executed.

    ``message`` is the bare message, ``line``/``column`` the 1-based position (or ``None``).
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message: str = message
        self.line: int | None = line
        self.column: int | None = column
        if line is not None and column is not None:
            text = f"line {line}, column {column}: {message}"
        else:
            text = message
        super().__init__(text)

    def __reduce__(self) -> tuple[type, tuple[str, int | None, int | None]]:
        return (type(self), (self.message, self.line, self.column))


class CypherSyntaxError(CypherError):
    """The query text is malformed, or uses syntax this engine does not support."""
