"""Searches straight to the replicas over TCP: the cluster's fast path.

A Ray actor call costs ~0.6 ms of CPU on the caller and the actor here, whatever it carries,
and a search asks every shard: on a 2-core machine three shards made a search cost ~2.5 ms
in calls alone. So each replica also listens on a TCP socket of its node (:class:`Server`,
started by the replica itself, port chosen by the system) and a :class:`Client` of the
driver keeps one connection per replica. Ray still places, restarts and controls the
replicas; only searches take this path, and anything unusual -- a refused or lost
connection, a late answer, a replica that is building or lagging -- makes that search go the
Ray way instead (:class:`agentdb.cluster.scatter.Scatter`), which retries and hedges.

The wire format carries no pickle (a peer could run code with one): a frame is a 4-byte
big-endian length, a JSON header, a 0 byte, then raw little-endian arrays. Every request
carries the cluster's secret token (a random value in ``cluster_meta``, so only holders of
the PostgreSQL credentials know it), checked in constant time before anything else.

Request header: ``{"token", "expect", "min_seq", "timeout", "ring", "dim", "entries": [{"c",
"k", "ef", "filters", "rows"}]}`` followed by the float32 query vectors, one per entry;
``expect`` is the ``[shard, replica]`` the caller means (a restarted replica's old port may
now belong to another replica, which then refuses). Answer:
``{"ok": true, "n": [hits per entry], "rows": [rows or null per entry]}`` followed by the
int64 ids then the float32 distances of every entry in order; or ``{"ok": false, "type",
"message"}``.

>>> frame = encode({"a": 1}, np.arange(2, dtype="<i8").tobytes())
>>> decode(frame[4:])[0], len(decode(frame[4:])[1])
({'a': 1}, 16)
"""

from __future__ import annotations

import hmac
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Client", "FastPathError", "Server", "decode", "encode"]

_MAX_FRAME = 64 << 20


class FastPathError(Exception):
    """The fast path could not answer (the caller then searches the Ray way); ``target``
    is the index of the replica at fault when one is known."""

    def __init__(self, message: str, target: int | None = None) -> None:
        super().__init__(message)
        self.target = target


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: length, JSON header, a 0 byte, the payload."""
    body = json.dumps(header, separators=(",", ":")).encode() + b"\0" + payload
    return struct.pack(">I", len(body)) + body


def decode(body: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of a frame's body."""
    cut = body.index(b"\0")
    return json.loads(body[:cut]), body[cut + 1:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    if size > _MAX_FRAME:
        raise ConnectionError(f"frame of {size} bytes refused")
    return _recv_exact(sock, size)


def _json_rows(rows: list[dict[str, Any] | None] | None) -> list[Any] | None:
    """Rows as JSON values; one that does not encode is sent as None (read elsewhere)."""
    if rows is None:
        return None
    out: list[Any] = []
    for r in rows:
        try:
            json.dumps(r)
            out.append(r)
        except (TypeError, ValueError):
            out.append(None)
    return out


class Server:
    """The replica's listener: one thread accepts, one thread per connection answers.

    ``handle(min_seq, timeout, ring, entries)`` is the replica's batch search: it returns
    ``[(ids, dists, rows or None)]`` or raises (the error's class name and message go back).
    """

    def __init__(self, host: str, token: str,
                 handle: Callable[[int, float, list[int] | None, list[tuple[Any, ...]]],
                                  list[tuple[np.ndarray, np.ndarray, Any]]],
                 identity: tuple[int, int] = (0, 0)) -> None:
        self.token = token.encode()
        self.handle = handle
        self.identity = [int(identity[0]), int(identity[1])]  # (shard, replica)
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.address = (host, int(self.sock.getsockname()[1]))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="fastpath-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name="fastpath-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10.0)  # a peer must authenticate promptly; then it may idle
        with conn:
            while not self._stop.is_set():
                try:
                    header, payload = decode(_recv_frame(conn))
                except (OSError, ConnectionError, ValueError):
                    return
                if not hmac.compare_digest(str(header.get("token", "")).encode(), self.token):
                    return  # a stranger: no answer, no hint
                conn.settimeout(None)
                try:
                    conn.sendall(self._answer(header, payload))
                except OSError:
                    return

    def _answer(self, header: dict[str, Any], payload: bytes) -> bytes:
        try:
            if header.get("expect") not in (None, self.identity):
                # the port now belongs to another replica than the caller thinks (one
                # restarted and the system gave its old port to this one)
                raise LookupError(f"this is replica {self.identity}, not {header['expect']}")
            dim = int(header["dim"])
            qs = np.frombuffer(payload, "<f4").reshape(-1, dim) if dim else None
            entries = [(e["c"], qs[j], int(e["k"]), e.get("ef"), e.get("filters") or {},
                        bool(e.get("rows")))
                       for j, e in enumerate(header["entries"])]  # type: ignore[index]
            results = self.handle(int(header["min_seq"]), float(header["timeout"]),
                                  header.get("ring"), entries)
        except Exception as exc:  # the caller goes the Ray way (or reloads its ring)
            return encode({"ok": False, "type": type(exc).__name__, "message": str(exc)[:500]})
        ids = [np.asarray(r[0], "<i8") for r in results]
        dists = [np.asarray(r[1], "<f4") for r in results]
        return encode({"ok": True, "n": [len(i) for i in ids],
                       "rows": [_json_rows(r[2]) for r in results]},
                      b"".join(i.tobytes() for i in ids) + b"".join(d.tobytes() for d in dists))

    def close(self) -> None:
        """Stop accepting (open connections end with their next request)."""
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass


