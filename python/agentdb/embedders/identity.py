"""What a store records about its embedder, and the check made when it is reopened.

A new store records ``{"name", "dim", "checksum"}`` of its embedder in its meta table; opening
it later with an embedder of another name, dimension or model checksum raises
:class:`~agentdb.errors.EmbedderMismatchError`, and opening it without ``embedder=`` rebuilds
the recorded one when its name is enough (``hashing``, ``minilm``, ``onnx:<dir>``, ...).

>>> from agentdb.embedders import HashingEmbedder
>>> ident = embedder_identity(HashingEmbedder(8))
>>> ident
{'name': 'hashing', 'dim': 8, 'checksum': ''}
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import EmbedderMismatchError, StoreError

__all__ = ["RecordedEmbedder", "check_embedder", "embedder_identity", "is_named_embedder",
           "recorded_embedder"]


class RecordedEmbedder:
    """Stands for an embedder a store recorded but that cannot be rebuilt from its name (a
    custom object): the store opens, vectors are accepted, and embedding a text raises
    :class:`~agentdb.errors.EmbedderMismatchError` asking for ``embedder=``.

    >>> e = RecordedEmbedder({"name": "letters", "dim": 24, "checksum": ""})
    >>> e.embed(["hello"])
    Traceback (most recent call last):
    ...
    agentdb.errors.EmbedderMismatchError: this store's texts were embedded with 'letters'...
    """

    def __init__(self, identity: dict[str, Any]) -> None:
        self.name = str(identity["name"])
        self.dim = int(identity["dim"])
        self.model_checksum = str(identity.get("checksum") or "")

    def embed(self, texts: list[str]) -> Any:
        """Refuse: the store's own embedder is needed to embed text."""
        raise EmbedderMismatchError(
            f"this store's texts were embedded with '{self.name}', which cannot be rebuilt "
            "from its name: open the store with embedder=<that embedder> to store or search "
            "by text (vectors work without it)")


def is_named_embedder(name: str) -> bool:
    """Whether ``name`` is an embedder :func:`get_embedder` can build from its name alone.

    >>> is_named_embedder("minilm"), is_named_embedder("MyEmbedder")
    (True, False)
    """
    return name in ("hashing", "minilm", "minilm-int8") or name.startswith(("st:", "onnx:"))


def embedder_identity(embedder: Any) -> dict[str, Any]:
    """What a store records about its embedder: ``name`` (its ``name`` attribute, else its
    class name), ``dim`` and ``checksum`` (its ``model_checksum``, else ``""``).

    >>> from agentdb.embedders import HashingEmbedder
    >>> embedder_identity(HashingEmbedder(8))
    {'name': 'hashing', 'dim': 8, 'checksum': ''}
    """
    name = getattr(embedder, "name", None)
    if not isinstance(name, str) or not name:
        name = type(embedder).__name__
    checksum = getattr(embedder, "model_checksum", "") or ""
    return {"name": name, "dim": int(embedder.dim), "checksum": str(checksum)}


def recorded_embedder(recorded: str) -> str | RecordedEmbedder | None:
    """What to open a store with when no ``embedder=`` is given: the recorded embedder's name
    if it can be built from its name alone (see :func:`is_named_embedder`), else a
    :class:`RecordedEmbedder` standing for it (None for a malformed record).

    >>> recorded_embedder('{"name": "minilm", "dim": 384, "checksum": ""}')
    'minilm'
    """
    try:
        ident = json.loads(recorded)
        name = ident.get("name")
        if isinstance(name, str) and is_named_embedder(name):
            return name
        return RecordedEmbedder(ident)
    except (ValueError, AttributeError, KeyError, TypeError):
        return None


def check_embedder(recorded: str | None, embedder: Any, where: str) -> dict[str, Any]:
    """Compare the embedder a store recorded (its JSON meta value, or None) with the one it
    is opened with; returns the identity to record. A different name, dimension or model
    checksum raises :class:`~agentdb.errors.EmbedderMismatchError` naming both.

    >>> from agentdb.embedders import HashingEmbedder
    >>> check_embedder(None, HashingEmbedder(8), "x.db")["name"]
    'hashing'
    """
    ident = embedder_identity(embedder)
    if not recorded:
        return ident
    try:
        old = json.loads(recorded)
        old_name, old_dim, old_sum = str(old["name"]), int(old["dim"]), str(old["checksum"])
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"'{where}' records a malformed embedder: {recorded!r}") from None
    if (old_name != ident["name"] or old_dim != ident["dim"]
            or (old_sum and ident["checksum"] and old_sum != ident["checksum"])):
        def show(name: str, dim: int, checksum: str) -> str:
            return f"'{name}' (dim {dim}" + (f", model {checksum[:12]}" if checksum else "") + ")"

        raise EmbedderMismatchError(
            f"embedder mismatch: '{where}' was built with {show(old_name, old_dim, old_sum)}, "
            f"opened with {show(ident['name'], ident['dim'], ident['checksum'])}; its vectors "
            "would not be comparable. Open it without embedder= (or with the same one), or "
            "re-embed: agentdb export --no-embeddings, then import into a new store")
    return ident
