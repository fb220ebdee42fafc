"""The environment for the suite's child processes: they import the very ``agentdb`` the
suite imported (the installed wheel in CI, the source tree in a plain checkout), never a
different copy picked up from ``<repo>/python``.

>>> "PYTHONPATH" in child_env()  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
from pathlib import Path

import agentdb

#: The folder holding the imported ``agentdb`` package (site-packages when installed).
PACKAGE_ROOT = str(Path(agentdb.__file__).resolve().parents[1])


def child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with :data:`PACKAGE_ROOT` first on ``PYTHONPATH``, plus ``extra``."""
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, *parts])
    env.update(extra)
    return env
