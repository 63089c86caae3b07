"""Loaders for the external datasets of the three papers, reading their official on-disk formats.

Each loader takes the dataset's root folder, a split and options, and returns a
``ClassificationSet`` or ``RetrievalSet`` (``base``) whose images load lazily;
``export.write_shards`` turns one into img2dataset-style shards. ``load_dataset(format, path,
split, **options)`` picks the loader by name:

==================  ============================================================  =========================
format              on-disk layout                                                splits
==================  ============================================================  =========================
imagefolder         ``root/<split>/<class_dir>/<image>`` (ImageNet)               folder names
cifar100            ``cifar-100-python/{train,test,meta}`` pickles                train, test
domainnet           ``<domain>/<class>/<file>`` + ``<domain>_<split>.txt``        train, test
coco_objects        COCO 2017 ``instances_<split>2017.json`` boxes, cropped       train, val
coco_captions       Karpathy's ``dataset_coco.json`` on COCO 2017 images          train, val, test, restval
flickr30k_captions  Karpathy's ``dataset_flickr30k.json``, ``flickr30k-images/``  train, val, test
==================  ============================================================  =========================

A retrieval set keeps every caption of an image (``RetrievalSample.captions``); exported, they
are the sample's ``captions`` metadata list, its ``caption`` / ``.txt`` being the first.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from ticlip_core.data.datasets.base import ClassificationSample, ClassificationSet, RetrievalSample, RetrievalSet
from ticlip_core.data.datasets.cifar100 import load_cifar100
from ticlip_core.data.datasets.coco import coco_captions, coco_objects
from ticlip_core.data.datasets.domainnet import load_domainnet
from ticlip_core.data.datasets.export import write_shards
from ticlip_core.data.datasets.flickr30k import flickr30k_captions
from ticlip_core.data.datasets.imagefolder import load_imagefolder

LOADERS: dict[str, Callable[..., ClassificationSet | RetrievalSet]] = {
    "imagefolder": load_imagefolder,
    "cifar100": load_cifar100,
    "domainnet": load_domainnet,
    "coco_objects": coco_objects,
    "coco_captions": coco_captions,
    "flickr30k_captions": flickr30k_captions,
}


def load_dataset(format: str, path: str | os.PathLike, split: str,
                 **options) -> ClassificationSet | RetrievalSet:
    """The ``split`` of the dataset at ``path`` read by the loader registered as ``format``."""
    if format not in LOADERS:
        raise ValueError(f"unknown dataset format {format!r}; known formats: {', '.join(LOADERS)}")
    return LOADERS[format](path, split, **options)


__all__ = ["LOADERS", "ClassificationSample", "ClassificationSet", "RetrievalSample", "RetrievalSet",
           "coco_captions", "coco_objects", "flickr30k_captions", "load_cifar100", "load_dataset", "load_domainnet",
           "load_imagefolder", "write_shards"]
