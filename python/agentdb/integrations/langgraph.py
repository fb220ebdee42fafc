"""A LangGraph ``BaseStore`` over an AgentDB store (the ``langgraph`` extra): a LangGraph
agent's long-term memory, persisted in AgentDB.

Each item is a pattern in the store's *collection* (the patterns' ``session_id``,
``"langgraph:<collection>"``): its ``value`` and its namespace, key and timestamps are kept
in the pattern's metadata (``value`` and ``lg``), so ``filter`` on value fields becomes an
AgentDB ``where`` (``{"status": "done"}``, or ``$eq $ne $gt $gte $lt $lte $in $nin
$exists``), and a namespace prefix is an equality on its levels. With an ``index`` config
(``{"embed": ..., "dims": ..., "fields": [...]}``, as LangGraph's ``InMemoryStore`` takes)
the indexed fields are embedded (joined into one text) and ``query`` searches rank by cosine
similarity; items stored with ``index=False`` are found by filters only and fill the results
after the scored ones. Without an ``index`` config every item is embedded as its JSON text by
the AgentDB store's own embedder. TTLs are not supported (``supports_ttl`` is False).

>>> store = AgentDBStore()  # doctest: +SKIP
>>> store.put(("users", "u1"), "prefs", {"food": "pizza"})  # doctest: +SKIP
>>> store.get(("users", "u1"), "prefs").value  # doctest: +SKIP
{'food': 'pizza'}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        IndexConfig,
        InvalidNamespaceError,
        Item,
        ListNamespacesOp,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
    )
    from langgraph.store.base.embed import ensure_embeddings, get_text_at_path, tokenize_path
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("agentdb.integrations.langgraph needs the 'langgraph' extra: "
                      f"pip install 'agentdb[langgraph]' ({exc})") from exc

__all__ = ["AgentDBStore"]

_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class AgentDBStore(BaseStore):
    """LangGraph's ``BaseStore`` on AgentDB (see the module docstring).

    ``db``: an open AgentDB store, or None to open ``path`` (``**open_kwargs`` go to
    ``agentdb.open``). ``index``: LangGraph's index config for semantic search.
    ``collection``: which items this store sees.

    >>> AgentDBStore.supports_ttl
    False
    """

    supports_ttl = False

    def __init__(self, *, db: Any = None, path: str = ":memory:",
                 index: IndexConfig | None = None, collection: str = "default",
                 **open_kwargs: Any) -> None:
        if not isinstance(collection, str) or not collection:
            raise InvalidArgumentError("collection must be a non-empty string")
        self.index_config = dict(index) if index else None
        self.embeddings = None
        self._fields: list[tuple[str, list[str]]] = []
        if self.index_config is not None:
            if "dims" not in self.index_config or "embed" not in self.index_config:
                raise InvalidArgumentError("index needs 'embed' and 'dims'")
            self.embeddings = ensure_embeddings(self.index_config["embed"])
            fields = self.index_config.get("fields") or ["$"]
            self._fields = [(f, tokenize_path(f) if f != "$" else "$") for f in fields]
        self._owns_db = db is None
        if db is None:
            from ..memory import open as open_memory

            if self.embeddings is not None:  # LangGraph's embeddings are LangChain's
                from .langchain import LangChainEmbedder

                open_kwargs.setdefault("embedder", LangChainEmbedder(
                    self.embeddings, int(self.index_config["dims"])))  # type: ignore[index]
            db = open_memory(path, **open_kwargs)
        self.db = db
        self.session_id = f"langgraph:{collection}"

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _check_namespace(namespace: tuple[str, ...]) -> None:
        if not isinstance(namespace, tuple) or not namespace:
            raise InvalidNamespaceError(f"namespace must be a non-empty tuple, got {namespace!r}")
        for label in namespace:
            if not isinstance(label, str) or not label or "." in label:
                raise InvalidNamespaceError(
                    f"namespace labels must be non-empty strings without '.', got {label!r}")

    @staticmethod
    def _ns_where(prefix: tuple[str, ...]) -> dict[str, Any]:
        return {f"lg.n{i}": label for i, label in enumerate(prefix)}

    def _find(self, namespace: tuple[str, ...], key: str) -> int | None:
        where = {**self._ns_where(namespace), "lg.depth": len(namespace), "lg.key": key}
        ids = self.db.find_ids("patterns", session_id=self.session_id, where=where)
        return ids[0] if ids else None

    @staticmethod
    def _item(rec: Any, cls: type = Item, **extra: Any) -> Any:
        lg = rec.metadata["lg"]
        return cls(namespace=tuple(lg["ns"]), key=lg["key"], value=rec.metadata["value"],
                   created_at=datetime.fromisoformat(lg["created"]),
                   updated_at=datetime.fromisoformat(lg["updated"]), **extra)

    def _value_where(self, flt: dict[str, Any] | None) -> dict[str, Any]:
        if not flt:
            return {}
        if not isinstance(flt, dict):
            raise InvalidTypeError(f"filter must be a dict, got {type(flt).__name__}")
        out = {}
        for k, v in flt.items():
            if isinstance(v, dict) and not (v and set(v) <= _OPS):
                raise InvalidArgumentError(
                    f"filter[{k!r}]: nested objects are not supported; use a dotted key "
                    "('a.b') or an operator ($eq $ne $gt $gte $lt $lte $in $nin $exists)")
            out[f"value.{k}"] = v
        return out

    def _index_text(self, value: dict[str, Any], index: Any) -> str | None:
        """The text to embed for a put, or None when the item is not indexed."""
        if index is False:
            return None
        if self.embeddings is None:
            return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        fields = self._fields if index is None else [
            (f, tokenize_path(f) if f != "$" else "$") for f in index]
        texts: list[str] = []
        for _, path in fields:
            texts += (get_text_at_path(value, path) if path != "$"
                      else [json.dumps(value, sort_keys=True, ensure_ascii=False)])
        texts = [t for t in texts if t]
        return "\n".join(texts) if texts else None

    # ---- operations ------------------------------------------------------------------------
    def _put(self, op: PutOp) -> None:
        self._check_namespace(op.namespace)
        if not isinstance(op.key, str) or not op.key:
            raise InvalidArgumentError(f"key must be a non-empty string, got {op.key!r}")
        pid = self._find(op.namespace, op.key)
        if op.value is None:
            if pid is not None:
                self.db.delete_pattern(pid)
            return
        if not isinstance(op.value, dict):
            raise InvalidTypeError(f"value must be a dict, got {type(op.value).__name__}")
        text = self._index_text(dict(op.value), op.index)
        now = _now()
        created = now if pid is None else self.db.get_pattern(pid).metadata["lg"]["created"]
        lg = {"ns": list(op.namespace), "depth": len(op.namespace), "key": op.key,
              "created": created, "updated": now, "indexed": text is not None,
              **{f"n{i}": label for i, label in enumerate(op.namespace)}}
        task = text if text is not None else f"{'/'.join(op.namespace)}/{op.key}"
        meta = {"lg": lg, "value": op.value}
        if pid is None:
            self.db.store_pattern(task, session_id=self.session_id, metadata=meta)
        else:
            self.db.update_pattern(pid, task=task, metadata=meta)

    def _search(self, op: SearchOp) -> list[SearchItem]:
        if op.limit < 0 or op.offset < 0:
            raise InvalidArgumentError("limit and offset must be >= 0")
        where = {**self._ns_where(op.namespace_prefix), **self._value_where(op.filter)}
        need = op.offset + op.limit
        if op.query:
            hits = self.db.search_patterns(op.query, k=max(need, 1), session_id=self.session_id,
                                           where={**where, "lg.indexed": True})
            scored = [self._item(h.record, SearchItem, score=float(h.similarity))
                      for h in hits]
            if len(scored) < need:  # fill with items that were stored unindexed
                rest = self.db.find_ids("patterns", session_id=self.session_id,
                                        where={**where, "lg.indexed": False})
                scored += [self._item(self.db.get_pattern(i), SearchItem)
                           for i in rest[: need - len(scored)]]
            return scored[op.offset:need]
        ids = self.db.find_ids("patterns", session_id=self.session_id, where=where or None)
        return [self._item(self.db.get_pattern(i), SearchItem) for i in ids[op.offset:need]]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        found = set()
        for i in self.db.find_ids("patterns", session_id=self.session_id):
            found.add(tuple(self.db.get_pattern(i).metadata["lg"]["ns"]))
        out = []
        for ns in found:
            ok = True
            for cond in op.match_conditions or ():
                path = tuple(cond.path)
                if len(ns) < len(path):
                    ok = False
                    break
                pairs = (zip(ns, path) if cond.match_type == "prefix"
                         else zip(reversed(ns), reversed(path)))
                if any(p != "*" and n != p for n, p in pairs):
                    ok = False
                    break
            if ok:
                out.append(ns)
        if op.max_depth is not None:
            out = list({ns[: op.max_depth] for ns in out})
        return sorted(out)[op.offset: op.offset + op.limit]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run get / put / search / list-namespaces operations in order; one result each.

        >>> AgentDBStore().batch([])  # doctest: +SKIP
        []
        """
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                self._check_namespace(op.namespace)
                pid = self._find(op.namespace, op.key)
                results.append(None if pid is None else self._item(self.db.get_pattern(pid)))
            elif isinstance(op, PutOp):
                self._put(op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                raise InvalidTypeError(f"unknown store operation {type(op).__name__}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` in a worker thread (the event loop stays free).

        >>> import asyncio; asyncio.run(AgentDBStore().abatch([]))  # doctest: +SKIP
        []
        """
        return await asyncio.to_thread(self.batch, list(ops))

    def close(self) -> None:
        """Close the AgentDB store if this object opened it."""
        if self._owns_db:
            self.db.close()
