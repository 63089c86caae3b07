"""The CL-CLIP data protocol (Ding et al., Sec. III-B): update task, held-out classes, retrieval.

An update task is an object-classification set built by cropping annotated boxes (COCO's 80
classes in the paper); zero-shot classification uses held-out classes (tiered-ImageNet, prompt
"this is a photo of [class]."); image-text retrieval uses whole images with their captions
(COCO Karpathy test). OST trains all update classes in one session, MST in class sessions
(Table I: eight sessions of ten COCO classes).

A prepared task is a folder of plain files, written by ``build_synthetic_task`` or
``build_real_task``:

==================  ===================================================================
file                content
==================  ===================================================================
update_train.npz    ``images`` uint8 (N, H, W, 3), ``labels`` int64 (index into ``update``)
update_val.npz      same
update_test.npz     same
zs_val.npz          ``labels`` index into ``zs_val``
zs_test.npz         ``labels`` index into ``zs_test``
retrieval.npz       ``images`` uint8 (N, H, W, 3), ``captions`` str (M,), ``caption_image``
                    int64 (M,): the image of each caption (COCO has about five per image)
classes.json        ``{"update": [...], "sessions": [[...]], "zs_test": [...], "zs_val": [...]}``
summary.json        counts per split and class, the seed and the options used
==================  ===================================================================

Within a split the samples are ordered by label, then by source order. Every file is written
deterministically (fixed zip timestamps), so the same inputs and seed give identical bytes.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from ticlip_core.data import world
from ticlip_core.data.bucketing import split_of_key
from ticlip_core.data.datasets import load_dataset
from ticlip_core.data.loader import PixelSpec
from ticlip_core.data.shards import ShardWriter
from ticlip_core.data.synthetic import (DEFAULTS as SYNTHETIC_DEFAULTS, encode_jpeg, fix_articles, process_pool,
                              render_sample)

SETTINGS = ("ost", "mst")
CLASSIFICATION_SPLITS = ("update_train", "update_val", "update_test", "zs_val", "zs_test")
RETRIEVAL_FILE = "retrieval.npz"
PROMPT_TEMPLATE = "this is a photo of {}."  # the paper's zero-shot prompt (Sec. III-B b)

# Ding et al., Table I: the 80 COCO classes (names as in instances_*2017.json, i.e. as
# ``coco_objects`` names them) in eight MST sessions of ten, which follow COCO's category order.
COCO_SESSIONS: tuple[tuple[str, ...], ...] = (
    ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
     "traffic light"),
    ("fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
     "cow"),
    ("elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase",
     "frisbee"),
    ("skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
     "surfboard", "tennis racket", "bottle"),
    ("wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange"),
    ("broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
     "bed"),
    ("dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
     "microwave", "oven"),
    ("toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
     "hair drier", "toothbrush"),
)


# ---------------------------------------------------------------------------------------------
# Class plan
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassPlan:
    """Which classes the update task, its MST sessions and the zero-shot splits use.

    ``update_classes[i]`` names update label ``i``; ``sessions`` lists the update labels of each
    MST session (disjoint, together covering every label); ``zs_test_classes`` and
    ``zs_val_classes`` are held-out classes, disjoint from the update classes and from each
    other (compared case-insensitively).
    """

    update_classes: list[str]
    sessions: list[list[int]]
    zs_test_classes: list[str]
    zs_val_classes: list[str]

    def __post_init__(self) -> None:
        for field, names in (("update_classes", self.update_classes),
                             ("zs_test_classes", self.zs_test_classes),
                             ("zs_val_classes", self.zs_val_classes)):
            _check_names(field, names)
        _check_sessions(self.sessions, len(self.update_classes))
        groups = {"update": self.update_classes, "zs_test": self.zs_test_classes,
                  "zs_val": self.zs_val_classes}
        keys = list(groups)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                shared = sorted({_norm(n) for n in groups[keys[a]]} & {_norm(n) for n in groups[keys[b]]})
                if shared:
                    raise ValueError(f"class plan: {keys[a]} and {keys[b]} classes must be disjoint; "
                                     f"both hold {shared}")

    def num_sessions(self, setting: str) -> int:
        """1 for OST, ``len(sessions)`` for MST."""
        return 1 if _check_setting(setting) == "ost" else len(self.sessions)

    def session_classes(self, setting: str, s: int) -> list[int]:
        """Update labels trained in session ``s`` (OST: every label, in the one session 0)."""
        self._check_session(setting, s)
        return list(range(len(self.update_classes))) if setting == "ost" else list(self.sessions[s])

    def seen_classes(self, setting: str, s: int) -> list[int]:
        """Update labels trained in sessions ``0..s``, in session order."""
        self._check_session(setting, s)
        return [c for j in range(s + 1) for c in self.session_classes(setting, j)]

    def to_json(self) -> dict:
        """The ``classes.json`` form."""
        return {"update": list(self.update_classes), "sessions": [list(s) for s in self.sessions],
                "zs_test": list(self.zs_test_classes), "zs_val": list(self.zs_val_classes)}

    @classmethod
    def from_json(cls, data: Mapping) -> "ClassPlan":
        """The plan stored by ``to_json``."""
        missing = [k for k in ("update", "sessions", "zs_test", "zs_val") if k not in data]
        if missing:
            raise ValueError(f"class plan: missing key(s) {missing}")
        return cls(update_classes=list(data["update"]),
                   sessions=[[int(c) for c in s] for s in data["sessions"]],
                   zs_test_classes=list(data["zs_test"]), zs_val_classes=list(data["zs_val"]))

    def _check_session(self, setting: str, s: int) -> None:
        n = self.num_sessions(setting)
        if not 0 <= s < n:
            raise IndexError(f"{setting}: session {s} out of range; there are {n}")


def _norm(name: str) -> str:
    """A class name for comparison: case, underscores and repeated spaces ignored."""
    return " ".join(str(name).replace("_", " ").lower().split())


def _check_names(field: str, names: Sequence[str]) -> None:
    if not names:
        raise ValueError(f"class plan: {field} is empty")
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class plan: {field} holds a non-string or empty name: {name!r}")
        if _norm(name) in seen:
            raise ValueError(f"class plan: {field} names {name!r} twice (as {seen[_norm(name)]!r})")
        seen[_norm(name)] = name


def _check_sessions(sessions: Sequence[Sequence[int]], n: int) -> None:
    if not sessions or any(len(s) == 0 for s in sessions):
        raise ValueError("class plan: sessions must be a non-empty list of non-empty label lists")
    flat = [c for s in sessions for c in s]
    bad = [c for c in flat if not isinstance(c, (int, np.integer)) or not 0 <= c < n]
    if bad:
        raise ValueError(f"class plan: session label(s) {bad} outside [0, {n})")
    repeated = sorted({c for c in flat if flat.count(c) > 1})
    if repeated:
        raise ValueError(f"class plan: label(s) {repeated} occur in more than one session")
    uncovered = sorted(set(range(n)) - set(flat))
    if uncovered:
        raise ValueError(f"class plan: update label(s) {uncovered} are in no session")


def _check_setting(setting: str) -> str:
    if setting not in SETTINGS:
        raise ValueError(f"unknown CL-CLIP setting {setting!r}; expected one of {SETTINGS}")
    return setting


def coco_class_plan(zs_test_classes: Sequence[str], zs_val_classes: Sequence[str]) -> ClassPlan:
    """The paper's plan: COCO's 80 classes (label order = category id order = Table I order) in
    the eight sessions of ``COCO_SESSIONS``, with the given held-out classes (tiered-ImageNet:
    351 test classes, 160 validation classes)."""
    update = [name for session in COCO_SESSIONS for name in session]
    sessions = [list(range(i * 10, (i + 1) * 10)) for i in range(len(COCO_SESSIONS))]
    return ClassPlan(update, sessions, list(zs_test_classes), list(zs_val_classes))


def synthetic_class_plan(num_update: int = 16, num_sessions: int = 8, num_zs_test: int = 12,
                         num_zs_val: int = 12, seed: int = 0) -> ClassPlan:
    """A seeded plan over the synthetic world's timeless classes (their names never change).

    The timeless classes are shuffled with ``seed``; the first ``num_update`` are the update
    classes (in that order), cut into ``num_sessions`` equal consecutive sessions; the next
    ``num_zs_test`` and ``num_zs_val`` are the held-out zero-shot test and validation classes.
    """
    for name, value in (("num_update", num_update), ("num_sessions", num_sessions),
                        ("num_zs_test", num_zs_test), ("num_zs_val", num_zs_val)):
        if int(value) < 1:
            raise ValueError(f"synthetic_class_plan: {name} must be at least 1, got {value}")
    if num_update % num_sessions:
        raise ValueError(f"synthetic_class_plan: {num_update} update classes cannot be cut into "
                         f"{num_sessions} equal sessions")
    timeless = world.timeless_class_ids()
    needed = num_update + num_zs_test + num_zs_val
    if needed > len(timeless):
        raise ValueError(f"synthetic_class_plan: {num_update} update + {num_zs_test} zero-shot test + "
                         f"{num_zs_val} zero-shot val = {needed} classes, but the synthetic world has "
                         f"only {len(timeless)} timeless classes")
    order = np.random.default_rng(seed).permutation(len(timeless))
    names = [world.class_names()[timeless[i]] for i in order]
    per = num_update // num_sessions
    return ClassPlan(update_classes=names[:num_update],
                     sessions=[list(range(s * per, (s + 1) * per)) for s in range(num_sessions)],
                     zs_test_classes=names[num_update:num_update + num_zs_test],
                     zs_val_classes=names[num_update + num_zs_test:needed])


# ---------------------------------------------------------------------------------------------
# Writing and reading a prepared task
# ---------------------------------------------------------------------------------------------

def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an (uncompressed) ``.npz`` whose bytes depend only on the arrays.

    ``np.savez`` stamps each member with the current time; here every member gets the zip
    epoch. Written to a temporary name and renamed, so a killed job leaves no partial file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_npz(out_dir, filename: str) -> dict[str, np.ndarray]:
    path = Path(out_dir) / filename
    if not path.is_file():
        raise FileNotFoundError(f"CL-CLIP task file not found: {path} (build the task first)")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_split(out_dir: str | os.PathLike, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 ``(N, H, W, 3)``) and labels (int64 ``(N,)``) of split ``name``
    (one of ``CLASSIFICATION_SPLITS``)."""
    if name not in CLASSIFICATION_SPLITS:
        raise ValueError(f"unknown CL-CLIP split {name!r}; expected one of {CLASSIFICATION_SPLITS}")
    data = _read_npz(out_dir, f"{name}.npz")
    return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"].astype(np.int64))


