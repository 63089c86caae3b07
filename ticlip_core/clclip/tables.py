"""CL-CLIP tables (Ding et al., Tables III-VIII) and Fig. 4, from the runs' rows (the one row
schema, ``ticlip_core.rows``) and the runs' compute records; written and drawn by the
reporting layer (``ticlip_core.reporting``). Metric definitions: docs/metrics.md."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from ticlip_core import rows as row_schema
from ticlip_core.reporting import figures, tables as reporting
from ticlip_core.reporting.uncertainty import spread_frame

COLUMNS = {"ut_acc": "UT-Acc", "zs_acc": "ZS-Acc", "TR@1": "TR@1", "TR@5": "TR@5", "IR@1": "IR@1", "IR@5": "IR@5",
           "a_acc": "A-Acc", "bwt": "Bwt"}
COMPUTE_COLUMNS = {"macs": "Compute (GMACs)", "search_macs": "Search (GMACs)"}
#: the fields of a record of ``runs/{method}.compute.json`` (one per setting and variant)
COMPUTE_FIELDS = ("setting", "method", "variant", "samples", "macs", "extra_macs", "seconds", "search_macs")
METHOD_NAMES = {"original": "Original CLIP", "ft": "FT", "joint_ft": "Joint-FT", "lwf": "LwF", "geodl": "GeoDL",
                "imm": "IMM", "rkr": "RKR", "vr_lwf": "VR-LwF"}
CAPTIONS = {
    "table3_ost": "Table III: one-session training (OST)",
    "table4_mst": "Table IV: multi-session training (MST)",
    "table5_ost_length": "Table V: OST, VR-LwF-WM, sampling length M and caption replay",
    "table6_ost_num_pseudo": "Table VI: OST, VR-LwF-WM, number Ks of pseudo-sentences",
    "table7_mst_length": "Table VII: MST, VR-LwF-WM, sampling length M and caption replay",
    "table8_mst_num_pseudo": "Table VIII: MST, VR-LwF-WM, number Ks of pseudo-sentences",
}
NOTE = ("Scores in %. UT-Acc: update-task test accuracy among all update classes (OST: over all samples; "
        "MST: mean over sessions of the accuracy on each session's classes after the last one, a session's "
        "accuracy being the mean of its classes' accuracies). ZS-Acc: held-out classes, prompt 'this is a "
        "photo of [class].'. TR/IR@k: image->text / text->image recall (mean over folds). A-Acc = (UT-Acc + "
        "ZS-Acc) / 2. Bwt = 1/(S-1) sum_{i<S} (Acc_S,i - Acc_i,i). Hyperparameter: the value chosen by "
        "validation A-Acc. Definitions: docs/metrics.md.")
COMPUTE_NOTE = ("Compute: training GMACs of the chain reported (every session; a teacher's or other extra "
                "forward passes included; 0 for the original model). Search: training GMACs of every chain run "
                "to choose the hyperparameter on validation, the reported one included.")


def read_rows(paths) -> pd.DataFrame:
    """The runs' row files in one checked frame (``rows.read_rows``)."""
    return row_schema.read_rows(paths)


def read_compute(paths) -> pd.DataFrame:
    """The runs' compute records (``runs/{method}.compute.json``: a JSON list of records with the
    fields ``COMPUTE_FIELDS``, one per setting and variant) in one frame; a file that is not such
    a list, or a record missing a field, raises naming the file."""
    records = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, list):
            raise ValueError(f"{path}: a compute file holds a JSON list of records, got {type(data).__name__}")
        for record in data:
            missing = [f for f in COMPUTE_FIELDS if not isinstance(record, dict) or f not in record]
            if missing:
                raise ValueError(f"{path}: compute record {record!r} lacks field(s) {missing}")
            records.append({f: record[f] for f in COMPUTE_FIELDS})
    df = pd.DataFrame(records, columns=list(COMPUTE_FIELDS))
    for col in ("setting", "method", "variant"):
        df[col] = df[col].map(row_schema.text).str.lower()
    return df


def _label(method: str, variant: str) -> str:
    name = METHOD_NAMES.get(method, method)
    return name if variant in (row_schema.NA, "") else f"{name}-{variant.upper()}"


def _compute_of(compute: pd.DataFrame, setting: str, method: str, variant: str) -> pd.Series:
    """The one compute record of (setting, method, variant)."""
    hit = compute[(compute["setting"] == setting) & (compute["method"] == method.lower())
                  & (compute["variant"] == variant.lower())]
    if len(hit) != 1:
        raise ValueError(f"compute records: {'no' if hit.empty else len(hit)} record(s) for setting {setting!r}, "
                         f"method {method!r}, variant {variant!r} (runs/{method}.compute.json of the clclip_run "
                         "rule holds one per setting and variant)")
    return hit.iloc[0]


