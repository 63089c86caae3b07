"""TiC Table 2, per-step table, writers and figures from hand-made rows."""

import math

import pandas as pd
import pytest
from PIL import Image

from ticlip_core.tic.figures import plot_compute_vs_performance, plot_eval_matrix, plot_step_curves
from ticlip_core.metrics import evaluation_matrix
from ticlip_core.tic.tables import (
    SCORE_COLUMNS,
    TABLE_COLUMNS,
    compute_totals,
    lr_ablation_table,
    table_caption,
    per_step_table,
    render_table,
    tic_table,
    write_table,
)

STEPS = ["2014-2016", "2017", "2018"]
METHODS = ["sequential", "cumulative_all"]


def tri(diag, lower, upper):
    """3x3 matrix with the given diagonal and constant lower/upper triangles."""
    return [[diag[i] if i == j else (lower if j < i else upper) for j in range(3)]
            for i in range(3)]


# Hand-computed expectations: retrieval (ID, backward, forward), classification (ID, bwd, fwd).
EVAL = {
    "cumulative_all": {
        "retrieval": [[0.5, 0.0, 0.25], [0.25, 0.75, 0.5], [0.5, 0.75, 0.625]],  # .625 .5 .25
        "classification": tri([0.75, 0.75, 0.75], 0.5, 0.25),  # .75 .5 .25
    },
    "sequential": {
        "retrieval": tri([0.5, 0.5, 0.5], 0.25, 0.125),  # .5 .25 .125
        "classification": tri([0.5, 0.25, 0.75], 0.375, 0.125),  # .5 .375 .125
    },
}
# Static per train step: (static_objects top1, static_retrieval mean_R@1).
STATIC = {
    "cumulative_all": [(0.25, 0.5), (0.5, 0.5), (0.75, 0.25)],  # avg .375 .5 .5
    "sequential": [(0.5, 0.5), (0.5, 0.25), (0.5, 0.75)],  # avg .5 .375 .625
}


def make_rows(tasks=("retrieval", "classification")):
    recs = []

    def add(method, train, task, ev, metric, value):
        recs.append(dict(study="tic", method=method, train_step=train, task=task,
                         eval_step=ev, metric=metric, value=value))

    for m in METHODS:
        for i, ti in enumerate(STEPS):
            for task in tasks:
                for j, ej in enumerate(STEPS):
                    v = EVAL[m][task][i][j]
                    if task == "retrieval":
                        for d in ("i2t", "t2i"):  # decoys: table must use mean_R@1
                            add(m, ti, task, ej, f"{d}_R@1", 0.99)
                        add(m, ti, task, ej, "mean_R@1", v)
                    else:
                        add(m, ti, task, ej, "top1", v)
                        add(m, ti, task, ej, "top5", 0.99)
            for ej in STEPS:
                add(m, ti, "data", ej, "samples", 64)  # evaluator bookkeeping, not a score
            obj, ret = STATIC[m][i]
            add(m, ti, "static_objects", "static", "top1", obj)
            add(m, ti, "static_retrieval", "static", "mean_R@1", ret)
            add(m, ti, "static_retrieval", "static", "i2t_R@1", 0.99)
    return pd.DataFrame(recs)


def make_compute():
    recs = []
    for i, s in enumerate(STEPS):
        recs.append(dict(method="cumulative_all", train_step=s, samples_seen=100,
                         macs=(i + 1) * 1e9, budget_macs=2e9))
        recs.append(dict(method="sequential", train_step=s, samples_seen=200, macs=4e9, budget_macs=2e9))
    return pd.DataFrame(recs)


@pytest.fixture
def table():
    return tic_table(make_rows(), make_compute(), STEPS, METHODS)


