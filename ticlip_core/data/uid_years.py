"""TiC-DataComp's per-year uid files, and key-to-year tables: the year of a row from its key.

TiC-DataComp publishes one ``.npy`` per year of DataComp uids (128 bits, stored as two
uint64 per uid, ``np.dtype("u8,u8")``, sorted); a row's year is the file its ``uid`` is in.
"""
from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ticlip_core.data.metadata import read_table
from ticlip_core.data.timestamps import YEAR_MAX, YEAR_MIN, arrow_strings, key_strings, np_bool

UID_DTYPE = np.dtype("u8,u8")
_UID_RE = r"^[0-9a-fA-F]{32}$"
_YEAR_IN_NAME_RE = re.compile(r"(?<!\d)(\d{4})(?!\d)")


def uids_to_pairs(uids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """DataComp ``uid`` hex strings -> (``u8,u8`` array, valid mask), as TiC-DataComp's tooling does.

    A valid uid is 32 hex digits; the first 16 are the first uint64, the next 16 the second,
    i.e. ``(int(uid[:16], 16), int(uid[16:32], 16))``. Invalid rows (null, wrong length,
    non-hex) are ``(0, 0)`` in the array and ``False`` in the mask.
    """
    arr = arrow_strings(uids)
    valid = np_bool(pc.match_substring_regex(arr, _UID_RE))
    pairs = np.zeros(len(valid), UID_DTYPE)
    if valid.any():
        halves = np.frombuffer(binascii.unhexlify(_string_bytes(pc.filter(arr, valid))), dtype=">u8").reshape(-1, 2)
        pairs["f0"][valid] = halves[:, 0]
        pairs["f1"][valid] = halves[:, 1]
    return pairs, valid


def _string_bytes(arr: pa.Array) -> memoryview:
    """The characters of a large_string array, concatenated, without building Python strings."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset:arr.offset + len(arr) + 1]
    return memoryview(arr.buffers()[2])[offsets[0]:offsets[-1]]


def read_uid_year_files(source: str | Path | Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Read TiC-DataComp's per-year uid files; return ``(uids sorted, year of each uid)``.

    ``source`` is a directory (every ``*.npy`` in it; each file stem must hold exactly one
    4-digit year, e.g. ``2014.npy`` or ``uids_2014.npy``), one such ``.npy`` path, or a dict
    ``{year: path}``. Each file must be a 1-D array of dtype ``u8,u8``. A uid listed in two
    files raises ``ValueError`` naming it and both files.
    """
    files = _uid_year_file_list(source)
    parts = [_load_uid_file(path) for _, path in files]
    uids = np.concatenate(parts) if parts else np.zeros(0, UID_DTYPE)
    file_of = np.repeat(np.arange(len(files), dtype=np.int32), [len(p) for p in parts])
    order = np.lexsort((uids["f1"], uids["f0"]))  # np.sort on a structured array is far slower
    uids, file_of = uids[order], file_of[order]
    dup = (uids["f0"][1:] == uids["f0"][:-1]) & (uids["f1"][1:] == uids["f1"][:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first, second = files[file_of[i]][1], files[file_of[i + 1]][1]
        where = f"twice in {first}" if first == second else f"in two year files: {first} and {second}"
        raise ValueError(f"uid {_uid_hex(uids[i])} is listed {where} ({int(dup.sum())} duplicated uid(s) in all)")
    years = np.array([y for y, _ in files], dtype=np.int32)[file_of]
    return uids, years


def _uid_year_file_list(source: str | Path | Mapping) -> list[tuple[int, Path]]:
    """(year, path) pairs named by ``source`` (see read_uid_year_files)."""
    if isinstance(source, Mapping):
        files = []
        for year, path in source.items():
            if not re.fullmatch(r"\d{4}", str(year).strip()):
                raise ValueError(f"uid year files: key '{year}' is not a 4-digit year")
            files.append((int(str(year).strip()), Path(path)))
        for _, path in files:
            if not path.is_file():
                raise FileNotFoundError(f"uid year file {path} does not exist")
        return sorted(files)
    source = Path(source)
    if source.is_dir():
        paths = sorted(source.glob("*.npy"))
        if not paths:
            raise FileNotFoundError(f"uid year files: no *.npy file in {source}")
    elif source.is_file():
        paths = [source]
    else:
        raise FileNotFoundError(f"uid year files: {source} is neither a directory nor a file")
    files = []
    for path in paths:
        years = _YEAR_IN_NAME_RE.findall(path.stem)
        if len(years) != 1:
            problem = "names no 4-digit year" if not years else f"is ambiguous ({', '.join(years)})"
            raise ValueError(f"uid year file {path}: the file name {problem}; name one year per file "
                             "(e.g. 2014.npy) or pass a {year: path} mapping")
        files.append((int(years[0]), path))
    return sorted(files)


def _load_uid_file(path: Path) -> np.ndarray:
    """One uid file, checked to be a 1-D ``u8,u8`` array."""
    arr = np.load(path, allow_pickle=False)
    if arr.dtype != UID_DTYPE or arr.ndim != 1:
        raise ValueError(f"uid year file {path}: expected a 1-D array of dtype 'u8,u8' "
                         f"(np.dtype('u8,u8')), found dtype {arr.dtype} with shape {arr.shape}")
    return arr


def _uid_hex(pair: np.void) -> str:
    return f"{int(pair['f0']):016x}{int(pair['f1']):016x}"


def years_of_uids(uids: pd.Series, table: tuple[np.ndarray, np.ndarray]) -> pd.Series:
    """The year of each uid string under ``table`` (from read_uid_year_files), as nullable Int64.

    NA where the uid is invalid or in no year file. ``table``'s uids must be sorted
    lexicographically by ``(f0, f1)``, as read_uid_year_files returns them.
    """
    sorted_uids, years = table
    pairs, valid = uids_to_pairs(uids)
    pos, found = _search_pairs(sorted_uids, pairs)
    found &= valid
    out = np.zeros(len(pairs), np.int64)
    out[found] = years[pos[found]]
    return pd.Series(pd.arrays.IntegerArray(out, ~found), index=uids.index, name="year")


def _search_pairs(table: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``query`` pairs in the lexicographically sorted ``table`` and a found mask.

    np.searchsorted works on the structured array but compares field by field through a
    generic callback (seconds per million); here a uint64 search on the first half narrows
    each query to its run of equal first halves, and a vectorised binary search on the
    second half finishes the (rare) runs longer than one.
    """
    f0, f1 = np.ascontiguousarray(table["f0"]), np.ascontiguousarray(table["f1"])
    q0, q1 = query["f0"], query["f1"]
    # sorted needles let searchsorted start from its last position: ~4x fewer cache misses
    order = np.argsort(q0)
    lo, hi = np.empty(len(q0), np.intp), np.empty(len(q0), np.intp)
    lo[order] = np.searchsorted(f0, q0[order], side="left")
    hi[order] = np.searchsorted(f0, q0[order], side="right")
    long_runs = np.flatnonzero(hi - lo > 1)
    if len(long_runs):
        a, b, target = lo[long_runs], hi[long_runs], q1[long_runs]
        while (a < b).any():
            active = a < b
            mid = (a + b) // 2
            right = active & (f1[np.minimum(mid, len(f1) - 1)] < target)
            a = np.where(right, mid + 1, a)
            b = np.where(active & ~right, mid, b)
        lo[long_runs] = a
    pos = np.minimum(lo, max(len(f0) - 1, 0))
    found = (lo < len(f0)) & (f0[pos] == q0) & (f1[pos] == q1) if len(f0) else np.zeros(len(q0), bool)
    return pos, found


# --------------------------------------------------------------------------- key/year tables

def read_key_year_table(path: str | Path) -> pd.Series:
    """A key-to-year mapping (parquet or CSV/TSV with columns ``key`` and ``year``) as a Series.

    The result is indexed by the key as a string (``str`` of integer keys) with Int64 years.
    Missing columns, null keys, duplicate keys and years that are not integers in
    1900..2100 raise ``ValueError``.
    """
    path = Path(path)
    table = read_table(path)
    absent = [c for c in ("key", "year") if c not in table.columns]
    if absent:
        raise ValueError(f"key/year table {path}: missing column(s) {', '.join(absent)} "
                         f"(columns present: {', '.join(map(str, table.columns))})")
    keys = key_strings(table["key"])
    if keys.isna().any():
        raise ValueError(f"key/year table {path}: {int(keys.isna().sum())} row(s) have no key")
    dup = keys.duplicated()
    if dup.any():
        raise ValueError(f"key/year table {path}: key '{keys[dup].iloc[0]}' appears more than once "
                         f"({int(dup.sum())} duplicate row(s))")
    year = pd.to_numeric(table["year"], errors="coerce")
    bad = year.isna() | (year != np.floor(year)) | (year < YEAR_MIN) | (year > YEAR_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"key/year table {path}: key '{keys.iloc[i]}' has year '{table['year'].iloc[i]}', "
                         f"not an integer in {YEAR_MIN}..{YEAR_MAX}")
    return pd.Series(year.to_numpy(dtype=np.int64), index=pd.Index(keys.to_numpy(), name="key"),
                     name="year", dtype="Int64")


