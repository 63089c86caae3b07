"""The prepared-task file format of CL-CLIP: a folder of plain files, written by
``synthetic_task.build_synthetic_task`` or ``real_task.build_real_task`` and read by scoring.

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

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ticlip_core.clclip.classes import ClassPlan
from ticlip_core.data.files import write_json, write_npz

if TYPE_CHECKING:
    import torch

CLASSIFICATION_SPLITS = ("update_train", "update_val", "update_test", "zs_val", "zs_test")
RETRIEVAL_FILE = "retrieval.npz"


def _read_npz(out_dir, filename: str) -> dict[str, np.ndarray]:
    path = Path(out_dir) / filename
    if not path.is_file():
        raise FileNotFoundError(f"CL-CLIP task file not found: {path} (build the task first)")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_split(out_dir: str | os.PathLike, name: str) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Images (uint8 ``(N, H, W, 3)``) and labels (int64 ``(N,)``) of split ``name``
    (one of ``CLASSIFICATION_SPLITS``)."""
    if name not in CLASSIFICATION_SPLITS:
        raise ValueError(f"unknown CL-CLIP split {name!r}; expected one of {CLASSIFICATION_SPLITS}")
    import torch  # here, not at the top: the jobs that write task files need no torch

    data = _read_npz(out_dir, f"{name}.npz")
    return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"].astype(np.int64))


def load_retrieval(out_dir: str | os.PathLike) -> tuple["torch.Tensor", list[str], "torch.Tensor"]:
    """Retrieval images (uint8 ``(N, H, W, 3)``), captions (``M`` strings) and the image index
    of each caption (int64 ``(M,)``), for ``metrics.recall_folds``."""
    import torch

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


def write_task(out_dir: Path, plan: ClassPlan, splits: dict[str, tuple[list, list[int]]],
               retrieval: tuple[list, list[str], list[int]], image_size: int, summary: dict) -> dict:
    """Write every split (``splits[name] = (images, labels)``), the retrieval set ``(images,
    captions, caption_image)``, classes.json and summary.json (``summary`` plus the image size
    and the counts per split and class); returns that summary."""
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
    write_json(out_dir / "classes.json", plan.to_json())
    summary = {**summary, "image_size": image_size, "counts": counts}
    write_json(out_dir / "summary.json", summary)
    return summary
