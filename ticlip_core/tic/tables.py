"""TiC-CLIP Table 2 (and a per-step table) from evaluation and compute rows.

The DataFrames keep raw numbers (scores as fractions in [0, 1], compute in GMACs); only the
rendered tables (Markdown, LaTeX, HTML; written by ``ticlip_core.reporting.tables``) show
scores as percentages with one decimal. Metric definitions are those of
:mod:`ticlip_core.metrics` (TiC-CLIP Sec. "Evaluation metrics", docs/metrics.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ticlip_core.reporting import tables as reporting
from ticlip_core.reporting.uncertainty import spread_frame
from ticlip_core.metrics import (
    normalize_steps,
    per_step_average,
    per_step_in_domain,
    evaluation_matrix,
    select_rows,
    summarize_method,
    task_primary_metric,
    static_tasks_in,
)

RETRIEVAL_TASK = "retrieval"
CLASSIFICATION_TASK = "classification"
DYNAMIC_TASKS = {RETRIEVAL_TASK: "Retrieval", CLASSIFICATION_TASK: "Classification"}
COMPUTE_COLUMNS = ("method", "train_step", "samples_seen", "macs")

TABLE_COLUMNS = [
    "Method",
    "Compute (GMACs)",
    "Compute / budget",
    "Samples seen",
    "Static avg",
    "Retrieval backward",
    "Retrieval ID",
    "Retrieval forward",
    "Classification backward",
    "Classification ID",
    "Classification forward",
]
SCORE_COLUMNS = TABLE_COLUMNS[4:]
#: a method spending more than this multiple of the compute-matched budget is marked
OVER_BUDGET_TOLERANCE = 1.005
OVER_BUDGET_MARK = "\u2020"  # dagger

# Second header level of the LaTeX table, grouped as in TiC-CLIP's Table 2.
_TEX_HEADER = {
    "Method": ("", "Method"),
    "Compute (GMACs)": ("", "Compute (GMACs)"),
    "Compute / budget": ("", "x budget"),
    "Samples seen": ("", "Samples seen"),
    "Static avg": ("Static", "Avg"),
    "Retrieval backward": ("Dynamic retrieval", "Backward"),
    "Retrieval ID": ("Dynamic retrieval", "ID"),
    "Retrieval forward": ("Dynamic retrieval", "Forward"),
    "Classification backward": ("Dynamic classification", "Backward"),
    "Classification ID": ("Dynamic classification", "ID"),
    "Classification forward": ("Dynamic classification", "Forward"),
}

METRIC_TEXT = {
    "mean_R@1": "mean of image-to-text and text-to-image Recall@1",
    "top1": "top-1 accuracy",
}


# --------------------------------------------------------------------------- compute


def compute_totals(
    compute: pd.DataFrame, steps: Sequence, methods: Sequence[str], *, study: str | None = None
) -> pd.DataFrame:
    """Total GMACs and samples seen per method, summed over all configured steps.

    Requires exactly one compute row per (method, step): a missing step would understate
    the total and a duplicate would double it, so both raise. Index = method. If the
    compute rows carry a ``study`` column and ``study`` is given, other studies are dropped.
    """
    steps = normalize_steps(steps)
    missing_cols = [c for c in COMPUTE_COLUMNS if c not in compute.columns]
    if missing_cols:
        raise ValueError(f"compute rows lack columns {missing_cols}; have {list(compute.columns)}")
    if study is not None and "study" in compute.columns:
        compute = compute[compute["study"].astype(str) == str(study)]
    c = compute.loc[:, list(COMPUTE_COLUMNS)].copy()
    c["method"], c["train_step"] = c["method"].astype(str), c["train_step"].astype(str)
    c = c[c["method"].isin([str(m) for m in methods])]
    dup = c.duplicated(["method", "train_step"], keep=False)
    if dup.any():
        pairs = c.loc[dup, ["method", "train_step"]].values.tolist()
        raise ValueError(f"duplicated compute rows (method, train_step): {pairs}")
    unknown = sorted(set(c["train_step"]) - set(steps))
    if unknown:
        raise ValueError(f"compute rows mention steps not in the configured steps {steps}: "
                         f"{unknown}")
    have = set(zip(c["method"], c["train_step"]))
    missing = [(str(m), s) for m in methods for s in steps if (str(m), s) not in have]
    if missing:
        raise ValueError(f"missing compute rows (method, train_step): {missing}")
    c["budget_macs"] = compute["budget_macs"] if "budget_macs" in compute.columns else math.nan
    for col in ("samples_seen", "macs", "budget_macs"):
        c[col] = pd.to_numeric(c[col], errors="raise")
    totals = c.groupby("method").agg(samples_seen=("samples_seen", "sum"), macs=("macs", "sum"),
                                     budget_macs=("budget_macs", "sum"))
    totals["gmacs"] = totals["macs"] / 1e9
    # the compute-matched budget is C samples per step; NaN when the records do not say
    totals["budget_ratio"] = totals["macs"] / totals["budget_macs"].where(totals["budget_macs"] > 0)
    return totals.reindex([str(m) for m in methods])


# --------------------------------------------------------------------------- tables


def _task_metric_or_none(rows: pd.DataFrame, task: str) -> str | None:
    """Primary metric of a dynamic task, or None when no row evaluates it at all."""
    return task_primary_metric(rows, task) if (rows["task"] == task).any() else None


def tic_table(
    rows: pd.DataFrame,
    compute: pd.DataFrame,
    steps: Sequence,
    methods: Sequence[str],
    *,
    study: str | None = None,
    classification_classes: int | None = None,
    retrieval_pool_size: int | None = None,
) -> pd.DataFrame:
    """TiC-CLIP Table 2: one row per method (in ``methods`` order), columns TABLE_COLUMNS.

    Scores are raw fractions (primary metric: ``mean_R@1`` for retrieval, ``top1`` for
    classification); ``Static avg`` is the mean over all static tasks in ``rows`` of the
    final step's model. A dynamic task no row evaluates (e.g. a benchmark without a
    classification task) gives NaN columns; a task some methods lack raises. ``df.attrs``
    records the metrics, static tasks and steps used, and the chance levels given
    (``classification_classes``: the classes of the dynamic classification task;
    ``retrieval_pool_size``: pairs per retrieval pool), which the writers print in captions.
    """
    for name, value in (("classification_classes", classification_classes),
                        ("retrieval_pool_size", retrieval_pool_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"tic_table: {name} must be a positive integer, got {value!r}")
    steps = normalize_steps(steps)
    sel = select_rows(rows, study)
    metrics = {t: _task_metric_or_none(sel, t) for t in DYNAMIC_TASKS}
    present = [t for t, m in metrics.items() if m is not None]
    static_tasks = static_tasks_in(sel)
    study_name = str(sel["study"].iloc[0])
    totals = compute_totals(compute, steps, methods, study=study_name)
    records = []
    static_metrics: dict[str, str] = {}
    # metrics chosen over every method's rows once; each method then reads its own rows only (the
    # bootstrap recomputes this table hundreds of times)
    primary = {t: task_primary_metric(sel, t) for t in [*present, *static_tasks]}
    own = dict(tuple(sel.groupby("method", sort=False)))
    for m in methods:
        s = summarize_method(own.get(str(m), sel), m, steps, dynamic_tasks=present, static_tasks=static_tasks,
                             metrics=primary)
        static_metrics = s.static_metrics
        rec = {
            "Method": str(m),
            "Compute (GMACs)": float(totals.loc[str(m), "gmacs"]),
            "Compute / budget": float(totals.loc[str(m), "budget_ratio"]),
            "Samples seen": totals.loc[str(m), "samples_seen"],
            "Static avg": s.static_avg,
        }
        for task, label in DYNAMIC_TASKS.items():
            ts = s.dynamic.get(task)
            rec[f"{label} backward"] = ts.backward if ts else math.nan
            rec[f"{label} ID"] = ts.in_domain if ts else math.nan
            rec[f"{label} forward"] = ts.forward if ts else math.nan
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=TABLE_COLUMNS)
    df.attrs.update(
        study=study_name,
        steps=list(steps),
        retrieval_metric=metrics[RETRIEVAL_TASK],
        classification_metric=metrics[CLASSIFICATION_TASK],
        static_metrics=dict(static_metrics),
        classification_classes=classification_classes,
        retrieval_pool_size=retrieval_pool_size,
    )
    return df


def per_step_table(
    rows: pd.DataFrame, steps: Sequence, methods: Sequence[str], *, study: str | None = None,
    compute: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Long per-step table: one row per (method, train step), in the given orders.

    Columns: ``method, step_index, train_step, retrieval_id`` (E[i][i]),
    ``retrieval_all_steps`` (mean_j E[i][j]), the same two for classification, and
    ``static_avg`` (mean over static tasks of that step's model). Raw fractions; a task
    no row evaluates gives NaN. With ``compute`` rows, also ``samples_seen``, ``gmacs``
    (that step's training compute) and ``cumulative_gmacs`` (steps 0..i).
    """
    steps = normalize_steps(steps)
    sel = select_rows(rows, study)
    frames = []
    for m in methods:
        s = summarize_method(sel, m, steps, dynamic_tasks=[])
        out = pd.DataFrame({"method": str(m), "step_index": range(len(steps)), "train_step": steps})
        for task in DYNAMIC_TASKS:
            metric = _task_metric_or_none(sel, task)
            if metric is None:
                out[f"{task}_id"] = out[f"{task}_all_steps"] = math.nan
                continue
            E = evaluation_matrix(sel, m, task, metric, steps)
            out[f"{task}_id"] = per_step_in_domain(E).to_numpy()
            out[f"{task}_all_steps"] = per_step_average(E).to_numpy()
        out["static_avg"] = s.static_avg_by_step.to_numpy()
        frames.append(out)
    table = pd.concat(frames, ignore_index=True)
    if compute is not None:
        compute_totals(compute, steps, methods)  # same completeness checks as Table 2
        c = compute.assign(method=compute["method"].astype(str), train_step=compute["train_step"].astype(str))
        c = c.loc[:, ["method", "train_step", "samples_seen", "macs"]]
        table = table.merge(c, on=["method", "train_step"], how="left", validate="one_to_one")
        table["gmacs"] = table.pop("macs") / 1e9
        table["cumulative_gmacs"] = table.groupby("method", sort=False)["gmacs"].cumsum()
    return table


