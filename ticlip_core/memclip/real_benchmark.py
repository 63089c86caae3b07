"""The memclip benchmarks read from real datasets through ``datasets.load_dataset``:
class-incremental CIFAR-100 (10 tasks of 10 classes) and ImageNet (10 of 100), and
domain-incremental DomainNet (six domains), in the ``benchmark`` format (tables only: the
pixels stay in the source and ``benchmark.SplitImages`` reads them on demand).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ticlip_core.data.bucketing import split_indices
from ticlip_core.data.datasets import ClassificationSet, load_dataset
from ticlip_core.memclip.benchmark import SCENARIOS, SOURCE_KEY, SPLITS, Benchmark, TaskSpec, write_benchmark

#: the domain order of the common DomainNet domain-incremental protocol (as CaSSLe uses)
DEFAULT_DOMAIN_ORDERS: dict[str, tuple[str, ...]] = {
    "domainnet": ("real", "quickdraw", "painting", "sketch", "infograph", "clipart")}
#: the class-order seed of iCaRL / PyCIL: ``np.random.seed(1993); np.random.permutation(100)``
DEFAULT_CLASS_ORDER_SEED = 1993


def build_real_benchmark(out_dir: str | os.PathLike, *, name: str, scenario: str, format: str,
                         path: str | os.PathLike, options: Mapping | None = None,
                         num_tasks: int | None = None, class_order_seed: int = DEFAULT_CLASS_ORDER_SEED,
                         domain_order: list[str] | None = None, val_fraction: float = 0.1,
                         image_size: int = 224, train_split: str = "train", test_split: str = "test",
                         max_per_class: Mapping[str, int | None] | None = None) -> dict:
    """Write the benchmark tables of a real dataset to ``out_dir``; returns the summary.

    The ``train_split`` and ``test_split`` of ``load_dataset(format, path, split, **options)``
    are read (no pixels). Val is the share of the training samples whose
    ``split_of_key(source key, val_fraction, 0)`` is ``"val"``; test is the source's test split,
    never carved from train. Labels stay the dataset's labels.

    ``scenario="class"``: class order ``np.random.RandomState(class_order_seed).permutation(C)``
    (for CIFAR-100 with 1993 the iCaRL/PyCIL order), cut into ``num_tasks`` equal chunks.
    ``scenario="domain"``: one task per domain of ``domain_order`` (DomainNet's default: real,
    quickdraw, painting, sketch, infograph, clipart), each with every class; a sample's domain
    is ``sample.meta["domain"]``; samples of other domains are skipped and counted, and a domain
    of the order without train or test samples is a ValueError.

    ``max_per_class`` maps a split (train/val/test) to the most samples each (task, class) keeps,
    the first in key order (for smoke runs). Rows are ordered by task, label, key; keys are
    ``{name}/{source split}/{source key}``.
    """
    options = _check_options(options)
    caps = _check_caps(max_per_class)
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if train_split == test_split:
        raise ValueError(f"train_split and test_split are both {train_split!r}; the test samples "
                         "must not be training samples")
    if scenario == "domain":
        domain_order = _domain_order(format, domain_order, num_tasks)
    else:
        _check_class_arguments(num_tasks, domain_order)
    train = _load(format, path, train_split, options)
    test = _load(format, path, test_split, options)
    if test.classnames != train.classnames:
        raise ValueError(f"{format} at {path}: the {test_split!r} split's classes differ from the "
                         f"{train_split!r} split's ({len(test.classnames)} vs {len(train.classnames)})")
    classnames = list(train.classnames)

    skipped_domains: dict[str, dict[str, int]] = {}
    if scenario == "class":
        tasks, class_order = _class_tasks(len(classnames), num_tasks, class_order_seed)
        task_of_label = np.empty(len(classnames), dtype=np.int64)
        for t, task in enumerate(tasks):
            task_of_label[task.classes] = t

        def task_of(sample):
            return int(task_of_label[sample.label])
    else:
        tasks = [TaskSpec(d, list(range(len(classnames))), d) for d in domain_order]
        task_of_domain = {d: t for t, d in enumerate(domain_order)}
        class_order = None

        def task_of(sample):
            return task_of_domain.get(sample.meta.get("domain"))

    rows = {s: [] for s in SPLITS}
    for source, split in ((train, train_split), (test, test_split)):
        skipped: Counter = Counter()
        keys = [s.key for s in source]
        roles = (np.where(split_indices(keys, val_fraction, 0.0) == 1, "val", "train")
                 if source is train else np.full(len(keys), "test"))
        for sample, role in zip(source, roles):
            domain = sample.meta.get("domain")
            task = task_of(sample)
            if task is None:
                skipped[str(domain)] += 1
                continue
            rows[role].append((f"{name}/{split}/{sample.key}", sample.label, task, domain or "", sample.key))
        if scenario == "domain":
            skipped_domains[split] = dict(sorted(skipped.items()))

    tables, capped = {}, {}
    for split in SPLITS:
        table = pd.DataFrame(rows[split], columns=["key", "label", "task", "domain", SOURCE_KEY])
        table = table.sort_values(["task", "label", "key"], kind="stable").reset_index(drop=True)
        if caps.get(split) is not None:
            kept = table.groupby(["task", "label"], sort=False).cumcount() < caps[split]
            capped[split] = int((~kept).sum())
            table = table[kept].reset_index(drop=True)
        tables[split] = table
    _check_tasks_filled(tasks, tables, format, path)

    summary = {"scenario": scenario, "val_fraction": val_fraction,
               "class_order_seed": class_order_seed if scenario == "class" else None,
               "class_order": class_order, "domain_order": None if scenario == "class" else list(domain_order),
               "max_per_class": {s: caps.get(s) for s in SPLITS}, "dropped_by_cap": capped,
               "source_sizes": {train_split: len(train), test_split: len(test)},
               "loader_skipped": {train_split: dict(train.skipped), test_split: dict(test.skipped)}}
    if scenario == "domain":
        summary["skipped_domains"] = skipped_domains
    source = {"kind": "real", "format": format, "path": str(path), "options": options,
              "splits": {"train": train_split, "val": train_split, "test": test_split}}
    benchmark = Benchmark(name=name, scenario=scenario, classnames=classnames, tasks=tasks,
                          image_size=image_size, source=source, summary=summary)
    return write_benchmark(out_dir, benchmark, tables, None)


def _load(format: str, path, split: str, options: dict) -> ClassificationSet:
    dataset = load_dataset(format, path, split, **options)
    if not isinstance(dataset, ClassificationSet):
        raise ValueError(f"format {format!r} gives a {type(dataset).__name__}, not a labelled "
                         "ClassificationSet; a memclip benchmark needs class labels")
    return dataset


def _check_class_arguments(num_tasks, domain_order) -> None:
    if domain_order is not None:
        raise ValueError(f"class-incremental benchmark: domain_order must be None, got {domain_order!r}")
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer)) or num_tasks < 1:
        raise ValueError(f"class-incremental benchmark: num_tasks must be a positive integer, got {num_tasks!r}")


def _class_tasks(n_classes: int, num_tasks: int, seed: int) -> tuple[list[TaskSpec], list[int]]:
    """The tasks of the class scenario: ``num_tasks`` equal chunks of the seeded class order."""
    if n_classes % num_tasks:
        raise ValueError(f"the dataset's {n_classes} classes do not split into num_tasks {num_tasks} equal tasks")
    order = [int(c) for c in np.random.RandomState(seed).permutation(n_classes)]
    k = n_classes // num_tasks
    return [TaskSpec(f"task{t}", order[t * k:(t + 1) * k], None) for t in range(num_tasks)], order


def _domain_order(format: str, domain_order, num_tasks) -> list[str]:
    if domain_order is None:
        if format not in DEFAULT_DOMAIN_ORDERS:
            raise ValueError(f"domain-incremental benchmark of format {format!r}: give domain_order "
                             f"(defaults exist only for {sorted(DEFAULT_DOMAIN_ORDERS)})")
        domain_order = DEFAULT_DOMAIN_ORDERS[format]
    if isinstance(domain_order, str) or not list(domain_order):
        raise ValueError(f"domain_order must be a non-empty list of domains, got {domain_order!r}")
    domain_order = [str(d) for d in domain_order]
    if len(set(domain_order)) != len(domain_order):
        raise ValueError(f"domain_order {domain_order} repeats a domain")
    if num_tasks is not None and num_tasks != len(domain_order):
        raise ValueError(f"domain-incremental benchmark: num_tasks {num_tasks} differs from the "
                         f"{len(domain_order)} domains {domain_order} (one task per domain; leave it None)")
    return domain_order


def _check_tasks_filled(tasks: list[TaskSpec], tables: dict[str, pd.DataFrame], format: str, path) -> None:
    """ValueError naming a task (a domain, in the domain scenario) with no train or no test sample."""
    for split in ("train", "test"):
        present = set(tables[split]["task"].tolist())
        empty = [t.name for i, t in enumerate(tasks) if i not in present]
        if empty:
            raise ValueError(f"{format} at {path}: task(s) {empty} have no {split} samples"
                             + (f" (no sample of domain(s) {[t.domain for t in tasks if t.name in empty]})"
                                if tasks[0].domain is not None else ""))


def _check_options(options) -> dict:
    options = dict(options or {})
    try:
        json.dumps(options)
    except TypeError as err:
        raise ValueError(f"loader options must be JSON-serialisable (they are stored in benchmark.json): {err}") from err
    return options


def _check_caps(max_per_class) -> dict[str, int | None]:
    caps = dict(max_per_class or {})
    unknown = sorted(set(caps) - set(SPLITS))
    if unknown:
        raise ValueError(f"max_per_class: unknown split(s) {unknown}; expected some of {list(SPLITS)}")
    bad = {s: v for s, v in caps.items()
           if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1)}
    if bad:
        raise ValueError(f"max_per_class: caps must be positive integers or None, got {bad}")
    return {s: None if v is None else int(v) for s, v in caps.items()}
