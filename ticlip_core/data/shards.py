"""Write and read shards in exactly the layout img2dataset produces with ``output_format=webdataset``.

One shard is three files in the output folder::

    00000.tar          KEY.jpg, KEY.json, KEY.txt per sample (members in webdataset.TarWriter order)
    00000.parquet      one row per sample: the json metadata without the image
    00000_stats.json   count, successes, failed_to_download, failed_to_resize, duration,
                       start_time, end_time, status_dict

KEY is img2dataset's: the shard id (5 digits) followed by the index within the shard, zero-padded
to ``ceil(log10(samples_per_shard))`` digits (``000000042`` is sample 42 of shard 0 when shards
hold 10,000 samples). Metadata columns follow img2dataset's order: ``url``, ``caption``, the
additional columns, then ``key``, ``status``, ``error_message``, ``width``, ``height``,
``original_width``, ``original_height``, ``sha256``.

The tar is written with the standard library, member for member as ``webdataset.TarWriter``
writes it (tests/test_synthetic.py checks the bytes are the same); importing webdataset pulls
in torch, which would cost every worker process seconds. Every file is written under a
temporary name and renamed when complete, so a killed job never leaves a shard that looks
finished. Tars and parquets are byte-for-byte deterministic; ``_stats.json`` holds wall-clock
times, as img2dataset's does.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tarfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_ID_DIGITS = 5  # img2dataset's default oom_shard_count
TAR_MTIME = 0        # a fixed (integer: no pax header) member time keeps tars reproducible
_SHARD_FILE_RE = re.compile(r"^(\d+)(\.tar|\.parquet|_stats\.json)$")

# Columns img2dataset writes around the input ("additional") columns.
LEADING_FIELDS = [pa.field("url", pa.string()), pa.field("caption", pa.string())]
TRAILING_FIELDS = [
    pa.field("key", pa.string()),
    pa.field("status", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("original_width", pa.int32()),
    pa.field("original_height", pa.int32()),
    pa.field("sha256", pa.string()),
]


def key_digits(samples_per_shard: int) -> int:
    """Digits img2dataset gives the within-shard index: ``ceil(log10(samples_per_shard))``."""
    return math.ceil(math.log10(samples_per_shard))


def compute_key(index: int, shard_id: int, samples_per_shard: int) -> str:
    """img2dataset's sample key for sample ``index`` of shard ``shard_id``."""
    digits = key_digits(samples_per_shard)
    return f"{10 ** digits * shard_id + index:0{digits + SHARD_ID_DIGITS}d}"


def shard_name(shard_id: int) -> str:
    """File stem of a shard: the id zero-padded to 5 digits."""
    return f"{shard_id:0{SHARD_ID_DIGITS}d}"


def shard_schema(extra_fields: list[pa.Field] | pa.Schema = ()) -> pa.Schema:
    """Parquet schema of a shard whose samples carry ``extra_fields`` as additional columns."""
    return pa.schema(LEADING_FIELDS + list(extra_fields) + TRAILING_FIELDS)


