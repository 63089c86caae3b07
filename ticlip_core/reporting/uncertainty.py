"""Uncertainty of table cells (docs/metrics.md, "Uncertainty"): a paired bootstrap over test samples,
and an interval across replicate seeds.

*Test samples.* Each evaluation row that is an accuracy or a recall (or is computed from them) is a
weighted mean of per-sample entries (``ticlip_core.samples``). One bootstrap draw resamples every
test set with replacement: sample i of set s is drawn ``K[b, i]`` times (multinomial counts, seeded
by the draw seed and the set's name), and every row is recomputed as
``sum_e K[b, i_e] w_e o_e / sum_e K[b, i_e] w_e``. The counts of a set are the same for every method,
checkpoint and seed, so the draws of two methods' cells are paired: their difference has its own
interval, and two identical sets of predictions differ by exactly 0 in every draw. A table is
recomputed from each draw's rows by the study's own table function, so every cell (in-domain,
backward transfer, A-Acc, forgetting...) is resampled the way it is computed. Intervals are the
2.5th and 97.5th percentiles of the draws.

*Seeds.* With k > 1 replicate seeds a cell's estimate is the mean over seeds, with the Student-t
interval ``mean +- t_{0.975, k-1} s / sqrt(k)``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ticlip_core.rows import KEY

#: the columns of a long table of cells: which table, which row (its labels), which column
CELL = ("table", "row", "column")


def set_seed(sample_set: str) -> int:
    """A stable 64-bit number naming ``sample_set`` (Python's ``hash`` changes between processes)."""
    return int.from_bytes(hashlib.blake2b(sample_set.encode(), digest_size=8).digest(), "little")


def resample_counts(sample_set: str, size: int, draws: int, seed: int) -> np.ndarray:
    """``(draws, size)`` bootstrap counts of ``sample_set``: how often each sample is drawn (each row
    sums to ``size``), the same for the same set name, size, draws and seed."""
    rng = np.random.default_rng([int(seed), set_seed(sample_set)])
    return rng.multinomial(size, np.full(size, 1.0 / size), size=draws).astype(np.float64)


def resampled_values(samples: pd.DataFrame, draws: int, seed: int) -> pd.DataFrame:
    """Each row's value in each bootstrap draw: a frame indexed by the rows' ``KEY`` with one column
    per draw (``sum K w o / sum K w`` over the row's entries; rows may span several sample sets)."""
    from scipy import sparse

    keys = pd.MultiIndex.from_frame(samples.loc[:, list(KEY)])
    codes, uniques = pd.factorize(keys)
    num = np.zeros((draws, len(uniques)))
    den = np.zeros((draws, len(uniques)))
    w = samples["weight"].to_numpy(np.float64)
    wo = w * samples["outcome"].to_numpy(np.float64)
    sample = samples["sample"].to_numpy(np.int64)
    for name, idx in samples.groupby("sample_set", sort=True).indices.items():
        size = int(samples["set_size"].iloc[idx[0]])
        counts = resample_counts(name, size, draws, seed)
        shape = (size, len(uniques))
        num += counts @ sparse.csr_matrix((wo[idx], (sample[idx], codes[idx])), shape=shape)
        den += counts @ sparse.csr_matrix((w[idx], (sample[idx], codes[idx])), shape=shape)
    full = np.bincount(codes, weights=wo, minlength=len(uniques)) / np.bincount(codes, weights=w, minlength=len(uniques))
    # A draw that picks none of a row's samples (a small test set of which few images have a class)
    # leaves the row undefined; it keeps its full-sample value there, and the draws doing so are counted.
    empty = den <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(empty, full[None, :], num / np.where(empty, 1.0, den))
    out = pd.DataFrame(values.T, index=pd.MultiIndex.from_tuples(list(uniques), names=list(KEY)))
    out.attrs["empty"] = int(empty.sum())
    return out


def numeric_columns(df: pd.DataFrame, labels: Sequence[str] = ()) -> list[str]:
    """The columns of ``df`` that hold numbers (not booleans), less ``labels``."""
    return [c for c in df.columns if c not in labels and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c])]


