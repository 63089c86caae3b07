"""Claims as data: a paper's qualitative findings written once as comparisons of table cells, and
their verdicts at 95% (docs/metrics.md, "Findings").

A ``Claim`` is a conjunction of ``Comparison``s. A comparison reads two cells (a table, the labels of
a row, a column) and asks of their difference ``d = left - right``:

- ``">"``  left is above right by more than ``margin``: holds when the whole interval of ``d`` is
  above ``margin``, contradicted when none of it is (an exact tie contradicts "above");
- ``">="`` left is at least right, up to ``margin``: holds when the interval is above ``-margin``,
  contradicted when it is below;
- ``"~"``  left is within ``margin`` of right: holds when the interval lies inside
  ``[-margin, margin]``, contradicted when it lies outside;

otherwise it is inconclusive. The interval of ``d`` is its paired bootstrap interval over test
samples, widened to cover the seeds' Student-t interval when there are several seeds. A claim holds
when every comparison holds, is contradicted when one is, and is inconclusive otherwise; a claim
whose cells are not in the tables (a method or table turned off) is "not evaluated" and says which.
A row label ``"*"`` stands for every row of the table that is not the left cell's row (and matches
the other labels): "above every baseline".
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ticlip_core.reporting.uncertainty import percentile_interval, seed_interval

HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_EVALUATED = "holds", "contradicted", "inconclusive", "not evaluated"
OPS = (">", ">=", "~")
ANY = "*"


@dataclass(frozen=True)
class Cell:
    """One table cell: ``table`` (its name), ``row`` (labels the row must have), ``column``."""

    table: str
    row: Mapping[str, str]
    column: str

    def text(self) -> str:
        labels = ", ".join(str(v) for v in self.row.values())
        return f"{labels}: {self.column}"


@dataclass(frozen=True)
class Comparison:
    """``left op right`` with ``margin`` (in the table's units)."""

    left: Cell
    op: str
    right: Cell
    margin: float = 0.0
    scale: float | None = None  # display scale, when not the claim's (a compute column among scores)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"Comparison: op {self.op!r} is not one of {OPS}")
        if self.margin < 0:
            raise ValueError(f"Comparison: margin {self.margin} is negative")


@dataclass(frozen=True)
class Claim:
    """A paper's finding: ``text``, checked by every one of ``comparisons``. ``scale`` multiplies the
    tables' numbers for display (100: fractions shown as percent)."""

    study: str
    id: str
    text: str
    comparisons: Sequence[Comparison]
    scale: float = 1.0
    note: str = ""
    tags: Sequence[str] = field(default_factory=tuple)


def parse_row(row: str) -> dict[str, str]:
    """The labels of a cell row name ``"a=x;b=y"`` (``uncertainty.table_cells``)."""
    return dict(part.split("=", 1) for part in row.split(";")) if row else {}


def row_text(row: str) -> str:
    """A cell row name as the findings show it: the method alone, other labels as ``key=value``."""
    labels = parse_row(row)
    return ", ".join(v if k == "Method" else f"{k}={v}" for k, v in labels.items() if v != "-")


def _matches(labels: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(v == ANY or labels.get(k) == str(v) for k, v in want.items())


def _rows_of(cells: pd.DataFrame, cell: Cell) -> list[str]:
    names = cells.loc[(cells["table"] == cell.table) & (cells["column"] == cell.column), "row"].unique()
    return [r for r in names if _matches(parse_row(r), cell.row)]


def expand(comparison: Comparison, cells: pd.DataFrame) -> list[tuple[str, str]] | str:
    """The (left row, right row) pairs ``comparison`` reads in ``cells``, or the reason it cannot be read."""
    lefts = _rows_of(cells, comparison.left)
    if len(lefts) != 1:
        return f"{comparison.left.table} has {'no' if not lefts else len(lefts)} row(s) for {comparison.left.text()}"
    rights = [r for r in _rows_of(cells, comparison.right) if r != lefts[0]]
    if not rights or (ANY not in comparison.right.row.values() and len(rights) != 1):
        return f"{comparison.right.table} has {'no' if not rights else len(rights)} row(s) for {comparison.right.text()}"
    return [(lefts[0], r) for r in rights]


def judge(op: str, margin: float, lo: float, hi: float, tol: float = 1e-9) -> str:
    """The verdict of ``d op margin`` from the interval ``[lo, hi]`` of ``d``; bounds within ``tol`` of
    the margin count as on it (sums of float32 scores are not exact)."""
    if np.isnan(lo) or np.isnan(hi):
        return INCONCLUSIVE
    if op == ">":
        return HOLDS if lo > margin + tol else CONTRADICTED if hi <= margin + tol else INCONCLUSIVE
    if op == ">=":
        return HOLDS if lo >= -margin - tol else CONTRADICTED if hi < -margin - tol else INCONCLUSIVE
    if lo >= -margin - tol and hi <= margin + tol:
        return HOLDS
    return CONTRADICTED if (lo > margin + tol or hi < -margin - tol) else INCONCLUSIVE


def difference(cells: pd.DataFrame, draws: pd.DataFrame, table: str, left: tuple[str, str], right: tuple[str, str],
               level: float = 0.95) -> dict:
    """Estimate and intervals of ``left - right`` (each ``(row, column)`` of ``table``): the seeds'
    mean difference, its Student-t interval (NaN for one seed), the paired bootstrap interval of the
    seed-mean difference, and the interval the verdict uses (the union of the two)."""
    def pick(frame, rc):
        f = frame[(frame["table"] == table) & (frame["row"] == rc[0]) & (frame["column"] == rc[1])]
        return f

    a, b = pick(cells, left).set_index("seed")["value"], pick(cells, right).set_index("seed")["value"]
    per_seed = (a - b.reindex(a.index)).to_numpy()
    est, s_lo, s_hi = seed_interval(per_seed, level)
    da = pick(draws, left).groupby("draw")["value"].mean()
    db = pick(draws, right).groupby("draw")["value"].mean()
    b_lo, b_hi = percentile_interval((da - db.reindex(da.index)).to_numpy(), level) if len(da) else (np.nan, np.nan)
    lo, hi = (min(b_lo, s_lo), max(b_hi, s_hi)) if len(per_seed) > 1 else (b_lo, b_hi)
    return {"left_value": float(a.mean()), "right_value": float(b.mean()), "difference": est, "seeds": len(per_seed),
            "seed_lo": s_lo, "seed_hi": s_hi, "boot_lo": b_lo, "boot_hi": b_hi, "lo": lo, "hi": hi}


def evaluate_claims(claims: Sequence[Claim], cells: pd.DataFrame, draws: pd.DataFrame,
                    level: float = 0.95) -> pd.DataFrame:
    """One line per comparison read (``claim``-level verdict repeated on each), from the cells of every
    seed (``table, row, column, seed, value``) and their bootstrap draws (``+ draw``)."""
    out = []
    for claim in claims:
        lines, reasons = [], []
        for k, comp in enumerate(claim.comparisons):
            pairs = expand(comp, cells)
            if isinstance(pairs, str):
                reasons.append(pairs)
                continue
            for left_row, right_row in pairs:
                d = difference(cells, draws, comp.left.table, (left_row, comp.left.column),
                               (right_row, comp.right.column), level)
                lines.append({"study": claim.study, "claim": claim.id, "text": claim.text, "comparison": k,
                              "table": comp.left.table, "left": f"{row_text(left_row)}: {comp.left.column}",
                              "op": comp.op, "right": f"{row_text(right_row)}: {comp.right.column}", "margin": comp.margin, **d,
                              "verdict": judge(comp.op, comp.margin, d["lo"], d["hi"]),
                              "scale": claim.scale if comp.scale is None else comp.scale})
        if reasons:
            verdict = NOT_EVALUATED
            lines = [{"study": claim.study, "claim": claim.id, "text": claim.text, "verdict": NOT_EVALUATED,
                      "reason": "; ".join(reasons), "scale": claim.scale}]
        else:
            found = {line["verdict"] for line in lines}
            verdict = CONTRADICTED if CONTRADICTED in found else HOLDS if found == {HOLDS} else INCONCLUSIVE
        for line in lines:
            line["claim_verdict"] = verdict
            line.setdefault("reason", "")
            line["note"] = claim.note
        out += lines
    return pd.DataFrame(out)


def _fmt(x: float, scale: float) -> str:
    return "–" if pd.isna(x) else f"{round(scale * x, 1) + 0.0:.1f}"  # + 0.0: no "-0.0"


def evidence(lines: pd.DataFrame) -> str:
    """What a claim's verdict rests on, in words: each comparison that did not hold (all when all
    held, at most four)."""
    if lines["verdict"].iloc[0] == NOT_EVALUATED:
        return f"not evaluated: {lines['reason'].iloc[0]}"
    shown = lines[lines["verdict"] != HOLDS]
    shown = lines if shown.empty else shown
    parts = []
    for _, r in shown.head(4).iterrows():
        scale = float(r["scale"])
        interval = f"[{_fmt(r['lo'], scale)}, {_fmt(r['hi'], scale)}]"
        parts.append(f"{r['left']} {_fmt(r['left_value'], scale)} vs {r['right']} {_fmt(r['right_value'], scale)}: "
                     f"difference {_fmt(r['difference'], scale)} {interval}, needs {r['op']} "
                     f"{'-' if r['op'] == '>=' and r['margin'] else ''}{_fmt(r['margin'], scale) if r['margin'] else '0'}"
                     f" ({r['verdict']})")
    more = len(shown) - 4
    held = int((lines["verdict"] == HOLDS).sum())
    tail = f"; {more} more" if more > 0 else ""
    return f"{held} of {len(lines)} comparisons hold. " + "; ".join(parts) + tail


def findings_table(results: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: study, claim, verdict, evidence."""
    out = []
    for (study, claim), lines in results.groupby(["study", "claim"], sort=False):
        out.append({"Study": study, "Claim": lines["text"].iloc[0], "Verdict": lines["claim_verdict"].iloc[0],
                    "Evidence (95% intervals)": evidence(lines), "Note": lines["note"].iloc[0]})
    return pd.DataFrame(out)


STUDY_TITLES = {"tic": "TiC-CLIP (Garg et al.)", "clclip": "Don't Stop Learning (Ding et al.)",
                "memclip": "Memory-efficient CL with CLIP (GCL, GDRO)"}


def not_evaluated(claims: Sequence[Claim], reason: str) -> pd.DataFrame:
    """Lines for claims that cannot be read at all (their study is turned off)."""
    return pd.DataFrame([{"study": c.study, "claim": c.id, "text": c.text, "verdict": NOT_EVALUATED,
                          "claim_verdict": NOT_EVALUATED, "reason": reason, "scale": c.scale, "note": c.note}
                         for c in claims])


def write_findings(results: pd.DataFrame, stem, method_note: str) -> list:
    """``stem.csv`` (every comparison, with its numbers and intervals), ``stem.md`` and ``stem.html``
    (one line per claim, by study, under ``method_note``)."""
    from ticlip_core.reporting import tables as reporting

    stem = Path(stem)
    results.to_csv(stem.with_suffix(".csv"), index=False, lineterminator="\n")
    table = findings_table(results)
    counts = table["Verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_EVALUATED))
    md = [f"# Do the papers' findings hold here?\n\n{method_note}\n\n{len(table)} claims: {summary}.\n"]
    for study, part in table.groupby("Study", sort=False):
        shown = part.drop(columns=["Study"])
        shown["Verdict"] = "**" + shown["Verdict"] + "**"
        md.append(f"## {STUDY_TITLES.get(study, study)}\n\n" + reporting.to_markdown(shown, "").lstrip())
    stem.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    html = reporting.to_html(table, f"Do the papers' findings hold here? {method_note} {len(table)} claims: {summary}.",
                             title="Findings")
    stem.with_suffix(".html").write_text(html, encoding="utf-8")
    return [stem.with_suffix(s) for s in (".csv", ".md", ".html")]


def method_note(draws: int, seed: int, level: float, seeds: Sequence[int]) -> str:
    """How the verdicts were reached, for the report's head."""
    pct = f"{100 * level:g}%"
    seeds_txt = (f"{len(seeds)} replicate seeds ({', '.join(map(str, seeds))}): the estimate is their mean, and the "
                 f"interval of a difference also covers the seeds' {pct} Student-t interval"
                 if len(seeds) > 1 else f"one replicate seed ({seeds[0]}): intervals cover test samples only")
    return (f"Each claim is a set of comparisons of table cells (docs/metrics.md, \"Findings\"); a comparison "
            f"holds when the whole {pct} interval of the difference is on the claim's side of its margin, is "
            f"contradicted when it is wholly on the other side, and is inconclusive otherwise. Intervals: a "
            f"paired bootstrap over test samples ({draws} draws, resampling seed {seed}; every method is "
            f"resampled on the same samples); {seeds_txt}.")
