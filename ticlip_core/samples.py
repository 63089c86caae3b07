"""Per-sample outcomes behind the evaluation rows, so that a table's cells can be bootstrapped over
test samples (docs/metrics.md, "Uncertainty").

Every row that is an accuracy or a recall, or is computed from them (a class- or session-balanced
accuracy, Bwt, A-Acc, an average over tasks, forgetting), is a weighted mean of *entries*:

    value = sum_e weight_e * outcome_e / sum_e weight_e

where each entry names one test sample (``sample_set``, ``sample``) and carries that sample's
outcome for the row (1/0 for a correct or wrong top-1, a hit or a miss; 0.5 each for a mean of
two directions of retrieval; a difference of two models' outcomes for Bwt). A sample may appear
in several entries of one row (an average over tasks sees it once per task). ``sample_set`` names
the same test samples in the same order for every method, checkpoint and replicate seed of a
study, so that resampling it pairs them. Rows that are not built from test samples (a loss, a
compute count) have no entries.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ticlip_core.rows import KEY, text

COLUMNS = (*KEY, "sample_set", "set_size", "sample", "weight", "outcome")


def entries(row: Mapping, sample_set: str, set_size: int, outcome, sample=None, weight=None) -> pd.DataFrame:
    """The entries of one row: ``outcome[e]`` of sample ``sample[e]`` (default ``0..len-1``) of
    ``sample_set`` (``set_size`` samples), with ``weight[e]`` (default 1). ``row`` gives the row's
    ``KEY`` labels (label columns it leaves out are ``NA``; ``metric`` is required)."""
    outcome = np.asarray(outcome, dtype=np.float64).reshape(-1)
    sample = np.arange(len(outcome)) if sample is None else np.asarray(sample, dtype=np.int64).reshape(-1)
    weight = np.ones(len(outcome)) if weight is None else np.broadcast_to(
        np.asarray(weight, dtype=np.float64), outcome.shape)
    if not (len(sample) == len(outcome) == len(weight)):
        raise ValueError(f"samples: {len(outcome)} outcomes, {len(sample)} sample indices and {len(weight)} weights")
    if len(sample) and (sample.min() < 0 or sample.max() >= set_size):
        raise ValueError(f"samples: index out of range for {sample_set!r} of {set_size} samples")
    if not np.isfinite(outcome).all():
        raise ValueError(f"samples: non-finite outcome for {dict(row)} on {sample_set!r}")
    labels = {c: text(row.get(c)) for c in KEY}
    return pd.DataFrame({**labels, "sample_set": str(sample_set), "set_size": int(set_size),
                         "sample": sample, "weight": weight, "outcome": outcome})


def combine(parts: Sequence[pd.DataFrame], weights: Sequence[float], row: Mapping) -> pd.DataFrame:
    """The entries of a row that is ``sum_k weights[k] * value(parts[k])`` with the weights summing to 1
    (A-Acc = (UT-Acc + ZS-Acc) / 2, an average over tasks): each part's entry weights rescaled so
    that the part counts ``weights[k]``, relabelled as ``row``."""
    if not np.isclose(sum(weights), 1.0):
        raise ValueError(f"samples.combine: weights {list(weights)} do not sum to 1")
    out = []
    for part, w in zip(parts, weights):
        part = part.copy()
        part["weight"] = part["weight"] * (w / part["weight"].sum())
        out.append(part)
    df = pd.concat(out, ignore_index=True)
    for c in KEY:
        df[c] = text(row.get(c))
    return df


def difference(a: pd.DataFrame, b: pd.DataFrame, row: Mapping) -> pd.DataFrame:
    """The entries of a row that is ``value(a) - value(b)``, for two parts on the same samples with
    the same weights (Bwt's Acc_{S,i} - Acc_{i,i}): the outcome of each entry is ``a``'s minus ``b``'s."""
    on = ["sample_set", "sample", "weight"]
    if len(a) != len(b) or not a[on].reset_index(drop=True).equals(b[on].reset_index(drop=True)):
        raise ValueError("samples.difference: the two parts are not on the same samples with the same weights")
    df = a.copy().reset_index(drop=True)
    df["outcome"] = df["outcome"].to_numpy() - b["outcome"].to_numpy()
    for c in KEY:
        df[c] = text(row.get(c))
    return df


def frame(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Entries as one checked frame, the columns of ``COLUMNS`` in order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object if c in (*KEY, "sample_set") else float) for c in COLUMNS})
    df = pd.concat(parts, ignore_index=True).loc[:, list(COLUMNS)]
    sizes = df.groupby("sample_set")["set_size"].nunique()
    if (sizes > 1).any():
        raise ValueError(f"samples: sample sets with more than one size: {list(sizes[sizes > 1].index)}")
    return df


def write_samples(parts: Sequence[pd.DataFrame], path) -> pd.DataFrame:
    """Write the entries of ``parts`` to the parquet file ``path``; return them."""
    df = frame(parts)
    df.to_parquet(path, index=False)
    return df


def read_samples(paths: Sequence) -> pd.DataFrame:
    """The entries of every parquet file in ``paths``, in one frame."""
    return frame([pd.read_parquet(p) for p in paths])


def row_values(samples: pd.DataFrame) -> pd.Series:
    """Each row's value as its entries give it, ``sum(weight * outcome) / sum(weight)``, indexed by ``KEY``."""
    wo = samples["weight"] * samples["outcome"]
    g = samples.assign(_wo=wo).groupby(list(KEY), sort=False)
    return g["_wo"].sum() / g["weight"].sum()


def check_matches(rows: pd.DataFrame, samples: pd.DataFrame, atol: float = 1e-9) -> None:
    """Raise unless every row that has entries has the value its entries give (within ``atol``) and
    every entry's row exists: entries that disagree with the table's rows would bootstrap a different number."""
    if not len(samples):
        return
    given = row_values(samples)
    indexed = rows.set_index(list(KEY))["value"]
    missing = given.index.difference(indexed.index)
    if len(missing):
        raise ValueError(f"samples: entries for {len(missing)} rows that do not exist, e.g. {list(missing[:3])}")
    diff = (indexed.reindex(given.index) - given).abs()
    bad = diff[diff > atol]
    if len(bad):
        raise ValueError(f"samples: {len(bad)} rows differ from their entries' weighted mean, e.g. "
                         f"{bad.index[0]}: row {indexed[bad.index[0]]}, entries {given[bad.index[0]]}")
