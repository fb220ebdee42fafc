"""API keys and rate limits shared by the HTTP and gRPC servers.

Keys come from ``AGENTDB_API_KEYS`` (comma-separated) and/or a keys file (one key per line;
blank lines and ``#`` comments ignored). In the file, names after a key bind it to those
namespaces (``<key> alice bob``): it then reaches only them (:mod:`agentdb.memory.namespaces`;
``default`` is the store's own tables), while a key without names reaches every namespace.
A request presents a key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; it is
compared in constant time against every configured key (``hmac.compare_digest``), so timing
does not reveal how much of a key matched. Each key has its own token bucket (default 100
requests per minute, bursts up to the same number); an empty bucket answers 429 with
``Retry-After`` = seconds until the next token.

>>> keys = KeyStore(["k1", "k2"])
>>> keys.check("k2"), keys.check("nope"), keys.check(None)
('k2', None, None)
>>> rl = RateLimiter(per_minute=2)
>>> [rl.acquire("k1", now=0.0)[0] for _ in range(3)]
[True, True, False]
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InvalidArgumentError

__all__ = ["KeyStore", "RateLimiter", "key_from_headers", "load_key_namespaces", "load_keys",
           "resolve_auth"]

MIN_KEY_LENGTH = 8


def load_keys(env: Mapping[str, str] | None = None, keys_file: str | os.PathLike[str] | None = None,
              extra: Iterable[str] = ()) -> list[str]:
    """Keys from ``AGENTDB_API_KEYS`` (or, when it is unset, ``API_KEYS``: the seed system's
    variable), a keys file and ``extra`` (deduplicated, in order).

    A key shorter than 8 characters or containing whitespace is a ``ValueError`` naming its
    source (never the key itself).

    >>> load_keys({"AGENTDB_API_KEYS": "alpha-key-1, beta-key-22"})
    ['alpha-key-1', 'beta-key-22']
    >>> load_keys({"API_KEYS": "gamma-key-333"})
    ['gamma-key-333']
    """
    env = os.environ if env is None else env
    found: list[tuple[str, str]] = []
    # AGENTDB_API_KEYS, else API_KEYS: the seed system's name, honoured as a fallback
    var = "AGENTDB_API_KEYS" if env.get("AGENTDB_API_KEYS") is not None else "API_KEYS"
    for k in (env.get(var) or "").split(","):
        if k.strip():
            found.append((k.strip(), var))
    if keys_file is not None:
        path = Path(keys_file)
        if not path.is_file():
            raise InvalidArgumentError(f"API keys file not found: {path}")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:  # the key, then the namespaces it is bound to (load_key_namespaces)
                found.append((line.split()[0], f"{path}:{n}"))
    found += [(k, "arguments") for k in extra]
    out: list[str] = []
    for key, source in found:
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise InvalidArgumentError(f"invalid API key from {source}: keys need at least "
                                       f"{MIN_KEY_LENGTH} characters and no whitespace")
        if key not in out:
            out.append(key)
    return out


def load_key_namespaces(keys_file: str | os.PathLike[str] | None) -> dict[str, list[str]]:
    """The namespaces each key of a keys file is bound to (keys without names are absent:
    they reach every namespace). A key listed twice with names reaches all of them.

    >>> import tempfile
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    >>> _ = f.write(chr(10).join(["admin-key-1", "alice-key-1 alice  # alice's agents"]))
    >>> f.close()
    >>> load_key_namespaces(f.name)
    {'alice-key-1': ['alice']}
    """
    from ..memory.namespaces import check_name

    out: dict[str, list[str]] = {}
    if keys_file is None:
        return out
    for n, line in enumerate(Path(keys_file).read_text(encoding="utf-8").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if len(words) > 1:
            try:
                names = [check_name(w) for w in words[1:]]
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"{keys_file}:{n}: {exc}") from None
            out.setdefault(words[0], [])
            out[words[0]] += [w for w in names if w not in out[words[0]]]
    return out


def resolve_auth(host: str, no_auth: bool, keys_file: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None) -> list[str] | None:
    """The API keys a server on ``host`` requires (``AGENTDB_API_KEYS`` and ``keys_file``), or
    None with ``no_auth`` -- allowed on a loopback host only, and never beside keys. Shared by
    ``agentdb serve`` and ``agentdb mcp --http``; each refusal is an ``InvalidArgumentError``.

    >>> resolve_auth("127.0.0.1", True, env={}) is None
    True
    >>> resolve_auth("0.0.0.0", False, env={"AGENTDB_API_KEYS": "alpha-key-1"})
    ['alpha-key-1']
    """
    import ipaddress

    keys = load_keys(env, keys_file=keys_file)
    if no_auth:
        if keys:
            raise InvalidArgumentError("--no-auth cannot be combined with API keys "
                                       "(AGENTDB_API_KEYS or --api-keys-file)")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidArgumentError(f"--no-auth only binds to a loopback host (127.0.0.1, "
                                       f"::1, localhost), not {host!r}")
        return None
    if not keys:
        raise InvalidArgumentError("no API keys: set AGENTDB_API_KEYS or --api-keys-file (or "
                                   "use --no-auth on a loopback host)")
    return keys


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The presented key: ``Authorization: Bearer <key>`` or ``X-API-Key`` (case-insensitive
    header names; ``headers`` may be any mapping with lower- or mixed-case names)."""
    low = {k.lower(): v for k, v in headers.items()}
    auth = low.get("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = low.get("x-api-key")
    return key.strip() if key and key.strip() else None


class KeyStore:
    """The configured keys; ``check`` returns the matching key or None (constant time)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, presented: str | None) -> str | None:
        """The configured key equal to ``presented`` (every key is compared, always)."""
        if presented is None:
            return None
        p = presented.encode()
        match = None
        for k in self._keys:
            if hmac.compare_digest(k, p):
                match = k
        return None if match is None else match.decode()

    @staticmethod
    def label(key: str) -> str:
        """A non-secret name for a key (logs, metrics): the first 8 hex of its SHA-256."""
        return hashlib.sha256(key.encode()).hexdigest()[:8]


class RateLimiter:
    """Per-key token buckets: ``per_minute`` tokens a minute, bursts up to ``burst``
    (default: ``per_minute``). ``per_minute=0`` disables limiting."""

    def __init__(self, per_minute: float = 100, burst: float | None = None) -> None:
        if per_minute < 0:
            raise InvalidArgumentError(f"rate limit must be >= 0 per minute, got {per_minute}")
        self.per_minute = float(per_minute)
        self.burst = float(burst if burst is not None else per_minute)
        self._rate = self.per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, now: float | None = None) -> tuple[bool, float, int]:
        """Take one token for ``key``: ``(allowed, retry_after_seconds, remaining)``."""
        if self.per_minute == 0:
            return True, 0.0, -1
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self._rate)
            if tokens >= 1.0:
                tokens -= 1.0
                self._buckets[key] = (tokens, t)
                return True, 0.0, int(tokens)
            self._buckets[key] = (tokens, t)
            wait = (1.0 - tokens) / self._rate
            return False, wait, 0

    @staticmethod
    def retry_after_header(wait: float) -> str:
        """``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
