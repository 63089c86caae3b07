"""The metrics layer (docs/metrics.md) on hand-made evaluation matrices and rows: TiC's matrix
metrics, the incremental-learning metrics (average incremental accuracy, last accuracy,
forgetting), and the one row schema (ticlip_core/rows.py)."""

import math

import pandas as pd
import pytest

from ticlip_core import rows as row_schema
from ticlip_core.metrics import (
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    last_accuracy,
    evaluation_matrix,
    forward_transfer,
    in_domain,
    per_step_average,
    per_step_in_domain,
    primary_metric,
    select_rows,
    static_scores,
    summarize_method,
)

# Non-lexical step order: alphabetically it would be spring, summer, winter.
STEPS = ["winter", "spring", "summer"]
# E[i][j]: diag 0.5, 0.75, 0.625; lower (j<i) 0.25, 0.5, 0.75; upper (j>i) 0.0, 0.25, 0.5.
MATRIX = [
    [0.5, 0.0, 0.25],
    [0.25, 0.75, 0.5],
    [0.5, 0.75, 0.625],
]


def matrix_frame(values=MATRIX, steps=STEPS):
    return pd.DataFrame(values, index=list(steps), columns=list(steps), dtype=float)


def matrix_rows(values=MATRIX, steps=STEPS, method="m", task="retrieval", metric="mean_R@1",
                study="tic"):
    recs = [
        dict(study=study, method=method, train_step=ti, task=task, eval_step=ej,
             metric=metric, value=values[i][j])
        for i, ti in enumerate(steps)
        for j, ej in enumerate(steps)
    ]
    return pd.DataFrame(recs)


def test_formulas_on_hand_matrix():
    E = matrix_frame()
    assert in_domain(E) == pytest.approx(0.625, abs=1e-12)  # (0.5 + 0.75 + 0.625) / 3
    # Plain cell means, not means of row means (which would be 0.4375 and 0.3125).
    assert backward_transfer(E) == pytest.approx(0.5, abs=1e-12)  # (0.25 + 0.5 + 0.75) / 3
    assert forward_transfer(E) == pytest.approx(0.25, abs=1e-12)  # (0.0 + 0.25 + 0.5) / 3


def test_per_step_curves():
    E = matrix_frame()
    assert per_step_in_domain(E).tolist() == [0.5, 0.75, 0.625]
    assert per_step_average(E).to_numpy() == pytest.approx([0.25, 0.5, 0.625])
    assert list(per_step_average(E).index) == STEPS


def test_single_step_has_nan_transfer():
    E = matrix_frame([[0.4]], ["2014-2016"])
    assert in_domain(E) == pytest.approx(0.4)
    assert math.isnan(backward_transfer(E))
    assert math.isnan(forward_transfer(E))


def test_evaluation_matrix_respects_given_step_order():
    rows = matrix_rows().sample(frac=1.0, random_state=0)  # shuffled rows
    E = evaluation_matrix(rows, "m", "retrieval", "mean_R@1", STEPS)
    assert list(E.index) == STEPS
    assert list(E.columns) == STEPS
    assert E.loc["winter", "summer"] == 0.25
    assert E.loc["summer", "winter"] == 0.5
    assert backward_transfer(E) == pytest.approx(0.5)
    assert forward_transfer(E) == pytest.approx(0.25)


def test_evaluation_matrix_filters_method_task_metric():
    rows = pd.concat([
        matrix_rows(),
        matrix_rows([[0.9] * 3] * 3, metric="i2t_R@1"),
        matrix_rows([[0.8] * 3] * 3, method="other"),
        matrix_rows([[0.7] * 3] * 3, task="classification", metric="top1"),
    ])
    E = evaluation_matrix(rows, "m", "retrieval", "mean_R@1", STEPS)
    assert E.to_numpy().tolist() == MATRIX


def test_missing_cell_in_matrix_is_nan_and_metric_raises_naming_it():
    rows = matrix_rows()
    rows = rows[~((rows.train_step == "summer") & (rows.eval_step == "winter"))]
    E = evaluation_matrix(rows, "m", "retrieval", "mean_R@1", STEPS)
    assert math.isnan(E.loc["summer", "winter"])
    with pytest.raises(ValueError, match=r"\('summer', 'winter'\)") as err:
        backward_transfer(E)
    assert "method='m'" in str(err.value)
    # Metrics that do not use the cell are unaffected.
    assert in_domain(E) == pytest.approx(0.625)
    assert forward_transfer(E) == pytest.approx(0.25)


