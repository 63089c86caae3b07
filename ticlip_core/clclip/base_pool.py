"""The base pool of the CL-CLIP study's original CLIP: captioned scenes and captioned object
crops of the synthetic world, as img2dataset-layout shards, for ``base_model`` to pre-train on
when no pretrained CLIP is given.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
from pathlib import Path

import pyarrow as pa
from PIL import Image

from ticlip_core.clclip.synthetic_task import STREAM_BASE_POOL
from ticlip_core.data.files import write_json
from ticlip_core.data.pixels import PixelSpec
from ticlip_core.data.shards import ShardWriter
from ticlip_core.data.synthetic import (DEFAULTS as SYNTHETIC_DEFAULTS, crop_to_box, encode_jpeg, fix_articles,
                                        process_pool, render_sample, scene_rng)

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
                        picture = crop_to_box(image, meta["boxes"][0])
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
    write_json(out_dir / "summary.json", summary)
    return summary


def _render_pool_scene(job: tuple[int, int, int]):
    seed, scene, render_size = job
    return render_sample(scene_rng(seed, STREAM_BASE_POOL, scene), year=None, image_size=render_size)


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
