"""Table writers: one table, computed once, written as ``stem.csv`` (raw numbers), ``stem.md``
(GitHub Markdown), ``stem.tex`` (a booktabs ``tabular``) and ``stem.html`` (a standalone page
that Snakemake's HTML report shows inline), the last three from the same rendered strings and
with the same caption."""
from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

FORMATS = ("csv", "md", "tex", "html")
#: Unicode marks the tables use, as LaTeX writes them
LATEX_SYMBOLS = {"\u2020": r"$^\dagger$", "\u2013": "--"}
_HTML_STYLE = ("body{font-family:sans-serif;margin:1em}"
               "figcaption{max-width:60em;margin-bottom:.8em;line-height:1.4}"
               "table{border-collapse:collapse}th,td{padding:.25em .6em;border-bottom:1px solid #ddd}"
               "th{border-bottom:2px solid #444;text-align:center}td{text-align:right}"
               "td:first-child,th:first-child{text-align:left}")


def number_formatter(fmt: str, nan: str = "–") -> Callable[[object], str]:
    """A cell formatter: ``fmt`` (``str.format`` syntax, e.g. ``"{:.1f}"``) for a number, ``nan``
    for a missing one."""
    return lambda x: nan if pd.isna(x) else fmt.format(float(x))


def render(df: pd.DataFrame, formats: Mapping[str, Callable[[object], str]], nan: str = "–") -> pd.DataFrame:
    """``df`` as strings: each column in ``formats`` through its formatter, the others with
    ``str`` (a missing value as ``nan``)."""
    out = df.astype(object).copy()
    for col in df.columns:
        fmt = formats.get(col)
        out[col] = df[col].map(fmt if fmt else (lambda x: nan if pd.isna(x) else str(x)))
    return out


def to_markdown(shown: pd.DataFrame, caption: str) -> str:
    """GitHub Markdown: the caption, a blank line, a pipe table (first column left-aligned, the
    others right-aligned), the strings of ``shown`` as they are."""
    body = shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                             colalign=["left"] + ["right"] * (len(shown.columns) - 1))
    return f"{caption}\n\n{body}\n"


def to_latex(shown: pd.DataFrame, caption: str, groups: Mapping[str, tuple[str, str]] | None = None) -> str:
    r"""A booktabs ``tabular`` of the strings of ``shown`` (escaped), the caption as a comment.

    ``groups`` maps a column to ``(group, header)``: columns with the same non-empty group get a
    spanning header over a ``\cmidrule``, as a paper's two-level header.
    """
    table = shown.copy()
    if groups:
        table.columns = pd.MultiIndex.from_tuples([groups.get(c, ("", c)) for c in table.columns])
    tex = table.to_latex(index=False, escape=True, multicolumn=True, multicolumn_format="c",
                         column_format="l" + "r" * (len(shown.columns) - 1))
    lines = tex.splitlines()
    if groups:
        top = lines.index(r"\toprule")
        lines.insert(top + 2, _cmidrules(list(table.columns)))
    tex = f"% {caption}\n" + "\n".join(lines) + "\n"
    for symbol, latex in LATEX_SYMBOLS.items():
        tex = tex.replace(symbol, latex)
    return tex


def _cmidrules(columns: list[tuple[str, str]]) -> str:
    r"""``\cmidrule`` under each named header group (1-based column spans)."""
    rules, start = [], 0
    for k in range(1, len(columns) + 1):
        if k == len(columns) or columns[k][0] != columns[start][0]:
            if columns[start][0]:
                rules.append(rf"\cmidrule(lr){{{start + 1}-{k}}}")
            start = k
    return " ".join(rules)


def to_html(shown: pd.DataFrame, caption: str, title: str | None = None) -> str:
    """A standalone HTML page: the caption over the table (the strings of ``shown``, escaped)."""
    table = shown.to_html(index=False, escape=True, border=0, na_rep="–")
    title = html.escape(title or caption.split(". ")[0])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_HTML_STYLE}</style></head>\n<body><figure><figcaption>{html.escape(caption)}</figcaption>\n"
            f"{table}\n</figure></body></html>\n")


SPREAD_SUFFIX = " ±95%"


def spread_note(seeds: int) -> str:
    """What a table's ``±`` means, for its caption."""
    return (f" Mean over {seeds} seeds ± half the width of the 95% Student-t interval across seeds; "
            "bootstrap intervals over test samples: intervals.csv beside the tables.")


def with_spread(shown: pd.DataFrame, half: pd.DataFrame, half_shown: pd.DataFrame) -> pd.DataFrame:
    """``shown`` with ``" ± <half_shown>"`` after each cell whose ``half`` (the half-width of its
    interval, a frame of some of ``shown``'s columns) is a number."""
    out = shown.copy()
    for col in half.columns:
        has = half[col].notna().to_numpy()
        out.loc[has, col] = out.loc[has, col].astype(str) + " ± " + half_shown.loc[has, col].astype(str)
    return out


def write_table(raw: pd.DataFrame, stem, caption: str, *, shown: pd.DataFrame | None = None,
                groups: Mapping[str, tuple[str, str]] | None = None,
                formats: Sequence[str] = FORMATS, spread: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                seeds: int = 1) -> list[Path]:
    """Write ``stem.<format>`` for each of ``formats``; return the paths, in that order.

    CSV holds ``raw`` (numbers as computed); Markdown, LaTeX (``groups``: ``to_latex``) and HTML
    hold ``shown`` (``raw`` rendered as strings; default ``render(raw, {})``) under ``caption``.
    ``spread``: ``(half, half_shown)``, the half-widths of the seeds' 95% intervals of a table that
    is a mean over ``seeds`` seeds (``uncertainty.mean_over_seeds``) and those as text; with more
    than one seed the cells show ``mean ± half`` and the CSV gains a ``<column> ±95%`` column each.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"write_table: unknown format(s) {unknown}; known: {list(FORMATS)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    shown = render(raw, {}) if shown is None else shown
    if list(shown.columns) != list(raw.columns):
        raise ValueError(f"write_table: the rendered columns {list(shown.columns)} are not the table's "
                         f"{list(raw.columns)}")
    if spread is not None and seeds > 1:
        half, half_shown = spread
        shown = with_spread(shown, half, half_shown)
        raw = raw.copy()
        for col in half.columns:
            raw[f"{col}{SPREAD_SUFFIX}"] = half[col].to_numpy()
        caption = caption.rstrip() + spread_note(seeds)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        if fmt == "csv":
            raw.to_csv(path, index=False, lineterminator="\n")
        else:
            text = {"md": lambda: to_markdown(shown, caption), "tex": lambda: to_latex(shown, caption, groups),
                    "html": lambda: to_html(shown, caption)}[fmt]()
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