def lr_ablation_table(rows: pd.DataFrame, compute: pd.DataFrame, steps: Sequence,
                      runs: Sequence[str], settings: dict[str, dict], *, study: str | None = None,
                      classification_classes: int | None = None,
                      retrieval_pool_size: int | None = None) -> pd.DataFrame:
    """TiC-CLIP's LR ablation: Table 2's columns for the ablated runs, after two setting columns.

    ``settings[run]`` gives the run's ``warmup_later_steps`` and ``max_lr_decay``; the chance
    levels are ``tic_table``'s.
    """
    df = tic_table(rows, compute, steps, runs, study=study, classification_classes=classification_classes,
                   retrieval_pool_size=retrieval_pool_size)
    df.insert(1, "Warm-up on later steps", [("yes" if settings[r]["warmup_later_steps"] else "no") for r in runs])
    df.insert(2, "Max LR across steps", [settings[r]["max_lr_decay"] for r in runs])
    df.attrs["title"] = (f"TiC-CLIP learning-rate ablation of {runs[0]} (warm-up on steps after the first; "
                         "maximum LR constant or cosine-decayed across steps)")
    return df


# --------------------------------------------------------------------------- rendering


def _pct(x: float, nan: str) -> str:
    """A fraction as a percentage with one decimal; ``nan`` for a missing value."""
    return nan if pd.isna(x) else f"{100 * float(x):.1f}"