class ShardWriter:
    """Writes one img2dataset-style webdataset shard (tar, parquet, stats) into ``out_dir``.

    Use as a context manager; ``write`` adds one successfully "downloaded" sample. On leaving
    the ``with`` block the three files are renamed into place; if the block raises, the
    temporary files are removed instead.
    """

    def __init__(self, out_dir, shard_id: int, *, samples_per_shard: int,
                 extra_fields: list[pa.Field] | pa.Schema = (), url_prefix: str = ""):
        self.out_dir = Path(out_dir)
        self.shard_id = shard_id
        self.samples_per_shard = samples_per_shard
        self.schema = shard_schema(extra_fields)
        self.extra_names = [f.name for f in extra_fields]
        self.url_prefix = url_prefix
        self.stem = shard_name(shard_id)
        self.rows: list[dict] = []
        self.start_time = time.time()
        self._tmp_tar = self.out_dir / f"{self.stem}.tar.tmp"
        self._tar_file = open(self._tmp_tar, "wb")
        # Same stream mode and defaults as webdataset.TarWriter.
        self._tar = tarfile.open(fileobj=self._tar_file, mode="w|")

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, image: bytes, caption: str, *, width: int, height: int,
              extra: dict | None = None, image_ext: str = "jpg") -> str:
        """Add one sample; returns its key. ``extra`` holds the additional metadata columns."""
        index = len(self.rows)
        if index >= self.samples_per_shard:
            raise ValueError(f"shard {self.stem} already holds {self.samples_per_shard} samples")
        key = compute_key(index, self.shard_id, self.samples_per_shard)
        extra = extra or {}
        missing = set(self.extra_names) - set(extra)
        if missing:
            raise ValueError(f"sample {key} lacks the metadata columns {sorted(missing)}")
        meta = {"url": f"{self.url_prefix}{key}", "caption": caption}
        meta.update({name: extra[name] for name in self.extra_names})
        meta.update(key=key, status="success", error_message=None, width=width, height=height,
                    original_width=width, original_height=height,
                    sha256=hashlib.sha256(image).hexdigest())
        members = {image_ext: image, "json": json.dumps(meta, indent=4).encode("utf-8"),
                   "txt": caption.encode("utf-8")}
        for ext in sorted(members):  # webdataset.TarWriter writes extensions in sorted order
            self._add_member(f"{key}.{ext}", members[ext])
        self.rows.append(meta)
        return key

    def _add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = TAR_MTIME
        info.mode = 0o444
        info.uname = info.gname = "bigdata"
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> dict:
        """Finish the tar, write the parquet and stats, rename all three; returns the stats."""
        self._tar.close()
        self._tar_file.close()
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        tmp_parquet = self.out_dir / f"{self.stem}.parquet.tmp"
        pq.write_table(table, tmp_parquet)
        end_time = time.time()
        n = len(self.rows)
        stats = {
            "count": n,
            "successes": n,
            "failed_to_download": 0,
            "failed_to_resize": 0,
            "duration": end_time - self.start_time,
            "start_time": self.start_time,
            "end_time": end_time,
            "status_dict": {"success": n} if n else {},
        }
        tmp_stats = self.out_dir / f"{self.stem}_stats.json.tmp"
        tmp_stats.write_text(json.dumps(stats, indent=4))
        os.replace(self._tmp_tar, self.out_dir / f"{self.stem}.tar")
        os.replace(tmp_parquet, self.out_dir / f"{self.stem}.parquet")
        os.replace(tmp_stats, self.out_dir / f"{self.stem}_stats.json")
        return stats

    def abort(self) -> None:
        """Drop the shard: close and delete the temporary files."""
        try:
            self._tar.close()
        finally:
            self._tar_file.close()
            for suffix in (".tar.tmp", ".parquet.tmp", "_stats.json.tmp"):
                (self.out_dir / f"{self.stem}{suffix}").unlink(missing_ok=True)


def list_shard_files(shard_dir) -> dict[int, list[Path]]:
    """Shard files (tar, parquet, stats) found in ``shard_dir``, grouped by shard id."""
    found: dict[int, list[Path]] = {}
    for path in sorted(Path(shard_dir).iterdir()):
        m = _SHARD_FILE_RE.match(path.name)
        if m:
            found.setdefault(int(m.group(1)), []).append(path)
    return found


def read_shard_metadata(shard_dir) -> pd.DataFrame:
    """All samples' metadata in ``shard_dir``: the shard parquets concatenated in shard order.

    Adds a ``shard`` column holding the shard's file stem (``"00000"``), so a sample's tar is
    ``f"{shard}.tar"``.
    """
    parquets = sorted(Path(shard_dir).glob("*.parquet"))
    parquets = [p for p in parquets if _SHARD_FILE_RE.match(p.name)]
    if not parquets:
        raise FileNotFoundError(f"{shard_dir}: no shard parquet files (NNNNN.parquet) found")
    frames = []
    for path in parquets:
        frame = pq.read_table(path).to_pandas()
        frame.insert(0, "shard", path.stem)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
