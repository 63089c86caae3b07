"""The prepared-benchmark format of the memclip study: a folder of plain files, written by
``synthetic_benchmark.build_synthetic_benchmark`` or ``real_benchmark.build_real_benchmark``
and read by the study runner.

==================  ===================================================================
file                content
==================  ===================================================================
benchmark.json      ``{"name", "scenario", "classnames", "tasks": [{"name", "classes",
                    "domain"}], "image_size", "source", "summary"}``
train.parquet       one row per sample: ``key`` (str, unique in the benchmark), ``label``
                    (int64, index into ``classnames``), ``task`` (int64), ``domain`` (str,
                    ``""`` when unknown), ``index`` (int64, the row position: a training
                    sample's global index); real benchmarks add ``source_key``
val.parquet         same
test.parquet        same
train.npz ...       synthetic benchmarks only: ``images`` uint8 ``(N, S, S, 3)`` in table order
==================  ===================================================================

Scenarios: ``class`` (class-incremental: task t holds its own classes, disjoint from the other
tasks') and ``domain`` (domain-incremental: every task holds every class, one domain per task).
A real benchmark stores no pixels: ``source`` = ``{"kind": "real", "format", "path",
"options", "splits": {"train", "val", "test"}}`` says which ``datasets.load_dataset`` split each
benchmark split's ``source_key`` refers to, and ``SplitImages`` reads the images from there.

Rows are ordered by task, then label, then the order the builder generated them in. Every file
is written deterministically and through a temporary name (no partial file on a kill), and
``benchmark.json`` last, so its presence means the folder is complete.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ticlip_core.data.files import write_json, write_npz
from ticlip_core.data.pixels import PixelSpec

SCENARIOS = ("class", "domain")
SPLITS = ("train", "val", "test")
BENCHMARK_FILE = "benchmark.json"
SOURCE_KEY = "source_key"
COLUMNS = {"key": pa.string(), "label": pa.int64(), "task": pa.int64(), "domain": pa.string(),
           "index": pa.int64()}


@dataclass(frozen=True)
class TaskSpec:
    """One task of a benchmark: its name, the labels it holds and its domain (None: mixed)."""

    name: str
    classes: list[int]
    domain: str | None

    def to_json(self) -> dict:
        """The task as stored in ``benchmark.json``."""
        return {"name": self.name, "classes": [int(c) for c in self.classes], "domain": self.domain}


@dataclass
class Benchmark:
    """What ``benchmark.json`` holds: the classes, the task sequence, the image size, where the
    pixels come from (``source``) and the builder's summary (counts per split, options)."""

    name: str
    scenario: str
    classnames: list[str]
    tasks: list[TaskSpec]
    image_size: int
    source: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"benchmark name must be a non-empty string, got {self.name!r}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"benchmark {self.name}: unknown scenario {self.scenario!r}; "
                             f"expected one of {SCENARIOS}")
        if not self.classnames:
            raise ValueError(f"benchmark {self.name}: no classnames")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, (int, np.integer)) \
                or self.image_size < 1:
            raise ValueError(f"benchmark {self.name}: image_size must be a positive integer, "
                             f"got {self.image_size!r}")
        if not self.tasks:
            raise ValueError(f"benchmark {self.name}: no tasks")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmark {self.name}: task names repeat: {names}")
        n = len(self.classnames)
        for task in self.tasks:
            if not task.classes:
                raise ValueError(f"benchmark {self.name}: task {task.name!r} holds no classes")
            bad = [c for c in task.classes if not 0 <= int(c) < n]
            if bad:
                raise ValueError(f"benchmark {self.name}: task {task.name!r} has label(s) {bad} "
                                 f"outside [0, {n}) for {n} classnames")
            if len(set(task.classes)) != len(task.classes):
                raise ValueError(f"benchmark {self.name}: task {task.name!r} repeats a class: {task.classes}")
        if self.scenario == "class":
            self._check_class_tasks()
        else:
            self._check_domain_tasks()

    def _check_class_tasks(self) -> None:
        owner: dict[int, str] = {}
        for task in self.tasks:
            for c in task.classes:
                if int(c) in owner:
                    raise ValueError(f"benchmark {self.name}: class {int(c)} ({self.classnames[c]!r}) is in "
                                     f"tasks {owner[int(c)]!r} and {task.name!r}; class-incremental "
                                     "tasks must hold disjoint classes")
                owner[int(c)] = task.name

    def _check_domain_tasks(self) -> None:
        every = set(range(len(self.classnames)))
        domains = [t.domain for t in self.tasks]
        for task in self.tasks:
            if not isinstance(task.domain, str) or not task.domain:
                raise ValueError(f"benchmark {self.name}: domain-incremental task {task.name!r} "
                                 f"names no domain (got {task.domain!r})")
            if set(task.classes) != every:
                raise ValueError(f"benchmark {self.name}: domain-incremental task {task.name!r} must "
                                 f"hold every class, but misses {sorted(every - set(task.classes))[:10]}")
        if len(set(domains)) != len(domains):
            raise ValueError(f"benchmark {self.name}: task domains repeat: {domains}")

    @property
    def num_tasks(self) -> int:
        """Number of tasks."""
        return len(self.tasks)

    def seen_classes(self, t: int) -> list[int]:
        """Labels seen by the end of task ``t``: the classes of tasks 0..t in task order
        (class scenario), or every class (domain scenario)."""
        if not 0 <= t < self.num_tasks:
            raise ValueError(f"benchmark {self.name}: task index {t} outside [0, {self.num_tasks})")
        if self.scenario == "domain":
            return list(range(len(self.classnames)))
        return [int(c) for task in self.tasks[:t + 1] for c in task.classes]

    def to_json(self) -> dict:
        """The benchmark as stored in ``benchmark.json``."""
        return {"name": self.name, "scenario": self.scenario, "classnames": list(self.classnames),
                "tasks": [t.to_json() for t in self.tasks], "image_size": int(self.image_size),
                "source": self.source, "summary": self.summary}

    @classmethod
    def from_json(cls, data: dict) -> "Benchmark":
        """The benchmark described by ``data`` (``to_json``'s form), checked."""
        missing = [k for k in ("name", "scenario", "classnames", "tasks", "image_size") if k not in data]
        if missing:
            raise ValueError(f"benchmark description lacks key(s) {missing}")
        tasks = []
        for i, task in enumerate(data["tasks"]):
            lacking = [k for k in ("name", "classes", "domain") if k not in task]
            if lacking:
                raise ValueError(f"benchmark {data['name']}: task {i} lacks key(s) {lacking}")
            tasks.append(TaskSpec(str(task["name"]), [int(c) for c in task["classes"]], task["domain"]))
        return cls(name=data["name"], scenario=data["scenario"], classnames=list(data["classnames"]),
                   tasks=tasks, image_size=int(data["image_size"]), source=dict(data.get("source") or {}),
                   summary=dict(data.get("summary") or {}))