def test_nan_value_counts_as_missing():
    values = [row[:] for row in MATRIX]
    values[1][1] = float("nan")
    with pytest.raises(ValueError, match=r"\('spring', 'spring'\)"):
        in_domain(matrix_frame(values))


def test_missing_whole_train_step_raises():
    rows = matrix_rows()
    rows = rows[rows.train_step != "spring"]
    E = evaluation_matrix(rows, "m", "retrieval", "mean_R@1", STEPS)
    with pytest.raises(ValueError, match="spring"):
        in_domain(E)


def test_non_square_matrix_raises():
    E = matrix_frame()
    with pytest.raises(ValueError, match="same steps"):
        in_domain(E[["spring", "winter", "summer"]])


def test_unknown_step_in_rows_raises():
    rows = matrix_rows()
    rows.loc[0, "eval_step"] = "autumn"
    with pytest.raises(ValueError, match="autumn"):
        evaluation_matrix(rows, "m", "retrieval", "mean_R@1", STEPS)


def test_primary_metric():
    assert primary_metric(["i2t_R@1", "t2i_R@1", "mean_R@1", "mean_R@5"]) == "mean_R@1"
    assert primary_metric(["top1", "top5"]) == "top1"
    with pytest.raises(ValueError):
        primary_metric(["top5"])


def test_select_rows_guards():
    rows = matrix_rows()
    with pytest.raises(ValueError, match="duplicated"):
        select_rows(pd.concat([rows, rows.head(1)]))
    two = pd.concat([rows, matrix_rows(study="clclip")])
    with pytest.raises(ValueError, match="several studies"):
        select_rows(two)
    assert len(select_rows(two, study="clclip")) == 9
    with pytest.raises(ValueError, match="lack columns"):
        select_rows(rows.drop(columns=["study"]))
    scenarios = pd.concat([rows, rows.assign(scenario="other")])
    with pytest.raises(ValueError, match="several scenarios"):
        select_rows(scenarios)
    assert len(select_rows(scenarios, scenario="other")) == 9


def test_integer_steps_from_csv_roundtrip(tmp_path):
    steps = [2017, 2018]
    rows = matrix_rows([[0.5, 0.25], [0.75, 1.0]], steps=[str(s) for s in steps])
    rows.to_csv(tmp_path / "e.csv", index=False)
    back = pd.read_csv(tmp_path / "e.csv")  # train_step / eval_step read back as ints
    E = evaluation_matrix(back, "m", "retrieval", "mean_R@1", steps)
    assert list(E.index) == ["2017", "2018"]
    assert backward_transfer(E) == 0.75
    assert forward_transfer(E) == 0.25


def static_rows(method, per_step, steps=STEPS):
    """per_step: {step: {task: value}}; retrieval-type tasks get mean_R@1 plus a decoy."""
    recs = []
    for step, scores in per_step.items():
        for task, v in scores.items():
            if "retrieval" in task:
                metrics = {"mean_R@1": v, "i2t_R@1": 0.99}
            else:
                metrics = {"top1": v, "top5": 0.99}
            for metric, value in metrics.items():
                recs.append(dict(study="tic", method=method, train_step=step, task=task,
                                 eval_step="static", metric=metric, value=value))
    return pd.DataFrame(recs)


STATIC = {
    "winter": {"static_objects": 0.25, "static_retrieval": 0.5},
    "spring": {"static_objects": 0.5, "static_retrieval": 0.5},
    "summer": {"static_objects": 0.75, "static_retrieval": 0.25},
}


def test_summarize_method():
    rows = pd.concat([
        matrix_rows(),
        matrix_rows([[0.9] * 3] * 3, metric="i2t_R@1"),
        matrix_rows([[100.0] * 3] * 3, task="data", metric="samples"),  # bookkeeping, unscored
        static_rows("m", STATIC),
    ])
    s = summarize_method(rows, "m", STEPS)
    assert set(s.dynamic) == {"retrieval"}
    r = s.dynamic["retrieval"]
    assert r.metric == "mean_R@1"
    assert (r.in_domain, r.backward, r.forward) == pytest.approx((0.625, 0.5, 0.25))
    assert s.static_metrics == {"static_objects": "top1", "static_retrieval": "mean_R@1"}
    assert s.static_avg_by_step.tolist() == [0.375, 0.5, 0.5]
    assert s.static_avg == 0.5  # final step: (0.75 + 0.25) / 2


