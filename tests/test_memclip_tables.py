"""memclip's tables and figures from hand-made rows: two benchmarks, zero-shot, fine-tune, GCL
and joint, memory sizes 0 and 10, three tasks."""
import math

import pandas as pd
import pytest
from PIL import Image

from ticlip_core.memclip.figures import accuracy_curves, figure1
from ticlip_core.memclip.tables import memclip_table, write_memclip_tables

METHODS = ["finetune", "gcl"]
SIZES = [0, 10]
# (benchmark, method, M or None) -> A_t after tasks 1..3, forgetting, chosen hyperparameters.
# Last = A_3 and Avg = mean A_t by hand: written down below as the expected table values.
RUNS = {
    ("class_il", "zero_shot", None): ([0.60, 0.50, 0.40], 0.0, None),
    ("class_il", "finetune", 0): ([0.80, 0.40, 0.30], 0.4125, "lr=1e-05"),
    ("class_il", "finetune", 10): ([0.80, 0.55, 0.45], 0.25, "lr=1e-05"),
    ("class_il", "gcl", 0): ([0.81, 0.51, 0.39], 0.2, "lr=1e-05,tau=0.05"),
    ("class_il", "gcl", 10): ([0.84, 0.66, 0.57], 0.1234, "lr=0.0001,tau=0.05"),
    ("class_il", "joint", None): ([0.85, 0.75, 0.71], 0.01, "lr=1e-05"),
    ("domain_il", "zero_shot", None): ([0.30, 0.35, 0.32], 0.0, None),
    ("domain_il", "finetune", 0): ([0.70, 0.50, 0.44], 0.3, "lr=1e-05"),
    ("domain_il", "finetune", 10): ([0.70, 0.62, 0.58], 0.15, "lr=1e-05"),
    ("domain_il", "gcl", 0): ([0.72, 0.54, 0.48], 0.25, "lr=1e-05,tau=0.1"),
    ("domain_il", "gcl", 10): ([0.72, 0.66, 0.63], 0.0875, "lr=1e-05,tau=0.1"),
    ("domain_il", "joint", None): ([0.75, 0.72, 0.69], 0.02, "lr=1e-05"),
}
# class_il, in table order: Last, Avg, Forgetting (%), by hand
EXPECTED = [("Zero-shot", None, 40.0, 50.0, 0.0, ""),
            ("Fine-tune", 0, 30.0, 50.0, 41.25, "lr=1e-05"),
            ("Fine-tune", 10, 45.0, 60.0, 25.0, "lr=1e-05"),
            ("GCL", 0, 39.0, 57.0, 20.0, "lr=1e-05,tau=0.05"),
            ("GCL", 10, 57.0, 69.0, 12.34, "lr=0.0001,tau=0.05"),
            ("Joint (upper bound)", None, 71.0, 77.0, 1.0, "lr=1e-05")]


def make_rows(runs=RUNS, per_step=True):
    recs = []
    for (bench, method, M), (acc, forg, chosen) in runs.items():
        base = dict(study="memclip", scenario=bench, method=method, variant="-" if M is None else str(M),
                    hyperparameter="-" if chosen is None else ",".join(kv.split("=")[0] for kv in chosen.split(",")),
                    chosen="-" if chosen is None else chosen, task="seen", eval_step="-")
        if per_step:
            recs += [dict(base, train_step=str(t), metric="acc", value=a) for t, a in enumerate(acc)]
        finals = {"last": acc[-1], "avg": sum(acc) / len(acc), "forgetting": forg}
        recs += [dict(base, train_step="final", metric=m, value=v) for m, v in finals.items()]
    return pd.DataFrame(recs)


def test_table_values_and_order():
    raw, shown, caption = memclip_table(make_rows(), "class_il", METHODS, [10, 0], scenario="class")
    assert list(raw.columns) == ["Method", "Memory", "Last", "Avg", "Forgetting", "Chosen"]
    assert len(raw) == len(EXPECTED)
    for (_, row), (name, M, last, avg, forg, chosen) in zip(raw.iterrows(), EXPECTED):
        assert row["Method"] == name and row["Chosen"] == chosen
        assert pd.isna(row["Memory"]) if M is None else row["Memory"] == M
        assert row["Last"] == pytest.approx(last) and row["Avg"] == pytest.approx(avg)
        assert row["Forgetting"] == pytest.approx(forg)
    assert list(shown["Memory"]) == ["–", "0", "10", "0", "10", "–"]
    assert list(shown["Forgetting"]) == ["0.00", "41.25", "25.00", "20.00", "12.34", "1.00"]
    assert list(shown["Avg"])[3] == "57.00"
    for phrase in ("class_il (class-incremental)", "Last = A_T", "Avg = (1/T) sum_t A_t", "Forgetting",
                   "validation A_T", "GCL and GDRO are reconstructions", "(docs/memclip.md)"):
        assert phrase in caption


def test_methods_argument_orders_memory_methods():
    raw, _, _ = memclip_table(make_rows(), "domain_il", ["gcl", "finetune", "joint"], SIZES)
    assert list(raw["Method"]) == ["Zero-shot", "GCL", "GCL", "Fine-tune", "Fine-tune", "Joint (upper bound)"]
    assert list(raw["Last"].round(6)) == [32.0, 48.0, 63.0, 44.0, 58.0, 69.0]


def test_unknown_method_shown_as_is():
    runs = dict(RUNS)
    runs[("class_il", "mystery", 0)] = ([0.5, 0.5, 0.5], 0.0, None)
    raw, _, _ = memclip_table(make_rows(runs), "class_il", ["mystery"], [0])
    assert list(raw["Method"]) == ["Zero-shot", "mystery", "Joint (upper bound)"]