def is_real(benchmark: Benchmark) -> bool:
    """Whether the benchmark's pixels come from a real dataset (no image files)."""
    return benchmark.source.get("kind") == "real"


def write_benchmark(out_dir: str | os.PathLike, benchmark: Benchmark, tables: dict[str, pd.DataFrame],
                    images: dict[str, np.ndarray] | None = None) -> dict:
    """Write ``benchmark`` with its split ``tables`` (and, synthetic, ``images``) to ``out_dir``;
    returns the summary stored in ``benchmark.json``: ``benchmark.summary`` plus ``counts``
    (per split: ``total``, ``per_task`` indexed by task, ``per_class`` indexed by label).

    Each table has ``key``, ``label``, ``task``, ``domain`` (and ``source_key`` for a real
    benchmark, which has ``images=None``); ``images[split]`` is uint8 ``(N, S, S, 3)`` aligned
    with ``tables[split]``. Rows are stably sorted by (task, label), so the builder's order is
    kept within a class, and ``index`` is set to the row position. Checked: keys unique across
    all splits, labels and tasks valid, a class-scenario sample's label among its task's
    classes, a domain-scenario sample's domain its task's.
    """
    real = images is None
    if real != is_real(benchmark):
        raise ValueError(f"benchmark {benchmark.name}: source kind {benchmark.source.get('kind')!r} "
                         f"{'needs' if is_real(benchmark) else 'does not allow'} images=None "
                         "(a real benchmark stores no pixels, any other stores them all)")
    if sorted(tables) != sorted(SPLITS):
        raise ValueError(f"benchmark {benchmark.name}: tables must be exactly {list(SPLITS)}, got {sorted(tables)}")
    if not real and sorted(images) != sorted(SPLITS):
        raise ValueError(f"benchmark {benchmark.name}: images must be exactly {list(SPLITS)}, got {sorted(images)}")
    ordered, arrays, seen = {}, {}, {}
    for split in SPLITS:
        table = _check_table(benchmark, split, tables[split], real, seen)
        order = np.lexsort((table["label"].to_numpy(), table["task"].to_numpy()))  # stable
        table = table.iloc[order].reset_index(drop=True)
        table["index"] = np.arange(len(table), dtype=np.int64)
        ordered[split] = table
        if not real:
            arrays[split] = _check_images(benchmark, split, images[split], len(table))[order]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _write_parquet(out_dir / f"{split}.parquet", ordered[split], real)
        npz = out_dir / f"{split}.npz"
        if real:
            npz.unlink(missing_ok=True)  # a stale synthetic build's pixels must not linger
        else:
            write_npz(npz, {"images": arrays[split]})
    summary = {**benchmark.summary, "counts": _counts(benchmark, ordered)}
    write_json(out_dir / BENCHMARK_FILE, replace(benchmark, summary=summary).to_json())
    return summary


