"""The CL-CLIP task read from the paper's real datasets: COCO objects (the update task),
tiered-ImageNet (held-out zero-shot classes) and COCO captions (retrieval), through the loaders
of ``ticlip_core.data.datasets``; written in the ``task_files`` format.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ticlip_core.clclip.classes import ClassPlan, norm_name
from ticlip_core.clclip.task_files import CLASSIFICATION_SPLITS, write_task
from ticlip_core.data.bucketing import split_of_key
from ticlip_core.data.datasets import load_dataset
from ticlip_core.data.pixels import PixelSpec

DatasetSpec = Sequence  # (format, path) or (format, path, loader options)

#: what Ding et al. cap (Sec. III-B b): 100 images of each of the 351 zero-shot test classes;
#: every other split is used whole
PAPER_CAPS: dict[str, int | None] = {"update_train": None, "update_val": None, "update_test": None,
                                     "zs_val": None, "zs_test": 100}
UPDATE_VAL_SOURCES = ("retrieval", "hash")


def build_real_task(out_dir: str | os.PathLike, plan: ClassPlan, *,
                    update_dataset: DatasetSpec, zs_dataset: DatasetSpec,
                    retrieval_dataset: DatasetSpec, image_size: int = 224, seed: int = 0,
                    update_splits: Sequence[str] = ("train", "val"),
                    update_test: str = "retrieval",
                    update_val: str = "retrieval",
                    val_fraction: float = 0.05,
                    train_restval: bool = False,
                    max_per_class: Mapping[str, int | None] | None = None,
                    zs_splits: Mapping[str, str] | None = None,
                    retrieval_split: str = "test",
                    retrieval_val_split: str = "val",
                    allow_extra_classes: bool = False) -> dict:
    """Build the task files from real datasets (``datasets.load_dataset`` formats); returns the summary.

    Each ``*_dataset`` is ``(format, path)`` or ``(format, path, loader options)``, e.g.
    ``("coco_objects", coco_root)``, ``("imagefolder", tiered_root, {"classnames": mapping})``,
    ``("coco_captions", coco_root)``. Splits, following Ding et al. Sec. III-B (docs/clclip.md):

    * retrieval: the ``retrieval_split`` of the retrieval dataset (Karpathy's 5k COCO test
      images, with all their captions).
    * update test: with ``update_test="retrieval"`` (the paper: "the test set is from the
      images of the matching task"), the crops, from any of ``update_splits``, of the retrieval
      images; otherwise ``update_test`` names the update dataset's split to test on. Crops of
      retrieval images are never trained or validated on (counted as ``excluded_retrieval``).
    * update val: with ``update_val="retrieval"`` (the paper: "a validation set from the 5000
      validation images in Karpathy's split"), the crops of the images of the retrieval
      dataset's ``retrieval_val_split``; with ``"hash"`` (not the paper), a share
      ``val_fraction`` of the training images, chosen by a hash of the crop's *image* id
      (``bucketing.split_of_key``), so the crops of one image stay together.
    * update train: every other crop of ``update_splits``. The paper trains on COCO's standard
      training images (train2014, Karpathy's "train"); Karpathy's "restval" images (the rest of
      val2014, inside COCO 2017's train split) are left out and counted (``excluded_restval``)
      unless ``train_restval``. With ``update_val="hash"`` every non-retrieval image is kept.
    * zero-shot: ``zs_splits`` maps ``zs_test``/``zs_val`` to the zero-shot dataset's splits;
      the default ``{"zs_test": "train", "zs_val": "test"}`` is tiered-ImageNet's: its 351
      training classes are the zero-shot test set, its 160 test classes the validation set.

    ``max_per_class`` maps a split to the most samples any one class keeps there (chosen by a
    seeded hash of the key), ``None`` for all of them; splits left out take ``PAPER_CAPS``
    (100 per zero-shot test class, nothing else capped). Images are matched to the retrieval
    sets by COCO image id (``image_id`` / ``cocoid`` in the sample meta), else by key. Class
    names are matched case-insensitively, underscores as spaces. A plan class the dataset
    lacks, or (unless ``allow_extra_classes``, which drops and counts them) a dataset class the
    plan lacks, is a ValueError naming them. Unreadable images are skipped and counted.
    Everything is held in memory before it is written: at paper scale (about 600k COCO crops)
    use a small ``image_size`` or cap the update splits.
    """
    if update_val not in UPDATE_VAL_SOURCES:
        raise ValueError(f"update_val must be one of {UPDATE_VAL_SOURCES}, got {update_val!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    caps = _check_caps(max_per_class)
    zs_splits = {"zs_test": "train", "zs_val": "test", **(zs_splits or {})}
    pixels = PixelSpec(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    corrupt: dict[str, int] = {}

    retrieval_set = _load(retrieval_dataset, retrieval_split)
    retrieval_ids = {_image_id(s) for s in retrieval_set}
    val_ids = restval_ids = None
    if update_val == "retrieval":
        val_ids = _image_ids(retrieval_dataset, retrieval_val_split, "update val")
        if not train_restval:
            restval_ids = _image_ids(retrieval_dataset, "restval", "restval")
    chosen, extra_counts = _assign_update(plan, update_dataset, update_splits, update_test, retrieval_ids,
                                          val_ids, restval_ids, val_fraction, allow_extra_classes)
    for name in ("zs_test", "zs_val"):
        classes = plan.zs_test_classes if name == "zs_test" else plan.zs_val_classes
        dataset = _load(zs_dataset, zs_splits[name])
        mapping, extra = _label_mapping(dataset, classes, f"{name} ({dataset.name})", allow_extra_classes)
        extra_counts[name] = extra
        chosen[name] = [(s, mapping[s.label]) for s in dataset if s.label in mapping]

    splits = {}
    for name in CLASSIFICATION_SPLITS:
        samples = _cap_per_class(chosen[name], caps[name], seed)
        splits[name], corrupt[name] = _load_arrays(samples, pixels)
    retrieval, corrupt["retrieval"] = _load_retrieval_arrays(retrieval_set, pixels)
    summary = {"source": "real", "seed": int(seed), "update_val": update_val,
               "val_fraction": val_fraction if update_val == "hash" else None,
               "retrieval_val_split": retrieval_val_split if update_val == "retrieval" else None,
               "train_restval": bool(train_restval), "max_per_class": caps,
               "update_dataset": _describe(update_dataset),
               "zs_dataset": _describe(zs_dataset), "retrieval_dataset": _describe(retrieval_dataset),
               "update_splits": list(update_splits), "update_test": update_test,
               "zs_splits": dict(zs_splits), "retrieval_split": retrieval_split,
               "excluded_retrieval": extra_counts.pop("excluded_retrieval"),
               "excluded_restval": extra_counts.pop("excluded_restval"),
               "dropped_extra_classes": extra_counts, "corrupt": corrupt}
    return write_task(Path(out_dir), plan, splits, retrieval, image_size, summary)


def _check_caps(max_per_class: Mapping[str, int | None] | None) -> dict[str, int | None]:
    """``PAPER_CAPS`` updated by ``max_per_class``; an unknown split or a cap under 1 is a ValueError."""
    given = dict(max_per_class or {})
    unknown = sorted(set(given) - set(PAPER_CAPS))
    if unknown:
        raise ValueError(f"max_per_class: unknown split(s) {unknown}; expected some of {list(PAPER_CAPS)}")
    bad = {k: v for k, v in given.items() if v is not None and (not isinstance(v, int) or v < 1)}
    if bad:
        raise ValueError(f"max_per_class: a cap must be an integer of at least 1 or None (no cap), got {bad}")
    return {**PAPER_CAPS, **given}


def _image_ids(spec: DatasetSpec, split: str, what: str) -> set[str]:
    """The image ids of the ``split`` of the retrieval dataset ``spec`` (which images are ``what``)."""
    try:
        return {_image_id(s) for s in _load(spec, split)}
    except ValueError as err:
        raise ValueError(f"{what} images: split {split!r} of the retrieval dataset {spec[0]!r} "
                         f"could not be read ({err})") from err


def _load(spec: DatasetSpec, split: str):
    """The ``split`` of the dataset ``spec`` = (format, path[, options])."""
    if not 2 <= len(spec) <= 3:
        raise ValueError(f"dataset spec must be (format, path) or (format, path, options), got {spec!r}")
    options = dict(spec[2]) if len(spec) == 3 and spec[2] else {}
    return load_dataset(spec[0], spec[1], split, **options)


def _describe(spec: DatasetSpec) -> list:
    return [str(spec[0]), str(spec[1])] + ([{k: str(v) for k, v in dict(spec[2]).items()}]
                                           if len(spec) == 3 and spec[2] else [])


def _image_id(sample) -> str:
    """The identity of the image a sample comes from: COCO's image id where known, else its key."""
    for field in ("image_id", "cocoid"):
        if field in sample.meta:
            return f"coco:{int(sample.meta[field])}"
    return str(sample.key)


def _label_mapping(dataset, classes: Sequence[str], what: str,
                   allow_extra: bool) -> tuple[dict[int, int], int]:
    """Dataset label -> index into ``classes``, and the number of samples of dropped classes.

    Raises ValueError naming the plan classes the dataset lacks and, unless ``allow_extra``,
    the dataset classes the plan lacks.
    """
    by_norm: dict[str, int] = {}
    for label, name in enumerate(dataset.classnames):
        if norm_name(name) in by_norm:
            raise ValueError(f"{what}: dataset class names {dataset.classnames[by_norm[norm_name(name)]]!r} and "
                             f"{name!r} cannot be told apart")
        by_norm[norm_name(name)] = label
    missing = [c for c in classes if norm_name(c) not in by_norm]
    if missing:
        raise ValueError(f"{what}: class(es) of the plan not in the dataset: {missing[:20]}"
                         f"{' ...' if len(missing) > 20 else ''}")
    wanted = {norm_name(c) for c in classes}
    extra = [n for n in dataset.classnames if norm_name(n) not in wanted]
    if extra and not allow_extra:
        raise ValueError(f"{what}: dataset class(es) not in the plan: {extra[:20]}"
                         f"{' ...' if len(extra) > 20 else ''} (allow_extra_classes=True drops them)")
    mapping = {by_norm[norm_name(c)]: i for i, c in enumerate(classes)}
    dropped = sum(1 for s in dataset if s.label not in mapping)
    return mapping, dropped


def _assign_update(plan: ClassPlan, spec: DatasetSpec, update_splits: Sequence[str], update_test: str,
                   retrieval_ids: set[str], val_ids: set[str] | None, restval_ids: set[str] | None,
                   val_fraction: float, allow_extra: bool) -> tuple[dict[str, list], dict[str, int]]:
    """(sample, plan label) lists of update_train / update_val / update_test, and counts of
    samples left out (retrieval images, restval images, classes outside the plan).

    ``val_ids``: the validation images (None: a hashed share ``val_fraction`` of the training
    images); ``restval_ids``: images trained on by nobody (None or empty: none).
    """
    read = list(update_splits) + ([update_test] if update_test not in ("retrieval", *update_splits) else [])
    chosen = {"update_train": [], "update_val": [], "update_test": []}
    excluded, restval, dropped = 0, 0, 0
    for split in read:
        dataset = _load(spec, split)
        mapping, extra = _label_mapping(dataset, plan.update_classes, f"update task ({dataset.name})",
                                        allow_extra)
        dropped += extra
        for sample in dataset:
            if sample.label not in mapping:
                continue
            image = _image_id(sample)
            item = (sample, mapping[sample.label])
            if (update_test == "retrieval" and image in retrieval_ids) or update_test == split:
                chosen["update_test"].append(item)
            elif image in retrieval_ids:
                excluded += 1
            elif split not in update_splits:
                continue
            elif val_ids is None:
                chosen[f"update_{split_of_key(image, val_fraction, 0.0)}"].append(item)
            elif image in val_ids:
                chosen["update_val"].append(item)
            elif restval_ids and image in restval_ids:
                restval += 1
            else:
                chosen["update_train"].append(item)
    if not chosen["update_test"]:
        why = ("none of the update images is a retrieval image" if update_test == "retrieval"
               else f"split {update_test!r} holds no crops of the plan's classes")
        raise ValueError(f"update task: no test crops: {why}")
    if val_ids is not None and not chosen["update_val"]:
        raise ValueError("update task: no validation crops: none of the update images is an image of the "
                         "retrieval dataset's validation split")
    return chosen, {"excluded_retrieval": excluded, "excluded_restval": restval, "update": dropped}


def _cap_per_class(items: list, max_per_class: int | None, seed: int) -> list:
    """``items`` sorted by label (stable), at most ``max_per_class`` per label (None: all), chosen
    by a seeded hash of the sample key (the kept ones keep their source order)."""
    items = sorted(items, key=lambda item: item[1])
    if max_per_class is None:
        return items
    by_label: dict[int, list[int]] = {}
    for index, (sample, label) in enumerate(items):
        by_label.setdefault(label, []).append(index)
    keep = set()
    for indices in by_label.values():
        ranked = sorted(indices, key=lambda i: _hash(f"{seed}/{items[i][0].key}"))
        keep.update(ranked[:max_per_class])
    return [item for i, item in enumerate(items) if i in keep]


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def _load_arrays(items: Iterable, pixels: PixelSpec) -> tuple[tuple[list, list[int]], int]:
    """Pixels at model resolution and labels of ``(sample, label)`` items; unreadable images
    are skipped and counted."""
    images, labels, corrupt = [], [], 0
    for sample, label in items:
        array = _safe_array(sample, pixels)
        if array is None:
            corrupt += 1
            continue
        images.append(array)
        labels.append(label)
    return (images, labels), corrupt


def _load_retrieval_arrays(dataset, pixels: PixelSpec) -> tuple[tuple[list, list[str], list[int]], int]:
    images, captions, caption_image, corrupt = [], [], [], 0
    for sample in dataset:
        array = _safe_array(sample, pixels)
        if array is None:
            corrupt += 1
            continue
        captions += sample.captions
        caption_image += [len(images)] * len(sample.captions)
        images.append(array)
    return (images, captions, caption_image), corrupt


def _safe_array(sample, pixels: PixelSpec) -> np.ndarray | None:
    """The sample's image at model resolution, or None if it cannot be decoded (a missing file
    still raises: that is a broken dataset, not a corrupt image)."""
    try:
        return pixels.to_array(sample.load())
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError):  # PIL: truncated or unidentified image data
        return None