def test_missing_combination_raises():
    rows = make_rows()
    gone = (rows.scenario == "class_il") & (rows.method == "gcl") & (rows.variant == "10") & (rows.metric == "last")
    with pytest.raises(ValueError, match=r"gcl M=10 \(last\)"):
        memclip_table(rows[~gone], "class_il", METHODS, SIZES)
    with pytest.raises(ValueError, match="finetune M=20.*gcl M=20"):
        memclip_table(make_rows(), "class_il", METHODS, [0, 10, 20])
    with pytest.raises(ValueError, match="joint M=-"):
        memclip_table(make_rows({k: v for k, v in RUNS.items() if k[1] != "joint"}), "class_il", METHODS, SIZES)
    with pytest.raises(ValueError, match="memory_sizes"):
        memclip_table(make_rows(), "class_il", METHODS, [0, 0])


def test_write_tables(tmp_path):
    paths = write_memclip_tables(make_rows(), tmp_path, {"class_il": "class", "domain_il": "domain"}, METHODS,
                                 {"class_il": SIZES, "domain_il": [0]})
    assert [p.name for p in paths] == [f"{b}_table.{f}" for b in ("class_il", "domain_il")
                                       for f in ("csv", "md", "tex", "html")]
    csv = pd.read_csv(tmp_path / "class_il_table.csv")
    assert csv["Last"].round(6).tolist() == [40.0, 30.0, 45.0, 39.0, 57.0, 71.0]
    assert math.isnan(csv["Memory"][0]) and csv["Memory"][4] == 10
    md = (tmp_path / "class_il_table.md").read_text()
    assert "| GCL " in md and "12.34" in md and "class-incremental" in md
    assert "domain-incremental" in (tmp_path / "domain_il_table.md").read_text()
    assert len(pd.read_csv(tmp_path / "domain_il_table.csv")) == 4  # zero-shot, fine-tune, GCL at M=0, joint


def check_png(path, min_width):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with Image.open(path) as im:
        assert im.width >= min_width and im.getextrema()[0][0] < 100  # something dark is drawn
    return data


def test_figure1_deterministic(tmp_path):
    rows, benchmarks = make_rows(), {"class_il": "class", "domain_il": "domain"}
    a = check_png(figure1(rows, benchmarks, METHODS, {"class_il": SIZES, "domain_il": SIZES}, tmp_path / "a.png"),
                  800)
    b = figure1(rows, benchmarks, METHODS, {"class_il": SIZES, "domain_il": SIZES}, tmp_path / "b.png").read_bytes()
    assert a == b
    with pytest.raises(ValueError, match="gcl M=40"):
        figure1(rows, benchmarks, METHODS, {"class_il": [0, 40], "domain_il": SIZES}, tmp_path / "c.png")


def test_accuracy_curves(tmp_path):
    rows = make_rows()
    a = check_png(accuracy_curves(rows, "class_il", METHODS, SIZES, tmp_path / "a.png", scenario="class"), 800)
    assert a == accuracy_curves(rows, "class_il", METHODS, SIZES, tmp_path / "b.png", scenario="class").read_bytes()
    # a memory method missing A_t after a task raises, naming it
    gone = (rows.method == "finetune") & (rows.variant == "0") & (rows.train_step == "1")
    with pytest.raises(ValueError, match=r"finetune M=0 \(tasks \[1\]\)"):
        accuracy_curves(rows[~gone], "class_il", METHODS, SIZES, tmp_path / "c.png")
    # joint with only final rows: drawn as its final Last, a different picture
    no_steps = (rows.method == "joint") & (rows.train_step != "final")
    d = accuracy_curves(rows[~no_steps], "class_il", METHODS, SIZES, tmp_path / "d.png").read_bytes()
    assert d != a


def test_a_method_without_memory_and_per_benchmark_methods(tmp_path):
    """CaSSLe runs once without memory in the domain-incremental benchmark only: one row (memory
    –) after the memory methods and before joint there, absent from the class-incremental table;
    Figure 1 and the curves draw it beside every memory size."""
    runs = dict(RUNS)
    runs[("domain_il", "cassle", None)] = ([0.65, 0.45, 0.35], 0.3, "lr=1e-05")
    rows = make_rows(runs)
    methods = {"class_il": ["finetune", "gcl"], "domain_il": ["finetune", "cassle", "gcl"]}
    raw, shown, _ = memclip_table(rows, "domain_il", methods["domain_il"], SIZES, memoryless=["cassle"])
    assert list(raw["Method"]) == ["Zero-shot", "Fine-tune", "Fine-tune", "GCL", "GCL", "CaSSLe",
                                   "Joint (upper bound)"]
    assert list(shown["Memory"]) == ["–", "0", "10", "0", "10", "–", "–"]
    assert raw.loc[5, "Last"] == pytest.approx(35.0) and raw.loc[5, "Avg"] == pytest.approx(48.333333)
    # without saying it runs without memory, its per-M rows are expected and missing
    with pytest.raises(ValueError, match="cassle M=0"):
        memclip_table(rows, "domain_il", methods["domain_il"], SIZES)
    write_memclip_tables(rows, tmp_path, {"class_il": "class", "domain_il": "domain"}, methods, SIZES,
                         memoryless=["cassle"])
    assert "| CaSSLe" not in (tmp_path / "class_il_table.md").read_text()
    assert "| CaSSLe" in (tmp_path / "domain_il_table.md").read_text()
    figure1(rows, ["class_il", "domain_il"], methods, SIZES, tmp_path / "fig1.png", memoryless=["cassle"])
    accuracy_curves(rows, "domain_il", methods["domain_il"], SIZES, tmp_path / "curves.png", memoryless=["cassle"])
    assert Image.open(tmp_path / "fig1.png").size[0] > 0 and Image.open(tmp_path / "curves.png").size[0] > 0
