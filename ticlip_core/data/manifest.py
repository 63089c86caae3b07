"""The manifest of a real dataset: metadata rows -> (step, split) before img2dataset downloads them.

``build_manifest`` keeps every input row: a row either lands in ``prepared`` (a declared
step and a train/val/test split) or in ``excluded`` with the reason, and the summary counts
both. URLs the download policy refuses (``url_policy``: schemes other than http/https,
loopback, private and link-local hosts, malformed URLs) are excluded here, before img2dataset
sees them. The split is ``bucketing.split_of_key(sample_id, ...)``, so it never changes between
runs and matches the bucketing of synthetic data. ``write_manifest`` (what the prepare_metadata
job runs) writes the same two tables straight to parquet with Arrow.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ticlip_core.data.bucketing import SPLITS, Step, key_hashes, split_of_hashes
from ticlip_core.data.text_bytes import blank, string_buffers, value_hashes
from ticlip_core.data.timestamps import (MISSING, NAT, STR_DTYPE, UNITS, UNPARSEABLE, YEAR_MAX, YEAR_MIN, arrow_strings,
                                         key_strings, parse_to_ns, years_to_timestamps)
from ticlip_core.data.uid_years import read_key_year_table, read_uid_year_files, years_of_uids
from ticlip_core.data.url_policy import REFUSAL_REASONS, UrlPolicy, refusal_codes

# In order of precedence: a row gets the first reason that applies.
REASONS = ("missing_url", *REFUSAL_REASONS, "missing_id", MISSING, UNPARSEABLE, "no_year_for_key",
           "duplicate_id", "outside_steps")
ADDED_COLUMNS = ("timestamp", "sample_id", "step", "split")
_UID_FILE_SUFFIXES = (".npy",)
_TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")
_YEAR_STARTS_NS = np.arange(YEAR_MIN - 1970, YEAR_MAX + 2 - 1970).astype("M8[Y]").astype("M8[ns]").view(np.int64)
# Rows per row group of the prepared parquet written by write_manifest
_ROW_GROUP = 1 << 17
_TABLE_DAY0 = int(_YEAR_STARTS_NS[0] // (86400 * 10**9))


def build_manifest(metadata: pd.DataFrame, *, steps: list[Step], columns: dict, timestamp: dict,
                   val_fraction: float, test_fraction: float,
                   url_policy: UrlPolicy | Mapping | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Assign each metadata row a step and split, or a reason for leaving it out.

    ``columns`` = ``{"url": ..., "caption": ..., "id": ... or None}`` names input columns;
    ``timestamp`` = ``{"column": ... or None, "unit": "auto", "key_to_year": None | uid year
    files (directory, ``.npy`` path or ``{year: path}``) | key/year table path}``. With
    ``key_to_year`` the id column is looked up and the timestamp is Jan 1 of its year (UTC).
    ``url_policy`` says which URLs may be downloaded: a ``UrlPolicy``, or ``data.download``
    options (``allowed_schemes``, ``allow_private_hosts``, ``resolve_hostnames``); None is
    the default policy (http/https to public hosts only; see ``url_policy.py``).

    Returns ``(prepared, excluded, summary)``. ``prepared`` holds the rows in a declared step,
    in input order, with all input columns plus ``timestamp`` (``YYYY-MM-DDTHH:MM:SSZ``; an
    input column of that name is kept as ``timestamp_raw``), ``sample_id`` (the id, or the url
    without an id column), ``step`` and ``split``. ``excluded`` holds every other row with a
    ``reason`` (see ``REASONS``; the first occurrence of a repeated id among rows with a usable
    timestamp is kept, the later ones are ``duplicate_id``) and a ``reason_detail`` (why the
    URL policy refused the URL, e.g. ``host 169.254.169.254 is not a public address
    (link-local)``; null for the other reasons). ``summary`` has ``rows_in``,
    ``rows_prepared``, ``excluded`` (count per reason), ``steps`` (``{rows, train, val, test}``
    per step), ``years_found`` ([min, max] year of the usable timestamps) and ``url_policy``
    (the policy applied). Raises
    ``ValueError`` for missing columns, a bad configuration, or a declared step left without
    training rows.
    """
    c = _classify(metadata, steps, columns, timestamp, val_fraction, test_fraction, url_policy)
    keep = c.keep
    # The split hash is a Python loop that holds the GIL; it runs in a second thread while
    # this one copies the rows into the two tables with Arrow and NumPy, which release it.
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(key_hashes, c.ids.filter(pa.array(keep)))
        excluded = _rows(metadata, ~keep)
        out = _rows(metadata, keep)
        excluded["reason"] = np.array((None,) + REASONS, dtype=object)[c.reason[~keep]]
        excluded["reason_detail"] = _str_series(_reason_details(c))
        timestamps = iso_strings(c.ns[keep])
        kept_ids = _rows(c.sample_id.to_frame(), keep).iloc[:, 0]
        hashes = hashing.result()
    split_idx = split_of_hashes(hashes, val_fraction, test_fraction)
    prepared = _prepared_frame(out, timestamps, kept_ids, steps, c.step_idx[keep], split_idx)
    assert len(prepared) + len(excluded) == c.n, "build_manifest lost rows"
    return prepared, excluded, _summary(c, steps, split_idx)