def load_retrieval(out_dir: str | os.PathLike) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Retrieval images (uint8 ``(N, H, W, 3)``), captions (``M`` strings) and the image index
    of each caption (int64 ``(M,)``), for ``metrics.recall_folds``."""
    data = _read_npz(out_dir, RETRIEVAL_FILE)
    return (torch.from_numpy(data["images"]), [str(c) for c in data["captions"]],
            torch.from_numpy(data["caption_image"].astype(np.int64)))


def load_classes(out_dir: str | os.PathLike) -> ClassPlan:
    """The class plan stored in ``out_dir/classes.json``."""
    path = Path(out_dir) / "classes.json"
    if not path.is_file():
        raise FileNotFoundError(f"CL-CLIP class file not found: {path} (build the task first)")
    return ClassPlan.from_json(json.loads(path.read_text(encoding="utf-8")))


def _stack(arrays: list[np.ndarray], image_size: int) -> np.ndarray:
    """``(N, S, S, 3)`` uint8, also when ``arrays`` is empty."""
    if not arrays:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.stack(arrays).astype(np.uint8, copy=False)


def _write_task(out_dir: Path, plan: ClassPlan, splits: dict[str, tuple[list, list[int]]],
                retrieval: tuple[list, list[str], list[int]], image_size: int, summary: dict) -> dict:
    """Write every split, the retrieval set, classes.json and summary.json; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"update_train": plan.update_classes, "update_val": plan.update_classes,
             "update_test": plan.update_classes, "zs_val": plan.zs_val_classes,
             "zs_test": plan.zs_test_classes}
    counts = {}
    for split in CLASSIFICATION_SPLITS:
        images, labels = splits[split]
        labels = np.asarray(labels, dtype=np.int64)
        write_npz(out_dir / f"{split}.npz", {"images": _stack(images, image_size), "labels": labels})
        per_class = np.bincount(labels, minlength=len(names[split])) if len(labels) else \
            np.zeros(len(names[split]), np.int64)
        counts[split] = {"total": int(len(labels)),
                         "per_class": {n: int(k) for n, k in zip(names[split], per_class)}}
    images, captions, caption_image = retrieval
    write_npz(out_dir / RETRIEVAL_FILE, {"images": _stack(images, image_size),
                                         "captions": np.asarray(captions, dtype=np.str_),
                                         "caption_image": np.asarray(caption_image, dtype=np.int64)})
    counts["retrieval"] = {"images": len(images), "captions": len(captions)}
    _write_json(out_dir / "classes.json", plan.to_json())
    summary = {**summary, "image_size": image_size, "counts": counts}
    _write_json(out_dir / "summary.json", summary)
    return summary


