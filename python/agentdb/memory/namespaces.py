"""Namespaces: one store holding the memories of many agents or users, kept apart.

``db.namespace("alice")`` is a handle with the whole memory API -- records, searches, the
causal graph and Cypher, events, learning -- over tables of its own: a SQLite file beside
the store (``<store>.ns/<slug>.db``), or a table prefix of its own in the same PostgreSQL
schema. Nothing one namespace holds is visible from another, because nothing is shared;
the store's own tables are the namespace ``"default"``. Crossing namespaces takes an explicit
call: :func:`search_across`.

The store registers each namespace in its ``meta`` table (``ns:<name>`` -> slug), so
``db.namespaces()`` lists them and a read-only opener finds them.

>>> check_name("agent-7")
'agent-7'
>>> slug("alice") == slug("alice") != slug("bob")
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError, NotFoundError
from ..storage.records import SearchResult

__all__ = ["DEFAULT", "check_name", "listed", "register", "search_across", "slug"]

#: The name of a store's own tables.
DEFAULT = "default"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def check_name(name: Any) -> str:
    """A namespace name: 1-128 characters, letters, digits and ``_ . @ -``, starting with a
    letter or digit (so it fits a URL path segment as it is).

    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: invalid namespace name '../etc': ...
    """
    if not isinstance(name, str):
        raise InvalidTypeError(f"a namespace name must be a string, got {type(name).__name__}")
    if not _NAME.match(name):
        raise InvalidArgumentError(f"invalid namespace name {name!r}: use 1-128 letters, digits "
                                   "and _ . @ - (starting with a letter or digit)")
    return name


def slug(name: str, salt: str = "") -> str:
    """The file / table-prefix stem of a namespace: ``n`` and 12 hex digits of a hash of
    ``salt`` (the parent's table prefix) and the name (fits PostgreSQL's 20-character
    prefixes whatever the name's length)."""
    return "n" + hashlib.sha256(f"{salt}\0{name}".encode()).hexdigest()[:12]


def register(store: Any, name: str, salt: str, current: str, readonly: bool) -> str | None:
    """The slug of namespace ``name`` in ``store``'s registry (its ``meta`` row
    ``namespaces``), added when missing unless ``readonly`` (then ``NotFoundError``); None
    when ``name`` is the handle's own (``current``) or ``"default"``: the handle itself.
    Nesting (a namespace of a namespace) is an ``InvalidArgumentError``."""
    name = check_name(name)
    if name in (DEFAULT, current):
        return None
    if current != DEFAULT:
        raise InvalidArgumentError("namespaces do not nest: open them from the store's "
                                   "default handle")
    registry = json.loads(store.meta("namespaces") or "{}")
    stem = registry.get(name)
    if stem is None:
        if readonly:
            raise NotFoundError(f"unknown namespace {name!r}")
        stem = slug(name, salt)
        store.set_meta("namespaces", json.dumps({**registry, name: stem}, sort_keys=True))
    return str(stem)


def listed(store: Any) -> list[str]:
    """Every namespace registered in ``store``, ``"default"`` included, sorted."""
    return sorted([DEFAULT, *json.loads(store.meta("namespaces") or "{}")])


def search_across(db: Any, names: Sequence[str], query: Any, k: int = 5, *,
                  kind: str = "patterns", **options: Any) -> list[tuple[str, SearchResult]]:
    """The ``k`` best hits over several namespaces of ``db`` (by similarity), each with the
    namespace it came from: the one way to search across them. ``options`` go to every
    namespace's ``search_<kind>``.

    >>> from agentdb import AgentDB
    >>> db = AgentDB(":memory:", dim=8)
    >>> _ = db.namespace("a").store_pattern("x", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
    >>> _ = db.namespace("b").store_pattern("y", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
    >>> q = [1, 0.1, 0, 0, 0, 0, 0, 0]
    >>> [(ns, h.record.task) for ns, h in search_across(db, ["a", "b"], q, 2)]
    [('a', 'x'), ('b', 'y')]
    """
    if kind not in ("patterns", "episodes", "skills"):
        raise InvalidArgumentError(f"unknown kind {kind!r}: expected patterns, episodes or "
                                   "skills")
    if isinstance(names, str) or not names:
        raise InvalidArgumentError("names must be a non-empty list of namespace names")
    hits: list[tuple[str, SearchResult]] = []
    for name in dict.fromkeys(names):
        handle = db.namespace(name)
        hits += [(name, h) for h in getattr(handle, f"search_{kind}")(query, k, **options)]
    hits.sort(key=lambda nh: -nh[1].similarity)
    return hits[:k]