def test_tic_table_values(table):
    assert list(table.columns) == TABLE_COLUMNS
    assert table["Method"].tolist() == METHODS  # given order, not alphabetical
    t = table.set_index("Method")
    assert t.loc["cumulative_all", "Compute (GMACs)"] == pytest.approx(6.0)  # 1 + 2 + 3
    assert t.loc["sequential", "Compute (GMACs)"] == pytest.approx(12.0)
    assert t.loc["cumulative_all", "Samples seen"] == 300
    assert t.loc["sequential", "Samples seen"] == 600
    assert t.loc["cumulative_all", "Compute / budget"] == pytest.approx(1.0)  # 6 / (3 x 2)
    assert t.loc["sequential", "Compute / budget"] == pytest.approx(2.0)
    expected = {
        "cumulative_all": [0.5, 0.5, 0.625, 0.25, 0.5, 0.75, 0.25],
        "sequential": [0.625, 0.25, 0.5, 0.125, 0.375, 0.5, 0.125],
    }
    for m, values in expected.items():
        assert t.loc[m, SCORE_COLUMNS].tolist() == pytest.approx(values)
    assert table.attrs["retrieval_metric"] == "mean_R@1"
    assert table.attrs["classification_metric"] == "top1"
    assert table.attrs["static_metrics"] == {
        "static_objects": "top1", "static_retrieval": "mean_R@1"}


def test_table_without_classification_has_nan_columns():
    df = tic_table(make_rows(tasks=("retrieval",)), make_compute(), STEPS, METHODS)
    assert df["Classification ID"].isna().all()
    assert df["Retrieval ID"].tolist() == pytest.approx([0.5, 0.625])
    assert render_table(df)["Classification backward"].tolist() == ["–", "–"]


def test_table_raises_when_one_method_lacks_a_task():
    rows = make_rows()
    rows = rows[~((rows.method == "sequential") & (rows.task == "classification"))]
    with pytest.raises(ValueError, match="sequential"):
        tic_table(rows, make_compute(), STEPS, METHODS)


def test_compute_totals_requires_every_step():
    totals = compute_totals(make_compute(), STEPS, METHODS)
    assert totals.loc["cumulative_all", "macs"] == pytest.approx(6e9)
    c = make_compute()
    with pytest.raises(ValueError, match=r"\('sequential', '2017'\)"):
        compute_totals(c[~((c.method == "sequential") & (c.train_step == "2017"))], STEPS, METHODS)
    with pytest.raises(ValueError, match="duplicated"):
        compute_totals(pd.concat([c, c.head(1)]), STEPS, METHODS)


def test_render_percentages(table):
    shown = render_table(table).set_index("Method")
    assert shown.index.tolist() == ["sequential\u2020", "cumulative_all"]  # dagger: over budget
    shown.index = METHODS
    assert shown.loc["cumulative_all", "Retrieval ID"] == "62.5"
    assert shown.loc["sequential", "Static avg"] == "62.5"
    assert shown.loc["sequential", "Classification forward"] == "12.5"
    assert shown.loc["sequential", "Compute (GMACs)"] == "12"
    assert shown.loc["sequential", "Compute / budget"] == "2.00"
    assert shown.loc["cumulative_all", "Samples seen"] == "300"


def test_write_table(table, tmp_path):
    paths = write_table(table, tmp_path / "out" / "tic_table2")
    assert [p.name for p in paths] == ["tic_table2.csv", "tic_table2.md", "tic_table2.tex"]
    back = pd.read_csv(paths[0])
    assert list(back.columns) == TABLE_COLUMNS
    assert back["Retrieval ID"].tolist() == pytest.approx([0.5, 0.625])  # raw fractions

    md = paths[1].read_text()
    caption, blank, header, rule = md.splitlines()[:4]
    assert "Recall@1" in caption and "top-1" in caption
    assert "static_objects" in caption and "static_retrieval" in caption and "2018" in caption
    assert blank == ""
    assert [h.strip() for h in header.strip("|").split("|")] == TABLE_COLUMNS
    assert set(rule) <= set("|:- ")
    assert "| cumulative_all" in md and "62.5" in md

    tex = paths[2].read_text()
    for token in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule",
                  "Dynamic retrieval", "Dynamic classification", "Static",
                  r"\cmidrule(lr){5-5}", r"\cmidrule(lr){6-8}", r"\cmidrule(lr){9-11}",
                  r"sequential$^\dagger$", "x budget",
                  r"cumulative\_all", "62.5"):
        assert token in tex, token
    assert tex.startswith("% TiC Table 2")


