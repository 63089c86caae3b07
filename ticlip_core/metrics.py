"""TiC-CLIP continual-learning metrics computed from long-format evaluation rows.

Definitions (TiC-CLIP, Sec. "Evaluation metrics"; docs/metrics.md). With T ordered
steps, ``E[i][j]`` is the score of the model trained through step ``i`` on the evaluation
set of step ``j``:

- in-domain (ID)     = mean_i E[i][i]                      (diagonal)
- backward transfer  = mean of E[i][j] over all cells j < i (strict lower triangle)
- forward transfer   = mean of E[i][j] over all cells j > i (strict upper triangle)
- static average     = mean over static tasks of the final (and each step's) model.

Backward/forward are plain means over the cells of the triangle (not a mean of per-row
means). A missing or NaN cell is an error (``ValueError`` naming the cells), never skipped;
with a single step the triangles are empty and backward/forward are NaN.

Evaluation rows have the columns ``study, method, train_step, task, eval_step, metric,
value``; static tasks are named ``static_*`` and have ``eval_step == "static"``. Step order
is never lexical: it is always the ``steps`` list from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

ROW_COLUMNS = ("study", "method", "train_step", "task", "eval_step", "metric", "value")
STATIC_PREFIX = "static_"
STATIC_EVAL_STEP = "static"
RETRIEVAL_METRIC = "mean_R@1"
CLASSIFICATION_METRIC = "top1"


# --------------------------------------------------------------------------- row handling


def is_static_task(task: str) -> bool:
    """True for time-invariant tasks (named ``static_*``)."""
    return str(task).startswith(STATIC_PREFIX)


def primary_metric(metrics: Iterable[str]) -> str:
    """The headline metric of a task given the metric names it reports.

    ``mean_R@1`` (mean of image->text and text->image Recall@1) for retrieval-type tasks,
    i.e. any task reporting ``mean_R@1``; ``top1`` otherwise.
    """
    names = set(metrics)
    if RETRIEVAL_METRIC in names:
        return RETRIEVAL_METRIC
    if CLASSIFICATION_METRIC in names:
        return CLASSIFICATION_METRIC
    raise ValueError(
        f"task reports neither {RETRIEVAL_METRIC!r} nor {CLASSIFICATION_METRIC!r}: {sorted(names)}"
    )


def task_primary_metric(rows: pd.DataFrame, task: str) -> str:
    """Primary metric of ``task``, judged from all metrics ``rows`` report for it."""
    metrics = rows.loc[rows["task"] == task, "metric"].unique()
    if len(metrics) == 0:
        raise ValueError(f"no evaluation rows for task {task!r}")
    return primary_metric(metrics)


def normalize_steps(steps: Sequence) -> list[str]:
    """Steps as strings (YAML may give ``2017`` as an int), checked to be unique."""
    names = [str(s) for s in steps]
    dupes = sorted({s for s in names if names.count(s) > 1})
    if dupes:
        raise ValueError(f"steps must be unique; repeated: {dupes}")
    if not names:
        raise ValueError("steps is empty")
    return names


def select_rows(rows: pd.DataFrame, study: str | None = None) -> pd.DataFrame:
    """Validate evaluation rows and restrict them to one study.

    Steps are compared as strings (a CSV of ``2017``-style steps reads back as ints).
    With ``study=None`` the rows must hold a single study, so that same-named methods of
    different studies are never mixed. Duplicate keys raise: a concatenation that read the
    same checkpoint's file twice must not be averaged silently.
    """
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"evaluation rows lack columns {missing}; have {list(rows.columns)}")
    out = rows.loc[:, list(ROW_COLUMNS)].copy()
    for col in ("study", "method", "train_step", "task", "eval_step", "metric"):
        out[col] = out[col].astype(str)
    out["value"] = pd.to_numeric(out["value"], errors="raise").astype(float)
    studies = sorted(out["study"].unique())
    if study is None:
        if len(studies) > 1:
            raise ValueError(f"rows hold several studies {studies}; pass study=")
    else:
        out = out[out["study"] == str(study)]
        if out.empty:
            raise ValueError(f"no evaluation rows for study {study!r}; have {studies}")
    key = ["study", "method", "train_step", "task", "eval_step", "metric"]
    dup = out.duplicated(key, keep=False)
    if dup.any():
        first = out.loc[dup, key].drop_duplicates().head(5).to_dict("records")
        raise ValueError(f"{int(dup.sum())} duplicated evaluation rows, e.g. {first}")
    return out.reset_index(drop=True)


def _check_known_steps(rows: pd.DataFrame, steps: list[str], what: str) -> None:
    """Raise if rows mention train/eval steps outside the configured ``steps``."""
    allowed_eval = set(steps) | {STATIC_EVAL_STEP}
    bad_train = sorted(set(rows["train_step"]) - set(steps))
    bad_eval = sorted(set(rows["eval_step"]) - allowed_eval)
    if bad_train or bad_eval:
        raise ValueError(
            f"{what}: rows mention steps not in the configured steps {steps}: "
            f"train_step {bad_train}, eval_step {bad_eval}"
        )


# --------------------------------------------------------------------------- matrix metrics


def evaluation_matrix(
    rows: pd.DataFrame,
    method: str,
    task: str,
    metric: str,
    steps: Sequence,
    *,
    study: str | None = None,
) -> pd.DataFrame:
    """The TiC evaluation matrix E of one method on one dynamic task.

    Index = train steps, columns = eval steps, both in ``steps`` order (T x T);
    ``E.loc[i, j]`` = ``metric`` of the model trained through step i on step j's test
    split. Cells without a row are NaN (the metric functions then raise).
    """
    steps = normalize_steps(steps)
    if is_static_task(task):
        raise ValueError(f"{task!r} is a static task; it has no evaluation matrix")
    sel = select_rows(rows, study)
    sel = sel[(sel["method"] == str(method)) & (sel["task"] == task) & (sel["metric"] == metric)]
    label = f"method={method!r}, task={task!r}, metric={metric!r}"
    _check_known_steps(sel, steps, label)
    E = sel.pivot(index="train_step", columns="eval_step", values="value")
    E = E.reindex(index=steps, columns=steps).astype(float)
    E.index.name, E.columns.name = "train_step", "eval_step"
    E.attrs["label"] = label
    return E


def _check_square(E: pd.DataFrame) -> None:
    """E must have identical, identically ordered train and eval step labels."""
    if list(E.index) != list(E.columns):
        raise ValueError(
            f"evaluation matrix must have the same steps, in the same order, on both axes; "
            f"index {list(E.index)} vs columns {list(E.columns)}"
        )


def _cells(E: pd.DataFrame, part: str) -> np.ndarray:
    """Values of the requested part of E ('diag', 'lower' j<i, 'upper' j>i, 'all').

    Raises ValueError naming every missing (NaN) cell of that part.
    """
    _check_square(E)
    values = E.to_numpy(dtype=float)
    n = len(E)
    i, j = np.indices((n, n))
    mask = {"diag": i == j, "lower": j < i, "upper": j > i, "all": np.ones((n, n), bool)}[part]
    missing = mask & np.isnan(values)
    if missing.any():
        cells = [(E.index[a], E.columns[b]) for a, b in zip(*np.nonzero(missing))]
        label = E.attrs.get("label", "evaluation matrix")
        raise ValueError(f"{label}: missing (train_step, eval_step) cells: {cells}")
    return values[mask]


def _mean_or_nan(values: np.ndarray) -> float:
    """Mean of the cells; NaN for an empty triangle (T = 1)."""
    return float(values.mean()) if values.size else float("nan")


def in_domain(E: pd.DataFrame) -> float:
    """In-domain performance: mean_i E[i][i] (TiC-CLIP Sec. "Evaluation metrics")."""
    return _mean_or_nan(_cells(E, "diag"))


def backward_transfer(E: pd.DataFrame) -> float:
    """Backward transfer: plain mean of E[i][j] over all cells j < i; NaN when T = 1."""
    return _mean_or_nan(_cells(E, "lower"))


def forward_transfer(E: pd.DataFrame) -> float:
    """Forward transfer: plain mean of E[i][j] over all cells j > i; NaN when T = 1."""
    return _mean_or_nan(_cells(E, "upper"))


def per_step_in_domain(E: pd.DataFrame) -> pd.Series:
    """E[i][i] for each train step i (the ID curve)."""
    diag = _cells(E, "diag")
    return pd.Series(diag, index=list(E.index), name="in_domain")


def per_step_average(E: pd.DataFrame) -> pd.Series:
    """mean_j E[i][j] over all eval steps j, for each train step i."""
    values = _cells(E, "all").reshape(len(E), len(E))
    return pd.Series(values.mean(axis=1), index=list(E.index), name="all_steps_mean")


# --------------------------------------------------------------------------- static tasks


def scored_tasks(rows: pd.DataFrame) -> list[str]:
    """Sorted tasks that report a primary metric (``mean_R@1`` or ``top1``).

    Excludes bookkeeping rows such as the evaluator's ``data`` task (sample counts).
    """
    scored = rows.loc[rows["metric"].isin([RETRIEVAL_METRIC, CLASSIFICATION_METRIC]), "task"]
    return sorted(scored.unique())


def static_tasks_in(rows: pd.DataFrame) -> list[str]:
    """Sorted names of the scored static tasks present in ``rows``."""
    return [t for t in scored_tasks(rows) if is_static_task(t)]


def dynamic_tasks_in(rows: pd.DataFrame) -> list[str]:
    """Sorted names of the scored dynamic (per-step) tasks present in ``rows``."""
    return [t for t in scored_tasks(rows) if not is_static_task(t)]


def static_scores(
    rows: pd.DataFrame,
    method: str,
    steps: Sequence,
    static_tasks: Sequence[str] | None = None,
    *,
    study: str | None = None,
) -> pd.DataFrame:
    """Primary-metric scores of one method on static tasks, one row per train step.

    Index = train steps in ``steps`` order, columns = static tasks. ``static_tasks``
    defaults to every static task in ``rows`` (all methods), so a method lacking one
    raises instead of averaging over fewer tasks.
    """
    steps = normalize_steps(steps)
    sel = select_rows(rows, study)
    tasks = list(static_tasks) if static_tasks is not None else static_tasks_in(sel)
    metrics = {t: task_primary_metric(sel, t) for t in tasks}
    mine = sel[(sel["method"] == str(method)) & sel["task"].isin(tasks)]
    mine = mine[mine["metric"] == mine["task"].map(metrics)]
    _check_known_steps(mine, steps, f"method={method!r}, static tasks")
    wrong = mine[mine["eval_step"] != STATIC_EVAL_STEP]
    if not wrong.empty:
        raise ValueError(
            f"static task rows must have eval_step={STATIC_EVAL_STEP!r}; got "
            f"{sorted(set(wrong['eval_step']))} for {sorted(set(wrong['task']))}"
        )
    S = mine.pivot(index="train_step", columns="task", values="value")
    S = S.reindex(index=steps, columns=tasks).astype(float)
    S.index.name, S.columns.name = "train_step", "task"
    missing = [(s, t) for s in steps for t in tasks if np.isnan(S.loc[s, t])]
    if missing:
        raise ValueError(f"method={method!r}: missing static (train_step, task) scores: {missing}")
    S.attrs["metrics"] = metrics
    return S


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True, eq=False)
class TransferScores:
    """ID / backward / forward transfer of one method on one dynamic task."""

    task: str
    metric: str
    in_domain: float
    backward: float
    forward: float


@dataclass(frozen=True, eq=False)
class MethodSummary:
    """Everything TiC's Table 2 reports about one method.

    ``static_avg`` is the mean over ``static_metrics``' tasks of the final step's model;
    ``static_avg_by_step`` the same mean for each step's model (NaN-free; a Series
    indexed by train step). ``static_avg`` is NaN when there are no static tasks.
    """

    method: str
    steps: tuple[str, ...]
    dynamic: dict[str, TransferScores]
    static_metrics: dict[str, str]
    static_avg: float
    static_avg_by_step: pd.Series


def transfer_scores(
    rows: pd.DataFrame, method: str, task: str, steps: Sequence, *, study: str | None = None
) -> TransferScores:
    """ID, backward and forward transfer of ``method`` on ``task`` (primary metric)."""
    sel = select_rows(rows, study)
    metric = task_primary_metric(sel, task)
    E = evaluation_matrix(sel, method, task, metric, steps)
    return TransferScores(task, metric, in_domain(E), backward_transfer(E), forward_transfer(E))


def summarize_method(
    rows: pd.DataFrame,
    method: str,
    steps: Sequence,
    *,
    study: str | None = None,
    dynamic_tasks: Sequence[str] | None = None,
    static_tasks: Sequence[str] | None = None,
) -> MethodSummary:
    """Summarise one method: transfer scores per dynamic task and static averages.

    Task lists default to every dynamic / static task present in ``rows`` (across all
    methods), so a method that lacks a task the others have raises.
    """
    steps = normalize_steps(steps)
    sel = select_rows(rows, study)
    if not (sel["method"] == str(method)).any():
        raise ValueError(f"no evaluation rows for method {method!r}")
    dyn = list(dynamic_tasks) if dynamic_tasks is not None else dynamic_tasks_in(sel)
    dynamic = {t: transfer_scores(sel, method, t, steps) for t in dyn}
    stat = list(static_tasks) if static_tasks is not None else static_tasks_in(sel)
    if stat:
        S = static_scores(sel, method, steps, stat)
        by_step = S.mean(axis=1).rename("static_avg")
        metrics = dict(S.attrs["metrics"])
    else:
        by_step = pd.Series(np.nan, index=steps, name="static_avg")
        metrics = {}
    return MethodSummary(
        method=str(method),
        steps=tuple(steps),
        dynamic=dynamic,
        static_metrics=metrics,
        static_avg=float(by_step.iloc[-1]),
        static_avg_by_step=by_step,
    )
