"""Download a prepared manifest's images with img2dataset, resumably, into webdataset shards.

img2dataset writes into ``<out_dir>.incomplete``; only when every row has a status is that
folder renamed to ``out_dir``. Snakemake deletes a failed job's declared outputs, but not this
sibling folder, so after an interruption the rerun finds the finished shards there and, in
img2dataset's ``incremental`` mode, downloads only the rest.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

# img2dataset names these output columns itself; a metadata column of the same name is renamed
# (``source_<name>``) when the manifest is prepared, so neither is lost.
IMG2DATASET_COLUMNS = ("url", "caption", "key", "status", "error_message", "width", "height",
                       "original_width", "original_height", "exif", "sha256")


def incomplete_dir(out_dir: str | Path) -> Path:
    """Where an unfinished download lives until it is complete."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".incomplete")


def download_shards(prepared: str | Path, out_dir: str | Path, *, url_col: str, caption_col: str,
                    options: dict) -> dict:
    """Run ``img2dataset.download`` on the ``prepared`` parquet and return the summed shard stats.

    Every column besides url and caption is kept (``save_additional_columns``), so each sample's
    json carries its ``timestamp``, ``sample_id``, ``step`` and ``split``. Raises if some rows
    have no status after img2dataset's retries (rerunning resumes).
    """
    import img2dataset

    rows = pq.read_metadata(prepared).num_rows
    columns = pq.read_schema(prepared).names
    work = incomplete_dir(out_dir)
    if options["incremental_mode"] == "overwrite" and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    img2dataset.download(
        url_list=str(prepared), input_format="parquet", url_col=url_col, caption_col=caption_col,
        save_additional_columns=[c for c in columns if c not in (url_col, caption_col)],
        output_folder=str(work), output_format="webdataset",
        processes_count=options["processes_count"], thread_count=options["thread_count"],
        image_size=options["image_size"], resize_mode=options["resize_mode"],
        resize_only_if_bigger=options["resize_only_if_bigger"], encode_quality=options["encode_quality"],
        number_sample_per_shard=options["samples_per_shard"], timeout=options["timeout"],
        retries=options["retries"], incremental_mode="incremental", min_image_size=options["min_image_size"],
        user_agent_token=options["user_agent_token"], enable_wandb=False, compute_hash="sha256",
    )
    stats = summed_stats(work)
    if stats["count"] != rows:
        raise RuntimeError(f"img2dataset finished {stats['count']} of {rows} rows ({stats['shards']} shards); "
                           f"rerun the workflow to resume: finished shards in {work} are kept")
    os.replace(work, out_dir)
    return stats


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