def test_per_step_table():
    df = per_step_table(make_rows(), STEPS, METHODS)
    assert list(df.columns) == ["method", "step_index", "train_step", "retrieval_id",
                                "retrieval_all_steps", "classification_id",
                                "classification_all_steps", "static_avg"]
    seq = df[df.method == "sequential"]
    assert seq["train_step"].tolist() == STEPS
    assert seq["retrieval_id"].tolist() == [0.5, 0.5, 0.5]
    assert seq["classification_id"].tolist() == [0.5, 0.25, 0.75]
    assert seq["static_avg"].tolist() == [0.5, 0.375, 0.625]
    cum = df[df.method == "cumulative_all"]
    assert cum["retrieval_all_steps"].tolist() == pytest.approx([0.25, 0.5, 0.625])


def test_per_step_table_with_compute_is_cumulative():
    df = per_step_table(make_rows(), STEPS, METHODS, compute=make_compute())
    cum = df[df.method == "cumulative_all"]
    assert cum["gmacs"].tolist() == pytest.approx([1, 2, 3])
    assert cum["cumulative_gmacs"].tolist() == pytest.approx([1, 3, 6])
    assert df[df.method == "sequential"]["cumulative_gmacs"].tolist() == pytest.approx([4, 8, 12])
    with pytest.raises(ValueError, match="missing compute rows"):
        per_step_table(make_rows(), STEPS, METHODS, compute=make_compute().iloc[1:])


def test_lr_ablation_table():
    settings = {"cumulative_all": {"warmup_later_steps": False, "max_lr_decay": "constant"},
                "sequential": {"warmup_later_steps": True, "max_lr_decay": "constant"}}
    df = lr_ablation_table(make_rows(), make_compute(), STEPS, METHODS[::-1], settings)
    assert df.columns.tolist()[:3] == ["Method", "Warm-up on later steps", "Max LR across steps"]
    assert df["Warm-up on later steps"].tolist() == ["no", "yes"]
    assert df["Retrieval ID"].tolist() == pytest.approx([0.625, 0.5])
    assert "learning-rate ablation" in table_caption(df)


def png_size(path):
    assert path.stat().st_size > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_plot_eval_matrix(tmp_path):
    E = evaluation_matrix(make_rows(), "cumulative_all", "retrieval", "mean_R@1", STEPS)
    E.iloc[0, 2] = math.nan  # a missing cell is drawn, not an error
    a = plot_eval_matrix(E, "retrieval", tmp_path / "a.png")
    b = plot_eval_matrix(E, "retrieval", tmp_path / "b.png")
    assert png_size(a) == (768, 648)  # 6.4 x 5.4 in at 120 dpi
    assert a.read_bytes() == b.read_bytes()  # deterministic


def test_plot_step_curves(tmp_path):
    p = plot_step_curves(make_rows(), STEPS, METHODS, "retrieval", "mean_R@1", tmp_path / "c.png")
    assert png_size(p) == (1200, 480)
    with pytest.raises(ValueError, match="static"):
        plot_step_curves(make_rows(), STEPS, METHODS, "static_objects", "top1", tmp_path / "d.png")


def test_plot_compute_vs_performance(table, tmp_path):
    p = plot_compute_vs_performance(table, tmp_path / "sub" / "e.png")
    assert p == tmp_path / "sub" / "e.png"
    assert png_size(p) == (1200, 480)
