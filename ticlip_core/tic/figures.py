"""Figures for the TiC study: evaluation-matrix heatmaps, per-step curves, compute scatter.

Drawn with the reporting layer's deterministic figures (``ticlip_core.reporting.figures``:
Agg canvas, no pyplot, PNGs without version metadata, so the same inputs give the same
bytes). Scores are plotted as percentages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ticlip_core.metrics import (
    evaluation_matrix,
    is_static_task,
    normalize_steps,
    per_step_average,
    per_step_in_domain,
    select_rows,
)
from ticlip_core.reporting.figures import new_figure, save


def plot_eval_matrix(
    E: pd.DataFrame, title: str, path: Path, figsize: tuple[float, float] = (6.4, 5.4)
) -> Path:
    """Heatmap of an evaluation matrix E (fractions), each cell annotated in %.

    Rows = "trained through step", columns = "evaluated on step"; NaN cells are left
    blank and marked with a dash.
    """
    values = 100 * E.to_numpy(dtype=float)
    fig, (ax,) = new_figure(*figsize)
    finite = values[np.isfinite(values)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 100.0)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax)
    n_rows, n_cols = values.shape
    fontsize = max(5, 10 - max(n_rows, n_cols) // 3)
    mid = (vmin + vmax) / 2
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            text = "–" if np.isnan(v) else f"{v:.1f}"
            color = "black" if np.isnan(v) or v > mid else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color)
    ax.set_xticks(range(n_cols), [str(c) for c in E.columns], rotation=45, ha="right")
    ax.set_yticks(range(n_rows), [str(r) for r in E.index])
    ax.set_xlabel("evaluated on step")
    ax.set_ylabel("trained through step")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="score (%)")
    return save(fig, path)


def plot_step_curves(
    rows: pd.DataFrame,
    steps: Sequence,
    methods: Sequence[str],
    task: str,
    metric: str,
    path: Path,
    *,
    study: str | None = None,
    figsize: tuple[float, float] = (10.0, 4.0),
) -> Path:
    """Per-step curves of a dynamic task, one line per method.

    Left panel: in-domain score E[i][i] after each training step i; right panel: the
    mean over all eval steps, mean_j E[i][j]. Missing cells raise (see metrics).
    """
    steps = normalize_steps(steps)
    if is_static_task(task):
        raise ValueError(f"{task!r} is static; plot its per-step average from per_step_table")
    sel = select_rows(rows, study)
    fig, (ax_id, ax_all) = new_figure(*figsize, ncols=2)
    x = np.arange(len(steps))
    for m in methods:
        E = evaluation_matrix(sel, m, task, metric, steps)
        ax_id.plot(x, 100 * per_step_in_domain(E).to_numpy(), marker="o", label=str(m))
        ax_all.plot(x, 100 * per_step_average(E).to_numpy(), marker="o", label=str(m))
    for ax, what in ((ax_id, "in-domain E[i][i]"), (ax_all, "mean over all eval steps")):
        ax.set_xticks(x, steps, rotation=45, ha="right")
        ax.set_xlabel("trained through step")
        ax.set_ylabel(f"{task} {metric} (%)")
        ax.set_title(what)
        ax.grid(True, alpha=0.3)
    ax_all.legend(fontsize="small")
    return save(fig, path)


def plot_compute_vs_performance(
    table_df: pd.DataFrame, path: Path, *, figsize: tuple[float, float] = (10.0, 4.0)
) -> Path:
    """Scatter of total compute (GMACs) vs static avg and vs retrieval ID, per method.

    ``table_df`` is :func:`ticlip_core.tic.tables.tic_table`'s output. The x axis is
    logarithmic when compute spans at least a factor of 10.
    """
    fig, axes = new_figure(*figsize, ncols=2)
    x = table_df["Compute (GMACs)"].to_numpy(dtype=float)
    log_x = bool(np.all(x > 0) and x.max() >= 10 * x.min())
    markers = "osD^v<>PX*"
    for ax, col in zip(axes, ("Static avg", "Retrieval ID")):
        y = 100 * table_df[col].to_numpy(dtype=float)
        # one marker and colour per method and a legend: methods at equal compute overlap
        for k, (xi, yi, name) in enumerate(zip(x, y, table_df["Method"])):
            ax.scatter([xi], [yi], marker=markers[k % len(markers)], s=50, alpha=0.8, label=str(name))
        if log_x:
            ax.set_xscale("log")
        ax.margins(x=0.1, y=0.1)
        ax.set_xlabel("total compute (GMACs)")
        ax.set_ylabel(f"{col} (%)")
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(fig, path)
