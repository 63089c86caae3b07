"""The bootstrap over test samples and the seeds' intervals (ticlip_core/reporting/uncertainty.py)."""
import math

import numpy as np
import pandas as pd
import pytest

from ticlip_core import samples
from ticlip_core.reporting import uncertainty as U
from ticlip_core.rows import frame


def rows_and_entries(outcomes: dict[str, np.ndarray], sample_set="toy/test"):
    """One accuracy row per method, with its per-sample entries."""
    rows, parts = [], []
    for method, o in outcomes.items():
        base = {"study": "toy", "method": method, "task": "cls", "eval_step": "s", "metric": "top1", "train_step": "s"}
        rows.append({**base, "value": float(np.mean(o))})
        parts.append(samples.entries(base, sample_set, len(o), o))
    return frame(rows), samples.frame(parts)


def test_bootstrap_of_a_binomial_matches_its_analytic_interval():
    n, p = 2000, 0.3
    o = np.zeros(n)
    o[: int(n * p)] = 1
    _, entries = rows_and_entries({"m": o})
    draws = U.resampled_values(entries, 4000, seed=0).to_numpy().ravel()
    lo, hi = U.percentile_interval(draws)
    half = 1.959964 * math.sqrt(p * (1 - p) / n)
    assert abs(draws.mean() - p) < 0.002
    assert lo == pytest.approx(p - half, abs=0.15 * half)
    assert hi == pytest.approx(p + half, abs=0.15 * half)


def test_identical_predictions_differ_by_exactly_zero_in_every_draw():
    rng = np.random.default_rng(1)
    o = (rng.random(300) < 0.6).astype(float)
    rows, entries = rows_and_entries({"a": o, "b": o.copy(), "c": 1 - o})
    table = lambda parts: {"t": parts["r"].pivot_table(index="method", values="value").reset_index()}  # noqa: E731
    draws = U.bootstrap_cells(table, {"r": rows}, entries, 200, seed=3, labels={"t": ["method"]})
    by = draws.pivot_table(index="draw", columns="row", values="value")
    diff = by["method=a"] - by["method=b"]
    assert (diff == 0).all() and U.percentile_interval(diff) == (0.0, 0.0)
    # a different method on the same samples does vary, and its draws are paired: a + c = 1 exactly
    assert by["method=c"].std() > 0
    assert np.allclose(by["method=a"] + by["method=c"], 1.0)


def test_draws_split_over_processes_give_the_same_cells_as_one_process():
    rng = np.random.default_rng(2)
    rows, entries = rows_and_entries({m: (rng.random(200) < q).astype(float) for m, q in [("a", .3), ("b", .6)]})
    table = lambda parts: {"t": parts["r"].pivot_table(index="method", values="value").reset_index()}  # noqa: E731
    one = U.bootstrap_cells(table, {"r": rows}, entries, 30, seed=5, labels={"t": ["method"]})
    two = U.bootstrap_cells(table, {"r": rows}, entries, 30, seed=5, labels={"t": ["method"]}, processes=3)
    assert one["value"].nunique() > 2
    pd.testing.assert_frame_equal(one, two)


def test_resampling_is_seeded_by_the_set_name_and_the_seed():
    a = U.resample_counts("tic/test/2014", 50, 5, seed=0)
    assert (a == U.resample_counts("tic/test/2014", 50, 5, seed=0)).all()
    assert (a.sum(axis=1) == 50).all()
    assert not (a == U.resample_counts("tic/test/2015", 50, 5, seed=0)).all()
    assert not (a == U.resample_counts("tic/test/2014", 50, 5, seed=1)).all()


