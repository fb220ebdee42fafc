"""Namespaces over HTTP: ``/ns/<name>/...`` is the whole API of namespace ``<name>``
(:mod:`agentdb.memory.namespaces`), served by an application of its own over
``db.namespace(name)`` -- its own change feed, Cypher queries and rate-limit buckets -- made
on first use; every other path is the store's ``default`` namespace.

An API key bound to namespaces (:func:`agentdb.server.auth.load_key_namespaces`) is refused
with ``403 forbidden`` everywhere else, before the request reaches any store; an unbound key
reaches every namespace. Each namespace's application accepts only the keys that may reach
it, so a request can never read, search, stream or query another namespace's records.

>>> split_path("/ns/alice/patterns/search")
('alice', '/patterns/search')
>>> split_path("/patterns/search") is None
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..errors import AgentDBError, ForbiddenError, NotFoundError, describe
from ..memory.namespaces import DEFAULT, check_name
from .auth import KeyStore, key_from_headers
from .wire import OPEN_PATHS, error_response

__all__ = ["KeyScopes", "NamespaceDispatch", "split_path"]

PREFIX = "/ns/"


def split_path(path: str) -> tuple[str, str] | None:
    """``(namespace, the path inside it)`` for ``/ns/<name>/...``, else None."""
    if not path.startswith(PREFIX):
        return None
    name, _, rest = path[len(PREFIX):].partition("/")
    return name, "/" + rest


class KeyScopes:
    """Which keys reach which namespace: ``bindings`` maps a key to its namespaces; a key
    without an entry reaches them all.

    >>> s = KeyScopes(["admin-key", "alice-key"], {"alice-key": ["alice"]})
    >>> s.keys_for("alice"), s.keys_for("bob"), s.allowed("alice-key", "bob")
    (['admin-key', 'alice-key'], ['admin-key'], False)
    """

    def __init__(self, keys: Sequence[str] | None,
                 bindings: Mapping[str, Sequence[str]] | None) -> None:
        self.keys = None if keys is None else list(keys)
        self.bindings = {k: [check_name(n) for n in ns] for k, ns in (bindings or {}).items()}
        unknown = [k for k in self.bindings if self.keys is None or k not in self.keys]
        if unknown:
            raise ValueError(f"{len(unknown)} namespace binding(s) name a key that is not "
                             "configured")
        self.store = None if self.keys is None else KeyStore(self.keys)

    def allowed(self, key: str, namespace: str) -> bool:
        ns = self.bindings.get(key)
        return ns is None or namespace in ns

    def keys_for(self, namespace: str) -> list[str] | None:
        """The keys namespace ``namespace`` accepts (None: auth is off)."""
        if self.keys is None:
            return None
        return [k for k in self.keys if self.allowed(k, namespace)]


class NamespaceDispatch:
    """ASGI middleware in front of the default namespace's app: sends ``/ns/<name>/...`` to
    that namespace's app (``make(name)``, cached) and refuses bound keys out of scope."""

    def __init__(self, app: Any, scopes: KeyScopes, make: Callable[[str], Any],
                 apps: dict[str, Any]) -> None:
        self.app = app
        self.scopes = scopes
        self.make = make
        self.apps = apps
        self._lock = threading.Lock()

    def _app_for(self, name: str) -> Any:
        with self._lock:
            app = self.apps.get(name)
            if app is None:
                app = self.apps[name] = self.make(name)
            return app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parts = split_path(scope["path"])
        name, inner = (DEFAULT, scope["path"]) if parts is None else parts
        try:
            if parts is not None:
                check_name(name)
            if self.scopes.store is not None and inner not in OPEN_PATHS:
                headers = {k.decode("latin-1"): v.decode("latin-1")
                           for k, v in scope.get("headers", ())}
                key = self.scopes.store.check(key_from_headers(headers))
                if key is not None and not self.scopes.allowed(key, name):
                    raise ForbiddenError(f"this API key may not reach namespace {name!r}")
                keys = self.scopes.keys_for(name)
                if parts is not None and not keys:
                    raise NotFoundError(f"namespace {name!r} accepts no API key")
            if parts is None or name == DEFAULT:
                target = self.app
            else:
                target = await run_in_threadpool(self._app_for, name)
        except AgentDBError as exc:
            info = describe(exc)
            await error_response(info.http_status, info.code, info.message)(scope, receive, send)
            return
        if parts is not None:
            root = scope.get("root_path", "") + PREFIX + name
            scope = dict(scope, path=inner, raw_path=inner.encode(), root_path=root)
        await target(scope, receive, send)
