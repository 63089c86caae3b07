"""Timestamp bucketing: manifest rows -> the config's declared steps and train/val/test splits.

Steps are declared in the config, never guessed from the data. Every row ends in exactly one
(step, split), or is excluded with its reason (outside all steps, a missing or unparseable
timestamp, a failed download, a training duplicate of a test image); ``summarise`` checks that
these counts add up to the rows read.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ticlip_core.data.layout import split_index_digest, step_shards  # noqa: F401 (re-exported: the steps' layout)
from ticlip_core.data.timestamps import parse_timestamps

SPLITS = ("train", "val", "test")
_STEP_RE = re.compile(r"^(\d{4})(?:-(\d{4}))?$")


@dataclass(frozen=True)
class Step:
    """A named time step covering the years ``start`` .. ``end`` inclusive (UTC)."""

    name: str
    start: int
    end: int


def parse_steps(specs: list[str]) -> list[Step]:
    """Parse step names such as ``"2014-2016"`` or ``"2017"``; they must be ordered and disjoint."""
    steps = []
    for spec in specs:
        m = _STEP_RE.match(str(spec))
        if not m:
            raise ValueError(f"tic.steps: '{spec}' is not a year or a year range like 2014-2016")
        start, end = int(m.group(1)), int(m.group(2) or m.group(1))
        if end < start:
            raise ValueError(f"tic.steps: '{spec}' ends before it starts")
        if steps and start <= steps[-1].end:
            raise ValueError(f"tic.steps: '{spec}' overlaps or precedes '{steps[-1].name}'; "
                             "steps must be in time order and disjoint")
        steps.append(Step(str(spec), start, end))
    return steps


def split_of_key(key: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split of one key: a hash of the key alone, so it never changes between runs."""
    u = int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def split_indices(keys: np.ndarray | list | pa.Array | pa.ChunkedArray, val_fraction: float,
                  test_fraction: float) -> np.ndarray:
    """Index into ``SPLITS`` (0 train, 1 val, 2 test) of each key; equal to ``split_of_key``.

    The same blake2b hash as split_of_key, with the thresholds applied in NumPy. uint64 ->
    float64 rounds to nearest like Python's int/int division, and dividing by 2**64 is exact,
    so every key gets the same split.
    """
    return split_of_hashes(key_hashes(keys), val_fraction, test_fraction)