def write_manifest(metadata: pd.DataFrame, prepared_path: str | Path, excluded_path: str | Path, *,
                   steps: list[Step], columns: dict, timestamp: dict, val_fraction: float, test_fraction: float,
                   url_policy: UrlPolicy | Mapping | None = None, rename: Mapping[str, str] | None = None) -> dict:
    """``build_manifest``, writing ``prepared`` (its columns renamed by ``rename``) and ``excluded``
    to parquet files; returns the summary.

    The files hold the tables that ``build_manifest`` returns, as ``DataFrame.to_parquet``
    would write them (``pandas.read_parquet`` reads back the same frames), but the tables are
    assembled and written by Arrow, without building pandas columns of Python strings, and each
    row group of ``prepared`` (``_ROW_GROUP`` rows) is written while the split hash of the next
    runs. Writer options (see
    ``_write_parquet``): snappy compression except for columns snappy cannot shrink, no dictionary
    or statistics for the URL, caption, id and timestamp columns. ``rename`` maps prepared
    columns to new names (ValueError for a column the prepared table does not have).
    """
    names = _prepared_names(metadata.columns)
    rename = dict(rename or {})
    unknown = [k for k in rename if k not in names]
    if unknown:
        raise ValueError(f"write_manifest: rename names column(s) {', '.join(map(str, unknown))} that the "
                         f"prepared table does not have; its columns: {', '.join(map(str, names))}")
    final = [rename.get(n, n) for n in names]
    if len(set(final)) < len(final):
        raise ValueError(f"write_manifest: rename {rename} gives the prepared table repeated column names: {final}")
    c = _classify(metadata, steps, columns, timestamp, val_fraction, test_fraction, url_policy)
    keep = c.keep
    table = pa.Table.from_pandas(metadata, preserve_index=False)
    sample_id = pa.Table.from_pandas(c.sample_id.to_frame("sample_id"), preserve_index=False).column(0)
    # unique strings: a dictionary or min/max statistics would cost time and save nothing
    plain = {columns["url"], columns["caption"], columns.get("id"), timestamp.get("column"), "timestamp", "sample_id"}
    plain -= {None}
    keep_mask, drop_mask = pa.array(keep), pa.array(~keep)
    reason = pa.array((None,) + REASONS, pa.string()).take(pa.array(c.reason[~keep]))
    excluded = table.filter(drop_mask).append_column("reason", reason)
    excluded = excluded.append_column("reason_detail", _reason_details(c))
    excluded = _with_pandas_metadata(excluded, table, {"reason": np.dtype(object), "reason_detail": STR_DTYPE})
    prepared = table.filter(keep_mask).rename_columns(names[:table.num_columns])
    prepared = prepared.append_column("timestamp", _iso_arrow(c.ns[keep]))
    prepared = prepared.append_column("sample_id", sample_id.filter(keep_mask))
    prepared = prepared.append_column("step", pa.array([s.name for s in steps], pa.string()).take(c.step_idx[keep]))
    added = {"timestamp": STR_DTYPE, "sample_id": c.sample_id.dtype, "step": np.dtype(object), "split": np.dtype(object)}
    no_rows = prepared.slice(0, 0).append_column("split", pa.array([], pa.string()))
    schema = _with_pandas_metadata(no_rows, table, added, rename).schema
    prepared_plain = {rename.get(n, n) for n in plain | {"timestamp_raw" if n == "timestamp" else n for n in plain}}
    options = _writer_options(prepared, prepared_plain, rename)
    split_name = rename.get("split", "split")
    options["compression"][split_name] = "snappy"
    options["use_dictionary"].append(split_name)
    options["write_statistics"].append(split_name)
    kept_ids = c.ids.filter(keep_mask)
    splits = pa.array(SPLITS, pa.string())

    def row_group(lo: int) -> tuple[pa.Table, np.ndarray]:
        """Rows lo.. of the prepared table with their split (the hash holds the GIL, so a whole
        row group is made here, leaving the writer few Python steps between its writes)."""
        split_idx = split_of_hashes(key_hashes(kept_ids.slice(lo, _ROW_GROUP)), val_fraction, test_fraction)
        rows = prepared.slice(lo, _ROW_GROUP)
        return pa.Table.from_arrays([*rows.columns, splits.take(split_idx)], schema=schema), split_idx

    try:
        # One worker hashes row group after row group, then writes the excluded rows; this
        # thread writes each row group as it comes: the split hash holds the GIL, Arrow's
        # parquet writer releases it, so hashing and writing overlap.
        with ThreadPoolExecutor(max_workers=1) as pool:
            groups = [pool.submit(row_group, lo) for lo in range(0, prepared.num_rows, _ROW_GROUP)]
            writing_excluded = pool.submit(_write_parquet, excluded, excluded_path, plain)
            split_parts = []
            with pq.ParquetWriter(prepared_path, schema, **options) as writer:
                for group in groups:
                    rows, split_idx = group.result()
                    writer.write_table(rows, row_group_size=_ROW_GROUP)
                    split_parts.append(split_idx)
            writing_excluded.result()
        split_idx = np.concatenate(split_parts) if split_parts else np.zeros(0, np.int8)
        assert len(split_idx) + int((~keep).sum()) == c.n, "write_manifest lost rows"
        return _summary(c, steps, split_idx)
    except BaseException:
        for path in (prepared_path, excluded_path):   # no half-written manifest
            Path(path).unlink(missing_ok=True)
        raise


