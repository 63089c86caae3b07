"""The data report: what happened to every metadata row, per step, and samples per year.

Columns of the per-step table (one row per declared step, then ``no step`` and ``total``):

=================  ==========================================================================
rows_in            metadata rows (real data) or synthesised samples whose timestamp is in the step
quarantined        rows with a missing or unparseable timestamp, an unknown key, a repeated id or a refused url
outside_steps      rows with a good timestamp in no declared step
downloaded         images img2dataset fetched and decoded (every synthetic sample)
download_failed    rows img2dataset reported as failed (``status`` other than ``success``)
deduplicated       training images whose bytes equal a test image's (removed from training)
train, val, test   samples in each split
caption_words_*    mean, median and 95th percentile of caption length in words (used samples)
=================  ==========================================================================
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ticlip_core.reporting.figures import new_figure, save

COLUMNS = ["step", "rows_in", "quarantined", "outside_steps", "downloaded", "download_failed",
           "deduplicated", "train", "val", "test", "caption_words_mean", "caption_words_median",
           "caption_words_p95"]


def data_report_table(manifest: pd.DataFrame, bucket_summary: dict, steps: list[str],
                      prepare_summary: dict | None = None) -> pd.DataFrame:
    """The per-step table (see the module docstring) from the bucketed manifest and the summaries.

    ``prepare_summary`` is the manifest builder's (real data): its rows left out before the
    download are counted as quarantined or outside the steps.
    """
    used = manifest[manifest["excluded"].isna()]
    words = used["caption"].fillna("").str.split().str.len()
    rows = []
    for step in steps:
        s = bucket_summary["steps"][step]
        w = words[used["step"] == step]
        rows.append({"step": step, "rows_in": s["rows"], "quarantined": 0, "outside_steps": 0,
                     "downloaded": s["rows"] - s["download_failed"], "download_failed": s["download_failed"],
                     "deduplicated": s["duplicate_of_test"], "train": s["train"], "val": s["val"], "test": s["test"],
                     "caption_words_mean": w.mean(), "caption_words_median": w.median(),
                     "caption_words_p95": w.quantile(0.95)})
    before = dict(prepare_summary["excluded"]) if prepare_summary else {}
    outside = before.pop("outside_steps", 0) + bucket_summary["outside_steps"]
    quarantined = sum(before.values()) + bucket_summary["bad_timestamp"]
    rows.append({"step": "no step", "rows_in": quarantined + outside, "quarantined": quarantined,
                 "outside_steps": outside, "downloaded": 0, "download_failed": 0, "deduplicated": 0,
                 "train": 0, "val": 0, "test": 0})
    table = pd.DataFrame(rows, columns=COLUMNS)
    total = table.drop(columns="step").iloc[:, :9].sum()
    table.loc[len(table)] = {"step": "total", **total.to_dict(), "caption_words_mean": words.mean(),
                             "caption_words_median": words.median(), "caption_words_p95": words.quantile(0.95)}
    rows_in = prepare_summary["rows_in"] if prepare_summary else bucket_summary["rows_in"]
    if table.loc[table["step"] == "total", "rows_in"].item() != rows_in:
        raise AssertionError(f"data report: per-step rows do not add up to the {rows_in} rows read")
    return table


def samples_per_year_figure(manifest: pd.DataFrame, steps: list[str], path: str | Path) -> Path:
    """Bar chart of used samples per year, coloured by step, with excluded rows stacked in grey."""
    dated = manifest[manifest["timestamp"].notna()]
    year = pd.to_datetime(dated["timestamp"], utc=True).dt.year
    years = np.arange(year.min(), year.max() + 1) if len(year) else np.array([], int)
    fig, (ax,) = new_figure(7.0, 3.2)
    bottom = np.zeros(len(years))
    colours = dict(zip(steps, _step_colours(len(steps))))
    for step in steps:
        counts = year[(dated["step"] == step) & dated["excluded"].isna()].value_counts().reindex(years, fill_value=0)
        ax.bar(years, counts.to_numpy(), bottom=bottom, color=colours[step], label=step)
        bottom += counts.to_numpy()
    other = year[dated["excluded"].notna()].value_counts().reindex(years, fill_value=0)
    if other.sum():
        ax.bar(years, other.to_numpy(), bottom=bottom, color="0.75", label="excluded")
    ax.set_xlabel("year (UTC)")
    ax.set_ylabel("samples")
    ax.set_title("Samples per year")
    ax.set_xticks(years)
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, Path(path))


def _step_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1) * 0.9) for i in range(n)]
