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

from ...errors import CypherError, CypherSyntaxError

__all__ = ["CypherError", "CypherSyntaxError"]