class _Classified(NamedTuple):
    """What ``_classify`` finds per row: ``reason`` (index into ``(None,) + REASONS``, 0 for a
    kept row), ``keep`` (reason 0), ``usable`` (rows with a usable timestamp before the duplicate
    and step checks), ``ns`` (UTC epoch ns, NAT if unusable), ``step_idx`` (-1 for none), the
    sample ids (``sample_id`` as a Series, ``ids`` as Arrow strings), and the URL verdicts
    (``verdict_idx`` into ``details``)."""
    n: int
    reason: np.ndarray
    keep: np.ndarray
    usable: np.ndarray
    ns: np.ndarray
    step_idx: np.ndarray
    sample_id: pd.Series
    ids: pa.Array
    verdict_idx: np.ndarray
    details: pa.Array
    policy: UrlPolicy


def _classify(metadata: pd.DataFrame, steps: list[Step], columns: dict, timestamp: dict, val_fraction: float,
              test_fraction: float, url_policy: UrlPolicy | Mapping | None) -> _Classified:
    """Check the configuration, then give each row its timestamp, step and reason (if any)."""
    url_col, id_col = columns.get("url"), columns.get("id")
    policy = url_policy if isinstance(url_policy, UrlPolicy) else UrlPolicy.from_options(url_policy)
    ts_col, unit, key_to_year = timestamp.get("column"), timestamp.get("unit") or "auto", timestamp.get("key_to_year")
    _check_config(metadata, steps, columns, ts_col, unit, key_to_year, val_fraction, test_fraction)
    n = len(metadata)
    urls = arrow_strings(metadata[url_col])
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Arrow and NumPy kernels release the GIL: the URLs are checked in a second thread
        # while this one reads the ids and timestamps
        checking = pool.submit(_refused_urls, urls, policy)
        sample_id = key_strings(metadata[id_col] if id_col else metadata[url_col])
        ids = arrow_strings(sample_id)
        url_blank = blank(urls)
        id_blank = blank(ids) if id_col else np.zeros(n, bool)
        if key_to_year is not None:
            ns = _timestamps_from_keys(metadata[id_col], sample_id, key_to_year)
            ts_reasons = (("no_year_for_key", ns == NAT),)
        else:
            ns, missing = parse_to_ns(metadata[ts_col], unit)
            ts_reasons = ((MISSING, missing), (UNPARSEABLE, ns == NAT))
        step_idx = _step_index(ns, steps)
        refused, verdict_idx, details = checking.result()

    reason = np.zeros(n, np.int8)
    _set_reason(reason, url_blank, "missing_url")
    free = reason == 0
    reason[free] = refused[free]
    _set_reason(reason, id_blank, "missing_id")
    for name, mask in ts_reasons:
        _set_reason(reason, mask, name)
    usable = reason == 0
    _set_reason(reason, _later_occurrences(ids, usable), "duplicate_id")
    _set_reason(reason, step_idx < 0, "outside_steps")
    return _Classified(n, reason, reason == 0, usable, ns, step_idx, sample_id, ids, verdict_idx, details, policy)


