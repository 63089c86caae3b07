"""The CL-CLIP task rendered from the synthetic world: object crops of timeless classes, as
COCO's boxes are cropped into an object dataset, plus captioned scenes for retrieval.

Written in the ``task_files`` format. Every (class, split) and every retrieval scene has its own
random stream, so the output depends only on the arguments.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ticlip_core.clclip.classes import ClassPlan, norm_name
from ticlip_core.clclip.task_files import write_task
from ticlip_core.data import world
from ticlip_core.data.pixels import PixelSpec
from ticlip_core.data.synthetic import crop_to_box, render_sample, scene_rng

# SeedSequence streams, apart from synthetic.py's 0-2 and its STREAM_MEMCLIP = 13
# (STREAM_BASE_POOL: base_pool.py's)
STREAM_CROPS, STREAM_RETRIEVAL, STREAM_BASE_POOL = 10, 11, 12
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


def build_synthetic_task(out_dir: str | os.PathLike, plan: ClassPlan, *, seed: int = 0,
                         image_size: int = 32,
                         crops_per_class: Mapping[str, int] | None = None,
                         zs_per_class: Mapping[str, int] | None = None,
                         retrieval_pairs: int = 200, render_size: int = 64) -> dict:
    """Render the CL-CLIP task from the synthetic world into ``out_dir``; returns the summary.

    Like COCO boxes cropped into an object dataset: timeless scenes (``year=None``: timeless
    look, uniform domains, neutral captions) whose primary class is forced to the wanted class
    are rendered at ``render_size``; every object box (1 to 3 per scene) is cropped and resized
    to ``image_size`` (shortest side bicubic, centre crop), until the class has
    ``crops_per_class[split]`` crops for train/val/test (update classes) or
    ``zs_per_class[split]`` for val/test (held-out classes). Each (class, split) has its own
    random stream, seeded by ``(seed, class id, split, scene)``, so the splits never share a
    scene and the output depends only on the arguments. Retrieval: ``retrieval_pairs`` whole
    timeless scenes of any class, resized the same way, each with its one caption.
    """
    crops_per_class = {"train": 40, "val": 10, "test": 20, **(crops_per_class or {})}
    zs_per_class = {"val": 20, "test": 20, **(zs_per_class or {})}
    _check_counts(crops_per_class, ("train", "val", "test"), "crops_per_class")
    _check_counts(zs_per_class, ("val", "test"), "zs_per_class")
    if not 8 <= render_size <= 1024 or not 8 <= image_size <= 1024:
        raise ValueError(f"render_size and image_size must be 8 to 1024 pixels, got {render_size}, {image_size}")
    if retrieval_pairs < 1:
        raise ValueError(f"retrieval_pairs must be at least 1, got {retrieval_pairs}")
    pixels = PixelSpec(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    ids = _world_ids(plan)

    splits, skipped = {}, 0
    jobs = [("update", s, plan.update_classes, crops_per_class[s]) for s in ("train", "val", "test")]
    jobs += [("zs", s, plan.zs_val_classes if s == "val" else plan.zs_test_classes, zs_per_class[s])
             for s in ("val", "test")]
    for group, split, names, quota in jobs:
        images, labels = [], []
        for label, name in enumerate(names):
            crops, n_skipped = _render_crops(ids[name], split, quota, seed=seed,
                                             render_size=render_size, pixels=pixels)
            images += crops
            labels += [label] * len(crops)
            skipped += n_skipped
        splits[f"{group}_{split}"] = (images, labels)

    retrieval = _render_retrieval(retrieval_pairs, seed=seed, render_size=render_size, pixels=pixels)
    summary = {"source": "synthetic", "seed": int(seed), "render_size": render_size,
               "crops_per_class": dict(crops_per_class), "zs_per_class": dict(zs_per_class),
               "retrieval_pairs": retrieval_pairs, "skipped_small_boxes": skipped}
    return write_task(Path(out_dir), plan, splits, retrieval, image_size, summary)


def _check_counts(counts: Mapping[str, int], splits: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(counts) - set(splits))
    if unknown:
        raise ValueError(f"{what}: unknown split(s) {unknown}; expected {list(splits)}")
    bad = {s: counts[s] for s in splits if int(counts[s]) < 1}
    if bad:
        raise ValueError(f"{what}: every split needs at least one sample per class, got {bad}")


def _world_ids(plan: ClassPlan) -> dict[str, int]:
    """Synthetic-world class id of every class of ``plan``; unknown or time-varying names fail."""
    by_name = {norm_name(n): i for i, n in enumerate(world.class_names())}
    timeless = set(world.timeless_class_ids())
    names = plan.update_classes + plan.zs_test_classes + plan.zs_val_classes
    unknown = [n for n in names if norm_name(n) not in by_name]
    if unknown:
        raise ValueError(f"class(es) {unknown} are not classes of the synthetic world")
    changing = [n for n in names if by_name[norm_name(n)] not in timeless]
    if changing:
        raise ValueError(f"class(es) {changing} change over time in the synthetic world; "
                         "a CL-CLIP task uses timeless classes only")
    return {n: by_name[norm_name(n)] for n in names}


def _render_crops(class_id: int, split: str, quota: int, *, seed: int, render_size: int,
                  pixels: PixelSpec) -> tuple[list[np.ndarray], int]:
    """``quota`` crops of ``class_id`` for ``split`` and the number of too-small boxes skipped."""
    crops, skipped = [], 0
    max_scenes = 10 * quota + 100
    for scene in range(max_scenes):
        rng = scene_rng(seed, STREAM_CROPS, class_id, _SPLIT_INDEX[split], scene)
        image, meta = render_sample(rng, year=None, image_size=render_size, class_id=class_id)
        for label, box in zip(meta["labels"], meta["boxes"]):
            if label != class_id:
                continue
            crop = crop_to_box(image, box)
            if crop is None:
                skipped += 1
                continue
            crops.append(pixels.to_array(crop))
            if len(crops) == quota:
                return crops, skipped
    raise RuntimeError(f"synthetic class {world.class_names()[class_id]!r}: only {len(crops)} of "
                       f"{quota} crops in {max_scenes} scenes (render_size {render_size} too small?)")


def _render_retrieval(n: int, *, seed: int, render_size: int,
                      pixels: PixelSpec) -> tuple[list[np.ndarray], list[str], list[int]]:
    """``n`` timeless scenes resized to the model resolution, each with its caption."""
    images, captions = [], []
    for i in range(n):
        image, meta = render_sample(scene_rng(seed, STREAM_RETRIEVAL, i), year=None,
                                    image_size=render_size)
        images.append(pixels.to_array(image))
        captions.append(meta["caption"])
    return images, captions, list(range(n))
