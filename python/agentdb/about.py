"""What is installed: the package version and which vector backend / SIMD path runs.

``agentdb --version`` and ``python -m agentdb`` print :func:`report`; bug reports and
benchmark headers should quote it.

>>> from agentdb import about
>>> about.report().splitlines()[0].startswith("agentdb ")
True
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from ._version import __version__
from .engines.loader import native_info

__all__ = ["info", "report"]


def info() -> dict[str, Any]:
    """The version, where the package was imported from, Python, and :func:`native_info`.

    >>> sorted(info())
    ['location', 'native_info', 'platform', 'python', 'version']
    """
    return {
        "version": __version__,
        "location": str(Path(__file__).resolve().parent),
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "native_info": native_info(),
    }


def report(as_json: bool = False) -> str:
    """A few human-readable lines (or one JSON object) describing this installation.

    >>> "backend: " in report()
    True
    """
    data = info()
    if as_json:
        return json.dumps(data, sort_keys=True)
    ni = data["native_info"]
    if ni.get("native"):
        simd = ", ".join(f"{k}={v}" for k, v in sorted(ni["simd"].items()))
        backend = (f"native C++ core {ni.get('version')} (SIMD: {simd}; supported here: "
                   f"{', '.join(ni.get('supported') or [])}"
                   + (f"; forced by AGENTDB_SIMD={ni['forced']}" if ni.get("forced") else "")
                   + f"; {ni.get('threads')} threads)")
    else:
        backend = f"numpy fallback ({ni.get('reason') or 'native core not loaded'})"
    return "\n".join([
        f"agentdb {data['version']} (Python {data['python']}, {data['platform']})",
        f"backend: {backend}",
        f"location: {data['location']}",
        f"native_info(): {json.dumps(ni, sort_keys=True)}",
    ])
