"""Shared file writing for the numpy backends: atomic, with a CRC-32 trailer.

>>> import os, tempfile, zlib, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "x.bin")
>>> write_crc_file(path, b"HEAD", [np.arange(3, dtype="<i4")])
>>> data = open(path, "rb").read()
>>> int.from_bytes(data[-4:], "little") == zlib.crc32(data[:-4])
True
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_crc_file"]


def write_crc_file(path: str | os.PathLike[str], header: bytes,
                   sections: Sequence[np.ndarray]) -> None:
    """Write ``header`` then each array's raw bytes, then the little-endian CRC-32 of all of
    it, to a temp file renamed over ``path`` (a failed write leaves ``path`` untouched)."""
    target = Path(os.fspath(path))
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}.{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(header)
            crc = zlib.crc32(header)
            for arr in sections:
                buf = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
                fh.write(buf)
                crc = zlib.crc32(buf, crc)
            fh.write((crc & 0xFFFFFFFF).to_bytes(4, "little"))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