def _gmacs(x: float) -> str:
    """Compute in GMACs with three significant digits."""
    return "" if pd.isna(x) else f"{float(x):.3g}"


def _samples(x) -> str:
    """An integer count with thousands separators."""
    return "" if pd.isna(x) else f"{int(round(float(x))):,}"


def _ratio(x: float) -> str:
    """A multiple of the budget, two decimals."""
    return "" if pd.isna(x) else f"{float(x):.2f}"


def over_budget(ratio: float) -> bool:
    """Whether a method spent more than the compute-matched budget (beyond rounding)."""
    return bool(pd.notna(ratio) and ratio > OVER_BUDGET_TOLERANCE)


def render_table(df: pd.DataFrame, nan: str = "–") -> pd.DataFrame:
    """The table as strings: scores in % with one decimal, GMACs to 3 significant digits, and a
    dagger after the name of every method over the compute-matched budget."""
    out = df.astype(object).copy()
    out["Method"] = [f"{m}{OVER_BUDGET_MARK if over_budget(r) else ''}"
                     for m, r in zip(df["Method"].astype(str), df["Compute / budget"])]
    out["Compute (GMACs)"] = df["Compute (GMACs)"].map(_gmacs)
    out["Compute / budget"] = df["Compute / budget"].map(_ratio)
    out["Samples seen"] = df["Samples seen"].map(_samples)
    for col in SCORE_COLUMNS:
        out[col] = df[col].map(lambda x: _pct(x, nan))
    return out


