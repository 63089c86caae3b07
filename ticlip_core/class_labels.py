"""Where an evaluation set's class labels come from, for zero-shot classification.

* the synthetic world: every sample's ``labels`` (its objects' class ids), the world's class names;
* real TiC data (TiC-DataComp-Net style): a key-to-class table joined on the sample id, with
  class names and templates from the config; test samples without a class are left out of the
  classification task (and counted), they still count for retrieval;
* a static set exported from a local dataset (``data/datasets``): ``labels`` in each sample's
  metadata and the set's ``classnames.json``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class ClassLabels:
    """Class names, prompt templates, and a function from sample metadata to its classes (or None)."""

    classnames: list[str]
    templates: list[str]
    labels_of: Callable[[dict], set[int] | None]


def _labels_in_meta(meta: dict) -> set[int] | None:
    return set(meta["labels"]) if meta.get("labels") else None


def dynamic_class_count(data_cfg: dict) -> int | None:
    """How many classes TiC's dynamic classification chooses among (its chance level is one over
    it per class an image shows): every class of the synthetic world for ``source: synthetic``,
    else the names in ``data.classification.classnames`` (None when the task is off, or when the
    names' file is not there yet: the job that reads it fails naming it)."""
    if data_cfg["source"] == "synthetic":
        from ticlip_core.data import world

        return world.NUM_CLASSES
    cls = data_cfg.get("classification")
    if not cls:
        return None
    try:
        return len(read_classnames(cls["classnames"]))
    except FileNotFoundError:
        return None


def synthetic_labels(classnames: list[str], templates: list[str]) -> ClassLabels:
    """Labels carried in each sample's metadata (the synthetic world's objects)."""
    return ClassLabels(list(classnames), list(templates), _labels_in_meta)


def read_classnames(value: list[str] | str) -> list[str]:
    """Class names given inline, or read from a text file with one name per line."""
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"classnames file '{value}' does not exist")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = list(value)
    if not names:
        raise ValueError(f"classnames: none given ({value!r})")
    return names


def read_key_to_class(path: str | Path, classnames: list[str]) -> dict[str, int]:
    """A ``key`` -> class-index table (parquet or csv; ``class`` holds an index or a class name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.classification.key_to_class: '{path}' does not exist")
    table = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype={"key": str})
    missing = {"key", "class"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; found {list(table.columns)}")
    if table["key"].duplicated().any():
        raise ValueError(f"{path}: key '{table.loc[table['key'].duplicated(), 'key'].iloc[0]}' appears twice")
    cls = table["class"]
    if pd.api.types.is_numeric_dtype(cls):
        bad = table[(cls < 0) | (cls >= len(classnames))]
        if len(bad):
            raise ValueError(f"{path}: class {bad['class'].iloc[0]} of key '{bad['key'].iloc[0]}' is not an "
                             f"index into the {len(classnames)} class names")
        index = cls.astype(int)
    else:
        lookup = {name: i for i, name in enumerate(classnames)}
        unknown = sorted(set(cls) - set(lookup))
        if unknown:
            raise ValueError(f"{path}: class name(s) {unknown[:5]} are not in data.classification.classnames")
        index = cls.map(lookup)
    return dict(zip(table["key"].astype(str), index))


def key_table_labels(cfg: dict, default_templates: list[str]) -> ClassLabels:
    """Labels of real TiC data from ``data.classification`` (key_to_class, classnames, templates)."""
    classnames = read_classnames(cfg["classnames"])
    mapping = read_key_to_class(cfg["key_to_class"], classnames)

    def labels_of(meta: dict) -> set[int] | None:
        c = mapping.get(str(meta.get("sample_id")))
        return None if c is None else {c}

    return ClassLabels(classnames, list(cfg.get("templates") or default_templates), labels_of)


def shard_dir_labels(shard_dir: str | Path, templates: list[str]) -> ClassLabels | None:
    """Labels of an exported classification set (its ``classnames.json``); None for a retrieval set."""
    path = Path(shard_dir) / "classnames.json"
    if not path.is_file():
        return None
    return ClassLabels(json.loads(path.read_text()), list(templates), _labels_in_meta)