def _check_table(benchmark: Benchmark, split: str, table: pd.DataFrame, real: bool,
                 seen: dict[str, str]) -> pd.DataFrame:
    """The table's columns in their stored types, after the checks of ``write_benchmark``."""
    where = f"benchmark {benchmark.name}, split {split}"
    needed = ["key", "label", "task", "domain"] + ([SOURCE_KEY] if real else [])
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: table lacks column(s) {missing}")
    out = pd.DataFrame({"key": table["key"].astype(str).to_numpy(dtype=object),
                        "label": table["label"].to_numpy(dtype=np.int64),
                        "task": table["task"].to_numpy(dtype=np.int64),
                        "domain": table["domain"].fillna("").astype(str).to_numpy(dtype=object)})
    if real:
        out[SOURCE_KEY] = table[SOURCE_KEY].astype(str).to_numpy(dtype=object)
    keys = out["key"]
    repeated = keys[keys.duplicated()]
    if len(repeated):
        raise ValueError(f"{where}: key {repeated.iat[0]!r} occurs more than once")
    for key in keys:
        if key in seen:
            raise ValueError(f"{where}: key {key!r} is also in split {seen[key]}")
        seen[key] = split
    labels, tasks, domains = out["label"].to_numpy(), out["task"].to_numpy(), out["domain"].to_numpy()
    n_classes, n_tasks = len(benchmark.classnames), benchmark.num_tasks
    _first_bad(where, keys, (labels < 0) | (labels >= n_classes),
               lambda r: f"has label {labels[r]}, outside [0, {n_classes})")
    _first_bad(where, keys, (tasks < 0) | (tasks >= n_tasks),
               lambda r: f"has task {tasks[r]}, outside [0, {n_tasks})")
    spec = benchmark.tasks
    if benchmark.scenario == "class":
        allowed = np.zeros((n_tasks, n_classes), dtype=bool)
        for t, task in enumerate(spec):
            allowed[t, task.classes] = True
        _first_bad(where, keys, ~allowed[tasks, labels],
                   lambda r: f"has label {labels[r]} ({benchmark.classnames[labels[r]]!r}), not a class "
                             f"of its task {spec[tasks[r]].name!r} ({list(spec[tasks[r]].classes)})")
    else:
        task_domain = np.array([t.domain for t in spec], dtype=object)
        _first_bad(where, keys, task_domain[tasks] != domains,
                   lambda r: f"has domain {domains[r]!r}, not its task {spec[tasks[r]].name!r}'s "
                             f"domain {spec[tasks[r]].domain!r}")
    return out


def _first_bad(where: str, keys: pd.Series, bad: np.ndarray, problem) -> None:
    """ValueError naming the first row flagged in ``bad``: its key and ``problem(row)``."""
    rows = np.flatnonzero(bad)
    if len(rows):
        raise ValueError(f"{where}: sample {keys.iat[rows[0]]!r} {problem(rows[0])}"
                         + (f" ({len(rows)} such samples)" if len(rows) > 1 else ""))


def _check_images(benchmark: Benchmark, split: str, images: np.ndarray, n: int) -> np.ndarray:
    images = np.asarray(images)
    size = benchmark.image_size
    if images.dtype != np.uint8 or images.shape != (n, size, size, 3):
        raise ValueError(f"benchmark {benchmark.name}, split {split}: images must be uint8 of shape "
                         f"({n}, {size}, {size}, 3) for {n} table rows, got {images.dtype} {images.shape}")
    return images


def _write_parquet(path: Path, table: pd.DataFrame, real: bool) -> None:
    """The table with a fixed schema and no pandas metadata, through a temporary name."""
    columns = dict(COLUMNS, **({SOURCE_KEY: pa.string()} if real else {}))
    arrow = pa.table({c: pa.array(table[c].tolist(), type=t) for c, t in columns.items()},
                     schema=pa.schema([pa.field(c, t, nullable=False) for c, t in columns.items()]))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(arrow, tmp, compression="snappy")
    os.replace(tmp, path)