def table_cells(tables: Mapping[str, pd.DataFrame], labels: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """The numeric cells of ``tables`` (name -> table) in long form: ``table, row, column, value``.
    A row is named by its ``labels[name]`` columns (``"Method=oracle"``, ``"Method=GCL;Memory=20"``)."""
    out = []
    for name, df in tables.items():
        keys = list(labels[name])
        for _, rec in df.iterrows():
            row = ";".join(f"{c}={'-' if pd.isna(rec[c]) else rec[c]}" for c in keys)
            out += [{"table": name, "row": row, "column": c, "value": float(rec[c])}
                    for c in numeric_columns(df, keys)]
    return pd.DataFrame(out, columns=[*CELL, "value"])


def bootstrap_cells(make_tables: Callable[[Mapping[str, pd.DataFrame]], Mapping[str, pd.DataFrame]],
                    parts: Mapping[str, pd.DataFrame], samples: pd.DataFrame, draws: int, seed: int,
                    labels: Mapping[str, Sequence[str]], processes: int = 1) -> pd.DataFrame:
    """The cells of ``make_tables(parts)`` in every bootstrap draw: ``table, row, column, draw, value``.

    ``parts`` are the rows a study's table function reads (name -> rows: a study may keep its
    ablations' rows apart); ``make_tables`` is called once per draw on copies whose sample-based
    values are that draw's. Rows without entries keep their value; entries of no row raise.
    ``processes`` > 1 splits the draws over forked processes; every draw's values are fixed
    before the split, so the result is the same for any number of processes."""
    values = resampled_values(samples, draws, seed)
    if values.attrs["empty"]:
        print(f"bootstrap: {values.attrs['empty']} of {values.size} (row, draw) pairs drew none of the row's "
              "samples and keep the row's full-sample value")
    where, found = {}, np.zeros(len(values), dtype=bool)
    for name, rows in parts.items():
        at = pd.MultiIndex.from_frame(rows.loc[:, list(KEY)]).get_indexer(values.index)
        where[name] = at
        found |= at >= 0
    if not found.all():
        raise ValueError(f"bootstrap: entries for {int((~found).sum())} rows that are not in the rows given, "
                         f"e.g. {values.index[~found][0]}")
    global _DRAW_WORK
    _DRAW_WORK = (make_tables, parts, where, values, labels)
    try:
        if processes > 1 and draws > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(min(processes, draws)) as pool:
                out = pool.map(_draw_cells, range(draws), chunksize=max(1, draws // (4 * processes)))
        else:
            out = [_draw_cells(b) for b in range(draws)]
    finally:
        _DRAW_WORK = None
    return pd.concat(out, ignore_index=True).loc[:, [*CELL, "draw", "value"]]


_DRAW_WORK = None  # what _draw_cells reads: set by bootstrap_cells, inherited by its forked processes


def _draw_cells(b: int) -> pd.DataFrame:
    """The cells of draw ``b``: every part's rows with that draw's values, through the tables."""
    make_tables, parts, where, values, labels = _DRAW_WORK
    drawn = {}
    for name, rows in parts.items():
        rows = rows.copy()
        at = where[name]
        hit = at >= 0
        rows.iloc[at[hit], rows.columns.get_loc("value")] = values[b].to_numpy()[hit]
        drawn[name] = rows
    return table_cells(make_tables(drawn), labels).assign(draw=b)


def percentile_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``draws`` (NaN draws are a failure, not skipped)."""
    draws = np.asarray(draws, dtype=np.float64)
    if np.isnan(draws).any():
        return (np.nan, np.nan)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def seed_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` (one per seed) and its Student-t interval; the interval is NaN for one seed."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    k = len(values)
    if k < 2:
        return mean, np.nan, np.nan
    half = float(stats.t.ppf(0.5 + level / 2, k - 1) * values.std(ddof=1) / np.sqrt(k))
    return mean, mean - half, mean + half


def summarize(cells: pd.DataFrame, draws: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One line per cell: the mean over seeds (``estimate``), the seeds' interval (``seed_lo``,
    ``seed_hi``; NaN for one seed) and the bootstrap interval of the seed mean (``boot_lo``, ``boot_hi``).

    ``cells``: ``table, row, column, seed, value``; ``draws``: ``table, row, column, seed, draw, value``
    (the same draw index pairs the seeds: their test sets were resampled alike)."""
    seeds = cells.groupby(list(CELL), sort=False)["value"].apply(lambda v: seed_interval(v, level))
    boot = draws.groupby([*CELL, "draw"], sort=False)["value"].mean().groupby(list(CELL), sort=False).apply(
        lambda v: percentile_interval(v, level))
    out = pd.DataFrame({"estimate": seeds.map(lambda x: x[0]), "seeds": cells.groupby(list(CELL), sort=False).size(),
                        "seed_lo": seeds.map(lambda x: x[1]), "seed_hi": seeds.map(lambda x: x[2])})
    out["boot_lo"] = boot.map(lambda x: x[0]).reindex(out.index)
    out["boot_hi"] = boot.map(lambda x: x[1]).reindex(out.index)
    return out.reset_index()


def mean_over_seeds(tables: Sequence[pd.DataFrame], labels: Sequence[str],
                    level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cell-wise mean of one table computed once per seed, and the half-width of its Student-t
    interval (NaN with one seed; a frame of the numeric columns). The ``labels`` columns must agree
    across seeds; another text column that differs (a hyperparameter chosen per seed) lists each
    seed's value, joined by " / "."""
    first = tables[0]
    numeric = numeric_columns(first, labels)
    for t in tables[1:]:
        if list(t.columns) != list(first.columns) or len(t) != len(first):
            raise ValueError("mean_over_seeds: the seeds' tables differ in shape")
        if not t[list(labels)].reset_index(drop=True).equals(first[list(labels)].reset_index(drop=True)):
            raise ValueError("mean_over_seeds: the seeds' tables differ in their row labels")
    stack = np.stack([t[numeric].to_numpy(np.float64) for t in tables])
    mean = first.copy()
    mean[numeric] = stack.mean(axis=0)
    for c in first.columns:
        if c not in numeric and c not in labels:
            mean[c] = [" / ".join(dict.fromkeys(str(t[c].iloc[i]) for t in tables)) for i in range(len(first))]
    half = pd.DataFrame(np.nan, index=first.index, columns=numeric)
    k = len(tables)
    if k > 1:
        from scipy import stats

        half[numeric] = stats.t.ppf(0.5 + level / 2, k - 1) * stack.std(axis=0, ddof=1) / np.sqrt(k)
        constant = [c for c in numeric if (half[c].fillna(0) == 0).all()]
        half[constant] = np.nan  # the same in every seed (compute, samples seen): no interval to show
    mean.attrs = dict(first.attrs)
    return mean, half


def spread_frame(mean: pd.DataFrame, half: pd.DataFrame) -> pd.DataFrame:
    """``mean`` with its numeric columns replaced by ``half``, for a study's own cell formatter."""
    out = mean.copy()
    for c in half.columns:
        out[c] = half[c].to_numpy()
    return out


SEED_DIR = re.compile(r"(?:^|/)seed(\d+)/")


def by_seed(paths: Sequence) -> dict[int, list[str]]:
    """``paths`` grouped by the replicate seed their ``seed<N>/`` folder names, in seed order."""
    out: dict[int, list[str]] = {}
    for p in map(str, paths):
        found = SEED_DIR.findall(p)
        if len(found) != 1:
            raise ValueError(f"by_seed: {p} is not under exactly one seed<N>/ folder")
        out.setdefault(int(found[0]), []).append(p)
    return dict(sorted(out.items()))


def mean_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Evaluation rows of several seeds as one set of rows: each key's mean value over the seeds (the
    hyperparameter and chosen value, when they differ, joined by " / "). Every seed must have the same keys."""
    from ticlip_core import rows as row_schema

    frames = [row_schema.frame(f) for f in frames]
    keys = [set(map(tuple, f.loc[:, list(KEY)].to_numpy())) for f in frames]
    if any(k != keys[0] for k in keys[1:]):
        raise ValueError("mean_rows: the seeds' rows differ in their keys")
    if len(frames) == 1:
        return frames[0]
    both = pd.concat(frames, ignore_index=True)
    join = lambda v: " / ".join(dict.fromkeys(v))  # noqa: E731
    out = both.groupby(list(KEY), sort=False).agg(hyperparameter=("hyperparameter", join), chosen=("chosen", join),
                                                  value=("value", "mean")).reset_index()
    return row_schema.frame(out)
