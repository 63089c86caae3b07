"""COCO 2017: object crops for classification, and Karpathy's split for caption retrieval.

``coco_objects`` turns every instance box of ``annotations/instances_{split}2017.json`` into
an 80-way classification sample, the image cropped to the box (as Ding et al. build COCO
classification data for CL-CLIP). ``coco_captions`` reads Karpathy's ``dataset_coco.json``
(the 5,000-image test split is the standard COCO retrieval benchmark) and finds each image
among the COCO 2017 files, which hold the same pictures as 2014 under ``{cocoid:012d}.jpg``.
"""
from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

from PIL import Image

from ticlip_core.data.datasets.base import (ClassificationSample, ClassificationSet, RetrievalSample, RetrievalSet,
                                            check_split, karpathy_captions, lazy_image, missing_files_error,
                                            open_rgb, read_json, require_file)

OBJECT_SPLITS = ("train", "val")
# Karpathy's training set is his "train" plus "restval" (the rest of val2014).
KARPATHY_SPLITS = {"train": ("train", "restval"), "restval": ("restval",), "val": ("val",),
                   "test": ("test",)}


def coco_objects(root: str | os.PathLike, split: str = "train", *,
                 min_box_size: int = 16) -> ClassificationSet:
    """One sample per COCO instance box of ``split`` ("train" or "val"), the image cropped to it.

    Labels index the categories in ascending category id (80 classes for COCO 2017),
    class names are the category names. The box ``[x, y, w, h]`` is rounded to whole pixels
    and clipped to the image; crowd annotations (``iscrowd == 1``) and crops narrower or lower
    than ``min_box_size`` pixels (at least 1) are left out and counted in ``skipped``
    (``{"crowd": n, "small": m}``). Keys are ``"{image file stem}/{annotation id}"``;
    sample meta holds ``image_id``, ``annotation_id``, ``category_id``, ``supercategory``,
    ``file_name`` and ``box`` (the crop, ``[x0, y0, x1, y1]``).
    """
    check_split(split, OBJECT_SPLITS, "coco_objects")
    if min_box_size < 0:
        raise ValueError(f"coco_objects: min_box_size must be >= 0, got {min_box_size}")
    root = Path(root)
    ann_path = require_file(root / "annotations" / f"instances_{split}2017.json",
                            "COCO instances annotation file")
    data = read_json(ann_path, ("images", "annotations", "categories"))

    categories = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {}
    for label, category in enumerate(categories):
        if category["id"] in label_of:
            raise ValueError(f"{ann_path}: category id {category['id']} listed twice")
        label_of[category["id"]] = label
    images = {image["id"]: image for image in data["images"]}
    image_dir = root / f"{split}2017"

    samples, used_files = [], set()
    skipped = {"crowd": 0, "small": 0}
    smallest = max(int(min_box_size), 1)
    for ann in sorted(data["annotations"], key=lambda a: a["id"]):
        image = images.get(ann["image_id"])
        if image is None:
            raise ValueError(f"{ann_path}: annotation {ann['id']} refers to unknown image id {ann['image_id']}")
        if ann["category_id"] not in label_of:
            raise ValueError(f"{ann_path}: annotation {ann['id']} refers to unknown category id "
                             f"{ann['category_id']}")
        if ann.get("iscrowd", 0) == 1:
            skipped["crowd"] += 1
            continue
        box = crop_box(ann["bbox"], image["width"], image["height"])
        if box[2] - box[0] < smallest or box[3] - box[1] < smallest:
            skipped["small"] += 1
            continue
        category = categories[label_of[ann["category_id"]]]
        file_name = image["file_name"]
        used_files.add(file_name)
        samples.append(ClassificationSample(
            key=f"{Path(file_name).stem}/{ann['id']}", label=label_of[ann["category_id"]],
            load=partial(crop_image, str(image_dir / file_name), tuple(box),
                         (image["width"], image["height"])),
            meta={"image_id": image["id"], "annotation_id": ann["id"],
                  "category_id": ann["category_id"], "supercategory": category.get("supercategory"),
                  "file_name": file_name, "box": box}))

    if used_files:
        present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
        missing = sorted(str(image_dir / f) for f in used_files - present)
        if missing:
            raise missing_files_error(missing, f"COCO {split}2017 images for {ann_path.name}")
    return ClassificationSet(name=f"coco2017_objects_{split}",
                             classnames=[c["name"] for c in categories], samples=samples,
                             skipped=skipped,
                             meta={"root": str(root), "split": split, "min_box_size": min_box_size,
                                   "category_ids": [c["id"] for c in categories]})


