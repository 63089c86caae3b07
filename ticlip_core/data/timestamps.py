"""Timestamp columns of real data -> UTC: ISO-8601 strings, epoch seconds or milliseconds, years.

Feeds :mod:`ticlip_core.data.manifest`, the step before img2dataset downloads (the uid year
files are in :mod:`uid_years`, metadata tables and presets in :mod:`metadata`). Every
function is vectorised (pandas, NumPy and Arrow compute kernels); bad values never raise but
come back as NaT/NA with a reason, so the caller can quarantine and count them.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ticlip_core.data.text_bytes import blank, string_buffers, trim_whitespace, windows

UNITS = ("auto", "iso", "s", "ms", "year")
YEAR_MIN, YEAR_MAX = 1900, 2100
MISSING = "missing_timestamp"
UNPARSEABLE = "unparseable_timestamp"
# Text columns are read into pandas' Arrow-backed string dtype with NaN for missing (the
# default ``str`` dtype of pandas 3): no Python object per cell, several times faster to read,
# filter and write than object columns.
STR_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)

NAT = np.iinfo(np.int64).min
_NS_LO = int(np.datetime64(f"{YEAR_MIN}-01-01", "ns").astype(np.int64))
_NS_HI = int(np.datetime64(f"{YEAR_MAX + 1}-01-01", "ns").astype(np.int64))  # exclusive

_NUMBER_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
# The common ISO-8601 shapes, restricted so that Arrow's fast cast parses them exactly as
# pandas' format="ISO8601" does; anything else (rarer shapes, garbage) goes to pandas.
_DATE = r"(?:19\d\d|20\d\d|2100)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_TIME = r"[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?"
_ISO_NAIVE_RE = rf"^{_DATE}(?:{_TIME})?$"
_ISO_AWARE_RE = rf"^{_DATE}{_TIME}(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)$"
# Any string that ends in a UTC offset after a time; see _iso_to_ns for why this matters.
_ENDS_WITH_OFFSET_RE = r"^\S*[Tt ]\S*\d(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
# The shapes of nearly all real ISO-8601 timestamps, recognised and parsed byte by byte in
# NumPy (_fixed_iso_to_ns): YYYY-MM-DD[T ]hh:mm:ss followed by nothing (19 bytes), Z (20 bytes)
# or +hh:mm / -hh:mm (25 bytes). Each is a case of _ISO_NAIVE_RE or _ISO_AWARE_RE.
_FIXED_WIDTH = 25
_BLOCK = 1 << 15
_FIXED_TEMPLATE = np.frombuffer(b"0000-00-00T00:00:00\0\0\0\0\0", np.uint8)
_FIXED_MAX = np.frombuffer(b"\x09\x09\x09\x09\x00\x09\x09\x00\x09\x09\x00\x09\x09\x00\x09\x09\x00\x09\x09"
                           b"\xff\xff\xff\xff\xff", np.uint8)
_OFFSET_TEMPLATE = np.frombuffer(b"+00:00", np.uint8)
_OFFSET_MAX = np.frombuffer(b"\x00\x09\x09\x00\x09\x09", np.uint8)
# Day number (since 1970-01-01) of the first day, and the length, of each month YEAR_MIN..YEAR_MAX
_MONTHS = np.arange((YEAR_MIN - 1970) * 12, (YEAR_MAX + 1 - 1970) * 12 + 1).astype("M8[M]").astype("M8[D]").astype(np.int64)
_MONTH_FIRST_DAY, _MONTH_DAYS = _MONTHS[:-1], np.diff(_MONTHS)

# --------------------------------------------------------------------------- timestamps

def parse_timestamps(values: pd.Series, unit: str = "auto") -> tuple[pd.Series, pd.Series]:
    """Parse a column of timestamps to UTC; return ``(timestamps, reasons)`` aligned with ``values``.

    ``timestamps`` is ``datetime64[ns, UTC]`` with NaT where a value is unusable; ``reasons`` is
    ``None`` for a good row, ``"missing_timestamp"`` for a null, empty or whitespace-only value
    and ``"unparseable_timestamp"`` for anything else that fails, including non-finite numbers
    and instants before 1900-01-01 or after 2100-12-31 (UTC).

    ``unit`` says how to read values:

    - ``"iso"``: ISO-8601 strings (date only, with time, with ``Z`` or a ``+02:00`` style
      offset). Naive ones are taken as UTC; offsets are converted to UTC. Numbers are read as
      their text, so 2015 is the ISO year 2015 and 1433116800 fails.
    - ``"s"`` / ``"ms"``: epoch seconds / milliseconds, as numbers or numeric strings.
    - ``"year"``: an integral year such as ``2015`` or ``"2015"`` -> 2015-01-01T00:00:00Z.
    - ``"auto"`` (default): per value. A non-numeric string is read as ISO-8601. A number or
      numeric string ``v`` is a year if it is integral and 1000 <= v <= 9999, epoch seconds if
      1e4 <= |v| < 1e11, epoch milliseconds if |v| >= 1e11, and unparseable otherwise.

    The ``auto`` rule is ambiguous at its edges: epoch seconds below 1e4 (the first 2.8 hours
    of 1970) read as years or fail; epoch milliseconds below 1e11 (before 1973-03-03) read as
    seconds; epoch seconds at or above 1e11 (after year 5138) read as milliseconds; compact
    ISO dates such as ``"20150601"`` read as epoch seconds. Name the unit when a column can
    hold such values. Epoch nanoseconds are not supported (they read as out-of-range ms).

    Columns of datetimes are taken as they are (naive ones as UTC). Vectorised: the usual
    ``YYYY-MM-DDTHH:MM:SS`` shapes (naive, ``Z``, ``+hh:mm``) are read byte by byte in NumPy,
    other common ISO-8601 shapes and numbers by Arrow kernels, rarer ISO-8601 shapes by pandas.
    """
    if unit not in UNITS:
        raise ValueError(f"timestamp unit '{unit}' is not one of {', '.join(UNITS)}")
    ns, missing = parse_to_ns(values, unit)
    reasons = np.full(len(values), None, dtype=object)
    reasons[(ns == NAT) & ~missing] = UNPARSEABLE
    reasons[missing] = MISSING
    ts = pd.Series(ns.view("M8[ns]"), index=values.index, name=values.name).dt.tz_localize("UTC")
    return ts, pd.Series(reasons, index=values.index, name="reason", dtype=object)


def parse_to_ns(values: pd.Series, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """(UTC epoch nanoseconds with NAT where unusable, missing mask) for ``values``."""
    if pd.api.types.is_object_dtype(values.dtype) and \
            pd.api.types.infer_dtype(values, skipna=True) in ("datetime", "datetime64", "date"):
        values = pd.to_datetime(values, utc=True, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        ns, missing = _datetimes_to_ns(values)
    elif unit != "iso" and pd.api.types.is_numeric_dtype(values.dtype) \
            and not pd.api.types.is_bool_dtype(values.dtype):
        missing = values.isna().to_numpy()
        ns = _numbers_to_ns(values.to_numpy(dtype=np.float64, na_value=np.nan), unit)
    else:
        ns, missing = _strings_to_ns(arrow_strings(values), unit)
    ns[(ns < _NS_LO) | (ns >= _NS_HI)] = NAT
    ns[missing] = NAT
    return ns, missing


def _datetimes_to_ns(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A datetime column as UTC nanoseconds (naive ones taken as UTC); any unit is accepted."""
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    arr = values.to_numpy()
    missing = np.isnat(arr)
    ok = ~missing & (arr >= np.datetime64(f"{YEAR_MIN}-01-01")) & (arr < np.datetime64(f"{YEAR_MAX + 1}-01-01"))
    ns = np.full(len(arr), NAT, np.int64)
    ns[ok] = arr[ok].astype("M8[ns]").view(np.int64)
    return ns, missing


