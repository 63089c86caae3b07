"""Seeds every study derives from the run's one ``seed``: stable across processes and machines,
and shared by every method at the same step (common random numbers), so that differences between
methods come from the methods rather than from initialisation or data-order luck."""
from __future__ import annotations

import zlib


def derived_seed(*parts) -> int:
    """A stable 31-bit seed from the run seed and names (study, step or session, purpose):
    the CRC-32 of the parts joined by ``:``."""
    return zlib.crc32(":".join(map(str, parts)).encode()) & 0x7FFFFFFF
