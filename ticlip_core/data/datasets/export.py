"""Write a loaded dataset as img2dataset-style webdataset shards (``ticlip_core.data.shards``).

Per-sample metadata, after img2dataset's ``url`` and ``caption`` columns:

===========  ====================  ===============================================
column       parquet type          meaning
===========  ====================  ===============================================
labels       list<int64>           ``[label]`` (classification sets only)
label_names  list<string>          ``[class name]`` (classification sets only)
captions     list<string>          all captions of the image (retrieval sets only)
source_key   string                the sample's key in the loaded dataset
timestamp    string (nullable)     always null: these datasets are not time-stamped
===========  ====================  ===============================================

The caption is the class name (classification) or the first caption (retrieval).
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pyarrow as pa
from PIL import Image

from ticlip_core.data.shards import ShardWriter, list_shard_files
from ticlip_core.data.datasets.base import ClassificationSet, RetrievalSet

CLASSIFICATION_FIELDS = [
    pa.field("labels", pa.list_(pa.int64())),
    pa.field("label_names", pa.list_(pa.string())),
    pa.field("source_key", pa.string()),
    pa.field("timestamp", pa.string()),
]
RETRIEVAL_FIELDS = [
    pa.field("captions", pa.list_(pa.string())),
    pa.field("source_key", pa.string()),
    pa.field("timestamp", pa.string()),
]
# Extension in the tar -> PIL format name; img2dataset's encode_format choices.
IMAGE_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def write_shards(dataset: ClassificationSet | RetrievalSet, out_dir: str | os.PathLike, *,
                 samples_per_shard: int = 1000, image_format: str = "jpg",
                 quality: int = 95) -> dict:
    """Write every sample of ``dataset``, in order, as shards of ``samples_per_shard`` into ``out_dir``.

    Images are decoded, converted to RGB and re-encoded (``image_format`` "jpg", "png" or
    "webp"; ``quality`` for the lossy ones). A ClassificationSet also gets
    ``out_dir/classnames.json`` (the class names, indexed by label). Refuses a folder holding
    shards this call would not overwrite. Returns ``{"name", "out_dir", "samples", "shards",
    "samples_per_shard", "seconds"}``.
    """
    start = time.perf_counter()
    if isinstance(dataset, ClassificationSet):
        fields = CLASSIFICATION_FIELDS
    elif isinstance(dataset, RetrievalSet):
        fields = RETRIEVAL_FIELDS
    else:
        raise TypeError(f"write_shards takes a ClassificationSet or RetrievalSet, got {type(dataset).__name__}")
    image_format = "jpg" if image_format.lower() == "jpeg" else image_format.lower()
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: no samples to write")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(dataset) // samples_per_shard)
    stale = [p.name for sid, paths in list_shard_files(out_dir).items() if sid >= n_shards for p in paths]
    if stale:
        raise FileExistsError(f"{out_dir} holds shards this export would not overwrite "
                              f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); "
                              "remove them or use an empty folder")

    for shard_id in range(n_shards):
        chunk = dataset.samples[shard_id * samples_per_shard:(shard_id + 1) * samples_per_shard]
        with ShardWriter(out_dir, shard_id, samples_per_shard=samples_per_shard, extra_fields=fields,
                         url_prefix=f"dataset://{dataset.name}/") as writer:
            for sample in chunk:
                image = sample.load().convert("RGB")
                if isinstance(dataset, ClassificationSet):
                    caption = dataset.classnames[sample.label]
                    extra = {"labels": [sample.label], "label_names": [caption],
                             "source_key": sample.key, "timestamp": None}
                else:
                    caption = sample.captions[0]
                    extra = {"captions": list(sample.captions), "source_key": sample.key,
                             "timestamp": None}
                writer.write(encode_image(image, image_format, quality), caption,
                             width=image.width, height=image.height, extra=extra,
                             image_ext=image_format)

    if isinstance(dataset, ClassificationSet):
        tmp = out_dir / "classnames.json.tmp"
        tmp.write_text(json.dumps(dataset.classnames, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, out_dir / "classnames.json")
    return {"name": dataset.name, "out_dir": str(out_dir), "samples": len(dataset),
            "shards": n_shards, "samples_per_shard": samples_per_shard,
            "seconds": time.perf_counter() - start}


def encode_image(image: Image.Image, image_format: str = "jpg", quality: int = 95) -> bytes:
    """``image`` encoded as ``image_format`` ("jpg", "png" or "webp") bytes."""
    buffer = io.BytesIO()
    options = {} if image_format == "png" else {"quality": quality}
    image.save(buffer, format=IMAGE_FORMATS[image_format], **options)
    return buffer.getvalue()
