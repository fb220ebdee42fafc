"""``agentdb serve --workers N``: one writer process and N - 1 read workers on one port.

This process is the **writer**: it holds the store open for writing, as a plain ``agentdb
serve`` does, and serves the HTTP port too. Before serving it saves the index files
(``checkpoint()``), binds the port itself and starts N - 1 **read workers**
(``python -m agentdb.server.workers``), which inherit the listening socket, so the kernel
hands each new connection to whichever process accepts it first. A read worker opens the
same store read-only -- the index files memory-mapped, so their pages are shared with the
other processes until a worker applies its first write -- and answers the reads of
:data:`agentdb.server.forwarding.READ_ROUTES` itself after ``db.follow()``, which applies
what the writer committed since (a search after an acknowledged write sees it). Every other
request is forwarded to the writer over a private unix socket (see
:mod:`agentdb.server.forwarding`).

The writer restarts a read worker that dies (at most 5 times a minute), and stops them when
it stops (SIGTERM, then SIGKILL after 5 s); a read worker stops by itself when its writer is
gone. Answers a read worker gave carry ``X-AgentDB-Worker: <n>`` (1..N-1).

    >>> # agentdb serve --db memory.db --workers 2     (one writer + one read worker)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any

__all__ = ["ENV", "Checkpointer", "ReadWorkers", "listen", "main"]

ENV = "AGENTDB_READ_WORKER"  # the read worker's options (JSON), set by the writer
log = logging.getLogger("agentdb.server")


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket the read workers inherit (IPv6 when ``host`` is one).

    >>> s = listen("127.0.0.1", 0); s.getsockname()[0]
    '127.0.0.1'
    >>> s.close()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Checkpointer:
    """A daemon thread that saves the writer's changed index files (``db.checkpoint()``)
    every ``interval`` seconds when something was written since the last save: the read
    workers then map the new files again (``follow()``), so their index pages are shared
    again instead of each holding the copy it made on its first applied write.

    >>> import agentdb
    >>> c = Checkpointer(agentdb.open(":memory:", dim=8), 3600.0); c.stop(); c.saves
    0
    """

    def __init__(self, db: Any, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"the checkpoint interval must be > 0 seconds, got {interval!r}")
        self.interval = float(interval)
        self.saves = 0
        self._db = db
        self._saved_gen = int(db.store.generation)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentdb-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if getattr(self._db, "closed", False):
                return
            gen = int(self._db.store.generation)
            if gen == self._saved_gen:
                continue
            try:
                self._db.checkpoint()
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("background checkpoint failed")
                continue
            self._saved_gen = int(self._db.store.generation)
            self.saves += 1

    def stop(self) -> None:
        """Stop the thread (waits for a save under way)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=60)


class ReadWorkers:
    """The read worker processes of one writer: started, watched (a dead one is restarted,
    at most 5 times a minute) and stopped.

    ``options`` are :func:`agentdb.server.app.create_app` keywords (JSON-able) plus
    ``db`` (the store path), ``log_level`` and ``access_log``.
    """

    def __init__(self, count: int, tcp: socket.socket, options: dict[str, Any]) -> None:
        self.count = count
        self.tcp = tcp
        self.dir = tempfile.mkdtemp(prefix="agentdb-writer-")
        self.uds_path = os.path.join(self.dir, "writer.sock")
        self.uds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.uds.bind(self.uds_path)
        self.uds.listen(1024)
        self.options = options
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._restarts: deque[float] = deque()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="agentdb-read-workers",
                                         daemon=True)

    def _spawn(self, n: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env[ENV] = json.dumps({**self.options, "fd": self.tcp.fileno(), "uds": self.uds_path,
                               "worker": n, "writer_pid": os.getpid()})
        return subprocess.Popen([sys.executable, "-m", "agentdb.server.workers"],
                                pass_fds=(self.tcp.fileno(),), env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL)

    def start(self) -> None:
        """Start every read worker and the thread that restarts the ones that die."""
        for n in range(1, self.count):
            self.procs[n] = self._spawn(n)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for n, proc in list(self.procs.items()):
                if proc.poll() is None or self._stop.is_set():
                    continue
                now = time.monotonic()
                while self._restarts and now - self._restarts[0] > 60:
                    self._restarts.popleft()
                if len(self._restarts) >= 5:
                    log.error("read worker %d exited (code %s); not restarted: 5 restarts "
                              "in the last minute", n, proc.returncode)
                    del self.procs[n]
                    continue
                log.warning("read worker %d exited (code %s); restarting it", n,
                            proc.returncode)
                self._restarts.append(now)
                self.procs[n] = self._spawn(n)

    def stop(self, grace: float = 5.0) -> None:
        """Stop the read workers (SIGTERM, SIGKILL after ``grace`` s) and remove the socket."""
        self._stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.uds.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _watch_writer(writer_pid: int) -> None:
    """Stop this read worker when its writer is gone (it was re-parented)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != writer_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main() -> None:
    """A read worker (run by :class:`ReadWorkers` with its options in ``$AGENTDB_READ_WORKER``)."""
    import uvicorn

    from .. import memory
    from .app import create_app
    from .forwarding import ReadWorkerGate

    opts = json.loads(os.environ.pop(ENV))
    fd, uds, worker = int(opts.pop("fd")), opts.pop("uds"), int(opts.pop("worker"))
    writer_pid = int(opts.pop("writer_pid"))
    path, log_level = opts.pop("db"), opts.pop("log_level", "warning")
    access_log = bool(opts.pop("access_log", False))
    threading.Thread(target=_watch_writer, args=(writer_pid,), daemon=True).start()
    db = memory.open(path, readonly=True)
    try:
        app = create_app(db, namespaces=False, **opts)
        gate = ReadWorkerGate(app, follow=db.follow, uds=uds, worker=str(worker))
        sock = socket.socket(fileno=fd)
        config = uvicorn.Config(gate, log_level=log_level, access_log=access_log,
                                server_header=False, timeout_graceful_shutdown=3,
                                lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        db.close()


if __name__ == "__main__":
    main()
