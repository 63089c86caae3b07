"""The reporting layer's writers and figures, TiC's Table 2 and per-step table, and CL-CLIP's
tables (with their compute column) and Fig. 4, from hand-made rows."""

import json
import math

import pandas as pd
import pytest
from PIL import Image

from ticlip_core.clclip import tables as clclip_tables
from ticlip_core.reporting.tables import write_table as report_table

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


def test_the_caption_states_the_chance_levels_it_is_given(table):
    assert "Chance" not in table_caption(table)  # none given, none stated
    df = tic_table(make_rows(), make_compute(), STEPS, METHODS, classification_classes=69, retrieval_pool_size=200)
    caption = table_caption(df)
    assert "classification 1/69 = 1.4% for an image of one class" in caption
    assert "retrieval 1/200 = 0.5% (pools of 200 pairs)" in caption
    assert "classification 1/" not in table_caption(tic_table(make_rows(), make_compute(), STEPS, METHODS,
                                                              retrieval_pool_size=200))
    with pytest.raises(ValueError, match="classification_classes must be a positive integer"):
        tic_table(make_rows(), make_compute(), STEPS, METHODS, classification_classes=0)


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
    assert [p.name for p in paths] == ["tic_table2.csv", "tic_table2.md", "tic_table2.tex", "tic_table2.html"]
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

    page = paths[3].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<figcaption>TiC Table 2" in page
    assert "<td>sequential\u2020</td>" in page and "<td>62.5</td>" in page and "Recall@1" in page


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
    with_chance = lr_ablation_table(make_rows(), make_compute(), STEPS, METHODS[::-1], settings,
                                    classification_classes=10)
    assert "classification 1/10 = 10.0%" in table_caption(with_chance)


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


def test_reporting_writer_renders_one_caption_everywhere(tmp_path):
    raw = pd.DataFrame({"Method": ["a<b", "c"], "Score": [0.5, math.nan]})
    shown = pd.DataFrame({"Method": ["a<b", "c"], "Score": ["50.0", "\u2013"]})
    paths = report_table(raw, tmp_path / "t", "Caption & more", shown=shown)
    csv, md, tex, page = (p.read_text() for p in paths)
    assert csv == "Method,Score\na<b,0.5\nc,\n"  # raw numbers
    assert md.startswith("Caption & more\n\n") and "|:-" in md and "50.0 |" in md
    assert tex.startswith("% Caption & more\n") and "c & --" in tex  # the dash as LaTeX writes it
    assert "a&lt;b" in page and "Caption &amp; more" in page  # escaped
    with pytest.raises(ValueError, match="unknown format"):
        report_table(raw, tmp_path / "t", "x", formats=("pdf",))
    with pytest.raises(ValueError, match="rendered columns"):
        report_table(raw, tmp_path / "t", "x", shown=shown[["Method"]])


# --------------------------------------------------------------------------- CL-CLIP


def clclip_rows():
    """Rows of the one schema: the original model and FT (WM, IO) and LwF-WM (beta chosen) in MST,
    two sessions; headline (final) scores and per-session UT-Acc / ZS-Acc."""
    from ticlip_core.rows import make_rows
    recs = []
    runs = [("original", None, None, None), ("lwf", "wm", "beta", 0.5), ("ft", "wm", None, None),
            ("ft", "io", None, None)]
    for k, (method, variant, hp, chosen) in enumerate(runs):
        base = {"study": "clclip", "scenario": "mst", "method": method, "variant": variant, "hyperparameter": hp,
                "chosen": chosen}
        for s in (0, 1):
            recs += make_rows({**base, "train_step": s, "task": "update"}, {"ut_acc": 0.1 * (k + s)})
            recs += make_rows({**base, "train_step": s, "task": "zero_shot"}, {"zs_acc": 0.5})
        scores = {"ut_acc": 0.25 * k, "zs_acc": 0.5, "a_acc": (0.25 * k + 0.5) / 2, "TR@1": 0.1, "TR@5": 0.2,
                  "IR@1": 0.3, "IR@5": 0.4, "bwt": -0.125}
        recs += make_rows({**base, "train_step": "final", "task": "overall"}, scores)
    return pd.DataFrame(recs)


def write_compute(path, records):
    path.write_text(json.dumps(records))
    return path


def compute_record(method, variant, macs, search=0):
    return {"setting": "mst", "method": method, "variant": variant, "samples": 64, "macs": macs,
            "extra_macs": 0, "seconds": 1.5, "search_macs": search}


def test_clclip_method_table_with_compute(tmp_path):
    files = [write_compute(tmp_path / "original.compute.json", [compute_record("original", "-", 0)]),
             write_compute(tmp_path / "ft.compute.json", [compute_record("ft", "wm", 2e9), compute_record("ft", "io", 1e9)]),
             write_compute(tmp_path / "lwf.compute.json", [compute_record("lwf", "WM", 3e9, search=3e9)])]
    table = clclip_tables.method_table(clclip_rows(), "mst", clclip_tables.read_compute(files))
    # the paper's method order: original, FT, LwF (not the order the rows came in)
    assert table["Method"].tolist() == ["Original CLIP", "FT-WM", "FT-IO", "LwF-WM"]
    assert table.columns.tolist() == ["Method", "UT-Acc", "ZS-Acc", "TR@1", "TR@5", "IR@1", "IR@5", "A-Acc", "Bwt",
                                      "Compute (GMACs)", "Search (GMACs)", "Hyperparameter"]
    t = table.set_index("Method")
    assert t.loc["FT-IO", "UT-Acc"] == pytest.approx(75.0) and t.loc["LwF-WM", "Bwt"] == pytest.approx(-12.5)
    assert t["Compute (GMACs)"].tolist() == pytest.approx([0, 2, 1, 3])
    assert t.loc["LwF-WM", "Search (GMACs)"] == pytest.approx(3.0)
    assert t["Hyperparameter"].tolist() == ["", "", "", "beta=0.5"]
    paths = clclip_tables.write_table(table, tmp_path / "table4_mst", "table4_mst")
    md = paths[1].read_text()
    assert md.startswith("Table IV") and "docs/metrics.md" in md and "Search: training GMACs" in md
    assert "| LwF-WM" in md and "-12.50" in md and "beta=0.5" in md
    assert "<td>FT-IO</td>" in paths[3].read_text()
    # no compute records: no compute columns, and no compute note in the caption
    plain = clclip_tables.method_table(clclip_rows(), "mst")
    assert "Compute (GMACs)" not in plain.columns and "Search" not in clclip_tables.caption("table4_mst", plain)
    with pytest.raises(ValueError, match="no record\\(s\\) for setting 'mst', method 'lwf', variant 'wm'"):
        clclip_tables.method_table(clclip_rows(), "mst", clclip_tables.read_compute(files[:2]))
    bad = write_compute(tmp_path / "bad.compute.json", [{"setting": "mst", "method": "ft"}])
    with pytest.raises(ValueError, match="lacks field"):
        clclip_tables.read_compute([bad])


def test_clclip_figure_4_is_deterministic(tmp_path):
    a = clclip_tables.plot_sessions(clclip_rows(), tmp_path / "a.png")
    b = clclip_tables.plot_sessions(clclip_rows(), tmp_path / "b.png")
    assert png_size(a) == (1560, 840)  # 13 x 7 in at 120 dpi
    assert a.read_bytes() == b.read_bytes()
    curves = clclip_tables.session_curves(clclip_rows())
    assert sorted(curves["session"].unique()) == [0, 1] and set(curves["metric"]) == {"ut_acc", "zs_acc"}
