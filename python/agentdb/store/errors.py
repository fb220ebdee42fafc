"""Errors raised by stores: re-exported from :mod:`agentdb.errors` (the one hierarchy).

>>> issubclass(StoreLockedError, StoreError)
True
"""

from __future__ import annotations

from ..errors import IntegrityError, StoreClosedError, StoreError, StoreLockedError

__all__ = ["IntegrityError", "StoreClosedError", "StoreError", "StoreLockedError"]
