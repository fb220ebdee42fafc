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
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["SECTIONS", "read_sections", "write_crc_file"]

PAGE = 4096
#: Section ids of a version-2 index file (``cpp/index_file.hpp``).
SECTIONS = {
    "labels": 1, "deleted": 2, "norms": 3, "levels": 4, "links0": 5, "upper_offsets": 6,
    "upper_words": 7, "vectors": 8, "half": 9, "codes": 10, "scales": 11,
}
_NAMES = {v: k for k, v in SECTIONS.items()}


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


def read_sections(data: bytes | memoryview, where: str) -> dict[str, memoryview]:
    """The sections of a version-2 (sectioned) index file, each checked against its CRC-32.

    Raises ValueError naming the problem: a header or section checksum mismatch, a
    truncated file, trailing bytes, a bad section table or non-zero padding.

    Example:
        >>> read_sections(bytes(4096), "'x'")
        Traceback (most recent call last):
        ...
        ValueError: 'x' failed its checksum: header checksum mismatch (corrupt file)
    """
    view = memoryview(data)
    size = len(view)
    if size < PAGE:
        raise ValueError(f"{where} is truncated: {size} bytes")
    if zlib.crc32(view[: PAGE - 4]) & 0xFFFFFFFF != int.from_bytes(view[PAGE - 4 : PAGE], "little"):
        raise ValueError(f"{where} failed its checksum: header checksum mismatch (corrupt file)")
    expected = int.from_bytes(view[84:92], "little")
    if size < expected:
        raise ValueError(f"{where} is truncated: {size} bytes, expected {expected}")
    if size > expected:
        raise ValueError(f"{where} is corrupt: {size - expected} unexpected trailing bytes")
    count = int.from_bytes(view[80:84], "little")
    if count > (PAGE - 4 - 128) // 32:
        raise ValueError(f"{where} has a corrupt section table")
    out: dict[str, memoryview] = {}
    cursor = PAGE

    def padding_is_zero(lo: int, hi: int) -> None:
        if any(view[lo:hi]):
            raise ValueError(f"{where} is corrupt: non-zero padding at byte {lo}")

    for i in range(count):
        e = 128 + 32 * i
        sid, crc, off, nbytes = struct.unpack_from("<IIQQ", view, e)
        start = -(-cursor // PAGE) * PAGE
        name = _NAMES.get(sid, str(sid))
        if off != start or off + nbytes > size or name in out:
            raise ValueError(f"{where} has a corrupt section table (section {sid})")
        padding_is_zero(cursor, off)
        body = view[off : off + nbytes]
        if zlib.crc32(body) & 0xFFFFFFFF != crc:
            raise ValueError(
                f"{where} failed its checksum: section '{name}' checksum mismatch (corrupt file)")
        out[name] = body
        cursor = off + nbytes
    if -(-cursor // PAGE) * PAGE != size:
        raise ValueError(f"{where} has a corrupt section table (file size)")
    padding_is_zero(cursor, size)
    return out
