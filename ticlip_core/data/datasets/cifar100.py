"""CIFAR-100 from the official python release (``cifar-100-python/{train,test,meta}`` pickles)."""
from __future__ import annotations

import os
import pickle
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ticlip_core.data.datasets.base import ClassificationSample, ClassificationSet, check_split, readable_name, require_file

SPLITS = ("train", "test")
LABEL_TYPES = {"fine": (b"fine_labels", b"fine_label_names"),
               "coarse": (b"coarse_labels", b"coarse_label_names")}
FOLDER = "cifar-100-python"
SIDE = 32


def load_cifar100(root: str | os.PathLike, split: str = "train", *,
                  label_type: str = "fine") -> ClassificationSet:
    """CIFAR-100 ``split`` ("train": 50,000 images, "test": 10,000) as a ClassificationSet.

    ``root`` is the ``cifar-100-python`` folder or its parent. ``label_type`` picks the 100
    fine or the 20 coarse classes; sample meta holds both labels and the original filename.
    Keys are ``"{split}/{row:05d}"``. The pixel rows stay in memory; ``load()`` builds the image.
    """
    check_split(split, SPLITS, "cifar100")
    if label_type not in LABEL_TYPES:
        raise ValueError(f"cifar100: unknown label_type {label_type!r}; expected 'fine' or 'coarse'")
    folder = find_folder(root)
    batch = _unpickle(require_file(folder / split, f"CIFAR-100 {split} file"))
    meta = _unpickle(require_file(folder / "meta", "CIFAR-100 meta file"))
    labels_key, names_key = LABEL_TYPES[label_type]
    path = folder / split

    for key in (b"data", b"fine_labels", b"coarse_labels", b"filenames"):
        if key not in batch:
            raise ValueError(f"{path}: missing key {key!r} (is this the python version of CIFAR-100?)")
    if names_key not in meta:
        raise ValueError(f"{folder / 'meta'}: missing key {names_key!r}")
    data = np.asarray(batch[b"data"])
    n = len(batch[b"fine_labels"])
    if data.dtype != np.uint8 or data.shape != (n, 3 * SIDE * SIDE):
        raise ValueError(f"{path}: b'data' must be uint8 of shape ({n}, {3 * SIDE * SIDE}) "
                         f"for {n} labels, got {data.dtype} {data.shape}")
    if len(batch[b"coarse_labels"]) != n or len(batch[b"filenames"]) != n:
        raise ValueError(f"{path}: fine_labels, coarse_labels and filenames differ in length")

    classnames = [readable_name(_text(name)) for name in meta[names_key]]
    samples = []
    for row, (fine, coarse, filename) in enumerate(zip(batch[b"fine_labels"], batch[b"coarse_labels"],
                                                       batch[b"filenames"])):
        label = int(fine if label_type == "fine" else coarse)
        if not 0 <= label < len(classnames):
            raise ValueError(f"{path}: row {row} has {label_type} label {label}, outside "
                             f"[0, {len(classnames)}) for the classes in {folder / 'meta'}")
        samples.append(ClassificationSample(
            key=f"{split}/{row:05d}", label=label, load=partial(cifar_image, data, row),
            meta={"fine_label": int(fine), "coarse_label": int(coarse), "filename": _text(filename)}))
    return ClassificationSet(name=f"cifar100_{label_type}_{split}", classnames=classnames,
                             samples=samples,
                             meta={"root": str(folder), "split": split, "label_type": label_type})


def find_folder(root: str | os.PathLike) -> Path:
    """The folder holding ``meta``/``train``/``test``: ``root`` itself or ``root/cifar-100-python``."""
    root = Path(root)
    for folder in (root, root / FOLDER):
        if (folder / "meta").is_file():
            return folder
    raise FileNotFoundError(f"no CIFAR-100 python release in {root}: expected {root / 'meta'} "
                            f"or {root / FOLDER / 'meta'}")


def cifar_image(data: np.ndarray, row: int) -> Image.Image:
    """Row ``row`` of the pickled ``data`` as a 32x32 RGB image.

    A row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    """
    pixels = data[row].reshape(3, SIDE, SIDE).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(pixels))


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