def _numbers_to_ns(v: np.ndarray, unit: str) -> np.ndarray:
    """Numbers (float64, NaN for missing) as UTC nanoseconds under ``unit`` (see parse_timestamps)."""
    finite = np.isfinite(v)
    a = np.abs(np.where(finite, v, 0.0))
    ns = np.full(len(v), NAT, np.int64)
    if unit == "auto":
        is_year = finite & (v >= 1000) & (v <= 9999) & (v == np.floor(v))
        masks = {"year": is_year, "s": finite & ~is_year & (a >= 1e4) & (a < 1e11), "ms": finite & (a >= 1e11)}
    else:
        masks = {unit: finite}
    ns_per_unit = {"s": 10**9, "ms": 10**6}
    for kind, mask in masks.items():
        if mask.any():
            ns[mask] = _years_to_ns(v[mask]) if kind == "year" else _scaled_to_ns(v[mask], ns_per_unit[kind])
    return ns


def _years_to_ns(y: np.ndarray) -> np.ndarray:
    """Integral years in [YEAR_MIN, YEAR_MAX] -> Jan 1 00:00 UTC in nanoseconds; others -> NAT."""
    ok = (y == np.floor(y)) & (y >= YEAR_MIN) & (y <= YEAR_MAX)
    ns = np.full(len(y), NAT, np.int64)
    ns[ok] = (y[ok].astype(np.int64) - 1970).view("M8[Y]").astype("M8[ns]").view(np.int64)
    return ns


