"""PostgreSQL connection URLs as the store shows them: never with the password.

>>> describe_url("postgresql://localhost/agentdb")[0]
'localhost:5432/agentdb'
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StoreError
from .postgres_schema import EXTRA_MSG

try:
    import psycopg
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(EXTRA_MSG) from _exc

__all__ = ["attempt_timeout", "describe_url", "redact_password"]


def redact_password(url: str) -> str:
    """The URL (or key=value DSN) with any password replaced by ``***``.

    >>> redact_password("postgresql://bob:s3cret@db/x?sslmode=require")
    'postgresql://bob:***@db/x?sslmode=require'
    >>> redact_password("host=db password='a b' user=bob")
    'host=db password=*** user=bob'
    """
    if "://" in url:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            cred, host = netloc.rsplit("@", 1)
            if ":" in cred:
                user, pw = cred.split(":", 1)
                if pw:
                    netloc = f"{user}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k == "password" for k, _ in pairs):
                query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs],
                                  safe="/:")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def describe_url(url: str) -> tuple[str, str]:
    """(``user@host:port/dbname`` with no password, the password or ''); StoreError for a
    URL libpq cannot parse.

    >>> describe_url("postgresql://bob:s3cret@db:5433/x")
    ('bob@db:5433/x', 's3cret')
    """
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except Exception:
        raise StoreError(f"invalid PostgreSQL URL {redact_password(url)!r}") from None
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = str(info.get("port") or "5432")
    db = str(info.get("dbname") or info.get("user") or "postgres")
    user = info.get("user")
    where = f"{user + '@' if user else ''}{host}:{port}/{db}"
    return where, str(info.get("password") or "")


def attempt_timeout(url: str, limit: float) -> int:
    """Seconds one connection attempt to one host may take: the URL's own
    ``connect_timeout`` when it sets a smaller one, else ``limit`` (whole seconds, at least 1).

    libpq applies ``connect_timeout`` to each host of a multi-host URL in turn, so a host that
    is gone without refusing (a lost machine) costs that long before the next is tried; a
    keyword argument would override the URL's value, so callers pass this one.

    >>> attempt_timeout("postgresql://a,b/x?connect_timeout=2", 10.0)
    2
    >>> attempt_timeout("postgresql://localhost/x", 2.5), attempt_timeout("host=db", 0.2)
    (3, 1)
    """
    limit_s = max(1, math.ceil(limit))
    try:
        given = psycopg.conninfo.conninfo_to_dict(url).get("connect_timeout")
        own = int(str(given)) if given not in (None, "") else 0
    except (psycopg.Error, ValueError):
        own = 0
    return min(limit_s, own) if own > 0 else limit_s