# ---------------------------------------------------------------------------------------------
# Synthetic task
# ---------------------------------------------------------------------------------------------

_STREAM_CROPS, _STREAM_RETRIEVAL, _STREAM_BASE_POOL = 10, 11, 12  # SeedSequence streams, apart from synthetic.py's 0-2
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
_MIN_CROP = 4  # pixels per side at render_size; smaller (clipped) boxes are skipped


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
    return _write_task(Path(out_dir), plan, splits, retrieval, image_size, summary)


def _check_counts(counts: Mapping[str, int], splits: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(counts) - set(splits))
    if unknown:
        raise ValueError(f"{what}: unknown split(s) {unknown}; expected {list(splits)}")
    bad = {s: counts[s] for s in splits if int(counts[s]) < 1}
    if bad:
        raise ValueError(f"{what}: every split needs at least one sample per class, got {bad}")


def _world_ids(plan: ClassPlan) -> dict[str, int]:
    """Synthetic-world class id of every class of ``plan``; unknown or time-varying names fail."""
    by_name = {_norm(n): i for i, n in enumerate(world.class_names())}
    timeless = set(world.timeless_class_ids())
    names = plan.update_classes + plan.zs_test_classes + plan.zs_val_classes
    unknown = [n for n in names if _norm(n) not in by_name]
    if unknown:
        raise ValueError(f"class(es) {unknown} are not classes of the synthetic world")
    changing = [n for n in names if by_name[_norm(n)] not in timeless]
    if changing:
        raise ValueError(f"class(es) {changing} change over time in the synthetic world; "
                         "a CL-CLIP task uses timeless classes only")
    return {n: by_name[_norm(n)] for n in names}