def _counts(benchmark: Benchmark, tables: dict[str, pd.DataFrame]) -> dict:
    counts = {}
    for split, table in tables.items():
        per_task = np.bincount(table["task"].to_numpy(), minlength=benchmark.num_tasks)
        per_class = np.bincount(table["label"].to_numpy(), minlength=len(benchmark.classnames))
        counts[split] = {"total": int(len(table)), "per_task": [int(k) for k in per_task],
                         "per_class": [int(k) for k in per_class]}
    return counts


def load_benchmark(folder: str | os.PathLike) -> Benchmark:
    """The benchmark described by ``folder/benchmark.json``."""
    path = Path(folder) / BENCHMARK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"memclip benchmark file not found: {path} (build the benchmark first)")
    return Benchmark.from_json(json.loads(path.read_text(encoding="utf-8")))


def load_table(folder: str | os.PathLike, split: str) -> pd.DataFrame:
    """The ``split`` table of the benchmark in ``folder`` (columns as in this module's docstring)."""
    path = Path(folder) / f"{_check_split(split)}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"memclip benchmark table not found: {path} (build the benchmark first)")
    return pq.read_table(path).to_pandas()


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown benchmark split {split!r}; expected one of {SPLITS}")
    return split


class SplitImages:
    """The images of one split of a prepared benchmark, uint8 ``(S, S, 3)`` in table order (a map-style
    dataset for ``torch.utils.data.DataLoader``; torch is imported only when an image is read).

    Synthetic: read from ``<split>.npz``. Real: each row's ``source_key`` is looked up in the
    source split (``datasets.load_dataset(format, path, split, **options)``), loaded and resized
    to ``image_size`` as ``PixelSpec.to_array`` does (shortest side bicubic, centre crop). The
    pixels (or the source's key -> sample map) are read on first use in each process and never
    pickled, so the object is cheap to send to data-loader workers.
    """

    def __init__(self, folder: str | os.PathLike, split: str):
        self.folder = Path(folder)
        self.split = _check_split(split)
        self.benchmark = load_benchmark(folder)
        self.table = load_table(folder, split)
        self.real = is_real(self.benchmark)
        self.pixels = PixelSpec(self.benchmark.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self._cache = None  # the npz images (synthetic) or the source's key -> sample map (real)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        import torch

        i = self._check_index(i)
        if not self.real:
            return torch.from_numpy(self._npz_images()[i].copy())
        return torch.from_numpy(self._real_image(i))

    def get(self, indices):
        """The images of table rows ``indices``, stacked: uint8 ``(n, S, S, 3)``."""
        import torch

        indices = [self._check_index(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        if not self.real:
            return torch.from_numpy(self._npz_images()[np.asarray(indices, dtype=np.int64)])
        size = self.benchmark.image_size
        if not indices:
            return torch.zeros((0, size, size, 3), dtype=torch.uint8)
        return torch.from_numpy(np.stack([self._real_image(i) for i in indices]))

    def _check_index(self, i) -> int:
        i = int(i)
        if not 0 <= i < len(self.table):
            raise IndexError(f"benchmark {self.benchmark.name}, split {self.split}: row {i} outside "
                             f"[0, {len(self.table)})")
        return i

    def _npz_images(self) -> np.ndarray:
        if self._cache is None:
            path = self.folder / f"{self.split}.npz"
            if not path.is_file():
                raise FileNotFoundError(f"memclip benchmark images not found: {path}")
            with np.load(path, allow_pickle=False) as data:
                images = data["images"]
            if len(images) != len(self.table):
                raise ValueError(f"{path}: {len(images)} images for {len(self.table)} table rows")
            self._cache = images
        return self._cache

    def _real_image(self, i: int) -> np.ndarray:
        if self._cache is None:
            from ticlip_core.data.datasets import load_dataset

            source = self.benchmark.source
            split = source["splits"][self.split]
            dataset = load_dataset(source["format"], source["path"], split, **(source.get("options") or {}))
            self._cache = ({s.key: s for s in dataset}, f"{dataset.name} ({source['format']} at {source['path']})")
        samples, described = self._cache
        key = self.table[SOURCE_KEY].iat[i]
        sample = samples.get(key)
        if sample is None:
            raise ValueError(f"benchmark {self.benchmark.name}, split {self.split}: source key {key!r} "
                             f"(row {i}) is not in the dataset {described}; rebuild the benchmark")
        label = int(self.table["label"].iat[i])
        if sample.label != label:
            raise ValueError(f"benchmark {self.benchmark.name}, split {self.split}: source key {key!r} has "
                             f"label {sample.label} in {described} but {label} in the benchmark; rebuild it")
        return np.array(self.pixels.to_array(sample.load()), dtype=np.uint8)  # a writable copy
