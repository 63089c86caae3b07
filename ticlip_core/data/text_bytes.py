"""The bytes of Arrow string arrays as NumPy arrays, for the string work Arrow has no kernel for.

Arrow stores a string array as one UTF-8 data buffer and an offset per value; these helpers
read those buffers without copying, cut fixed-width windows out of them and hash each value,
so the manifest builder's per-row string work (timestamp shapes, URL prefixes, duplicate ids)
runs as a few NumPy operations over all rows instead of a regex or a hash table per row.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import as_strided

_MIX = np.uint64(0x9E3779B97F4A7C15)   # odd: multiplying by it permutes the 64-bit values
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_BLOCK = 1 << 15


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, data)`` of a string, large_string, binary or large_binary array: the
    bytes of value ``i`` are ``data[starts[i]:ends[i]]`` (a null value is whatever range its
    offsets give, usually empty: callers mask nulls). The buffers are read in place (a
    ChunkedArray is first combined into one array)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    if not (large or pa.types.is_string(arr.type) or pa.types.is_binary(arr.type)):
        raise TypeError(f"string_buffers: expected a string or binary array, got {arr.type}")
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64 if large else np.int32)[arr.offset:arr.offset + len(arr) + 1]
    offsets = offsets.astype(np.int64, copy=False)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None and data_buf.size else np.zeros(0, np.uint8)
    return offsets[:-1], offsets[1:], data


def windows(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``(len(starts), width)`` uint8: the ``width`` bytes of ``data`` from each start, 0 past
    the end of ``data`` (bytes past a value's own end belong to the next value: mask them)."""
    if width == 0 or len(starts) == 0:
        return np.zeros((len(starts), width), np.uint8)
    inside = starts <= len(data) - width
    if len(data) >= width:
        view = as_strided(data, shape=(len(data) - width + 1, width), strides=(1, 1), writeable=False)
        if inside.all():
            return view[starts]
    out = np.zeros((len(starts), width), np.uint8)
    if len(data) >= width:
        out[inside] = view[starts[inside]]
    if not inside.all():  # the last few values: read from a zero-padded copy of the tail
        lo = max(0, len(data) - width)
        tail = np.concatenate([data[lo:], np.zeros(width, np.uint8)])
        tail_view = as_strided(tail, shape=(len(tail) - width + 1, width), strides=(1, 1), writeable=False)
        out[~inside] = tail_view[starts[~inside] - lo]
    return out


def value_hashes(starts: np.ndarray, ends: np.ndarray, data: np.ndarray, max_bytes: int = 256) -> np.ndarray:
    """A 64-bit hash of each value's bytes (of its first ``max_bytes`` and its length).

    Equal values get equal hashes; different values almost always differ, so callers that
    need exactness compare the values of rows whose hashes collide."""
    h = np.empty(len(starts), np.uint64)
    for lo in range(0, len(starts), _BLOCK):   # blocks small enough for the temporaries to stay in cache
        h[lo:lo + _BLOCK] = _block_hashes(starts[lo:lo + _BLOCK], ends[lo:lo + _BLOCK], data, max_bytes)
    return h


def _block_hashes(starts: np.ndarray, ends: np.ndarray, data: np.ndarray, max_bytes: int) -> np.ndarray:
    """value_hashes of one block of values."""
    lengths = ends - starts
    h = lengths.astype(np.uint64) * _MIX
    longest = int(min(lengths.max(initial=0), max_bytes))
    for k in range(0, longest, 64):
        width = min(64, -(-(longest - k) // 8) * 8)
        rest = lengths - k
        live = np.flatnonzero(rest > 0) if k else np.arange(len(lengths))
        words = windows(data, starts[live] + k, width).view("<u8").astype(np.uint64, copy=False)
        rest = rest[live]
        hl = h[live]
        for j in range(width // 8):
            word = words[:, j]
            short = np.flatnonzero(rest < 8 * (j + 1))
            if len(short):   # bytes past the value's end belong to the next value
                word = word.copy()
                keep = np.clip(rest[short] - 8 * j, 0, 7).astype(np.uint64)   # < 8 as rest < 8 * (j + 1)
                word[short] &= (np.uint64(1) << (np.uint64(8) * keep)) - np.uint64(1)
            x = hl ^ word
            x *= _MIX2
            x ^= x >> np.uint64(31)
            x *= _MIX
            hl = x ^ (x >> np.uint64(29))
        h[live] = hl
    return h


def trim_whitespace(arr: pa.Array) -> pa.Array:
    """``pc.utf8_trim_whitespace(arr)``, skipped (``arr`` returned) when no value begins or ends
    with a byte that could be whitespace: ASCII 0x09-0x0D, 0x1C-0x20, or any non-ASCII byte
    (Unicode spaces such as U+00A0 are non-ASCII in UTF-8)."""
    starts, ends, data = string_buffers(arr)
    if len(data) == 0:
        return arr
    # an empty value reads a neighbour's byte: at worst a needless trim
    first, last = data[np.minimum(starts, len(data) - 1)], data[np.maximum(ends - 1, 0)]
    if ((first <= 0x20) | (first >= 0x80) | (last <= 0x20) | (last >= 0x80)).any():
        return pc.utf8_trim_whitespace(arr)
    return arr


def blank(arr: pa.Array) -> np.ndarray:
    """Null, empty or whitespace-only strings of ``arr`` (whitespace as ``utf8_trim_whitespace``)."""
    trimmed = trim_whitespace(arr)
    starts, ends, _ = string_buffers(trimmed)
    out = ends == starts
    if trimmed.null_count:
        out |= trimmed.is_null().to_numpy(zero_copy_only=False)
    return out
