"""Timestamp bucketing: manifest rows -> the config's declared steps and train/val/test splits.

Steps are declared in the config, never guessed from the data. Every row ends in exactly one
(step, split), or is counted as outside all steps, or is quarantined for a missing or
unparseable timestamp; ``summarise`` checks that these counts add up to the rows read.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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


def assign_steps(manifest: pd.DataFrame, steps: list[Step], val_fraction: float,
                 test_fraction: float) -> pd.DataFrame:
    """Add ``timestamp`` (UTC), ``step``, ``split`` and ``excluded`` columns to a copy of ``manifest``.

    ``excluded`` is ``None`` for a row in a step, ``"outside_steps"`` for a valid timestamp in
    no declared step, ``"bad_timestamp"`` for a missing or unparseable one, and
    ``"download_failed"`` for a row whose img2dataset ``status`` is not ``success``.
    """
    if manifest["key"].duplicated().any():
        dup = manifest.loc[manifest["key"].duplicated(), "key"].iloc[0]
        raise ValueError(f"manifest: key '{dup}' appears more than once")
    out = manifest.copy()
    ts = pd.to_datetime(out["timestamp"], utc=True, errors="coerce", format="ISO8601")
    year = ts.dt.year
    out["timestamp"] = ts
    out["step"] = None
    for step in steps:
        out.loc[(year >= step.start) & (year <= step.end), "step"] = step.name
    out["excluded"] = None
    out.loc[ts.isna(), "excluded"] = "bad_timestamp"
    out.loc[ts.notna() & out["step"].isna(), "excluded"] = "outside_steps"
    if "status" in out.columns:
        out.loc[out["status"] != "success", "excluded"] = "download_failed"
    out.loc[out["excluded"].notna(), "step"] = None
    out["split"] = [split_of_key(k, val_fraction, test_fraction) if s is not None else None
                    for k, s in zip(out["key"], out["step"])]
    return out


def summarise(assigned: pd.DataFrame, steps: list[Step]) -> dict:
    """Counts per step and split, outside and quarantined rows; fails if they do not add up."""
    counts = assigned.groupby(["step", "split"]).size()
    per_step = {s.name: {sp: int(counts.get((s.name, sp), 0)) for sp in SPLITS} for s in steps}
    summary = {
        "rows_in": int(len(assigned)),
        "outside_steps": int((assigned["excluded"] == "outside_steps").sum()),
        "quarantined_bad_timestamp": int((assigned["excluded"] == "bad_timestamp").sum()),
        "download_failed": int((assigned["excluded"] == "download_failed").sum()),
        "steps": per_step,
    }
    placed = sum(sum(v.values()) for v in per_step.values())
    excluded = summary["outside_steps"] + summary["quarantined_bad_timestamp"] + summary["download_failed"]
    if placed + excluded != summary["rows_in"]:
        raise AssertionError(f"bucketing lost rows: {summary}")
    empty = [name for name, v in per_step.items() if v["train"] == 0]
    if empty:
        raise ValueError(f"declared step(s) {', '.join(empty)} have no training samples; "
                         "check tic.steps against the data's timestamps")
    return summary


def write_step_shards(assigned: pd.DataFrame, shard_dir: str | Path, out_dir: str | Path,
                      samples_per_shard: int) -> dict:
    """Copy every sample of ``shard_dir`` into ``out_dir/<step>/<split>/NNNNN.tar`` unchanged.

    Samples keep their bytes and key; rows excluded from all steps are not copied (they stay
    in the manifest). Returns ``{step: {split: [shard paths]}}``.
    """
    import webdataset as wds

    from .shards import TAR_MTIME

    out_dir = Path(out_dir)
    where = {k: (st, sp) for k, st, sp in zip(assigned["key"], assigned["step"], assigned["split"])}
    writers: dict[tuple[str, str], wds.ShardWriter] = {}
    seen = set()
    for tar in sorted(Path(shard_dir).glob("*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
            key = sample["__key__"]
            if key not in where:
                raise ValueError(f"{tar.name}: sample '{key}' is not in the manifest")
            seen.add(key)
            step, split = where[key]
            if step is None:
                continue
            if (step, split) not in writers:
                d = out_dir / step / split
                d.mkdir(parents=True, exist_ok=True)
                # an integer mtime: no per-member pax header (parsing those doubled tar read time)
                # and the same bytes on every run
                writers[(step, split)] = wds.ShardWriter(str(d / "%05d.tar"), maxcount=samples_per_shard,
                                                         verbose=0, mtime=TAR_MTIME)
            writers[(step, split)].write({k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"})
    for w in writers.values():
        w.close()
    missing = [k for k, (st, _) in where.items() if st is not None and k not in seen]
    if missing:
        raise ValueError(f"{len(missing)} manifest rows have no image in the shards (first: '{missing[0]}')")
    return {st: {sp: sorted(str(p) for p in (out_dir / st / sp).glob("*.tar")) for sp in SPLITS}
            for st in assigned["step"].dropna().unique()}


def step_shards(steps_dir: str | Path, step: str, split: str) -> list[str]:
    """The shard files of one step's split, in order."""
    return sorted(str(p) for p in (Path(steps_dir) / step / split).glob("*.tar"))