class Client:
    """The driver's connections to the replicas (one per replica, reused), for one
    :class:`~agentdb.cluster.scatter.Scatter` (whose rounds never overlap)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._conns: dict[tuple[str, int], socket.socket] = {}

    def _conn(self, address: tuple[str, int], timeout: float) -> socket.socket:
        sock = self._conns.get(address)
        if sock is None:
            sock = socket.create_connection(address, timeout=max(0.05, timeout))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns[address] = sock
        return sock

    def drop(self, address: tuple[str, int]) -> None:
        """Forget (and close) the connection to ``address``."""
        sock = self._conns.pop(address, None)
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        """Close every connection."""
        for address in list(self._conns):
            self.drop(address)

    def search(self, targets: list[tuple[str, int]], header: dict[str, Any],
               queries: np.ndarray, timeout: float,
               expect: list[tuple[int, int]] | None = None
               ) -> list[list[tuple[np.ndarray, np.ndarray, Any]]]:
        """Send one request to every address of ``targets`` and wait for all answers (at
        most ``timeout`` s); per target, per entry ``(ids, dists, rows or None)``.
        ``expect``: the (shard, replica) each target must be, checked by the replica.
        :class:`FastPathError` on any failure (the connections involved are dropped: a late
        answer must never be read as the next one), naming the error type a replica sent."""
        body = np.ascontiguousarray(queries, "<f4").tobytes()
        head = {**header, "token": self.token, "dim": int(queries.shape[1])}
        frames = [encode({**head, "expect": None if expect is None else list(expect[j])}, body)
                  for j in range(len(targets))]
        deadline = time.monotonic() + timeout
        socks: list[socket.socket] = []
        try:
            for j, address in enumerate(targets):
                try:
                    sock = self._conn(address, deadline - time.monotonic())
                    sock.sendall(frames[j])
                except OSError as exc:
                    raise FastPathError(f"{type(exc).__name__}: {exc}", j) from None
                socks.append(sock)
            answers: dict[int, bytes] = {}
            index = {s.fileno(): j for j, s in enumerate(socks)}
            while len(answers) < len(socks):
                left = deadline - time.monotonic()
                if left <= 0:
                    late = [j for j in range(len(socks)) if j not in answers]
                    raise FastPathError("no answer in time", late[0] if len(late) == 1
                                        else None)
                ready, _, _ = select.select([s for j, s in enumerate(socks)
                                             if j not in answers], [], [], left)
                for s in ready:
                    j = index[s.fileno()]
                    s.settimeout(max(0.05, deadline - time.monotonic()))
                    try:
                        answers[j] = _recv_frame(s)
                    except (OSError, ConnectionError) as exc:
                        raise FastPathError(f"{type(exc).__name__}: {exc}", j) from None
        except (OSError, ConnectionError, ValueError) as exc:
            for address in targets:
                self.drop(address)
            raise FastPathError(f"{type(exc).__name__}: {exc}") from None
        except FastPathError:
            for address in targets:
                self.drop(address)
            raise
        out = []
        for j in range(len(targets)):
            head, payload = decode(answers[j])
            if not head.get("ok"):
                raise FastPathError(f"{head.get('type')}: {head.get('message')}", j)
            counts = [int(c) for c in head["n"]]
            total = sum(counts)
            ids = np.frombuffer(payload[: 8 * total], "<i8")
            dists = np.frombuffer(payload[8 * total: 12 * total], "<f4")
            parts, at = [], 0
            for c, rows in zip(counts, head["rows"]):
                parts.append((ids[at:at + c].astype(np.int64), dists[at:at + c].astype(
                    np.float32), rows))
                at += c
            out.append(parts)
        return out