def _reason_details(c: _Classified) -> pa.Array:
    """The excluded rows' ``reason_detail``: the URL policy's sentence for a refused URL, else null."""
    dropped = c.reason[~c.keep]
    is_refusal = np.isin(dropped, [REASONS.index(r) + 1 for r in REFUSAL_REASONS])
    return c.details.take(pa.array(c.verdict_idx[~c.keep], mask=~is_refusal))


def _prepared_names(input_columns) -> list:
    """The prepared table's columns: the input's (``timestamp`` renamed ``timestamp_raw``), then ADDED_COLUMNS."""
    return [("timestamp_raw" if c == "timestamp" else c) for c in input_columns] + list(ADDED_COLUMNS)


def _with_pandas_metadata(table: pa.Table, source: pa.Table, added: Mapping, rename: Mapping | None = None) -> pa.Table:
    """``table`` (the columns of ``source``, then those named in ``added``) with the pandas
    metadata ``DataFrame.to_parquet`` stores, so ``pandas.read_parquet`` rebuilds the dtypes:
    each input column keeps ``source``'s entry, an added column gets that of a column of dtype
    ``added[name]``; then the columns are renamed by ``rename``."""
    meta = dict(source.schema.pandas_metadata)
    entries = list(meta["columns"][:source.num_columns])
    for name, dtype in added.items():
        template = pd.DataFrame({name: pd.Series(["x"], dtype=dtype)})
        entries.append(pa.Schema.from_pandas(template, preserve_index=False).pandas_metadata["columns"][0])
    rename = rename or {}
    final = [rename.get(name, name) for name in table.column_names]
    changed = [dict(e, name=new, field_name=new) if new != e["field_name"] else e for e, new in zip(entries, final)]
    meta["columns"] = changed
    table = table.rename_columns(final)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"pandas": json.dumps(meta).encode()})


def _write_parquet(table: pa.Table, path: str | Path, plain: set) -> None:
    """Write ``table`` to parquet with ``_writer_options``."""
    pq.write_table(table, path, **_writer_options(table, plain))


def _writer_options(table: pa.Table, plain: set, rename: Mapping | None = None) -> dict:
    """``pq.write_table`` options chosen for speed: the ``plain`` columns (unique values such as
    URLs, captions, ids) get neither a dictionary nor statistics (neither pays for unique
    strings), and each column is snappy-compressed unless a sample of it does not shrink (random
    hex ids: compressing them costs time and saves nothing). The options name the columns
    after ``rename``."""
    rename = rename or {}
    names = [rename.get(n, n) for n in table.column_names]
    return {"compression": {new: _compression(table.column(old)) for old, new in zip(table.column_names, names)},
            "use_dictionary": [n for n in names if n not in plain],
            "write_statistics": [n for n in names if n not in plain]}


