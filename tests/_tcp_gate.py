"""A loopback TCP relay in front of a PostgreSQL server that the tests can shut and reopen,
to play an outage (a restart, a failover) without touching the server itself; and a
"black hole" port that takes connections and never answers, as a lost machine does.

>>> # with Gate(postgres_url) as gate: gate.url -> the same server through 127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

import psycopg


def _target(url: str) -> tuple[int, object]:
    """(address family, address) of the server ``url`` names (a Unix socket folder or a
    host)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "127.0.0.1").split(",")[0]
    port = int(str(info.get("port") or "5432").split(",")[0])
    if host.startswith("/"):
        return socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"
    return socket.AF_INET, (host, port)


class Gate:
    """Relays 127.0.0.1:``port`` to the server of ``url`` while open; :meth:`shut` drops
    every relayed connection and refuses new ones (they are accepted and closed at once)
    until :meth:`open`. ``url`` (the attribute) reaches the server through the gate."""

    def __init__(self, url: str) -> None:
        self._family, self._address = _target(url)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.url = psycopg.conninfo.make_conninfo(url, host="127.0.0.1", port=str(self.port))
        self._lock = threading.Lock()
        self._live: list[socket.socket] = []
        self._open = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-gate", daemon=True)
        self._thread.start()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def shut(self) -> None:
        """Drop the relayed connections and refuse new ones."""
        with self._lock:
            self._open = False
            live, self._live = self._live, []
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def open(self) -> None:
        """Relay new connections again."""
        with self._lock:
            self._open = True

    def close(self) -> None:
        """Stop the gate (its thread ends within ~0.2 s)."""
        self.shut()
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()
                    continue
            try:
                server = socket.socket(self._family, socket.SOCK_STREAM)
                server.settimeout(5)
                server.connect(self._address)  # type: ignore[arg-type]
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


class BlackHole:
    """A loopback port whose connections complete (the kernel's backlog) but are never
    answered: a client waits for its own connect timeout, as with a lost machine."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self._sock.getsockname()[1])

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._sock.close()
