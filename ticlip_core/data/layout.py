"""Where bucketing puts a step's shards, and the index that lets readers trust them.

Layout: ``<steps_dir>/<step>/<split>/NNNNN.tar``, plus ``index.json`` in every split folder
(written by bucketing, also for an empty split)::

    {"format": 1, "step": "2014", "split": "train",
     "shards": {"00000.tar": {"samples": 50, "bytes": 61440, "sha256": "<hex>"}, ...},
     "samples": 98, "bytes": 120320}

``step_shards`` checks a split against its index before anyone reads it: the same tar files,
each with its size and sha256, so a shard truncated at a member boundary (which webdataset
reads as a shorter shard, silently) or changed after bucketing fails the job, naming the file.

Kept apart from ``bucketing`` (pandas) so that a training job, which only needs the paths,
does not pay for importing pandas; this module imports the standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

INDEX_NAME = "index.json"
INDEX_FORMAT = 1
_CHUNK = 1 << 20  # 1 MiB reads
RERUN_HINT = ("rerun the bucket rule to rewrite the per-step splits "
              "(snakemake --forcerun bucket, with your usual options)")


class ShardIntegrityError(ValueError):
    """A split's shards do not match the index bucketing wrote (or the index is missing)."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def split_dir(steps_dir: str | Path, step: str, split: str) -> Path:
    """The folder holding one step's split: ``<steps_dir>/<step>/<split>``."""
    return Path(steps_dir) / step / split


def write_split_index(folder: str | Path, step: str, split: str, samples: dict[str, int]) -> dict:
    """Write ``index.json`` for the tars of ``folder`` (atomically) and return it.

    ``samples`` maps each tar's file name to its sample count; the tars on disk must be
    exactly those. Sizes and sha256 are measured here, from the finished files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    on_disk = sorted(p.name for p in folder.glob("*.tar"))
    if on_disk != sorted(samples):
        raise ShardIntegrityError(f"{folder}: tar files {on_disk} differ from those written {sorted(samples)}")
    shards = {name: {"samples": int(samples[name]), "bytes": (folder / name).stat().st_size,
                     "sha256": file_sha256(folder / name)} for name in on_disk}
    index = {"format": INDEX_FORMAT, "step": step, "split": split, "shards": shards,
             "samples": sum(s["samples"] for s in shards.values()),
             "bytes": sum(s["bytes"] for s in shards.values())}
    tmp = folder / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / INDEX_NAME)
    return index


def read_split_index(steps_dir: str | Path, step: str, split: str) -> dict:
    """The index of one split, or ShardIntegrityError saying how to regenerate it."""
    folder = split_dir(steps_dir, step, split)
    path = folder / INDEX_NAME
    if not path.is_file():
        what = ("has no shard index" if folder.is_dir()
                else "does not exist (no split folder, no shard index)")
        raise ShardIntegrityError(
            f"{folder} {what} ({INDEX_NAME}): the per-step splits were written by an older version "
            f"or not by the bucket rule, so their shards cannot be checked; {RERUN_HINT}")
    try:
        index = json.loads(path.read_text())
        if index.get("format") != INDEX_FORMAT or not isinstance(index.get("shards"), dict):
            raise ValueError(f"format {index.get('format')!r}, expected {INDEX_FORMAT}")
    except (ValueError, AttributeError, UnicodeDecodeError) as err:
        raise ShardIntegrityError(f"{path}: unreadable shard index ({err}); {RERUN_HINT}") from None
    return index


def step_shards(steps_dir: str | Path, step: str, split: str) -> list[str]:
    """The shard files of one step's split, in order, checked against the split's index.

    Fails with ShardIntegrityError naming the file when a shard listed in ``index.json`` is
    missing, a tar is not listed (extra), or a shard's size or sha256 differs from the index
    (truncated or changed); also when the index itself is missing. Each call hashes every
    shard of the split once (the default world's 55 MB of splits: about 70 ms in all).
    """
    folder = split_dir(steps_dir, step, split)
    index = read_split_index(steps_dir, step, split)
    listed = index["shards"]
    on_disk = {p.name for p in folder.glob("*.tar")}
    problems = [f"{folder / name}: missing (listed in {INDEX_NAME})" for name in sorted(set(listed) - on_disk)]
    problems += [f"{folder / name}: extra tar file, not in {INDEX_NAME}" for name in sorted(on_disk - set(listed))]
    for name in sorted(on_disk & set(listed)):
        path, want = folder / name, listed[name]
        size = path.stat().st_size
        if size != want["bytes"]:
            kind = "truncated" if size < want["bytes"] else "changed (longer)"
            problems.append(f"{path}: {kind}: {size} bytes, the index says {want['bytes']}; "
                            f"sha256 not checked")
        elif (digest := file_sha256(path)) != want["sha256"]:
            problems.append(f"{path}: changed: sha256 {digest[:16]}... differs from the index's "
                            f"{want['sha256'][:16]}... (size {size} bytes matches)")
    if problems:
        raise ShardIntegrityError(f"step '{step}' {split} split does not match its index "
                                  f"{folder / INDEX_NAME}:\n  " + "\n  ".join(problems) + f"\n{RERUN_HINT}")
    return [str(folder / name) for name in sorted(listed)]


def split_index_digest(steps_dir: str | Path, step: str, split: str) -> str:
    """sha256 of a split's ``index.json`` bytes: identifies the split's exact shard contents."""
    read_split_index(steps_dir, step, split)  # a clear error when it is missing or unreadable
    return hashlib.sha256((split_dir(steps_dir, step, split) / INDEX_NAME).read_bytes()).hexdigest()


def shards_digest(shards: list[str]) -> str:
    """sha256 identifying the contents of ``shards`` (a training job's resume fingerprint).

    For shards in a split folder with an index (as ``step_shards`` returns them, after
    checking them against it) the index digest stands for their bytes; other files (hand-made
    shard lists in tests and tools) are hashed themselves. The names used count too.
    """
    h, index_digests = hashlib.sha256(), {}
    for shard in shards:
        path = Path(shard)
        index = path.parent / INDEX_NAME
        if index.is_file():
            if index not in index_digests:
                index_digests[index] = hashlib.sha256(index.read_bytes()).hexdigest()
            content = index_digests[index]
        else:
            content = file_sha256(path)
        h.update(f"{path.parent.parent.name}/{path.parent.name}/{path.name}\0{content}\n".encode())
    return h.hexdigest()