def _scene_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))


def _render_crops(class_id: int, split: str, quota: int, *, seed: int, render_size: int,
                  pixels: PixelSpec) -> tuple[list[np.ndarray], int]:
    """``quota`` crops of ``class_id`` for ``split`` and the number of too-small boxes skipped."""
    crops, skipped = [], 0
    max_scenes = 10 * quota + 100
    for scene in range(max_scenes):
        rng = _scene_rng(seed, _STREAM_CROPS, class_id, _SPLIT_INDEX[split], scene)
        image, meta = render_sample(rng, year=None, image_size=render_size, class_id=class_id)
        for label, box in zip(meta["labels"], meta["boxes"]):
            if label != class_id:
                continue
            crop = _crop(image, box)
            if crop is None:
                skipped += 1
                continue
            crops.append(pixels.to_array(crop))
            if len(crops) == quota:
                return crops, skipped
    raise RuntimeError(f"synthetic class {world.class_names()[class_id]!r}: only {len(crops)} of "
                       f"{quota} crops in {max_scenes} scenes (render_size {render_size} too small?)")


def _crop(image: Image.Image, box: Sequence[float]) -> Image.Image | None:
    """``image`` cropped to the normalised ``[x0, y0, x1, y1]`` box (widened to whole pixels,
    clipped to the image), or None when the clipped box is under ``_MIN_CROP`` pixels a side."""
    w, h = image.size
    x0, y0 = max(0, math.floor(box[0] * w)), max(0, math.floor(box[1] * h))
    x1, y1 = min(w, math.ceil(box[2] * w)), min(h, math.ceil(box[3] * h))
    if x1 - x0 < _MIN_CROP or y1 - y0 < _MIN_CROP:
        return None
    return image.crop((x0, y0, x1, y1))


