"""Common in-memory form of the external datasets: an index of samples with lazy image loading.

A loader reads a dataset's official annotation/split files once and returns a
``ClassificationSet`` or ``RetrievalSet``. Pixels are not read then: each sample carries a
``load`` callable that opens (and, for box crops, crops) its image when called. The callables
are ``functools.partial`` objects, so a set can be pickled into data-loader workers.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import Image

# torchvision's ImageFolder extensions (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, slots=True)
class ClassificationSample:
    """One labelled image: ``key`` is unique within its set, ``load()`` returns an RGB image."""

    key: str
    label: int
    load: Callable[[], Image.Image]
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RetrievalSample:
    """One image with its captions (COCO has about five per image)."""

    key: str
    load: Callable[[], Image.Image]
    captions: list[str]
    meta: dict = field(default_factory=dict)


class _SampleSequence:
    """``len``, iteration and indexing over ``self.samples``."""

    samples: list

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator:
        return iter(self.samples)

    def __getitem__(self, index: int):
        return self.samples[index]


def _check_unique_keys(dataset) -> None:
    seen: set[str] = set()
    for sample in dataset.samples:
        if sample.key in seen:
            raise ValueError(f"{dataset.name}: sample key {sample.key!r} occurs more than once")
        seen.add(sample.key)


@dataclass
class ClassificationSet(_SampleSequence):
    """A labelled image set: ``classnames[label]`` names each sample's class.

    ``skipped`` counts what the loader left out, by reason (e.g. ``{"crowd": 3, "small": 7}``);
    ``meta`` holds loader-specific facts about the whole set (source path, split, options).
    """

    name: str
    classnames: list[str]
    samples: list[ClassificationSample]
    skipped: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.classnames)
        for sample in self.samples:
            if not 0 <= sample.label < n:
                raise ValueError(f"{self.name}: sample {sample.key!r} has label {sample.label}, "
                                 f"outside [0, {n}) for {n} classes")
        _check_unique_keys(self)

    def class_counts(self) -> list[int]:
        """Number of samples of each class, indexed by label (zeros included)."""
        counts = [0] * len(self.classnames)
        for sample in self.samples:
            counts[sample.label] += 1
        return counts


@dataclass
class RetrievalSet(_SampleSequence):
    """Images with captions, for image-text retrieval; every sample has at least one caption."""

    name: str
    samples: list[RetrievalSample]
    skipped: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sample in self.samples:
            if not sample.captions:
                raise ValueError(f"{self.name}: sample {sample.key!r} has no captions")
        _check_unique_keys(self)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """The image at ``path``, decoded and converted to RGB (grayscale/CMYK/palette files occur)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as image:
        return image.convert("RGB")


def lazy_image(path: str | os.PathLike) -> Callable[[], Image.Image]:
    """A picklable callable that opens ``path`` as RGB when called."""
    return partial(open_rgb, str(path))


def is_image_file(name: str) -> bool:
    """Whether ``name`` has one of the accepted image extensions (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def check_split(split: str, known, dataset: str) -> str:
    """``split`` unchanged if it is one of ``known``, else a ValueError naming the choices."""
    if split not in known:
        raise ValueError(f"{dataset}: unknown split {split!r}; expected one of {sorted(known)}")
    return split


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else FileNotFoundError saying which ``what`` is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def readable_name(folder: str) -> str:
    """Class folder or label name made readable: underscores become spaces."""
    return folder.replace("_", " ")


def missing_files_error(missing: list[str], where: str) -> FileNotFoundError:
    """FileNotFoundError listing (the first few of) the image files ``missing`` under ``where``."""
    shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
    return FileNotFoundError(f"{where}: image file(s) listed but not found: {shown}")


def read_json(path: Path, keys: tuple[str, ...]) -> dict:
    """The JSON object in ``path``; ValueError when it is not valid JSON or lacks a top-level ``keys``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path}: missing top-level key(s) {missing}")
    return data


def karpathy_captions(entry: dict, json_path: Path, image: str) -> list[str]:
    """Every caption of one image entry of Karpathy's split files (``dataset_coco.json``,
    ``dataset_flickr30k.json``): the ``raw`` sentences, stripped, empty ones dropped, in file
    order; ValueError naming ``image`` when none is left."""
    captions = [s["raw"].strip() for s in entry.get("sentences", [])]
    captions = [c for c in captions if c]
    if not captions:
        raise ValueError(f"{json_path}: image {image} has no captions")
    return captions
