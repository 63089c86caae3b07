"""The one long-format row schema of every study's evaluation results (docs/metrics.md, "Rows").

One row is one number: ``value`` of ``metric`` for the model of ``method`` (in ``variant``,
with its tuned ``hyperparameter`` at the ``chosen`` value) trained through ``train_step`` of
``scenario``, evaluated on ``task`` at ``eval_step``. TiC's evaluation CSVs (one per
checkpoint) and CL-CLIP's run CSVs (one per method) both hold these columns, in this order.
``NA`` (``"-"``) marks a column that does not apply (TiC has no variant; the original CLIP no
hyperparameter); it survives a CSV round trip, which an empty string does not.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

COLUMNS = ("study", "scenario", "method", "variant", "hyperparameter", "chosen", "train_step", "task",
           "eval_step", "metric", "value")
#: what identifies a row: at most one value per key (the hyperparameter and chosen value describe
#: the run, they do not tell two rows apart)
KEY = ("study", "scenario", "method", "variant", "train_step", "task", "eval_step", "metric")
#: columns a hand-made or older row file may leave out: they default to NA
OPTIONAL = ("scenario", "variant", "hyperparameter", "chosen")
NA = "-"
#: ``eval_step`` of a task that is not one step's data (TiC's static tasks)
STATIC_EVAL_STEP = "static"
#: ``train_step`` of the headline scores of a finished chain (CL-CLIP's summary rows)
FINAL_STEP = "final"


def text(value) -> str:
    """A label cell as text: ``NA`` for None or an empty string, ``str(value)`` otherwise."""
    return NA if value is None or value == "" else str(value)


def make_rows(base: Mapping, scores: Mapping[str, float]) -> list[dict]:
    """One row per ``metric: value`` of ``scores``, the other columns from ``base`` (label columns
    it leaves out are ``NA``)."""
    unknown = sorted(set(base) - set(COLUMNS[:-2]))
    if unknown:
        raise ValueError(f"rows: unknown column(s) {unknown}; the columns are {list(COLUMNS)}")
    labels = {c: text(base.get(c)) for c in COLUMNS[:-2]}
    return [{**labels, "metric": str(m), "value": float(v)} for m, v in scores.items()]


def frame(rows: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a checked DataFrame: the columns of ``COLUMNS`` in order (``OPTIONAL`` ones filled
    with ``NA`` if missing), label columns as strings, ``value`` as float, no repeated key."""
    if isinstance(rows, pd.DataFrame) and _already_checked(rows):
        check_unique(rows)
        return rows.reset_index(drop=True)
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = NA
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"rows lack columns {missing}; have {list(df.columns)} (schema: docs/metrics.md)")
    df = df.loc[:, list(COLUMNS)]
    for col in COLUMNS[:-1]:
        cells = df[col]
        df[col] = cells.where(cells.notna() & (cells.astype(str) != ""), NA).astype(str)
    try:
        df["value"] = pd.to_numeric(df["value"], errors="raise").astype(float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"rows: a value is not a number ({err})") from None
    check_unique(df)
    return df.reset_index(drop=True)


def _already_checked(df: pd.DataFrame) -> bool:
    """Whether ``df`` is already in ``frame``'s form: the columns in order, text labels with no empty or
    missing cell, float values (tables recomputed per bootstrap draw pass such frames many times)."""
    if list(df.columns) != list(COLUMNS) or df["value"].dtype != "float64":
        return False
    for col in COLUMNS[:-1]:
        cells = df[col]
        if cells.dtype != object or pd.api.types.infer_dtype(cells, skipna=False) != "string" or (cells == "").any():
            return False
    return True


def check_unique(df: pd.DataFrame) -> None:
    """Raise if two rows share a ``KEY``: a file read twice must not be averaged silently."""
    dup = df.duplicated(list(KEY), keep=False)
    if dup.any():
        first = df.loc[dup, list(KEY)].drop_duplicates().head(5).to_dict("records")
        raise ValueError(f"{int(dup.sum())} duplicated evaluation rows, e.g. {first}")


def read_rows(paths: Sequence) -> pd.DataFrame:
    """The rows of ``paths`` (CSV files of this schema) in one checked frame; label columns are
    read as text (a step ``2017`` stays ``"2017"``, ``NA`` stays ``"-"``)."""
    if not len(paths):
        raise ValueError("read_rows: no row files given")
    labels = {c: str for c in COLUMNS[:-1]}
    return frame(pd.concat([pd.read_csv(p, dtype=labels, keep_default_na=False) for p in paths],
                           ignore_index=True))


def write_rows(rows, path) -> pd.DataFrame:
    """Write ``rows`` (checked by ``frame``) to the CSV ``path``; return the frame."""
    df = frame(rows)
    df.to_csv(path, index=False, lineterminator="\n")
    return df