def _render_retrieval(n: int, *, seed: int, render_size: int,
                      pixels: PixelSpec) -> tuple[list[np.ndarray], list[str], list[int]]:
    """``n`` timeless scenes resized to the model resolution, each with its caption."""
    images, captions = [], []
    for i in range(n):
        image, meta = render_sample(_scene_rng(seed, _STREAM_RETRIEVAL, i), year=None,
                                    image_size=render_size)
        images.append(pixels.to_array(image))
        captions.append(meta["caption"])
    return images, captions, list(range(n))


BASE_POOL_CAPTION = "a photo of a {colour} {name}."
BASE_POOL_FIELDS = [pa.field("labels", pa.list_(pa.int64())), pa.field("label_names", pa.list_(pa.string())),
                    pa.field("domain", pa.string()), pa.field("colour", pa.string()),
                    pa.field("timestamp", pa.string())]


def build_synthetic_base_pool(out_dir: str | os.PathLike, *, num_samples: int, seed: int = 0,
                              scene_fraction: float = 0.5, image_size: int = 32, render_size: int = 64,
                              samples_per_shard: int = 1000, workers: int = 1) -> dict:
    """Write the pre-training pool of the default's original CLIP: ``num_samples`` captioned
    scenes and object crops, as img2dataset-layout shards in ``out_dir``; returns a summary.
    ``workers`` processes render the scenes; the output does not depend on it.

    CLIP's web data holds both whole scenes and object-centric photos named in their captions.
    The synthetic stand-in draws the world's timeless scenes (every timeless class, update and
    held-out alike) from their own random stream, so no pool image is a task image; a share
    ``scene_fraction`` of the samples (spread evenly) are whole scenes with their own captions,
    resized as the retrieval set is; the rest are the scene's first object, cropped as
    ``build_synthetic_task`` crops it and captioned ``"a photo of a {colour} {name}."``.
    Crops whose box is too small are skipped and counted.
    """
    if num_samples < 1:
        raise ValueError(f"base pool: num_samples must be at least 1, got {num_samples}")
    if not 0 <= scene_fraction <= 1:
        raise ValueError(f"base pool: scene_fraction must be in [0, 1], got {scene_fraction}")
    if workers < 1:
        raise ValueError(f"base pool: workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pixels = PixelSpec(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    written, scenes_written, skipped, scene, shard_id = 0, 0, 0, 0, 0
    per_class: dict[str, int] = {}
    with contextlib.closing(_rendered_pool_scenes(seed, render_size, workers)) as scenes:
        while written < num_samples:
            with ShardWriter(out_dir, shard_id, samples_per_shard=samples_per_shard,
                             extra_fields=BASE_POOL_FIELDS, url_prefix=f"synthetic-crops://{seed}/") as writer:
                while written < num_samples and len(writer.rows) < samples_per_shard:
                    image, meta = next(scenes)
                    scene += 1
                    name, colour = meta["label_names"][0], meta["object_colours"][0]
                    whole = math.floor((written + 1) * scene_fraction) > math.floor(written * scene_fraction)
                    if whole:
                        picture, caption = image, meta["caption"]
                    else:
                        picture = _crop(image, meta["boxes"][0])
                        caption = fix_articles(BASE_POOL_CAPTION.format(colour=colour, name=name))
                        if picture is None:
                            skipped += 1
                            continue
                    jpeg = encode_jpeg(Image.fromarray(pixels.to_array(picture)), SYNTHETIC_DEFAULTS["jpeg_quality"])
                    writer.write(jpeg, caption, width=image_size, height=image_size,
                                 extra={"labels": meta["labels"] if whole else [meta["labels"][0]],
                                        "label_names": meta["label_names"] if whole else [name],
                                        "domain": meta["domain"], "colour": colour, "timestamp": None})
                    per_class[name] = per_class.get(name, 0) + 1
                    scenes_written += whole
                    written += 1
            shard_id += 1
    summary = {"source": "synthetic_base_pool", "seed": int(seed), "samples": written,
               "whole_scenes": scenes_written, "crops": written - scenes_written, "shards": shard_id,
               "scenes_drawn": scene, "skipped_small_boxes": skipped, "image_size": image_size,
               "per_class": dict(sorted(per_class.items()))}
    _write_json(out_dir / "summary.json", summary)
    return summary


def _render_pool_scene(job: tuple[int, int, int]):
    seed, scene, render_size = job
    return render_sample(_scene_rng(seed, _STREAM_BASE_POOL, scene), year=None, image_size=render_size)


def _rendered_pool_scenes(seed: int, render_size: int, workers: int, block: int = 512):
    """The base pool's scenes 0, 1, 2, ... in order, rendered ``block`` at a time in ``workers``
    processes (the caller stops when it has enough; each scene has its own random stream)."""
    if workers == 1:
        yield from map(_render_pool_scene, ((seed, i, render_size) for i in itertools.count()))
        return
    with process_pool(workers) as pool:
        def submit(start):
            return pool.map(_render_pool_scene, [(seed, i, render_size) for i in range(start, start + block)],
                            chunksize=max(1, block // (4 * workers)))
        pending = submit(0)
        for start in itertools.count(block, block):
            ahead = submit(start)  # the next block renders while this one is written
            yield from pending
            pending = ahead


# ---------------------------------------------------------------------------------------------
# Real datasets (COCO objects, tiered-ImageNet, COCO captions)
# ---------------------------------------------------------------------------------------------

DatasetSpec = Sequence  # (format, path) or (format, path, loader options)


def build_real_task(out_dir: str | os.PathLike, plan: ClassPlan, *,
                    update_dataset: DatasetSpec, zs_dataset: DatasetSpec,
                    retrieval_dataset: DatasetSpec, image_size: int = 224,
                    val_fraction: float = 0.05, seed: int = 0,
                    max_per_class: int | None = None,
                    update_splits: Sequence[str] = ("train", "val"),
                    update_test: str = "retrieval",
                    zs_splits: Mapping[str, str] | None = None,
                    retrieval_split: str = "test",
                    allow_extra_classes: bool = False) -> dict:
    """Build the task files from real datasets (``datasets.load_dataset`` formats); returns the summary.

    Each ``*_dataset`` is ``(format, path)`` or ``(format, path, loader options)``, e.g.
    ``("coco_objects", coco_root)``, ``("imagefolder", tiered_root, {"classnames": mapping})``,
    ``("coco_captions", coco_root)``. Splits, following Ding et al. Sec. III-B:

    * retrieval: the ``retrieval_split`` of the retrieval dataset (Karpathy's 5k COCO test
      images, with all their captions).
    * update test: with ``update_test="retrieval"`` (the paper: "the test set is from the
      images of the matching task"), the crops, from any of ``update_splits``, of the retrieval
      images; otherwise ``update_test`` names the update dataset's split to test on.
    * update train / val: every other crop of ``update_splits``, the validation share carved
      by a hash of the crop's *image* id (``bucketing.split_of_key``, ``val_fraction``), so the
      crops of one image stay together and the split never changes between runs. Crops of
      retrieval images are never trained or validated on (counted as ``excluded_retrieval``).
    * zero-shot: ``zs_splits`` maps ``zs_test``/``zs_val`` to the zero-shot dataset's splits;
      the default ``{"zs_test": "train", "zs_val": "test"}`` is tiered-ImageNet's: its 351
      training classes are the zero-shot test set, its 160 test classes the validation set.

    Images are matched to the retrieval set by COCO image id (``image_id`` / ``cocoid`` in the
    sample meta), else by key. Class names are matched case-insensitively, underscores as
    spaces. A plan class the dataset lacks, or (unless ``allow_extra_classes``, which drops and
    counts them) a dataset class the plan lacks, is a ValueError naming them.
    ``max_per_class`` keeps at most that many samples per class and split, chosen by a seeded
    hash of the key (paper: 100 per zero-shot class). Unreadable images are skipped and counted.
    Everything is held in memory before it is written: at paper scale (600k COCO crops) use a
    small ``image_size`` or ``max_per_class``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1, got {max_per_class}")
    zs_splits = {"zs_test": "train", "zs_val": "test", **(zs_splits or {})}
    pixels = PixelSpec(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    corrupt: dict[str, int] = {}

    retrieval_set = _load(retrieval_dataset, retrieval_split)
    retrieval_ids = {_image_id(s) for s in retrieval_set}
    chosen, extra_counts = _assign_update(plan, update_dataset, update_splits, update_test,
                                          retrieval_ids, val_fraction, allow_extra_classes)
    for name in ("zs_test", "zs_val"):
        classes = plan.zs_test_classes if name == "zs_test" else plan.zs_val_classes
        dataset = _load(zs_dataset, zs_splits[name])
        mapping, extra = _label_mapping(dataset, classes, f"{name} ({dataset.name})", allow_extra_classes)
        extra_counts[name] = extra
        chosen[name] = [(s, mapping[s.label]) for s in dataset if s.label in mapping]

    splits = {}
    for name in CLASSIFICATION_SPLITS:
        samples = _cap_per_class(chosen[name], max_per_class, seed)
        splits[name], corrupt[name] = _load_arrays(samples, pixels)
    retrieval, corrupt["retrieval"] = _load_retrieval_arrays(retrieval_set, pixels)
    summary = {"source": "real", "seed": int(seed), "val_fraction": val_fraction,
               "max_per_class": max_per_class, "update_dataset": _describe(update_dataset),
               "zs_dataset": _describe(zs_dataset), "retrieval_dataset": _describe(retrieval_dataset),
               "update_splits": list(update_splits), "update_test": update_test,
               "zs_splits": dict(zs_splits), "retrieval_split": retrieval_split,
               "excluded_retrieval": extra_counts.pop("excluded_retrieval"),
               "dropped_extra_classes": extra_counts, "corrupt": corrupt}
    return _write_task(Path(out_dir), plan, splits, retrieval, image_size, summary)


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
        if _norm(name) in by_norm:
            raise ValueError(f"{what}: dataset class names {dataset.classnames[by_norm[_norm(name)]]!r} and "
                             f"{name!r} cannot be told apart")
        by_norm[_norm(name)] = label
    missing = [c for c in classes if _norm(c) not in by_norm]
    if missing:
        raise ValueError(f"{what}: class(es) of the plan not in the dataset: {missing[:20]}"
                         f"{' ...' if len(missing) > 20 else ''}")
    wanted = {_norm(c) for c in classes}
    extra = [n for n in dataset.classnames if _norm(n) not in wanted]
    if extra and not allow_extra:
        raise ValueError(f"{what}: dataset class(es) not in the plan: {extra[:20]}"
                         f"{' ...' if len(extra) > 20 else ''} (allow_extra_classes=True drops them)")
    mapping = {by_norm[_norm(c)]: i for i, c in enumerate(classes)}
    dropped = sum(1 for s in dataset if s.label not in mapping)
    return mapping, dropped


def _assign_update(plan: ClassPlan, spec: DatasetSpec, update_splits: Sequence[str], update_test: str,
                   retrieval_ids: set[str], val_fraction: float,
                   allow_extra: bool) -> tuple[dict[str, list], dict[str, int]]:
    """(sample, plan label) lists of update_train / update_val / update_test, and counts of
    samples left out (retrieval images, classes outside the plan)."""
    read = list(update_splits) + ([update_test] if update_test not in ("retrieval", *update_splits) else [])
    chosen = {"update_train": [], "update_val": [], "update_test": []}
    excluded, dropped = 0, 0
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
            elif split in update_splits:
                chosen[f"update_{split_of_key(image, val_fraction, 0.0)}"].append(item)
    if not chosen["update_test"]:
        why = ("none of the update images is a retrieval image" if update_test == "retrieval"
               else f"split {update_test!r} holds no crops of the plan's classes")
        raise ValueError(f"update task: no test crops: {why}")
    return chosen, {"excluded_retrieval": excluded, "update": dropped}


def _cap_per_class(items: list, max_per_class: int | None, seed: int) -> list:
    """``items`` sorted by label (stable), at most ``max_per_class`` per label, chosen by a
    seeded hash of the sample key (the kept ones keep their source order)."""
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