def key_hashes(keys: np.ndarray | list | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each key's 8-byte blake2b digest (of ``str(key).encode()``, as ``split_of_key``) as a
    big-endian uint64. An Arrow string array (no nulls) is hashed from its UTF-8 bytes, which
    are ``str(k).encode()`` of its values, without making a Python str per key."""
    fresh = hashlib.blake2b(digest_size=8).copy   # copying a fresh state is cheaper than the constructor
    out = bytearray()
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        if keys.null_count:
            raise ValueError("key_hashes: the keys hold missing values")
        if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
            raise TypeError(f"key_hashes: expected Arrow strings, got {keys.type}")
        items = keys.cast(pa.large_binary()).to_pylist()   # the UTF-8 bytes, made by Arrow
    else:
        items = (str(k).encode() for k in keys)
    for item in items:
        h = fresh()
        h.update(item)
        out += h.digest()
    return np.frombuffer(bytes(out), dtype=">u8")


def split_of_hashes(hashes: np.ndarray, val_fraction: float, test_fraction: float) -> np.ndarray:
    """``split_indices`` from the keys' ``key_hashes``."""
    u = hashes.astype(np.float64) / 2.0**64
    out = np.zeros(len(u), np.int8)
    out[u < test_fraction + val_fraction] = 1
    out[u < test_fraction] = 2
    return out


# Why a row is not in any step's split. Rows with a step but excluded (failed downloads, training
# duplicates of test images) keep their step, so the data report can count them per step.
EXCLUSION_REASONS = ("bad_timestamp", "outside_steps", "download_failed", "duplicate_of_test")


def assign_steps(manifest: pd.DataFrame, steps: list[Step], val_fraction: float,
                 test_fraction: float, dedup_against_test: bool = True) -> pd.DataFrame:
    """Add ``timestamp`` (UTC), ``step``, ``split`` and ``excluded`` columns to a copy of ``manifest``.

    ``split`` hashes ``key``, except for real data, whose manifest builder has already hashed
    the metadata's stable ``sample_id`` and whose rows carry that ``split`` through the download. ``excluded`` is ``None`` for a
    row that is used, else one of ``EXCLUSION_REASONS``: ``bad_timestamp`` (missing or
    unparseable), ``outside_steps`` (no declared step), ``download_failed`` (img2dataset
    ``status`` is not ``success``) or ``duplicate_of_test`` (a training row whose image bytes,
    by ``sha256``, equal those of a test row of any step).
    """
    if manifest["key"].duplicated().any():
        dup = manifest.loc[manifest["key"].duplicated(), "key"].iloc[0]
        raise ValueError(f"manifest: key '{dup}' appears more than once")
    out = manifest.copy()
    ts, _ = parse_timestamps(out["timestamp"], unit="iso")  # not pd.to_datetime: see timestamps.py
    year = ts.dt.year
    out["timestamp"] = ts
    out["step"] = None
    for step in steps:
        out.loc[(year >= step.start) & (year <= step.end), "step"] = step.name
    out["excluded"] = None
    out.loc[ts.isna(), "excluded"] = "bad_timestamp"
    out.loc[ts.notna() & out["step"].isna(), "excluded"] = "outside_steps"
    in_step = out["step"].notna().to_numpy()
    split = np.full(len(out), None, dtype=object)
    if "sample_id" in out.columns and "split" in out.columns:
        # real data: the manifest builder already hashed sample_id (same function, same fractions)
        split[in_step] = out["split"].to_numpy(dtype=object)[in_step]
    else:
        ids = out["key"].to_numpy(dtype=object)[in_step]
        split[in_step] = np.array(SPLITS, dtype=object)[split_indices(ids, val_fraction, test_fraction)]
    out["split"] = split
    if "status" in out.columns:
        out.loc[out["step"].notna() & (out["status"] != "success"), "excluded"] = "download_failed"
    if dedup_against_test and "sha256" in out.columns:
        used = out["excluded"].isna()
        test_hashes = out.loc[used & (out["split"] == "test"), "sha256"].dropna()
        dup = used & (out["split"] == "train") & out["sha256"].isin(set(test_hashes))
        out.loc[dup, "excluded"] = "duplicate_of_test"
    out.loc[out["excluded"].notna(), "split"] = None
    return out


def summarise(assigned: pd.DataFrame, steps: list[Step]) -> dict:
    """Counts per step (rows, failed downloads, test duplicates, and each split) and of rows
    in no step; fails if they do not add up to the rows read, or if a step has no training data."""
    used = assigned[assigned["excluded"].isna()]
    counts = used.groupby(["step", "split"]).size()
    lost = assigned[assigned["step"].notna()].groupby(["step", "excluded"]).size()
    rows = assigned.groupby("step").size()
    per_step = {s.name: {"rows": int(rows.get(s.name, 0)),
                         "download_failed": int(lost.get((s.name, "download_failed"), 0)),
                         "duplicate_of_test": int(lost.get((s.name, "duplicate_of_test"), 0)),
                         **{sp: int(counts.get((s.name, sp), 0)) for sp in SPLITS}}
                for s in steps}
    summary = {
        "rows_in": int(len(assigned)),
        **{reason: int((assigned["excluded"] == reason).sum()) for reason in EXCLUSION_REASONS},
        "steps": per_step,
    }
    placed = sum(v[sp] for v in per_step.values() for sp in SPLITS)
    excluded = sum(summary[r] for r in EXCLUSION_REASONS)
    if placed + excluded != summary["rows_in"]:
        raise AssertionError(f"bucketing lost rows: {summary}")
    empty = [name for name, v in per_step.items() if v["train"] == 0]
    if empty:
        raise ValueError(f"declared step(s) {', '.join(empty)} have no training samples; "
                         "check tic.steps against the data's timestamps")
    return summary


def check_split_counts(assigned: pd.DataFrame) -> None:
    """Refuse a step whose train or test split would be empty, naming it and its counts.

    A step without training data has nothing to train on, and one without test data fails
    only in evaluation, after all training; bucketing is the first job that knows. An empty
    validation split is allowed (``data.split.val_fraction: 0``).
    """
    in_step = assigned[assigned["step"].notna()]
    problems = []
    for step, rows in in_step.groupby("step", sort=False):
        counts = {sp: int((rows["split"] == sp).sum()) for sp in SPLITS}
        excluded = int(rows["excluded"].notna().sum()) if "excluded" in rows else 0
        for split, fix in (("train", "lower data.split.val_fraction / test_fraction"),
                           ("test", "raise data.split.test_fraction")):
            if counts[split] == 0:
                problems.append(f"step '{step}': the {split} split is empty (train {counts['train']}, "
                                f"val {counts['val']}, test {counts['test']} of the step's {len(rows)} rows; "
                                f"{excluded} excluded); {fix}, or give the step more data (tic.steps)")
    if problems:
        raise ValueError("bucketing: " + "\n".join(problems))


def write_step_shards(assigned: pd.DataFrame, shard_dir: str | Path, out_dir: str | Path,
                      samples_per_shard: int) -> dict:
    """Copy every sample of ``shard_dir`` into ``out_dir/<step>/<split>/NNNNN.tar`` unchanged.

    Samples keep their bytes and key; rows excluded from all steps are not copied (they stay
    in the manifest). Each split folder of every step gets an ``index.json`` (see
    ``layout``: each shard's sample count, size and sha256), also an empty validation split,
    so that readers can check the shards. Refuses, before writing anything, a step whose
    train or test split would be empty (``check_split_counts``). Returns
    ``{step: {split: [shard paths]}}``.
    """
    import webdataset as wds

    from ticlip_core.data.layout import write_split_index
    from ticlip_core.data.shards import TAR_MTIME

    check_split_counts(assigned)
    out_dir = Path(out_dir)
    where = {k: (st, sp) for k, st, sp in zip(assigned["key"], assigned["step"], assigned["split"])}
    writers: dict[tuple[str, str], wds.ShardWriter] = {}
    counts: dict[tuple[str, str], dict[str, int]] = {}  # samples per shard file name
    seen = set()
    for tar in sorted(Path(shard_dir).glob("*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
            key = sample["__key__"]
            if key not in where:
                raise ValueError(f"{tar.name}: sample '{key}' is not in the manifest")
            seen.add(key)
            step, split = where[key]
            if split is None:  # excluded: stays in the manifest with its reason
                continue
            if (step, split) not in writers:
                d = out_dir / step / split
                d.mkdir(parents=True, exist_ok=True)
                # an integer mtime: no per-member pax header (parsing those doubled tar read time)
                # and the same bytes on every run
                writers[(step, split)] = wds.ShardWriter(str(d / "%05d.tar"), maxcount=samples_per_shard,
                                                         verbose=0, mtime=TAR_MTIME)
                counts[(step, split)] = {}
            writer = writers[(step, split)]
            writer.write({k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"})
            name = Path(writer.fname).name
            counts[(step, split)][name] = counts[(step, split)].get(name, 0) + 1
    for w in writers.values():
        w.close()
    missing = [k for k, (_, sp) in where.items() if sp is not None and k not in seen]
    if missing:
        raise ValueError(f"{len(missing)} manifest rows have no image in the shards (first: '{missing[0]}')")
    steps = assigned.loc[assigned["split"].notna(), "step"].unique()
    for st in steps:
        for sp in SPLITS:
            write_split_index(out_dir / st / sp, st, sp, counts.get((st, sp), {}))
    return {st: {sp: sorted(str(p) for p in (out_dir / st / sp).glob("*.tar")) for sp in SPLITS}
            for st in steps}
