"""Metadata tables of real data (parquet, CSV, TSV, JSON lines, RedCaps annotation JSON) and
the named column layouts (presets) of public datasets."""
from __future__ import annotations

import glob
import gzip
import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ticlip_core.data.timestamps import STR_DTYPE

# Named column layouts of public metadata. ``timestamp_column: None`` means the year comes
# from a key-to-year mapping (TiC-DataComp's per-year uid files), not from a column.
PRESETS: dict[str, dict] = {
    "yfcc15m": {"url": "downloadurl", "caption": "title", "id": "photoid",
                "timestamp_column": "dateuploaded", "timestamp_unit": "s"},
    "redcaps": {"url": "url", "caption": "caption", "id": "image_id",
                "timestamp_column": "created_utc", "timestamp_unit": "s"},
    "datacomp": {"url": "url", "caption": "text", "id": "uid",
                 "timestamp_column": None, "timestamp_unit": "year"},
}



_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv",
            ".json": "json", ".jsonl": "jsonl"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def read_metadata(paths: str | Path | list) -> pd.DataFrame:
    """Read and concatenate metadata tables (rows in file order, files in the order given).

    Formats by extension: ``.parquet``; ``.csv`` / ``.tsv`` (optionally compressed); ``.jsonl``;
    and ``.json`` holding a RedCaps annotation file (``{"info": ..., "annotations": [...]}``)
    or a plain list of records. Glob patterns are expanded (sorted). Values are kept as
    stored (numbers stay numbers, strings stay strings); text columns get pandas' Arrow-backed
    ``str`` dtype (``STR_DTYPE``, NaN for missing). CSV/TSV cells are all read as text, only
    empty cells becoming missing, so ids keep leading zeros and a caption "NA" stays a caption.
    No column is added.

    An empty file (no bytes, or a CSV/TSV without even a header) fails naming it. Files that
    hold a header but no rows fail too when every file given is like that; when others hold
    rows they are left out, named in a warning on stderr.
    """
    files = _expand_paths(paths)
    frames = [read_table(f) for f in files]
    empty = [str(f) for f, frame in zip(files, frames) if len(frame) == 0]
    if len(empty) == len(files):
        raise ValueError(f"metadata: {', '.join(empty)} hold{'s' if len(empty) == 1 else ''} no rows; "
                         "check the data.metadata paths (a failed or partial download?)")
    if empty:
        print(f"warning: metadata files with no rows (skipped): {', '.join(empty)}", file=sys.stderr)
        frames = [frame for frame in frames if len(frame)]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def _expand_paths(paths: str | Path | list) -> list[Path]:
    """Paths and glob patterns -> existing files; FileNotFoundError naming what matched nothing."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise FileNotFoundError("read_metadata: no metadata path given")
    files = []
    for item in items:
        item = str(item)
        if glob.has_magic(item):
            matched = sorted(glob.glob(item))
            if not matched:
                raise FileNotFoundError(f"metadata pattern '{item}' matched no file")
            files.extend(Path(m) for m in matched)
        elif Path(item).is_file():
            files.append(Path(item))
        else:
            raise FileNotFoundError(f"metadata file '{item}' does not exist")
    for f in files:
        _format_of(f)  # unknown extensions fail before anything is read
    return files


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED and suffixes[-2:-1] != [".parquet"]:
        suffixes = suffixes[:-1]
    fmt = _FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise ValueError(f"{path}: unknown metadata format; expected one of "
                         f"{', '.join(_FORMATS)} (csv/tsv/json/jsonl may be compressed with {', '.join(_COMPRESSED)})")
    return fmt


def read_table(path: Path) -> pd.DataFrame:
    """One metadata or mapping file as a DataFrame (see read_metadata for the formats).

    An empty file (no bytes, or a CSV/TSV with no header line) raises ValueError naming it.
    """
    fmt = _format_of(path)
    if Path(path).stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); expected a {fmt} table. "
                         "Download or write it again, or remove it from the metadata paths")
    if fmt == "parquet":
        mapper = {pa.string(): STR_DTYPE, pa.large_string(): STR_DTYPE}.get
        # memory-mapped: the pages are decoded straight from the page cache, without a read copy
        return pq.read_table(path, memory_map=True).to_pandas(types_mapper=mapper)
    if fmt in ("csv", "tsv"):
        try:
            return pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=STR_DTYPE,
                               keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: the {fmt.upper()} file holds no header and no rows (it is empty "
                             "once decompressed); download or write it again, or remove it from the "
                             "metadata paths") from None
    if fmt == "jsonl":
        frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    else:
        frame = _read_json_records(path)
    return _text_columns_as_str(frame)


def _text_columns_as_str(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding only strings (and missing values) -> STR_DTYPE; others untouched."""
    for col in frame.columns:
        if pd.api.types.is_object_dtype(frame[col].dtype) and \
                pd.api.types.infer_dtype(frame[col], skipna=True) == "string":
            frame[col] = frame[col].astype(STR_DTYPE)
    return frame


def _read_json_records(path: Path) -> pd.DataFrame:
    """A RedCaps-style annotation file (``{"annotations": [...]}``) or a JSON list of records."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    if isinstance(doc, dict):
        if "annotations" not in doc or not isinstance(doc["annotations"], list):
            raise ValueError(f"{path}: a JSON object must hold an 'annotations' list (RedCaps format); "
                             f"found keys {', '.join(map(str, doc))}")
        doc = doc["annotations"]
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a list of records or a RedCaps annotation file")
    return pd.DataFrame.from_records(doc)