def _compression(column: pa.ChunkedArray) -> str:
    """``snappy`` if snappy shrinks the first ~64 kB of a string column below 90%, else ``none``;
    ``snappy`` for other columns."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) or column.num_chunks == 0:
        return "snappy"
    chunk = column.chunk(0)
    starts, ends, data = string_buffers(chunk)
    if len(starts) == 0:
        return "snappy"
    lo = int(starts[0])
    sample = data[lo:lo + (1 << 16)]
    if len(sample) == 0:
        return "snappy"
    return "snappy" if pa.compress(sample, "snappy", asbytes=True).__len__() < 0.9 * len(sample) else "none"


def _check_config(metadata: pd.DataFrame, steps: list[Step], columns: dict, ts_col: str | None, unit: str,
                  key_to_year, val_fraction: float, test_fraction: float) -> None:
    """Fail early, naming the setting, before any row is looked at."""
    if not steps:
        raise ValueError("build_manifest: no steps declared")
    if not columns.get("url"):
        raise ValueError("build_manifest: columns.url is required")
    if not columns.get("caption"):
        raise ValueError("build_manifest: columns.caption is required")
    if key_to_year is not None and ts_col:
        raise ValueError("build_manifest: set either timestamp.column or timestamp.key_to_year, not both")
    if key_to_year is None and not ts_col:
        raise ValueError("build_manifest: set timestamp.column or timestamp.key_to_year")
    if key_to_year is not None and not columns.get("id"):
        raise ValueError("build_manifest: timestamp.key_to_year needs columns.id (the key it maps, e.g. uid)")
    if unit not in UNITS:
        raise ValueError(f"build_manifest: timestamp.unit '{unit}' is not one of {', '.join(UNITS)}")
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"build_manifest: val_fraction={val_fraction} and test_fraction={test_fraction} "
                         "must be >= 0 and sum to less than 1")
    wanted = {"columns.url": columns["url"], "columns.caption": columns["caption"],
              "columns.id": columns.get("id"), "timestamp.column": ts_col}
    absent = [f"{key}='{col}'" for key, col in wanted.items() if col and col not in metadata.columns]
    if absent:
        raise ValueError(f"build_manifest: column(s) not in the metadata: {', '.join(absent)}; "
                         f"columns present: {', '.join(map(str, metadata.columns))}")
    clash = [c for c in ("sample_id", "step", "split", "timestamp_raw")
             if c in metadata.columns and not (c == "sample_id" and columns.get("id") == "sample_id")]
    clash += [c for c in ("reason", "reason_detail") if c in metadata.columns]
    if clash:
        raise ValueError(f"build_manifest: the metadata already has column(s) {', '.join(clash)}, "
                         "which the manifest adds; rename them first")


def _refused_urls(urls: pa.Array, policy: UrlPolicy) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Per row the REASONS code (+1; 0 = allowed or missing) and the index of its URL's verdict
    (-1 for a missing URL) into the third value, the verdicts' details (null for allowed)."""
    codes, verdicts = refusal_codes(urls, policy)
    code_of = np.array([REASONS.index(v.reason) + 1 if v else 0 for v in verdicts] + [0], dtype=np.int8)
    details = pa.array([v.detail if v else None for v in verdicts], type=pa.large_string())
    return code_of[codes], codes, details


