"""``agentdb serve --workers N``: one writer process and N - 1 read workers on one port.

This process is the **writer**: it holds the store open for writing, as a plain ``agentdb
serve`` does, and serves the HTTP port too. Before serving it saves the index files
(``checkpoint()``), binds the port itself and starts N - 1 **read workers**
(``python -m agentdb.server.workers``), and serves once they all listen (before, a client
that connected as soon as ``/ready`` answered had every connection served by the writer).
On Linux every process listens on the port with a socket of its own (``SO_REUSEPORT``), so
the kernel spreads new connections over them by a hash of the client's address and port,
whichever process wakes first; elsewhere, or when binding fails, the read workers inherit
the writer's listening socket instead. A read worker opens the
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
import select
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


#: Whether each process gets a listening socket of its own (the kernel then balances).
BALANCED = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listen(host: str, port: int, backlog: int = 2048, *,
           reuse_port: bool = BALANCED) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` is one), inheritable by the read workers;
    with ``reuse_port`` (Linux), other processes of this user can listen on the same port
    and the kernel balances new connections over the sockets.

    >>> s = listen("127.0.0.1", 0); s.getsockname()[0]
    '127.0.0.1'
    >>> s.close()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    ``db`` (the store path), ``log_level`` and ``access_log``. :meth:`start` returns once
    every read worker listens on the port (or ``ready_timeout`` seconds passed), so the port
    is at full capacity when the writer starts answering ``/ready``.
    """

    def __init__(self, count: int, tcp: socket.socket, options: dict[str, Any],
                 ready_timeout: float = 60.0) -> None:
        self.count = count
        self.ready_timeout = ready_timeout
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

    def _spawn(self, n: int) -> tuple[subprocess.Popen[bytes], int]:
        """Start read worker ``n``; returns it and the read end of the pipe on which it
        writes one byte once it listens."""
        ready_r, ready_w = os.pipe()
        env = dict(os.environ)
        host, port = self.tcp.getsockname()[:2]
        reuse = bool(self.tcp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)) \
            if BALANCED else False
        env[ENV] = json.dumps({**self.options, "fd": self.tcp.fileno(), "uds": self.uds_path,
                               "worker": n, "writer_pid": os.getpid(),
                               "listen": [host, port] if reuse else None,
                               "ready_fd": ready_w})
        try:
            proc = subprocess.Popen([sys.executable, "-m", "agentdb.server.workers"],
                                    pass_fds=(self.tcp.fileno(), ready_w), env=env,
                                    start_new_session=True, stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        return proc, ready_r

    def start(self) -> None:
        """Start every read worker, wait until each listens on the port (at most
        ``ready_timeout`` s in all; a worker that dies or is late is logged and restarted or
        waited for by the watcher), then start the thread that restarts the ones that die."""
        pending: dict[int, int] = {}
        for n in range(1, self.count):
            self.procs[n], pending[n] = self._spawn(n)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("read worker(s) %s not listening after %.0f s; serving "
                                "without waiting for them", sorted(pending), self.ready_timeout)
                    break
                ready, _, _ = select.select(list(pending.values()), [], [], left)
                for n, fd in list(pending.items()):
                    if fd in ready:
                        if not os.read(fd, 1):  # end of file: it exited before listening
                            log.warning("read worker %d exited while starting (code %s)", n,
                                        self.procs[n].poll())
                        os.close(pending.pop(n))
        finally:
            for fd in pending.values():
                os.close(fd)
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
                self.procs[n], ready = self._spawn(n)
                os.close(ready)  # not waited for: the others serve meanwhile

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
    own = opts.pop("listen", None)
    ready_fd = opts.pop("ready_fd", None)
    writer_pid = int(opts.pop("writer_pid"))
    path, log_level = opts.pop("db"), opts.pop("log_level", "warning")
    access_log = bool(opts.pop("access_log", False))
    threading.Thread(target=_watch_writer, args=(writer_pid,), daemon=True).start()
    db = memory.open(path, readonly=True)
    try:
        app = create_app(db, namespaces=False, **opts)
        gate = ReadWorkerGate(app, follow=db.follow, uds=uds, worker=str(worker))
        sock = socket.socket(fileno=fd)  # the writer's listening socket
        if own is not None:  # a socket of its own on the same port: the kernel balances
            try:
                mine = listen(own[0], int(own[1]), reuse_port=True)
            except OSError as exc:
                log.warning("read worker %d: cannot listen on %s:%s itself (%s); sharing the "
                            "writer's socket", worker, own[0], own[1], exc)
            else:
                sock.close()
                sock = mine
        if ready_fd is not None:  # listening: connections queue up until uvicorn accepts them
            with contextlib.suppress(OSError):  # the writer stopped waiting
                os.write(int(ready_fd), b"1")
            with contextlib.suppress(OSError):
                os.close(int(ready_fd))
        config = uvicorn.Config(gate, log_level=log_level, access_log=access_log,
                                server_header=False, timeout_graceful_shutdown=3,
                                lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        db.close()


if __name__ == "__main__":
    main()
