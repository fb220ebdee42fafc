"""Pure-numpy fallback backend of AgentDB: the module-level API the loader hands out.

Implements the same contract as the C++ extension ``agentdb._native`` (see
``spec_native.md``): metric helpers (:func:`distance`, :func:`distances`), exact
top-k search (:func:`exact_search`), :func:`native_info`, :data:`BACKEND`,
:data:`VERSION` and the :class:`HNSWIndex` class.  It is the reference the native core
is tested against; the work lives in three modules beside it:

* :mod:`.numpy_checks` -- input conversion and validation (the contract's rules);
* :mod:`.numpy_kernels` -- distance kernels and the exact top-k search;
* :mod:`.numpy_hnsw` -- the index and its file format.

The "HNSW" index of this backend is exact (brute force): vectors live in a
preallocated float32 matrix that grows by doubling, removals are tombstones whose
slots are reused by later adds, and a search is one matrix product over the
stored rows followed by ``argpartition`` and an exact float64 re-ranking of the
few candidates (ties: ascending distance, then ascending id).  Files written by
:meth:`HNSWIndex.save` use the shared binary format without a graph section, so
the native backend can load them (it rebuilds its graph) and vice versa.

Example:
    >>> import numpy as np
    >>> index = HNSWIndex(dim=3, metric="l2")
    >>> index.add([1, 2], np.array([[0, 0, 0], [1, 1, 1]], dtype=np.float32))
    >>> ids, dists = index.search([0.9, 1.0, 1.0], k=1)
    >>> ids.tolist(), round(float(dists[0]), 2)
    ([2], 0.01)
"""

from __future__ import annotations

import os
from typing import Any, Final

from .._version import __version__
from .numpy_hnsw import BACKEND, HNSWIndex
from .numpy_kernels import distance, distances, exact_search

__all__ = [
    "BACKEND",
    "VERSION",
    "HNSWIndex",
    "distance",
    "distances",
    "exact_search",
    "native_info",
]

VERSION: Final = __version__


def native_info() -> dict[str, Any]:
    """Describe the backend: always ``native=False`` here (the loader fills ``reason``).

    Example:
        >>> info = native_info()
        >>> info["native"], info["simd"]["dot"]
        (False, 'numpy')
    """
    forced = os.environ.get("AGENTDB_SIMD") or None
    return {
        "native": False,
        "version": VERSION,
        "simd": {"dot": "numpy", "l2": "numpy", "cosine": "numpy"},
        "supported": ["numpy"],
        "forced": forced,
        "threads": os.cpu_count() or 1,
        "reason": None,
    }
