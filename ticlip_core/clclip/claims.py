"""Ding et al.'s findings ("Don't Stop Learning") as checks over Tables III-VIII (``reporting.findings``).

Cells are in %; margins in points."""
from __future__ import annotations

from ticlip_core.clclip.tables import METHOD_NAMES
from ticlip_core.reporting.findings import Cell, Claim, Comparison

TABLES = {"ost": "clclip.table3_ost", "mst": "clclip.table4_mst"}
ABLATIONS = {("ost", "length"): "clclip.table5_ost_length", ("ost", "num_pseudo"): "clclip.table6_ost_num_pseudo",
             ("mst", "length"): "clclip.table7_mst_length", ("mst", "num_pseudo"): "clclip.table8_mst_num_pseudo"}
ORIGINAL = METHOD_NAMES["original"]
#: the methods compared with one another (Joint-FT is an upper bound, not a continual method)
CONTINUAL = ("ft", "lwf", "geodl", "imm", "rkr", "vr_lwf")


def label(method: str, variant: str) -> str:
    """A method's row label in Tables III/IV (``FT-WM``)."""
    return f"{METHOD_NAMES.get(method, method)}-{variant.upper()}"


def claims(config: dict) -> list[Claim]:
    """The CL-CLIP claims for ``config``'s settings, methods and ablations."""
    cc = config["clclip"]
    settings = list(cc["settings"])
    methods = [m for m in CONTINUAL if m in cc["methods"]]
    cell = lambda s, row, col: Cell(TABLES[s], {"Method": row}, col)  # noqa: E731
    out = [
        Claim("clclip", "ft_forgets", "Fine-tuning forgets: ZS-Acc and retrieval (TR@1, IR@1) of FT-WM drop below "
              "the original CLIP's",
              [Comparison(cell(s, ORIGINAL, c), ">", cell(s, label("ft", "wm"), c))
               for s in settings for c in ("ZS-Acc", "TR@1", "IR@1")]),
        Claim("clclip", "to_safest", "TO is the safest variant: each method's text-only variant keeps ZS-Acc, TR@1 "
              "and IR@1 at least as high as its whole-model variant (within 1 point)",
              [Comparison(cell(s, label(m, "to"), c), ">=", cell(s, label(m, "wm"), c), 1.0)
               for s in settings for m in methods for c in ("ZS-Acc", "TR@1", "IR@1")]),
        Claim("clclip", "rkr_keeps_zero_shot", "RKR keeps zero-shot best: RKR-WM's ZS-Acc is above every other "
              "continual method's (WM)",
              [Comparison(cell(s, label("rkr", "wm"), "ZS-Acc"), ">", cell(s, label(m, "wm"), "ZS-Acc"))
               for s in settings for m in methods if m != "rkr"]),
        Claim("clclip", "rkr_learns_least", "RKR learns least: RKR-WM's UT-Acc is below every other continual "
              "method's (WM)",
              [Comparison(cell(s, label(m, "wm"), "UT-Acc"), ">", cell(s, label("rkr", "wm"), "UT-Acc"))
               for s in settings for m in methods if m != "rkr"]),
        Claim("clclip", "vr_lwf_best_a_acc", "VR-LwF has the best A-Acc: VR-LwF-WM above every other continual "
              "method and variant",
              [Comparison(cell(s, label("vr_lwf", "wm"), "A-Acc"), ">", cell(s, label(m, v), "A-Acc"))
               for s in settings for m in methods if m != "vr_lwf" for v in cc["variants"]]),
    ]
    ab = cc["ablations"]
    if "vr_lwf" in cc["methods"]:
        comps = []
        for s in settings:
            for name, values, key in (("length", ab["length"], "M"), ("num_pseudo", ab["num_pseudo"], "Ks")):
                lo, hi = min(values), max(values)
                if lo != hi:
                    comps.append(Comparison(Cell(ABLATIONS[s, name], {"Method": label(f"{key}={hi}", "wm")}, "A-Acc"),
                                            ">", Cell(ABLATIONS[s, name], {"Method": label(f"{key}={lo}", "wm")}, "A-Acc")))
        out.append(Claim("clclip", "ablation_trends", "VR-LwF's ablations: a longer sampling length M and more "
                         "pseudo-sentences Ks raise A-Acc (largest above smallest)", comps))
    return out


def labels(names) -> dict[str, list[str]]:
    """The columns that name a row of each table (for ``uncertainty.table_cells``)."""
    return {name: ["Method"] for name in names}


def paper_tables(parts: dict, compute, params: dict) -> dict:
    """Tables III-VIII from one seed's rows (``parts["runs"]``, and ``parts[<ablation>]``) and compute
    records (``compute``: the runs', the ablations'), named as the claims name them."""
    from ticlip_core.clclip.tables import study_tables

    ablations = {k: v for k, v in parts.items() if k != "runs"}
    tables = study_tables(parts["runs"], ablations, compute[0], compute[1], params["settings"])
    return {f"clclip.{name}": t for name, t in tables.items()}