def _rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame.loc[mask].reset_index(drop=True)``; Arrow-backed string columns are filtered by
    Arrow chunk by chunk (pandas' take first joins their chunks into one array)."""
    arrow_mask = pa.array(mask)
    columns = {}
    for j in range(frame.shape[1]):
        col = frame.iloc[:, j]
        if isinstance(col.dtype, pd.StringDtype) and col.dtype.storage == "pyarrow":
            kept = pc.filter(pa.array(col.array), arrow_mask)
            columns[j] = pd.Series(col.dtype.construct_array_type()(kept), copy=False)
        else:
            columns[j] = col[mask].reset_index(drop=True)
    out = pd.DataFrame(columns, index=pd.RangeIndex(int(mask.sum())))
    out.columns = frame.columns
    return out


def _str_series(arr: pa.Array) -> pd.Series:
    """An Arrow string array as a ``STR_DTYPE`` Series (nulls as NaN)."""
    return pa.table({"s": arr}).to_pandas(types_mapper={pa.string(): STR_DTYPE, pa.large_string(): STR_DTYPE}.get)["s"]


def _set_reason(reason: np.ndarray, mask: np.ndarray, name: str) -> None:
    """Give ``name`` to the rows in ``mask`` that have no reason yet (earlier reasons win)."""
    reason[mask & (reason == 0)] = REASONS.index(name) + 1


def _later_occurrences(ids: pa.Array, among: np.ndarray) -> np.ndarray:
    """Rows of ``among`` whose id already appeared in an earlier row of ``among``.

    Only rows whose id hash repeats can repeat an id; their ids are compared exactly."""
    rows = np.flatnonzero(among)
    starts, ends, data = string_buffers(ids)
    hashes = value_hashes(starts[rows], ends[rows], data)
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    rows = rows[np.isin(hashes, repeated)] if len(repeated) else rows[:0]
    later = np.zeros(len(among), bool)
    if len(rows):
        codes, _ = pd.factorize(pd.Series(ids.take(rows).to_numpy(zero_copy_only=False), dtype=object))
        first = np.zeros(len(codes), bool)
        first[np.unique(codes, return_index=True)[1]] = True
        later[rows[~first]] = True
    return later


def _timestamps_from_keys(ids: pd.Series, sample_id: pd.Series, source) -> np.ndarray:
    """Epoch ns of Jan 1 (UTC) of each key's year, NaT where the key has no year."""
    if _is_uid_file_source(source):
        years = years_of_uids(ids, read_uid_year_files(source)).to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        table = read_key_year_table(source)
        pos = table.index.get_indexer(pd.Index(sample_id.to_numpy(dtype=object)))
        years = np.where(pos >= 0, table.to_numpy(dtype=np.float64, na_value=np.nan)[pos], np.nan)
    return years_to_timestamps(years).view(np.int64)


def _is_uid_file_source(source) -> bool:
    """uid year files (a directory, a ``{year: path}`` dict or a ``.npy``) vs. a key/year table."""
    if isinstance(source, Mapping):
        return True
    path = Path(source)
    if path.is_dir() or path.suffix.lower() in _UID_FILE_SUFFIXES:
        return True
    if path.suffix.lower() in _TABLE_SUFFIXES:
        return False
    raise ValueError(f"timestamp.key_to_year '{source}': expected a directory or .npy of uid year files, "
                     f"a {{year: path}} mapping, or a key/year table ({', '.join(_TABLE_SUFFIXES)})")


def _years(ns: np.ndarray) -> list[int]:
    """Calendar years (UTC) of epoch nanoseconds in YEAR_MIN..YEAR_MAX."""
    return [int(y) for y in np.searchsorted(_YEAR_STARTS_NS, ns, side="right") - 1 + YEAR_MIN]


def _step_index(ns: np.ndarray, steps: list[Step]) -> np.ndarray:
    """Index of the step containing each instant (epoch ns), -1 for none and for NAT (steps
    are ordered and disjoint). A step's years are the instants from Jan 1 of its first year
    to Jan 1 after its last; usable instants lie in YEAR_MIN..YEAR_MAX, so clipping the
    bounds to those years changes no answer and keeps them within datetime64[ns]."""
    def jan1(years: list[int]) -> np.ndarray:
        return _YEAR_STARTS_NS[np.clip(years, YEAR_MIN, YEAR_MAX + 1) - YEAR_MIN]

    starts, ends = jan1([s.start for s in steps]), jan1([s.end + 1 for s in steps])
    idx = np.searchsorted(starts, ns, side="right") - 1
    inside = (idx >= 0) & (ns < ends[np.maximum(idx, 0)])
    return np.where(inside, idx, -1)


def iso_strings(ns: np.ndarray) -> pd.Series:
    """Epoch nanoseconds -> ``YYYY-MM-DDTHH:MM:SSZ`` strings (``STR_DTYPE``), truncated to whole seconds."""
    return _str_series(_iso_arrow(ns))


def _iso_arrow(ns: np.ndarray) -> pa.Array:
    """``iso_strings`` as an Arrow large_string array."""
    secs = np.floor_divide(ns, 10**9)
    days = np.floor_divide(secs, 86400)
    dates, times = _iso_tables()
    if len(ns) and (days.min() < _TABLE_DAY0 or days.max() >= _TABLE_DAY0 + len(dates)):
        # outside the years of the tables: Arrow writes it
        text = pc.cast(pa.array(secs.view("M8[s]"), type=pa.timestamp("s")), pa.string())
        text = pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")
    else:
        buf = np.empty((len(ns), 20), np.uint8)
        buf[:, :10] = dates[days - _TABLE_DAY0]
        buf[:, 10] = ord("T")
        buf[:, 11:19] = times[secs - days * 86400]
        buf[:, 19] = ord("Z")
        offsets = np.arange(0, 20 * len(ns) + 1, 20, dtype=np.int64)
        text = pa.LargeStringArray.from_buffers(len(ns), pa.py_buffer(offsets), pa.py_buffer(buf))
    return text


@functools.cache
def _iso_tables() -> tuple[np.ndarray, np.ndarray]:
    """``YYYY-MM-DD`` of each day of YEAR_MIN..YEAR_MAX (from day _TABLE_DAY0) and ``HH:MM:SS`` of
    each second of a day, as rows of bytes: iso_strings copies two rows per value."""
    days = np.arange(_TABLE_DAY0, _YEAR_STARTS_NS[-1] // (86400 * 10**9)).astype("M8[D]")
    dates = np.frombuffer(np.datetime_as_string(days).astype("S10").tobytes(), np.uint8).reshape(-1, 10)
    clock = np.datetime_as_string(np.arange(86400).astype("M8[s]"), unit="s").astype("S19")
    times = np.frombuffer(clock.tobytes(), np.uint8).reshape(-1, 19)[:, 11:]
    return dates, np.ascontiguousarray(times)


def _prepared_frame(out: pd.DataFrame, timestamps: pd.Series, sample_id: pd.Series, steps: list[Step],
                    step_idx: np.ndarray, split_idx: np.ndarray) -> pd.DataFrame:
    """The kept rows ``out`` with timestamp, sample_id, step and split added."""
    if "timestamp" in out.columns:
        out = out.rename(columns={"timestamp": "timestamp_raw"})
    out["timestamp"] = timestamps
    out["sample_id"] = sample_id.reset_index(drop=True)
    out["step"] = np.array([s.name for s in steps], dtype=object)[step_idx]
    out["split"] = np.array(SPLITS, dtype=object)[split_idx]
    return out


def _summary(c: _Classified, steps: list[Step], split_idx: np.ndarray) -> dict:
    """Counts per reason and per (step, split), which add up to the rows in, the years found and
    the URL policy; ValueError if a declared step has no training rows."""
    counts = np.bincount(c.step_idx[c.keep] * len(SPLITS) + split_idx, minlength=len(steps) * len(SPLITS))
    counts = counts.reshape(len(steps), len(SPLITS))
    per_reason = np.bincount(c.reason, minlength=len(REASONS) + 1)[1:]
    usable_ns = c.ns[c.usable]
    summary = {
        "rows_in": int(c.n),
        "rows_prepared": int(counts.sum()),
        "excluded": {r: int(k) for r, k in zip(REASONS, per_reason)},
        "steps": {s.name: {"rows": int(k.sum()), **{sp: int(v) for sp, v in zip(SPLITS, k)}}
                  for s, k in zip(steps, counts)},
        "years_found": _years(np.array([usable_ns.min(), usable_ns.max()])) if len(usable_ns) else None,
    }
    if summary["rows_prepared"] + sum(summary["excluded"].values()) != c.n:
        raise AssertionError(f"build_manifest: counts do not add up: {summary}")
    summary["url_policy"] = c.policy.as_dict()
    _check_steps_have_data(summary)
    return summary


def _check_steps_have_data(summary: dict) -> None:
    """ValueError naming every declared step with no (training) rows, and the years the data has."""
    empty = [name for name, c in summary["steps"].items() if c["train"] == 0]
    if not empty:
        return
    years = summary["years_found"]
    found = f"the usable timestamps span {years[0]}-{years[1]}" if years else "no row has a usable timestamp"
    detail = ", ".join(f"{name} ({summary['steps'][name]['rows']} rows, 0 train)" for name in empty)
    raise ValueError(f"build_manifest: declared step(s) without training rows: {detail}; {found} "
                     f"(excluded: {summary['excluded']})")
