"""Download a prepared manifest's images with img2dataset, resumably, into webdataset shards.

img2dataset writes into ``<out_dir>.incomplete``; only when every row has a status is that
folder renamed to ``out_dir``. Snakemake deletes a failed job's declared outputs, but not this
sibling folder, so after an interruption the rerun finds the finished shards there and, in
img2dataset's ``incremental`` mode, downloads only the rest.

A download is resumed only from the same inputs: when it starts, ``DIGEST_FILE`` in the
folder records the sha256 of the prepared parquet's bytes and the options that change the
shards (``OUTPUT_OPTIONS``, the url/caption columns, img2dataset's version). A rerun that
finds a folder made from other inputs (the metadata was prepared again with other captions,
another image size...) or without that record does not reuse it: it renames it
``<out_dir>.incomplete.stale-<first 8 hex of its digest>`` (nothing is deleted; remove it by
hand once it is not wanted) and downloads afresh. The record stays in the finished folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from ticlip_core.data.layout import file_sha256

log = logging.getLogger(__name__)

# Not ``*.json``: img2dataset's incremental mode reads every ``*.json`` in the folder as a
# finished shard's stats, named ``<shard number>_stats.json``.
DIGEST_FILE = "ticlip_download_inputs.txt"
# The download options that change what the shards hold (not how fast or how persistently
# they are fetched); user_agent_token decides which X-Robots-Tag directives apply.
OUTPUT_OPTIONS = ("image_size", "resize_mode", "resize_only_if_bigger", "encode_quality", "samples_per_shard",
                  "min_image_size", "max_image_area", "max_aspect_ratio", "user_agent_token")
# PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 1024**3 // 4 // 3 pixels, about
# 9459 x 9459); img2dataset's own default is no limit. null in the config means no limit.
DEFAULT_MAX_IMAGE_AREA = 89_478_485
DEFAULTS = {"max_image_area": DEFAULT_MAX_IMAGE_AREA, "max_aspect_ratio": None}

# img2dataset names these output columns itself; a metadata column of the same name is renamed
# (``source_<name>``) when the manifest is prepared, so neither is lost.
IMG2DATASET_COLUMNS = ("url", "caption", "key", "status", "error_message", "width", "height",
                       "original_width", "original_height", "exif", "sha256")


def source_renames(metadata_columns, url_column: str, caption_column: str) -> dict:
    """``{column: "source_" + column}`` for the metadata columns img2dataset writes itself
    (``IMG2DATASET_COLUMNS``, e.g. DataComp's ``sha256``, YFCC's ``key``) other than the URL and
    caption columns it is given: the prepared manifest keeps them under that name."""
    keep = {url_column, caption_column}
    return {c: f"source_{c}" for c in metadata_columns if c in IMG2DATASET_COLUMNS and c not in keep}


def incomplete_dir(out_dir: str | Path) -> Path:
    """Where an unfinished download lives until it is complete."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".incomplete")


def download_inputs(prepared: str | Path, *, url_col: str, caption_col: str, options: dict) -> dict:
    """What the shards of a download depend on: the prepared parquet's sha256 and the options
    that change the output (``OUTPUT_OPTIONS``, defaults filled in)."""
    from importlib.metadata import version

    return {"prepared_sha256": file_sha256(prepared), "url_col": url_col, "caption_col": caption_col,
            "options": {k: options.get(k, DEFAULTS.get(k)) for k in OUTPUT_OPTIONS},
            "img2dataset": version("img2dataset")}


