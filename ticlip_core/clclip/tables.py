"""CL-CLIP tables (Ding et al., Tables III-VIII) and Fig. 4, from the runs' long-format rows."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

COLUMNS = {"ut_acc": "UT-Acc", "zs_acc": "ZS-Acc", "TR@1": "TR@1", "TR@5": "TR@5", "IR@1": "IR@1", "IR@5": "IR@5",
           "a_acc": "A-Acc", "bwt": "Bwt"}
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
        "MST: mean over sessions after the last one). ZS-Acc: held-out classes, prompt 'this is a photo of "
        "[class].'. TR/IR@k: image->text / text->image recall. A-Acc = (UT-Acc + ZS-Acc) / 2. Bwt = "
        "1/(S-1) sum_{i<S} (Acc_S,i - Acc_i,i). Hyperparameter: the value chosen by validation A-Acc.")


def read_rows(paths) -> pd.DataFrame:
    """Concatenate the runs' row files (session kept as a string: an index or ``final``)."""
    return pd.concat([pd.read_csv(p, dtype={"session": str, "chosen": str}, keep_default_na=False)
                      for p in paths], ignore_index=True)


def _label(method: str, variant: str) -> str:
    name = METHOD_NAMES.get(method, method)
    return name if variant in ("-", "") else f"{name}-{variant.upper()}"


def method_table(rows: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Table III (OST) or IV (MST): one row per method and variant, in the paper's method order
    (the original model first; a method it lacks after those, in the order its rows came);
    headline scores in % and the chosen hyperparameter."""
    final = rows[(rows["setting"] == setting) & (rows["session"] == "final")]
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
        hp, chosen = sel["hyperparameter"].iloc[0], sel["chosen"].iloc[0]
        row["Hyperparameter"] = f"{hp}={chosen}" if hp else ""
        out.append(row)
    return pd.DataFrame(out)


def session_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """MST per-session test UT-Acc so far and ZS-Acc, per method and variant (Fig. 4's data)."""
    sel = rows[(rows["setting"] == "mst") & (rows["session"] != "final") & rows["metric"].isin(["ut_acc", "zs_acc"])]
    return sel.assign(session=sel["session"].astype(int), value=sel["value"].astype(float))


def write_table(df: pd.DataFrame, stem: Path, caption: str) -> None:
    """``stem.csv`` (numbers as computed), ``stem.md`` and ``stem.tex`` (two decimals, caption)."""
    stem = Path(stem)
    df.to_csv(stem.with_suffix(".csv"), index=False, lineterminator="\n")
    shown = df.copy()
    for col in shown.columns[1:]:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "--" if pd.isna(v) else f"{v:.2f}")
    stem.with_suffix(".md").write_text(f"{caption}. {NOTE}\n\n{shown.to_markdown(index=False)}\n", encoding="utf-8")
    tex = shown.to_latex(index=False, escape=True, column_format="l" + "r" * (len(shown.columns) - 1))
    stem.with_suffix(".tex").write_text(f"% {caption}. {NOTE}\n{tex}", encoding="utf-8")


def plot_sessions(rows: pd.DataFrame, path: Path) -> None:
    """Fig. 4: UT-Acc (top) and ZS-Acc (bottom) after each MST session, one column per variant
    (WM, IO, TO); the original model and Joint-FT drawn in every panel as bounds."""
    curves = session_curves(rows)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True, squeeze=False)
    for col, variant in enumerate(["wm", "io", "to"]):
        for row, metric in enumerate(["ut_acc", "zs_acc"]):
            ax = axes[row][col]
            data = curves[curves["metric"] == metric]
            for (method, var), group in data.groupby(["method", "variant"], sort=False):
                if var != variant and method not in ("original", "joint_ft"):
                    continue
                if method == "joint_ft" and var != "wm":
                    continue  # the upper bound: Joint-FT of the whole model
                style = {"original": dict(color="black", ls="--"), "joint_ft": dict(color="grey", ls=":")}
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
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8)
    fig.suptitle("CL-CLIP, multi-session training: accuracy after each session (Ding et al., Fig. 4)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