def _scaled_to_ns(v: np.ndarray, ns_per_unit: int) -> np.ndarray:
    """Epoch values in units of ``ns_per_unit`` ns -> nanoseconds; out of range -> NAT.

    Whole and fractional parts are converted separately: ``v * 1e9`` in float64 would be off
    by up to a few hundred nanoseconds for present-day epoch seconds.
    """
    ok = (v >= _NS_LO / ns_per_unit) & (v < _NS_HI / ns_per_unit)
    whole = np.floor(v[ok])
    ns = np.full(len(v), NAT, np.int64)
    ns[ok] = whole.astype(np.int64) * ns_per_unit + np.rint((v[ok] - whole) * ns_per_unit).astype(np.int64)
    return ns


def _strings_to_ns(arr: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """A string array (nulls allowed) as UTC nanoseconds and its missing mask."""
    s = trim_whitespace(arr)
    missing = blank(s)
    ns = np.full(len(s), NAT, np.int64)
    rest = ~missing
    if unit in ("auto", "iso") and rest.any():
        fixed, fixed_ns = _fixed_iso_to_ns(s, rest)
        ns[fixed] = fixed_ns[fixed]
        rest &= ~fixed
    if unit != "iso" and rest.any():
        # all-digit strings match _NUMBER_RE; only the others need the regex
        numeric = rest & np_bool(pc.ascii_is_decimal(s))
        other = rest & ~numeric
        if other.any():
            numeric[other] = _matches(s, other, _NUMBER_RE)
        if numeric.any():
            v = pc.cast(pc.filter(s, numeric), pa.float64()).to_numpy(zero_copy_only=False)
            ns[numeric] = _numbers_to_ns(v, unit)
        rest &= ~numeric
    if unit in ("auto", "iso") and rest.any():
        ns[rest] = _iso_to_ns(pc.filter(s, rest))
    return ns, missing


def _iso_to_ns(s: pa.Array) -> np.ndarray:
    """Trimmed non-empty strings as ISO-8601 -> UTC nanoseconds (NAT where not ISO-8601).

    The common shapes go through Arrow's cast (tens of millions per second); the rest, and
    any group Arrow rejects (e.g. 2015-02-30), through pandas' ISO-8601 parser. pandas gets
    strings with and without an offset in separate calls: in one call (pandas 2.3.3), a naive
    string that follows one with an offset is read in that offset, not in UTC.
    """
    ns = np.full(len(s), NAT, np.int64)
    slow = np.ones(len(s), bool)
    for pattern, target in ((_ISO_AWARE_RE, pa.timestamp("ns", tz="UTC")), (_ISO_NAIVE_RE, pa.timestamp("ns"))):
        mask = slow & np_bool(pc.match_substring_regex(s, pattern))
        if mask.any():
            try:
                parsed = pc.cast(pc.cast(pc.filter(s, mask), target), pa.int64())
            except pa.ArrowInvalid:
                continue  # a bad date in the fast shape: pandas below decides row by row
            ns[mask] = parsed.to_numpy(zero_copy_only=False)
            slow &= ~mask
    if slow.any():
        with_offset = np.zeros(len(s), bool)
        with_offset[slow] = _matches(s, slow, _ENDS_WITH_OFFSET_RE)
        for group in (slow & with_offset, slow & ~with_offset):
            if group.any():
                rest = pd.Series(pc.filter(s, group).to_numpy(zero_copy_only=False), dtype=object)
                parsed = pd.DatetimeIndex(pd.to_datetime(rest, format="ISO8601", utc=True, errors="coerce"))
                ns[group] = parsed.as_unit("ns").asi8
    return ns


def _fixed_iso_to_ns(s: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``rows`` (a mask over the trimmed strings ``s``) have a ``_FIXED_*`` shape, and
    their UTC nanoseconds: ``(fixed mask, ns)``, both over all of ``s``.

    The checks are those of _ISO_NAIVE_RE / _ISO_AWARE_RE for these shapes (year 1900-2100,
    month 01-12, day 01-31, hour 00-23, minutes and seconds 00-59, offset hours 00-23) and
    the instant is the one Arrow's cast and pandas give (naive = UTC, an offset subtracted).
    A date that does not exist, such as 2015-02-30, is NAT: pandas' parser, to which the
    regex path sends such a row, makes it NaT.
    """
    fixed = np.zeros(len(s), bool)
    ns = np.full(len(s), NAT, np.int64)
    starts, ends, data = string_buffers(s)
    lengths = ends - starts
    cand = np.flatnonzero(rows & ((lengths == 19) | (lengths == 20) | (lengths == 25)))
    for lo in range(0, len(cand), _BLOCK):   # blocks small enough for the temporaries to stay in cache
        block = cand[lo:lo + _BLOCK]
        ok, block_ns = _parse_fixed(windows(data, starts[block], _FIXED_WIDTH), lengths[block])
        fixed[block] = ok
        ns[block] = block_ns
    return fixed, ns


def _parse_fixed(w: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(has a _FIXED shape, UTC ns or NAT) of each row of bytes ``w`` holding a value of length ``n``."""
    # digits become 0-9 and the separators 0; anything else exceeds _FIXED_MAX (uint8 wraps).
    # 24 columns, so that the row's flags read as three uint64 words (bytes 19-23 never fail)
    x = w[:, :24] - _FIXED_TEMPLATE
    x[w[:, 10] == ord(" "), 10] = 0
    bad = (x > _FIXED_MAX).view(np.uint64)
    ok = (bad[:, 0] | bad[:, 1] | bad[:, 2]) == 0

    def two(col: int) -> np.ndarray:   # the two-digit field at col (garbage where not ok)
        return (x[:, col] * np.uint8(10) + x[:, col + 1]).astype(np.int64)

    year, month, day = two(0) * 100 + two(2), two(5), two(8)
    hour, minute, second = two(11), two(14), two(17)
    ok &= (year >= YEAR_MIN) & (year <= YEAR_MAX) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= (day <= 31) & (hour <= 23) & (minute <= 59) & (second <= 59)
    ok &= (n != 20) | (w[:, 19] == ord("Z"))
    offset_s = np.zeros(len(n), np.int64)
    with_offset = np.flatnonzero(n == 25)
    if len(with_offset):
        o = w[with_offset, 19:] - _OFFSET_TEMPLATE
        sign = o[:, 0] == 0                     # '+' (else '-' or not an offset)
        o[~sign, 0] = o[~sign, 0] - np.uint8(2)   # '-' is two past '+'
        offset_ok = (o <= _OFFSET_MAX).all(axis=1)
        hours = (o[:, 1] * np.uint8(10) + o[:, 2]).astype(np.int64)
        minutes = (o[:, 4] * np.uint8(10) + o[:, 5]).astype(np.int64)
        ok[with_offset] &= offset_ok & (hours <= 23) & (minutes <= 59)
        offset_s[with_offset] = np.where(sign, 1, -1) * (hours * 3600 + minutes * 60)
    month_index = np.where(ok, (year - YEAR_MIN) * 12 + month - 1, 0)
    secs = (_MONTH_FIRST_DAY[month_index] + day - 1) * 86400 + hour * 3600 + minute * 60 + second - offset_s
    ns = np.where(ok & (day <= _MONTH_DAYS[month_index]), secs * 10**9, NAT)
    return ok, ns


def _matches(s: pa.Array, mask: np.ndarray, pattern: str) -> np.ndarray:
    """Whether each string of ``s`` in ``mask`` matches ``pattern`` (one bool per masked row)."""
    return np_bool(pc.match_substring_regex(pc.filter(s, mask), pattern))


def arrow_strings(values: pd.Series) -> pa.Array:
    """``values`` as an Arrow large_string array: null where missing, other non-strings as ``str(v)``."""
    dtype = values.dtype
    arrow_text = isinstance(dtype, pd.ArrowDtype) and \
        (pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype))
    if arrow_text or (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        arr = pc.cast(pa.array(values.array), pa.large_string())
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if isinstance(dtype, pd.StringDtype):
        obj = values.to_numpy(dtype=object, na_value=None)
    elif pd.api.types.is_object_dtype(values.dtype) and \
            pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        obj = values.to_numpy()
    else:
        missing = values.isna().to_numpy()
        obj = values.astype(str).to_numpy(dtype=object)
        obj[missing] = None
    return pa.array(obj, type=pa.large_string(), from_pandas=True)


def np_bool(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array as NumPy, nulls as False."""
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def years_to_timestamps(years: np.ndarray) -> np.ndarray:
    """Integral years -> ``datetime64[ns]`` Jan 1 00:00 UTC (NaT outside 1900..2100 or non-integral)."""
    return _years_to_ns(np.asarray(years, dtype=np.float64)).view("M8[ns]")


def key_strings(values: pd.Series) -> pd.Series:
    """Keys as strings: integral numbers without a trailing ``.0``, strings as they are, NA kept."""
    if isinstance(values.dtype, pd.StringDtype) or (
            pd.api.types.is_object_dtype(values.dtype)
            and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")):
        return values
    if pd.api.types.is_float_dtype(values.dtype):
        v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.all(np.isnan(v) | (v == np.floor(v))):
            values = values.astype("Int64")
    missing = values.isna().to_numpy()
    out = values.astype(str).to_numpy(dtype=object)
    out[missing] = None
    return pd.Series(out, index=values.index, dtype=STR_DTYPE)


