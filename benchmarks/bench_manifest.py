"""Time the real-data manifest builder: read metadata, build the manifest, write it; and uid-year lookups.

Usage: python benchmarks/bench_manifest.py [--rows 2000000] [--repeats 5] [--seed 0]

Generates a metadata parquet (DataComp-style uid, url, caption and a timestamp column mixing
ISO-8601 strings, epoch seconds and epoch milliseconds, with ~1% missing and ~1% garbage
timestamps, years 2010-2023) in a temporary folder, then times over the repeats:

- ``manifest``: what the prepare_metadata job does: read_metadata + write_manifest (steps
  2014-2015 .. 2020-2021; build_manifest's tables, written to parquet by Arrow);
- ``parse_timestamps_object`` / ``parse_timestamps_str``: the mixed timestamp column alone, as
  a Python-object column and as read_metadata returns it (Arrow-backed ``str``);
- ``uid_years_read``: read_uid_year_files on one sorted ``u8,u8`` .npy per year;
- ``uid_years_lookup``: years_of_uids for every row's uid;
- ``manifest_uid_years``: as ``manifest`` but with the year from the uid year files
  (TiC-DataComp's way), reading the files included;
- ``bucket_assign``: bucketing's table work on the downloaded rows (the prepared manifest as
  img2dataset's shard parquets hold it: key, sample_id, split, timestamp, status, sha256):
  assign_steps (steps, splits, failed downloads, test-duplicate removal) + summarise.

Prints one JSON object with the median seconds and rows/s of each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ticlip_core.data.bucketing import assign_steps, parse_steps, summarise
from ticlip_core.data.download import source_renames
from ticlip_core.data.manifest import write_manifest
from ticlip_core.data.metadata import read_metadata
from ticlip_core.data.timestamps import parse_timestamps
from ticlip_core.data.uid_years import read_uid_year_files, uids_to_pairs, years_of_uids

STEPS = ["2014-2015", "2016-2017", "2018-2019", "2020-2021"]


def make_metadata(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A synthetic metadata table and the true year of each row."""
    rng = np.random.default_rng(seed)
    uids = np.frombuffer(rng.bytes(16 * rows).hex().encode(), dtype="S32").astype(str).astype(object)
    lo, hi = (np.datetime64(f"{y}-01-01", "s").astype(np.int64) for y in (2010, 2024))
    secs = rng.integers(lo, hi, rows)
    kind = rng.integers(0, 100, rows)
    iso = pd.Series(np.datetime_as_string(secs.astype("M8[s]"), unit="s").astype(object))
    ts = iso + "Z"                                                      # 40% ISO with Z
    naive = (kind >= 40) & (kind < 50)                                  # 10% naive ISO
    ts[naive] = iso[naive]
    shifted = (kind >= 50) & (kind < 58)                                # 8% with +02:00
    local = np.datetime_as_string((secs[shifted] + 7200).astype("M8[s]"), unit="s")
    ts[shifted] = (pd.Series(local, dtype=object) + "+02:00").to_numpy()
    epoch_s = (kind >= 58) & (kind < 78)                                # 20% epoch seconds
    ts[epoch_s] = secs[epoch_s].astype(str)
    epoch_ms = (kind >= 78) & (kind < 98)                               # 20% epoch ms
    ts[epoch_ms] = (secs[epoch_ms] * 1000 + rng.integers(0, 1000, int(epoch_ms.sum()))).astype(str)
    ts[kind == 98] = None                                               # 1% missing
    ts[kind == 99] = "not a date"                                       # 1% garbage
    idx = np.arange(rows).astype(str).astype(object)
    meta = pd.DataFrame({"uid": uids, "url": "https://example.org/img/" + idx + ".jpg",
                         "text": "a photo number " + idx, "created": ts})
    return meta, secs.astype("M8[s]").astype("M8[Y]").astype(np.int64) + 1970


