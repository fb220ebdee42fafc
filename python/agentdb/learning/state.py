"""Persistence of the learning state as one text value in the store's ``meta`` table.

Format (version 1): ``"agentdb-learning/1 <sha256 hex> <base64 of an .npz>"``. The npz holds
the arrays (adapter, optimizer moments, Fisher, anchor) and ``header``: UTF-8 JSON with the
configuration and counters. The value is written with one ``set_meta`` call -- one
transaction, so a crash leaves either the old state or the new one. Reading checks the
prefix, the version, the checksum and every array's shape; any failure is a
:class:`LearningStateError` saying what is wrong.

>>> import numpy as np
>>> text = encode_state({"v": 1}, {"A": np.eye(2)})
>>> header, arrays = decode_state(text)
>>> header["v"], arrays["A"].tolist()
(1, [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np

from ..errors import LearningStateError

__all__ = ["FORMAT", "META_KEY", "VERSION", "LearningStateError", "decode_state",
           "encode_state"]

FORMAT = "agentdb-learning"
VERSION = 1
#: The ``meta`` key the state is stored under.
META_KEY = "learning:state"


def encode_state(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """One text value: format/version, checksum and the base64 npz."""
    buf = io.BytesIO()
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
    np.savez(buf, **payload)  # type: ignore[arg-type]
    raw = buf.getvalue()
    return f"{FORMAT}/{VERSION} {hashlib.sha256(raw).hexdigest()} " \
           f"{base64.b64encode(raw).decode('ascii')}"


def decode_state(text: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(header, arrays)`` from :func:`encode_state`'s text (``LearningStateError`` if bad)."""
    parts = text.split(" ") if isinstance(text, str) else []
    if len(parts) != 3 or not parts[0].startswith(FORMAT + "/"):
        raise LearningStateError(f"not an {FORMAT} value (starts with {str(text)[:24]!r})")
    try:
        version = int(parts[0].split("/", 1)[1])
    except ValueError:
        raise LearningStateError(f"bad version tag {parts[0]!r}") from None
    if version != VERSION:
        raise LearningStateError(f"state version {version} is not supported (this agentdb "
                                 f"reads version {VERSION})")
    try:
        raw = base64.b64decode(parts[2].encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LearningStateError(f"state is not valid base64 ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != parts[1]:
        raise LearningStateError("state checksum mismatch (the stored value is corrupt or "
                                 "truncated)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise LearningStateError(f"state payload is unreadable ({exc})") from None
    if not isinstance(header, dict):
        raise LearningStateError("state header is not a JSON object")
    return header, arrays
