"""Flickr30k with Karpathy's split, for caption retrieval (TiC-CLIP's static retrieval task).

The images are the official ``flickr30k-images/`` folder (``<photo id>.jpg``); the splits and
captions come from Karpathy's ``dataset_flickr30k.json`` (29,000 train, 1,014 val and 1,000
test images, five captions each; the 1k test split is the standard retrieval benchmark).
"""
from __future__ import annotations

import os
from pathlib import Path

from ticlip_core.data.datasets.base import (RetrievalSample, RetrievalSet, check_split, karpathy_captions, lazy_image,
                                            missing_files_error, read_json, require_file)

FLICKR_SPLITS = ("train", "val", "test")
IMAGE_DIR = "flickr30k-images"


def flickr30k_captions(root: str | os.PathLike, split: str = "test",
                       karpathy_json: str | os.PathLike | None = None) -> RetrievalSet:
    """The images of Karpathy's ``split`` of Flickr30k with all their captions, as a RetrievalSet.

    ``karpathy_json`` defaults to ``root/dataset_flickr30k.json``. Each image is looked up as
    ``root/flickr30k-images/{filename}``, then ``root/{filename}``; captions are the ``raw``
    sentences, stripped, in file order. Keys are the file stems (Flickr photo ids); sample meta
    holds ``filename``, ``imgid``, ``karpathy_split`` and ``path`` (relative to ``root``).
    """
    check_split(split, FLICKR_SPLITS, "flickr30k_captions")
    root = Path(root)
    json_path = Path(karpathy_json) if karpathy_json is not None else root / "dataset_flickr30k.json"
    data = read_json(require_file(json_path, "Karpathy Flickr30k split file (dataset_flickr30k.json)"),
                     ("images",))
    listings = {folder: set(os.listdir(root / folder)) if (root / folder).is_dir() else set()
                for folder in (IMAGE_DIR, ".")}

    samples, missing = [], []
    for entry in data["images"]:
        if entry.get("split") != split:
            continue
        filename = entry.get("filename")
        if not filename:
            raise ValueError(f"{json_path}: image entry imgid={entry.get('imgid')} has no filename")
        folder = next((f for f, names in listings.items() if filename in names), None)
        if folder is None:
            missing.append(str(root / IMAGE_DIR / filename))
            continue
        rel = filename if folder == "." else f"{folder}/{filename}"
        samples.append(RetrievalSample(
            key=Path(filename).stem, load=lazy_image(root / rel),
            captions=karpathy_captions(entry, json_path, filename),
            meta={"filename": filename, "imgid": entry.get("imgid"), "karpathy_split": split, "path": rel}))
    if missing:
        raise missing_files_error(missing, f"Flickr30k {split} images of {json_path.name}")
    if not samples:
        raise ValueError(f"{json_path}: no images in Karpathy split {split!r}")
    return RetrievalSet(name=f"flickr30k_karpathy_{split}", samples=samples,
                        meta={"root": str(root), "split": split, "karpathy_json": str(json_path)})
