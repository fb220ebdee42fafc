"""Errors raised by stores.

>>> issubclass(StoreLockedError, StoreError)
True
"""

from __future__ import annotations

__all__ = ["StoreError", "StoreLockedError"]


class StoreError(RuntimeError):
    """A store cannot do what was asked (closed, read-only, unreadable, wrong schema)."""


class StoreLockedError(StoreError):
    """Another process holds the store open for writing."""