def time_manifest(meta_path: Path, out_dir: Path, timestamp: dict) -> tuple[float, dict]:
    """read_metadata + write_manifest, as workflow_scripts/prepare_metadata.py calls them;
    returns (seconds, summary)."""
    start = time.perf_counter()
    meta = read_metadata(str(meta_path))
    columns = {"url": "url", "caption": "text", "id": "uid"}
    summary = write_manifest(
        meta, out_dir / "prepared.parquet", out_dir / "excluded.parquet",
        rename=source_renames(meta.columns, columns["url"], columns["caption"]), steps=parse_steps(STEPS),
        columns=columns, timestamp=timestamp, val_fraction=0.05, test_fraction=0.1)
    return time.perf_counter() - start, summary


def shard_metadata(prepared: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The prepared rows as img2dataset's parquets list them: 2% failed, 0.1% repeated images."""
    rng = np.random.default_rng(seed)
    n = len(prepared)
    sha = pd.Series(np.frombuffer(rng.bytes(8 * n), dtype=np.uint64)).map("{:016x}".format)
    repeat = rng.random(n) < 0.001
    sha[repeat] = sha.sample(int(repeat.sum()), random_state=seed).to_numpy()
    return pd.DataFrame({"key": pd.RangeIndex(n).map("{:09d}".format), "sample_id": prepared["sample_id"],
                         "split": prepared["split"], "timestamp": prepared["timestamp"], "caption": prepared["text"],
                         "status": np.where(rng.random(n) < 0.02, "failed_to_download", "success"),
                         "sha256": sha})


def write_uid_year_files(meta: pd.DataFrame, years: np.ndarray, out_dir: Path) -> None:
    """One sorted ``u8,u8`` .npy of uids per year, as TiC-DataComp publishes them."""
    pairs, _ = uids_to_pairs(meta["uid"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for y in np.unique(years):
        np.save(out_dir / f"{y}.npy", np.sort(pairs[years == y]))


def main() -> None:
    """Generate the data, run the timings and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta, years = make_metadata(args.rows, args.seed)
        meta.to_parquet(tmp / "metadata.parquet", index=False)
        write_uid_year_files(meta, years, tmp / "uid_years")
        manifest_runs, uid_manifest_runs, summary = [], [], None
        parse_runs: dict[str, list[float]] = {"object": [], "str": []}
        columns = {"object": meta["created"], "str": read_metadata(tmp / "metadata.parquet")["created"]}
        for _ in range(args.repeats):
            for kind, column in columns.items():
                start = time.perf_counter()
                parse_timestamps(column, "auto")
                parse_runs[kind].append(time.perf_counter() - start)
        for _ in range(args.repeats):
            seconds, summary = time_manifest(tmp / "metadata.parquet", tmp, {"column": "created", "unit": "auto"})
            manifest_runs.append(seconds)
        for _ in range(args.repeats):
            seconds, _ = time_manifest(tmp / "metadata.parquet", tmp, {"key_to_year": tmp / "uid_years"})
            uid_manifest_runs.append(seconds)
        downloaded = shard_metadata(pd.read_parquet(tmp / "prepared.parquet"), args.seed)
        bucket_runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            summarise(assign_steps(downloaded, parse_steps(STEPS), 0.05, 0.1), parse_steps(STEPS))
            bucket_runs.append(time.perf_counter() - start)
        read_runs, lookup_runs = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            table = read_uid_year_files(tmp / "uid_years")
            read_runs.append(time.perf_counter() - start)
            start = time.perf_counter()
            found = years_of_uids(meta["uid"], table)
            lookup_runs.append(time.perf_counter() - start)
        assert (found.to_numpy() == years).all(), "uid year lookup disagrees with the generated years"

    def stats(runs: list[float], rows: int = args.rows) -> dict:
        med = statistics.median(runs)
        return {"rows": rows, "median_s": round(med, 3), "rows_per_s": round(rows / med), "runs_s": [round(r, 3) for r in runs]}

    print(json.dumps({"rows": args.rows, "repeats": args.repeats,
                      "manifest": stats(manifest_runs),
                      "bucket_assign": stats(bucket_runs, len(downloaded)), "parse_timestamps_object": stats(parse_runs["object"]),
                      "parse_timestamps_str": stats(parse_runs["str"]), "uid_years_read": stats(read_runs),
                      "uid_years_lookup": stats(lookup_runs), "manifest_uid_years": stats(uid_manifest_runs),
                      "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
