"""The metrics layer of every study, computed from rows of the one schema (``ticlip_core.rows``).

All definitions, with their formulas, are in docs/metrics.md. Accuracies and recalls are
fractions in [0, 1].

TiC-CLIP (Garg et al., "Evaluation metrics"). With T ordered steps, ``E[i][j]`` is the score
of the model trained through step ``i`` on the evaluation set of step ``j``:

- in-domain (ID)     = mean_i E[i][i]                      (diagonal)
- backward transfer  = mean of E[i][j] over all cells j < i (strict lower triangle)
- forward transfer   = mean of E[i][j] over all cells j > i (strict upper triangle)
- static average     = mean over static tasks of the final (and each step's) model.

Backward/forward are plain means over the cells of the triangle (not a mean of per-row
means). A missing or NaN cell is an error (``ValueError`` naming the cells), never skipped;
with a single step the triangles are empty and backward/forward are NaN. Static tasks are
named ``static_*`` and have ``eval_step == "static"``. Step order is never lexical: it is
always the ``steps`` list from the config.

CL-CLIP (Ding et al., Sec. VI-A). ``A[i][j]`` is the accuracy on session ``j``'s classes after
training session ``i`` (0-based, ``S`` sessions; NaN above the diagonal is allowed, the
formulas never read it), the mean of the per-class accuracies of session ``j``'s classes (the
authors' ``get_acc_bwt``): UT-Acc (OST: over all samples; MST: ``mean_j A[S-1][j]``), Bwt
``1/(S-1) sum_{i<S-1} (A[S-1][i] - A[i][i])`` (the paper's formula; the authors' code divides
by S) and A-Acc ``(UT-Acc + ZS-Acc) / 2``.

Class- or domain-incremental learning (the memory-efficient CL study): ``A_t`` is the accuracy
after task ``t`` on the test sets of everything seen so far: average incremental accuracy
``mean_t A_t``, last accuracy ``A_T`` and forgetting (``forgetting``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ticlip_core import rows as row_schema
from ticlip_core.rows import STATIC_EVAL_STEP

# torch is imported inside the CL-CLIP functions, so the table jobs stay free of it

STATIC_PREFIX = "static_"
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


def select_rows(rows: pd.DataFrame, study: str | None = None, scenario: str | None = None) -> pd.DataFrame:
    """Validate rows of the one schema (``rows.frame``) and restrict them to one study and scenario.

    Steps are compared as strings (a CSV of ``2017``-style steps reads back as ints).
    With ``study=None`` (``scenario=None``) the rows must hold a single study (scenario), so
    that same-named methods of different studies are never mixed. Duplicate keys raise: a
    concatenation that read the same checkpoint's file twice must not be averaged silently.
    """
    out = row_schema.frame(rows)
    for column, plural, wanted in (("study", "studies", study), ("scenario", "scenarios", scenario)):
        have = sorted(out[column].unique())
        if wanted is None:
            if len(have) > 1:
                raise ValueError(f"rows hold several {plural} {have}; pass {column}=")
        else:
            out = out[out[column] == str(wanted)]
            if out.empty:
                raise ValueError(f"no evaluation rows for {column} {wanted!r}; have {have}")
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
    return step_matrix(sel, steps, method=method, task=task, metric=metric)


def step_matrix(rows: pd.DataFrame, steps: Sequence, **labels) -> pd.DataFrame:
    """The T x T matrix of ``rows`` (one schema) whose columns equal ``labels`` (e.g. method, task,
    metric; variant): index = train steps, columns = eval steps, both in ``steps`` order; a
    cell without a row is NaN. Rows of other train or eval steps raise. ``attrs["label"]``
    names the selection (in the metric functions' errors)."""
    steps = normalize_steps(steps)
    sel = rows
    for column, value in labels.items():
        sel = sel[sel[column].astype(str) == str(value)]
    label = ", ".join(f"{c}={v!r}" for c, v in labels.items())
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
    metrics: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Primary-metric scores of one method on static tasks, one row per train step.

    Index = train steps in ``steps`` order, columns = static tasks. ``static_tasks``
    defaults to every static task in ``rows`` (all methods), so a method lacking one
    raises instead of averaging over fewer tasks. ``metrics`` (task -> metric) defaults to
    each task's primary metric among ``rows``.
    """
    steps = normalize_steps(steps)
    sel = select_rows(rows, study)
    tasks = list(static_tasks) if static_tasks is not None else static_tasks_in(sel)
    metrics = dict(metrics) if metrics is not None else {t: task_primary_metric(sel, t) for t in tasks}
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
    metrics: Mapping[str, str] | None = None,
) -> MethodSummary:
    """Summarise one method: transfer scores per dynamic task and static averages.

    Task lists default to every dynamic / static task present in ``rows`` (across all
    methods), so a method that lacks a task the others have raises. ``metrics`` (task ->
    primary metric) defaults to the one chosen over every method's rows; a caller that
    passes it (and both task lists) may pass this method's rows alone.
    """
    steps = normalize_steps(steps)
    sel = select_rows(rows, study)
    if not (sel["method"] == str(method)).any():
        raise ValueError(f"no evaluation rows for method {method!r}")
    dyn = list(dynamic_tasks) if dynamic_tasks is not None else dynamic_tasks_in(sel)
    mine = sel[sel["method"] == str(method)]  # the metric is chosen over every method's rows, E from this one's

    def metric_of(task: str) -> str:
        return metrics[task] if metrics is not None else task_primary_metric(sel, task)

    dynamic = {}
    for t in dyn:
        metric = metric_of(t)
        E = evaluation_matrix(mine, method, t, metric, steps)
        dynamic[t] = TransferScores(t, metric, in_domain(E), backward_transfer(E), forward_transfer(E))
    stat = list(static_tasks) if static_tasks is not None else static_tasks_in(sel)
    if stat:
        S = static_scores(mine, method, steps, stat, metrics={t: metric_of(t) for t in stat})
        by_step = S.mean(axis=1).rename("static_avg")
        static_metrics = dict(S.attrs["metrics"])
    else:
        by_step = pd.Series(np.nan, index=steps, name="static_avg")
        static_metrics = {}
    return MethodSummary(
        method=str(method),
        steps=tuple(steps),
        dynamic=dynamic,
        static_metrics=static_metrics,
        static_avg=float(by_step.iloc[-1]),
        static_avg_by_step=by_step,
    )


# --------------------------------------------------------------------------- CL-CLIP


def accuracy_matrix(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """``A`` as a float ``(S, S)`` array from ``rows[i][j]`` = accuracy on session ``j``'s classes
    after session ``i``. Rows may be shorter than ``S`` (the missing upper entries become NaN);
    the diagonal and everything below it must be finite."""
    S = len(rows)
    if S == 0:
        raise ValueError("accuracy matrix: no sessions")
    A = np.full((S, S), np.nan)
    for i, row in enumerate(rows):
        if not i + 1 <= len(row) <= S:
            raise ValueError(f"accuracy matrix: row {i} has {len(row)} entries; expected {i + 1} to {S}")
        A[i, :len(row)] = np.asarray(row, dtype=float)
    _check_matrix(A)
    return A


def _check_matrix(A) -> np.ndarray:
    """``A`` as a float array, checked square with a finite lower triangle (diagonal included)."""
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square S x S with S >= 1, got shape {A.shape}")
    lower = A[np.tril_indices(A.shape[0])]
    if not np.isfinite(lower).all():
        raise ValueError("accuracy matrix: entries on or below the diagonal must be finite "
                         "(A[i][j] for j <= i: accuracy on session j after session i)")
    return A


def _credit(correct):
    """Per-sample correctness as a flat tensor (float credits keep their precision, booleans
    become float64), checked to lie in [0, 1]."""
    import torch

    correct = torch.as_tensor(correct)
    correct = (correct if correct.is_floating_point() else correct.double()).flatten()
    if not ((correct >= 0) & (correct <= 1)).all():
        raise ValueError("per-sample correctness must be booleans or credits in [0, 1]")
    return correct


def class_accuracies(correct, labels, num_classes: int) -> np.ndarray:
    """Accuracy of each class ``c < num_classes``: the mean of ``correct`` (per-sample booleans or
    credits in [0, 1]) over the samples labelled ``c``; NaN for a class without samples."""
    import torch

    correct = _credit(correct).double()
    labels = torch.as_tensor(labels).long().flatten()
    if correct.shape != labels.shape:
        raise ValueError(f"class_accuracies: {len(correct)} correctness flags for {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"class_accuracies: labels must lie in [0, {num_classes})")
    counts = torch.bincount(labels, minlength=num_classes).double()
    sums = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    return torch.where(counts > 0, sums / counts.clamp(min=1), float("nan")).numpy()


def session_accuracies(correct, labels, sessions: Sequence[Sequence[int]]) -> np.ndarray:
    """One row of ``A``: ``out[j]`` = the mean over session ``j``'s classes of each class's accuracy
    (``class_accuracies``; classes without samples left out, NaN if none has any), as the
    authors' ``get_acc_bwt`` computes Acc_{i,j} (docs/metrics.md, "MST per-session accuracy").
    ``correct`` is per-sample correctness, boolean or a credit in [0, 1]
    (``evaluation.zero_shot_accuracy(..., per_sample=True)``)."""
    import torch

    labels = torch.as_tensor(labels).long().flatten()
    num_classes = 1 + max([int(labels.max()) if len(labels) else -1] + [c for s in sessions for c in s])
    per_class = class_accuracies(correct, labels, num_classes)
    out = np.full(len(sessions), np.nan)
    for j, classes in enumerate(sessions):
        values = per_class[list(classes)]
        values = values[~np.isnan(values)]
        if values.size:
            out[j] = float(values.mean())
    return out


def ut_acc_ost(correct) -> float:
    """OST UT-Acc: correct predictions / all update-task test samples (the mean of per-sample
    correctness, boolean or a credit in [0, 1])."""
    correct = _credit(correct)
    if correct.numel() == 0:
        raise ValueError("ut_acc_ost: no test samples")
    return correct.mean().item()


def ut_acc_mst(A) -> float:
    """MST UT-Acc = (1/S) sum_{j=0}^{S-1} A[S-1][j]: the final model's accuracy on each
    session's classes, averaged over sessions (not over samples)."""
    A = _check_matrix(A)
    return float(A[-1].mean())


def bwt(A) -> float:
    """Backward transfer = 1/(S-1) sum_{i=0}^{S-2} (A[S-1][i] - A[i][i]).

    Ding et al.'s formula (after GEM): the mean change of accuracy on each earlier session's
    classes between just after it was trained and after the last session; negative means
    forgetting. (The authors' code divides by S; docs/metrics.md follows the paper.) S >= 2.
    """
    A = _check_matrix(A)
    S = A.shape[0]
    if S < 2:
        raise ValueError(f"bwt needs at least 2 sessions, got {S} (OST has no backward transfer)")
    return float(np.mean(A[-1, :-1] - np.diag(A)[:-1]))


def a_acc(ut_acc: float, zs_acc: float) -> float:
    """A-Acc = (UT-Acc + ZS-Acc) / 2, the paper's single score (model selection on validation)."""
    return (float(ut_acc) + float(zs_acc)) / 2


# --------------------------------------------------------------------------- incremental learning


def _step_accuracies(accuracies) -> np.ndarray:
    """``A_1..A_T`` as a finite 1-D float array with T >= 1."""
    a = np.asarray(accuracies, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"need the accuracy after each task, A_1..A_T (T >= 1), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"accuracies after each task must be finite, got {a.tolist()}")
    return a


def average_incremental_accuracy(accuracies) -> float:
    """Average incremental accuracy = (1/T) sum_t A_t, where ``accuracies[t]`` = A_t is the accuracy
    after task t on the test sets of every class (domain) seen so far."""
    return float(_step_accuracies(accuracies).mean())


def last_accuracy(accuracies) -> float:
    """Last accuracy A_T: after the final task, on everything seen."""
    return float(_step_accuracies(accuracies)[-1])


def forgetting(A) -> float:
    """Forgetting = 1/(T-1) sum_{j<T-1} (max_{j<=l<T-1} A[l][j] - A[T-1][j]) (Chaudhry et al. 2018).

    ``A[l][j]`` is the accuracy on task ``j``'s test set after training task ``l`` (T x T,
    0-based; the upper triangle is never read): for each old task, how far the final accuracy
    fell below the best accuracy it had before the last task; the mean over old tasks. T >= 2.
    """
    A = _check_matrix(A)
    T = A.shape[0]
    if T < 2:
        raise ValueError(f"forgetting needs at least 2 tasks, got {T}")
    return float(np.mean([A[j:T - 1, j].max() - A[T - 1, j] for j in range(T - 1)]))
