"""Choose the vector backend once, at import: the native C++ extension, else pure numpy.

Both backends expose the same module-level API (``distance``, ``distances``,
``exact_search``, ``native_info``) and the same ``HNSWIndex`` class, so everything above this
module is backend-agnostic. Set ``AGENTDB_NATIVE=0`` to force the numpy fallback.

>>> from agentdb.engines import loader as _loader
>>> sorted(_loader.backends())[-1]
'numpy'
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from types import ModuleType
from typing import Any

from . import numpy_vector as _numpy_backend

_native: ModuleType | None
_reason: str | None = None

if os.environ.get("AGENTDB_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
    _native = None
    _reason = "disabled by AGENTDB_NATIVE=0"
elif importlib.util.find_spec("agentdb._native") is None:
    _native = None  # a source checkout on the path, or an install that did not build it
    _reason = (f"no compiled extension agentdb._native in "
               f"{os.path.dirname(os.path.dirname(__file__))} "
               "(a source checkout on the path? pip install the package to build it)")
else:
    try:
        from .. import _native  # type: ignore[no-redef]
    except Exception as exc:  # a broken/incompatible binary
        _native = None
        _reason = f"{type(exc).__name__}: {exc}"

if _native is None:
    warnings.warn(
        f"agentdb: the native core did not load ({_reason}); using the pure-numpy fallback "
        "(same API, exact search, slower). Reinstall with `pip install .` to build it.",
        RuntimeWarning,
        stacklevel=2,
    )

#: The backend module in use.
backend: ModuleType = _native if _native is not None else _numpy_backend


def backends() -> dict[str, ModuleType]:
    """All importable backends by name (``"native"`` when built, always ``"numpy"``).

    >>> "numpy" in backends()
    True
    """
    out: dict[str, ModuleType] = {}
    if _native is not None:
        out["native"] = _native
    out["numpy"] = _numpy_backend
    return out


def graph_backend() -> ModuleType:
    """The module providing ``Hypergraph``: the native one when built, else the fallback.

    >>> hasattr(graph_backend(), "Hypergraph")
    True
    """
    if _native is not None and hasattr(_native, "Hypergraph"):
        return _native
    from . import numpy_graph as _numpy_graph

    return _numpy_graph


def native_info() -> dict[str, Any]:
    """Report whether the native core loaded, its version and each kernel's SIMD path.

    >>> info = native_info()
    >>> sorted(info["simd"])
    ['cosine', 'dot', 'l2']
    """
    info = dict(backend.native_info())
    if _native is None:
        info["reason"] = _reason
    return info


def attention_backends() -> dict[str, ModuleType]:
    """Modules providing the attention kernels by name: ``"native"`` when the extension has
    them, always ``"numpy"`` (``agentdb.engines.numpy_attention``).

    >>> "numpy" in attention_backends()
    True
    """
    from . import numpy_attention as _numpy_attention

    out: dict[str, ModuleType] = {}
    if _native is not None and hasattr(_native, "flash_attention"):
        out["native"] = _native
    out["numpy"] = _numpy_attention
    return out


def attention_backend() -> ModuleType:
    """The module providing ``sdpa``, ``multi_head_attention``, ``flash_attention``,
    ``hyperbolic_attention`` and ``moe_gating``: native when built, else the numpy fallback.

    >>> hasattr(attention_backend(), "flash_attention")
    True
    """
    backends = attention_backends()
    return backends.get("native", backends["numpy"])
