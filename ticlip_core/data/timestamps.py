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

    Columns of datetimes are taken as they are (naive ones as UTC). Vectorised: common
    ISO-8601 shapes and numbers are parsed by Arrow kernels, rarer ISO-8601 shapes by pandas.
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
    s = pc.utf8_trim_whitespace(arr)
    missing = np_bool(pc.or_kleene(pc.is_null(s), pc.equal(pc.utf8_length(s), 0)))
    ns = np.full(len(s), NAT, np.int64)
    rest = ~missing
    if unit != "iso":
        numeric = rest & np_bool(pc.match_substring_regex(s, _NUMBER_RE))
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
        with_offset = np_bool(pc.match_substring_regex(s, _ENDS_WITH_OFFSET_RE))
        for group in (slow & with_offset, slow & ~with_offset):
            if group.any():
                rest = pd.Series(pc.filter(s, group).to_numpy(zero_copy_only=False), dtype=object)
                parsed = pd.DatetimeIndex(pd.to_datetime(rest, format="ISO8601", utc=True, errors="coerce"))
                ns[group] = parsed.as_unit("ns").asi8
    return ns


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