def crop_box(bbox, width: int, height: int) -> list[int]:
    """COCO ``[x, y, w, h]`` (floats) as whole-pixel ``[x0, y0, x1, y1]`` clipped to the image.

    Corners are rounded half up (not Python's round-half-even), so a box's crop does not
    depend on the parity of its coordinates.
    """
    x, y, w, h = (float(v) for v in bbox)

    def snap(v: float, hi: int) -> int:
        return min(max(math.floor(v + 0.5), 0), hi)

    return [snap(x, width), snap(y, height), snap(x + w, width), snap(y + h, height)]


def crop_image(path: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    """The RGB image at ``path`` cropped to ``box``; its size must be the annotated ``size``."""
    image = open_rgb(path)
    if image.size != tuple(size):
        raise ValueError(f"{path}: image is {image.size[0]}x{image.size[1]} but the annotation "
                         f"says {size[0]}x{size[1]}")
    return image.crop(box)


def coco_captions(root: str | os.PathLike, split: str = "test",
                  karpathy_json: str | os.PathLike | None = None) -> RetrievalSet:
    """The images of Karpathy's ``split`` of COCO with their captions, as a RetrievalSet.

    ``karpathy_json`` defaults to ``root/annotations/dataset_coco.json``. ``split="train"``
    includes "restval", as Karpathy's training set does. Each image is looked up as
    ``root/train2017/{cocoid:012d}.jpg``, then ``root/val2017/...``, then
    ``root/{filepath}/{filename}`` (the 2014 layout); captions are the ``raw`` sentences,
    stripped. Keys are ``{cocoid:012d}``; sample meta holds ``cocoid``, ``imgid``,
    ``karpathy_split`` and ``path`` (relative to ``root``).
    """
    check_split(split, KARPATHY_SPLITS, "coco_captions")
    root = Path(root)
    json_path = Path(karpathy_json) if karpathy_json is not None else \
        root / "annotations" / "dataset_coco.json"
    data = read_json(require_file(json_path, "Karpathy COCO split file (dataset_coco.json)"),
                      ("images",))
    wanted = KARPATHY_SPLITS[split]
    # One directory listing per 2017 folder instead of a stat per image.
    listings = {folder: set(os.listdir(root / folder)) if (root / folder).is_dir() else set()
                for folder in ("train2017", "val2017")}

    samples, missing = [], []
    for entry in data["images"]:
        if entry.get("split") not in wanted:
            continue
        cocoid = int(entry["cocoid"])
        rel = _resolve_image(root, entry, listings)
        if rel is None:
            missing.append((cocoid, _candidates(root, entry)))
            continue
        captions = karpathy_captions(entry, json_path, f"cocoid={cocoid}")
        samples.append(RetrievalSample(
            key=f"{cocoid:012d}", load=lazy_image(root / rel), captions=captions,
            meta={"cocoid": cocoid, "imgid": entry.get("imgid"), "karpathy_split": entry["split"],
                  "path": rel}))
    if missing:
        cocoid, tried = missing[0]
        more = f" ({len(missing) - 1} more images of split {split!r} missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"COCO image cocoid={cocoid} not found; tried "
                                f"{', '.join(str(p) for p in tried)}{more}")
    if not samples:
        raise ValueError(f"{json_path}: no images in Karpathy split(s) {list(wanted)}")
    return RetrievalSet(name=f"coco_karpathy_{split}", samples=samples,
                        meta={"root": str(root), "split": split, "karpathy_json": str(json_path)})


def _candidates(root: Path, entry: dict) -> list[Path]:
    """Where an image of Karpathy's json may lie, in lookup order."""
    name = f"{int(entry['cocoid']):012d}.jpg"
    paths = [root / "train2017" / name, root / "val2017" / name]
    if entry.get("filepath") and entry.get("filename"):
        paths.append(root / entry["filepath"] / entry["filename"])
    return paths


def _resolve_image(root: Path, entry: dict, listings: dict[str, set[str]]) -> str | None:
    """Path (relative to ``root``) of the image of ``entry``, or None if none exists."""
    name = f"{int(entry['cocoid']):012d}.jpg"
    for folder, names in listings.items():
        if name in names:
            return f"{folder}/{name}"
    if entry.get("filepath") and entry.get("filename"):
        rel = f"{entry['filepath']}/{entry['filename']}"
        if (root / rel).is_file():
            return rel
    return None
