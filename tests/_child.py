"""The environment for the suite's child processes: they import the very ``agentdb`` the
suite imported (the installed wheel in CI, the source tree in a plain checkout), never a
different copy picked up from ``<repo>/python``.

>>> "PYTHONPATH" in child_env()  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def spawned_server(args: list[str], port: int, timeout: float = 60.0,
                   **env: str) -> Iterator[subprocess.Popen]:
    """Run ``python <args>`` (with :func:`child_env` plus ``env``) until it accepts
    connections on 127.0.0.1:``port``; terminate it afterwards (killed if it lingers). A child
    that exits or never listens fails the test with the end of its stderr."""
    import socket
    import sys
    import time

    import pytest

    proc = subprocess.Popen([sys.executable, *args], env=child_env(**env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{' '.join(args[:3])} exited: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{' '.join(args[:3])} did not listen on port {port}")
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