def test_static_missing_task_for_one_method_raises():
    other = {k: {"static_objects": 0.5} for k in STEPS}  # lacks static_retrieval
    rows = pd.concat([static_rows("m", STATIC), static_rows("n", other)])
    assert static_scores(rows, "m", STEPS).shape == (3, 2)
    with pytest.raises(ValueError, match="static_retrieval"):
        static_scores(rows, "n", STEPS)


def test_static_rows_need_static_eval_step():
    rows = static_rows("m", STATIC)
    rows.loc[0, "eval_step"] = "winter"
    with pytest.raises(ValueError, match="eval_step"):
        static_scores(rows, "m", STEPS)


# --------------------------------------------------------------------------- incremental learning
# A[l][j]: accuracy on task j's test set after training task l (the upper triangle is never read).
NAN = math.nan
A3 = [[0.9, NAN, NAN],
      [0.7, 0.8, NAN],
      [0.6, 0.85, 0.5]]


def test_average_and_last_accuracy():
    # A_t after each task, on everything seen so far
    assert average_incremental_accuracy([0.9, 0.75, 0.65]) == pytest.approx((0.9 + 0.75 + 0.65) / 3)
    assert last_accuracy([0.9, 0.75, 0.65]) == 0.65
    assert average_incremental_accuracy([0.4]) == last_accuracy([0.4]) == 0.4
    with pytest.raises(ValueError, match="A_1..A_T"):
        last_accuracy([])
    with pytest.raises(ValueError, match="finite"):
        average_incremental_accuracy([0.5, NAN])


def test_forgetting_takes_the_best_earlier_accuracy():
    # task 0: best before the last task max(0.9, 0.7) = 0.9, final 0.6 -> 0.3
    # task 1: best 0.8, final 0.85 -> -0.05 (it improved)
    assert forgetting(A3) == pytest.approx((0.3 - 0.05) / 2)
    # not the drop from the diagonal alone, nor from the step before the last
    assert forgetting([[0.5, NAN, NAN], [0.9, 0.8, NAN], [0.6, 0.7, 0.4]]) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.7)) / 2)
    assert forgetting([[0.5, NAN], [0.5, 0.9]]) == 0.0
    with pytest.raises(ValueError, match="at least 2 tasks"):
        forgetting([[0.7]])
    with pytest.raises(ValueError, match="finite"):
        forgetting([[0.7, NAN], [NAN, 0.8]])


# --------------------------------------------------------------------------- the row schema


def test_rows_schema_round_trip(tmp_path):
    rows = row_schema.make_rows({"study": "clclip", "scenario": "mst", "method": "lwf", "variant": "wm",
                                 "hyperparameter": "beta", "chosen": 1.0, "train_step": 0, "task": "update",
                                 "eval_step": 1}, {"acc": 0.25})
    rows += row_schema.make_rows({"study": "clclip", "scenario": "mst", "method": "original",
                                  "train_step": "final", "task": "update"}, {"bwt": -0.5})
    path = tmp_path / "rows.csv"
    written = row_schema.write_rows(rows, path)
    back = row_schema.read_rows([path])
    assert list(back.columns) == list(row_schema.COLUMNS)
    pd.testing.assert_frame_equal(back, written)
    assert back.loc[0, ["train_step", "eval_step", "chosen"]].tolist() == ["0", "1", "1.0"]  # text, not numbers
    assert back.loc[1, ["variant", "hyperparameter", "eval_step"]].tolist() == ["-", "-", "-"]  # NA, not NaN
    with pytest.raises(ValueError, match="duplicated"):
        row_schema.read_rows([path, path])
    with pytest.raises(ValueError, match="unknown column"):
        row_schema.make_rows({"session": 0}, {"acc": 1.0})
    with pytest.raises(ValueError, match="not a number"):
        row_schema.frame([{**rows[0], "value": "high"}])