def test_rows_without_entries_keep_their_value_and_weighted_rows_resample_as_ratios():
    base = {"study": "toy", "method": "m", "task": "cls", "train_step": "s", "eval_step": "s"}
    o = np.array([1, 0, 1, 1, 0, 0, 1, 0.0])
    acc = samples.entries({**base, "metric": "acc"}, "s", 8, o)
    weighted = samples.entries({**base, "metric": "balanced"}, "s", 8, o, weight=[1, 1, 1, 1, 2, 2, 2, 2])
    rows = frame([{**base, "metric": "acc", "value": o.mean()},
                  {**base, "metric": "balanced", "value": (4 * 0.75 + 8 * 0.25) / 12},
                  {**base, "metric": "loss", "value": 1.5}])
    samples.check_matches(rows, samples.frame([acc, weighted]))
    table = lambda parts: {"t": parts["r"].pivot_table(index="method", columns="metric", values="value").reset_index()}  # noqa: E731
    draws = U.bootstrap_cells(table, {"r": rows}, samples.frame([acc, weighted]), 50, 0, {"t": ["method"]})
    assert (draws.loc[draws["column"] == "loss", "value"] == 1.5).all()
    assert draws.loc[draws["column"] == "acc", "value"].nunique() > 1
    counts = U.resample_counts("s", 8, 50, 0)
    w = np.array([1, 1, 1, 1, 2, 2, 2, 2.0])
    expected = counts @ (w * o) / (counts @ w)
    got = draws[draws["column"] == "balanced"].sort_values("draw")["value"].to_numpy()
    assert np.allclose(got, expected)


def test_seed_interval_is_the_student_t_interval():
    mean, lo, hi = U.seed_interval([0.30, 0.34, 0.29])
    s = np.std([0.30, 0.34, 0.29], ddof=1)
    assert mean == pytest.approx(0.31)
    assert hi - mean == pytest.approx(4.302653 * s / math.sqrt(3), rel=1e-5)
    assert mean - lo == pytest.approx(hi - mean)
    one = U.seed_interval([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])


def test_mean_over_seeds_shows_no_interval_for_one_seed_and_refuses_mismatched_rows():
    a = pd.DataFrame({"Method": ["x", "y"], "Acc": [0.5, 0.7], "GMACs": [1.0, 2.0], "Chosen": ["lr=1", "lr=2"]})
    b = a.assign(Acc=[0.6, 0.7], Chosen=["lr=1", "lr=3"])
    mean, half = U.mean_over_seeds([a], ["Method"])
    assert half.isna().all().all() and mean.equals(a)
    mean, half = U.mean_over_seeds([a, b], ["Method"])
    assert mean["Acc"].tolist() == pytest.approx([0.55, 0.7])
    assert half["Acc"].iloc[0] == pytest.approx(12.706205 * np.std([0.5, 0.6], ddof=1) / math.sqrt(2), rel=1e-5)
    assert half["Acc"].iloc[1] == 0 and half["GMACs"].isna().all()  # GMACs: the same in every seed
    assert mean["Chosen"].tolist() == ["lr=1", "lr=2 / lr=3"]
    with pytest.raises(ValueError, match="row labels"):
        U.mean_over_seeds([a, b.assign(Method=["x", "z"])], ["Method"])


def test_paths_are_grouped_by_their_seed_folder():
    got = U.by_seed(["r/tic/seed1/evals/a.csv", "r/tic/seed0/evals/a.csv", "r/tic/seed1/evals/b.csv"])
    assert got == {0: ["r/tic/seed0/evals/a.csv"], 1: ["r/tic/seed1/evals/a.csv", "r/tic/seed1/evals/b.csv"]}
    with pytest.raises(ValueError, match="seed<N>"):
        U.by_seed(["r/tic/evals/a.csv"])


def test_a_draw_missing_every_sample_of_a_row_keeps_its_full_sample_value_and_is_counted():
    base = {"study": "toy", "method": "m", "task": "cls", "train_step": "s", "eval_step": "s", "metric": "top1"}
    one = samples.entries(base, "s", 3, [1.0], sample=[2])  # one image of three has a class
    values = U.resampled_values(samples.frame([one]), 200, 0)
    counts = U.resample_counts("s", 3, 200, 0)
    assert values.attrs["empty"] == int((counts[:, 2] == 0).sum()) > 0
    assert (values.to_numpy() == 1.0).all()