def table_caption(df: pd.DataFrame) -> str:
    """One-line caption naming the metrics behind each column (from ``df.attrs``)."""
    a = df.attrs
    r = a.get("retrieval_metric") or "mean_R@1"
    c = a.get("classification_metric") or "top1"
    steps = a.get("steps")
    final = f" (trained through {steps[-1]})" if steps else ""
    static = a.get("static_metrics")
    static_txt = (
        ", ".join(f"`{t}` [`{m}`]" for t, m in static.items()) if static else "the static tasks"
    )
    head = a.get("title") or (f"TiC Table 2, study {a['study']}" if a.get("study") else "TiC Table 2")
    return (
        f"{head}. Scores in %. Retrieval = {METRIC_TEXT.get(r, r)} (`{r}`); "
        f"classification = {METRIC_TEXT.get(c, c)} (`{c}`); "
        f"static avg = mean over {static_txt} of the final model{final}. "
        "ID = mean_i E[i][i]; backward / forward = mean of E[i][j] over all j < i / j > i "
        "(TiC-CLIP; docs/metrics.md). Compute and samples seen are totals over all steps; "
        "x budget = compute / the compute-matched budget's (C samples per step, the first step's own "
        "budget there when it has one); "
        f"{OVER_BUDGET_MARK} = over the compute-matched budget (Oracle by design, LwF by its teacher's "
        "forward passes, Patching by its alpha search)."
        + chance_text(a.get("classification_classes"), a.get("retrieval_pool_size"))
    )


def chance_text(classes: int | None, pool_size: int | None) -> str:
    """The caption's sentence on chance levels (empty when neither is known): top-1 classification
    among ``classes`` classes, where an image counts as correct if the class guessed is any of
    those it shows (so chance is k / classes for an image of k classes), and Recall@1 within
    pools of ``pool_size`` pairs."""
    parts = []
    if classes:
        parts.append(f"classification 1/{classes} = {100 / classes:.1f}% for an image of one class "
                     f"({classes}-way; an image showing k classes is right if any is named: k/{classes})")
    if pool_size:
        parts.append(f"retrieval 1/{pool_size} = {100 / pool_size:.1f}% (pools of {pool_size} pairs)")
    return f" Chance: {'; '.join(parts)}." if parts else ""


def write_table(df: pd.DataFrame, stem: Path, spread: pd.DataFrame | None = None, seeds: int = 1) -> list[Path]:
    """Write ``stem.csv`` (raw numbers), ``stem.md``, ``stem.tex`` (with TiC's two-level header)
    and ``stem.html`` (rendered, with the caption); return the paths. ``spread``: the half-widths
    of the seeds' intervals of a mean over ``seeds`` seeds (``uncertainty.mean_over_seeds``)."""
    shown_spread = None
    if spread is not None:
        shown_spread = (spread, render_table(spread_frame(df, spread))[list(spread.columns)])
    return reporting.write_table(df, stem, table_caption(df), shown=render_table(df), groups=_TEX_HEADER,
                                 spread=shown_spread, seeds=seeds)


# --------------------------------------------------------------------------- inputs


def read_compute_records(paths: Sequence) -> pd.DataFrame:
    """One row per ``compute.json`` written by a training job, ``step`` renamed ``train_step``."""
    records = [json.loads(Path(p).read_text()) for p in paths]
    return pd.DataFrame(records).rename(columns={"step": "train_step"})