def inputs_digest(inputs: dict) -> str:
    """sha256 of ``download_inputs`` (canonical JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_digest(folder: str | Path) -> str | None:
    """The inputs digest a download folder was started with, None without (a readable) record."""
    try:
        return json.loads((Path(folder) / DIGEST_FILE).read_text())["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_aside_if_stale(work: Path, digest: str) -> Path | None:
    """Leave ``work`` to be resumed if it was started with ``digest`` (or is empty); otherwise
    rename it ``<work>.stale-<digest8>`` and return the new path."""
    if not work.exists():
        return None
    recorded = recorded_digest(work)
    if recorded == digest:
        log.info("resuming the download in %s: it was started from the same prepared table and options", work)
        return None
    if recorded is None and not any(work.iterdir()):
        return None
    stale = work.with_name(f"{work.name}.stale-{(recorded or 'unknown')[:8]}")
    n = 1
    while stale.exists():
        n += 1
        stale = work.with_name(f"{work.name}.stale-{(recorded or 'unknown')[:8]}-{n}")
    os.replace(work, stale)
    why = ("it has no record of its inputs" if recorded is None
           else f"it was started from other inputs (digest {recorded[:8]}, now {digest[:8]}): "
                "the prepared table or an output option changed")
    log.warning("not resuming the unfinished download in %s: %s; moved it to %s (nothing deleted; remove it "
                "when it is not wanted) and downloading afresh", work, why, stale)
    return stale


def _limit(value) -> float:
    """A config limit for img2dataset: None (no limit) -> infinity."""
    return float("inf") if value is None else value


def download_shards(prepared: str | Path, out_dir: str | Path, *, url_col: str, caption_col: str,
                    options: dict) -> dict:
    """Run ``img2dataset.download`` on the ``prepared`` parquet and return the summed shard stats
    (and the ``inputs_digest`` recorded in ``DIGEST_FILE``).

    Every column besides url and caption is kept (``save_additional_columns``), so each sample's
    json carries its ``timestamp``, ``sample_id``, ``step`` and ``split``. Raises if some rows
    have no status after img2dataset's retries (rerunning resumes). An unfinished download is
    resumed only if it was started from the same inputs (see the module docstring). Images
    larger than ``max_image_area`` pixels (default ``DEFAULT_MAX_IMAGE_AREA``) or more
    elongated than ``max_aspect_ratio`` fail with img2dataset's status (``image area too
    large``, ``aspect ratio too large``); img2dataset checks them after decoding, so the
    decoder's own cap (OpenCV's ``CV_IO_MAX_IMAGE_PIXELS``, 2**30 by default) bounds the memory
    of one decode.
    """
    # albumentations (imported by img2dataset, in this process and in each worker it spawns)
    # asks PyPI for a newer version on import unless told not to: a download reaches only the
    # image hosts
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import img2dataset

    rows = pq.read_metadata(prepared).num_rows
    columns = pq.read_schema(prepared).names
    work = incomplete_dir(out_dir)
    inputs = download_inputs(prepared, url_col=url_col, caption_col=caption_col, options=options)
    digest = inputs_digest(inputs)
    if options["incremental_mode"] == "overwrite" and work.exists():
        shutil.rmtree(work)
    set_aside_if_stale(work, digest)
    work.mkdir(parents=True, exist_ok=True)
    record = work / (DIGEST_FILE + ".tmp")
    record.write_text(json.dumps({"digest": digest, **inputs}, indent=2, sort_keys=True) + "\n")
    os.replace(record, work / DIGEST_FILE)
    img2dataset.download(
        url_list=str(prepared), input_format="parquet", url_col=url_col, caption_col=caption_col,
        save_additional_columns=[c for c in columns if c not in (url_col, caption_col)],
        output_folder=str(work), output_format="webdataset",
        processes_count=options["processes_count"], thread_count=options["thread_count"],
        image_size=options["image_size"], resize_mode=options["resize_mode"],
        resize_only_if_bigger=options["resize_only_if_bigger"], encode_quality=options["encode_quality"],
        number_sample_per_shard=options["samples_per_shard"], timeout=options["timeout"],
        retries=options["retries"], incremental_mode="incremental", min_image_size=options["min_image_size"],
        max_image_area=_limit(options.get("max_image_area", DEFAULT_MAX_IMAGE_AREA)),
        max_aspect_ratio=_limit(options.get("max_aspect_ratio")),
        user_agent_token=options["user_agent_token"], enable_wandb=False, compute_hash="sha256",
    )
    stats = summed_stats(work)
    if stats["count"] != rows:
        raise RuntimeError(f"img2dataset finished {stats['count']} of {rows} rows ({stats['shards']} shards); "
                           f"rerun the workflow to resume: finished shards in {work} are kept")
    os.replace(work, out_dir)
    return {**stats, "inputs_digest": digest}


def summed_stats(shard_dir: str | Path) -> dict:
    """img2dataset's per-shard ``NNNNN_stats.json`` summed: rows, successes, failures by status."""
    total = {"shards": 0, "count": 0, "successes": 0, "failed_to_download": 0, "failed_to_resize": 0,
             "status_dict": {}}
    for path in sorted(Path(shard_dir).glob("*_stats.json")):
        stats = json.loads(path.read_text())
        total["shards"] += 1
        for k in ("count", "successes", "failed_to_download", "failed_to_resize"):
            total[k] += int(stats.get(k, 0))
        for status, n in stats.get("status_dict", {}).items():
            total["status_dict"][status] = total["status_dict"].get(status, 0) + int(n)
    return total