def method_table(rows: pd.DataFrame, setting: str, compute: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table III (OST) or IV (MST): one row per method and variant, in the paper's method order
    (the original model first; a method it lacks after those, in the order its rows came);
    headline scores in %, with ``compute`` records the chain's compute and its hyperparameter
    search's (GMACs), and the chosen hyperparameter."""
    rows = row_schema.frame(rows)
    final = rows[(rows["scenario"] == setting) & (rows["train_step"] == row_schema.FINAL_STEP)]
    keys = list(dict.fromkeys(zip(final["method"], final["variant"])))
    order = list(METHOD_NAMES)
    keys.sort(key=lambda k: order.index(k[0]) if k[0] in order else len(order))
    out = []
    for method, variant in keys:
        sel = final[(final["method"] == method) & (final["variant"] == variant)]
        scores = dict(zip(sel["metric"], sel["value"].astype(float)))
        row = {"Method": _label(method, variant)}
        for metric, column in COLUMNS.items():
            if metric == "bwt" and setting != "mst":
                continue
            row[column] = 100 * scores[metric] if metric in scores else float("nan")
        if compute is not None:
            record = _compute_of(compute, setting, method, variant)
            for field, column in COMPUTE_COLUMNS.items():
                row[column] = float(record[field]) / 1e9
        hp, chosen = sel["hyperparameter"].iloc[0], sel["chosen"].iloc[0]
        row["Hyperparameter"] = f"{hp}={chosen}" if hp != row_schema.NA else ""
        out.append(row)
    return pd.DataFrame(out)


def render_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table as strings: scores with two decimals, GMACs with three significant digits."""
    formats = {c: reporting.number_formatter("{:.2f}", "--") for c in COLUMNS.values()}
    formats.update({c: reporting.number_formatter("{:.3g}", "--") for c in COMPUTE_COLUMNS.values()})
    return reporting.render(df, formats)


def caption(name: str, df: pd.DataFrame) -> str:
    """The caption of table ``name``: the paper's table, what the columns mean."""
    compute = COMPUTE_NOTE + " " if COMPUTE_COLUMNS["macs"] in df.columns else ""
    return f"{CAPTIONS[name]}. {NOTE} {compute}".rstrip()


def write_table(df: pd.DataFrame, stem: Path, name: str, spread: pd.DataFrame | None = None,
                seeds: int = 1) -> list[Path]:
    """``stem.csv`` (numbers as computed), ``stem.md``, ``stem.tex`` and ``stem.html`` (two
    decimals, with the caption of table ``name``). ``spread``: the half-widths of the seeds'
    intervals of a mean over ``seeds`` seeds (``uncertainty.mean_over_seeds``)."""
    shown_spread = None if spread is None else (spread, render_table(spread_frame(df, spread))[list(spread.columns)])
    return reporting.write_table(df, stem, caption(name, df), shown=render_table(df), spread=shown_spread, seeds=seeds)


TABLE_NUMBER = {("ost", "length"): 5, ("ost", "num_pseudo"): 6, ("mst", "length"): 7, ("mst", "num_pseudo"): 8}


def study_tables(runs: pd.DataFrame, ablations: dict[str, pd.DataFrame], compute: pd.DataFrame,
                 ablation_compute: pd.DataFrame, settings) -> dict[str, pd.DataFrame]:
    """Tables III-VIII by name (``table3_ost``...) from one seed's rows: the methods' ``runs``, each
    ablation's rows (``ablations[name]``, name ``length`` or ``num_pseudo``) and their compute records."""
    tables = {("table3_ost" if s == "ost" else "table4_mst"): method_table(runs[runs["scenario"] == s], s, compute)
              for s in settings}
    both = pd.concat([compute, ablation_compute], ignore_index=True)
    for ablation, rows in ablations.items():
        for setting in settings:
            original = runs[(runs["scenario"] == setting) & (runs["method"] == "original")]
            tables[f"table{TABLE_NUMBER[setting, ablation]}_{setting}_{ablation}"] = method_table(
                pd.concat([original, rows[rows["scenario"] == setting]]), setting, both)
    return tables


def session_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """MST per-session test UT-Acc so far and ZS-Acc, per method and variant (Fig. 4's data)."""
    rows = row_schema.frame(rows)
    sel = rows[(rows["scenario"] == "mst") & (rows["train_step"] != row_schema.FINAL_STEP)
               & rows["metric"].isin(["ut_acc", "zs_acc"])]
    return sel.assign(session=sel["train_step"].astype(int), value=sel["value"].astype(float))


FIG4_CAPTION = ("CL-CLIP, multi-session training: UT-Acc (top) and ZS-Acc (bottom) after each session, one "
                "column per update variant (Ding et al., Fig. 4)")


def plot_sessions(rows: pd.DataFrame, path: Path) -> Path:
    """Fig. 4: UT-Acc (top) and ZS-Acc (bottom) after each MST session, one column per variant
    (WM, IO, TO); the original model and Joint-FT drawn in every panel as bounds. A
    deterministic PNG (``reporting.figures``)."""
    curves = session_curves(rows)
    fig, axes = figures.new_figure(13, 7, ncols=3, nrows=2, sharex=True)
    style = {"original": dict(color="black", ls="--"), "joint_ft": dict(color="grey", ls=":")}
    for col, variant in enumerate(["wm", "io", "to"]):
        for row, metric in enumerate(["ut_acc", "zs_acc"]):
            ax = axes[row][col]
            data = curves[curves["metric"] == metric]
            for (method, var), group in data.groupby(["method", "variant"], sort=False):
                if var != variant and method not in ("original", "joint_ft"):
                    continue
                if method == "joint_ft" and var != "wm":
                    continue  # the upper bound: Joint-FT of the whole model
                ax.plot(group["session"] + 1, 100 * group["value"], marker="o", ms=3,
                        label=_label(method, var), **style.get(method, {}))
            ax.set_title(f"{variant.upper()}: {COLUMNS[metric]}")
            ax.set_xlabel("session")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("%")
            ax.grid(alpha=0.3)
            if curves.empty:
                ax.text(0.5, 0.5, "no MST run in this config", ha="center", transform=ax.transAxes)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 8), fontsize=8)
    fig.suptitle(FIG4_CAPTION)
    return figures.save(fig, path)
