"""Sampling from the synthetic world and writing it as img2dataset-style shards.

Public entry points:

* ``render_sample(rng, year=..., domain=..., image_size=...)``: one image and its metadata.
* ``synthesize_world(out_dir, seed=..., ...)``: the time-evolving dataset (``samples_per_year``
  per year, years mixed across shards as a crawl would be; the timestamp says the year).
* ``synthesize_static(out_dir, seed=..., ...)``: the time-invariant evaluation set (timeless
  classes only, uniform domains, the neutral caption template, ``timestamp`` null).
* ``scene_rng(seed, *key)`` and ``crop_to_box(image, box)``: the per-scene random stream and
  the object crop that the studies' object-centred tasks (CL-CLIP, memclip) are built from.

Each sample is drawn from its own generator, seeded by ``SeedSequence(seed, spawn_key=(stream,
index))``, so the bytes written depend only on the configuration and the seed, never on the
number of worker processes.

Per-sample metadata (the ``.json`` in the tar and the parquet columns, after img2dataset's
``url`` and ``caption``):

=================  =====================  =================================================
column             parquet type           meaning
=================  =====================  =================================================
timestamp          string (nullable)      ISO-8601 UTC, e.g. ``2017-03-04T12:00:00Z``; null in the static set
labels             list<int64>            class id of every object; ``labels[0]`` is the primary object
label_names        list<string>           canonical class names (``world.class_names()``) of ``labels``
boxes              list<list<double>>     normalised ``[x0, y0, x1, y1]`` of every object, aligned with ``labels``
domain             string                 ``photo``, ``clipart``, ``sketch`` or ``noisy``
colour             string                 colour of the primary object(s)
size               string                 ``small``, ``medium`` or ``large`` (primary object)
position           string                 3x3-grid cell of the first primary object (``center``, ``top left``, ...)
count              int64                  number of primary objects (1 to 3)
object_colours     list<string>           colour of every object, aligned with ``labels``
=================  =====================  =================================================
"""
from __future__ import annotations

import io
import math
import multiprocessing
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from ticlip_core.data import world
from ticlip_core.data.render import SceneObject, render_scene
from ticlip_core.data.shards import ShardWriter, list_shard_files

DEFAULTS: dict = {
    "years": (2014, 2021),       # first and last year, inclusive
    "samples_per_year": 1500,
    "image_size": 32,            # pixels per side; anything from 16 to 224 works
    "samples_per_shard": 1000,
    "jpeg_quality": 95,          # img2dataset's default encode_quality
    "typical_colour": 0.0,       # chance that a dated object has its class's typical colour
    "static_samples": 1000,      # size of the time-invariant evaluation set
    "workers": 1,                # processes; the output does not depend on it
}

# Independent random streams under one seed. 10-12 are CL-CLIP's (clclip/synthetic_task.py:
# STREAM_CROPS, STREAM_RETRIEVAL, STREAM_BASE_POOL); STREAM_MEMCLIP is the memclip study's
# object crops (memclip/synthetic_benchmark.py). A new study takes the next free number.
_STREAM_WORLD, _STREAM_STATIC, _STREAM_ORDER = 0, 1, 2
STREAM_MEMCLIP = 13

_MIN_CROP = 4  # pixels per side at render_size; smaller (clipped) boxes are skipped

METADATA_FIELDS = [
    pa.field("timestamp", pa.string()),
    pa.field("labels", pa.list_(pa.int64())),
    pa.field("label_names", pa.list_(pa.string())),
    pa.field("boxes", pa.list_(pa.list_(pa.float64()))),
    pa.field("domain", pa.string()),
    pa.field("colour", pa.string()),
    pa.field("size", pa.string()),
    pa.field("position", pa.string()),
    pa.field("count", pa.int64()),
    pa.field("object_colours", pa.list_(pa.string())),
]

_SIZE_HALF = {"small": 0.19, "medium": 0.25, "large": 0.33}  # half side, normalised
_COUNT_PROBS = (0.7, 0.2, 0.1)                                # 1, 2 or 3 primary objects
_CELL_OFFSETS = {
    "center": (0, 0), "left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1),
    "top left": (-1, -1), "top right": (1, -1), "bottom left": (-1, 1), "bottom right": (1, 1),
}
_PAIR_LAYOUTS = (("left", "right"), ("top", "bottom"), ("top left", "bottom right"),
                 ("top right", "bottom left"))
_ARTICLE_RE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
_TRIPLE_LAYOUTS = (("top left", "top right", "bottom"), ("bottom left", "bottom right", "top"),
                   ("top left", "bottom left", "right"), ("top right", "bottom right", "left"))


# ---------------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------------

def render_sample(rng: np.random.Generator, *, year: int | None, domain: str | None = None,
                  image_size: int = 32, class_id: int | None = None,
                  typical_colour: float = 0.0) -> tuple[Image.Image, dict]:
    """Draw one scene of ``year`` from ``rng`` and render it; returns (RGB image, metadata).

    ``year=None`` draws timeless data: timeless classes, uniform domains, mid-timeline clutter
    and quality, the neutral caption template and a null timestamp. ``domain`` forces the
    rendering domain (for domain-incremental studies) and ``class_id`` the primary class;
    otherwise both follow the year's mix. Each object of a dated scene takes its class's
    typical colour (``world.typical_colour``) with probability ``typical_colour``, else a
    uniform one; timeless scenes (``year=None``) always draw colours uniformly, and with
    ``typical_colour`` 0 no extra random draw is made (the same scenes as before it existed).
    The metadata holds ``caption`` plus the columns listed in this module's docstring.
    """
    if not 0.0 <= typical_colour <= 1.0:
        raise ValueError(f"typical_colour must be a probability in [0, 1], got {typical_colour!r}")
    if domain is None:
        mix = world.domain_mix(year)
        domain = world.DOMAINS[_pick(rng, [mix[d] for d in world.DOMAINS])]
    elif domain not in world.DOMAINS:
        raise ValueError(f"domain must be one of {world.DOMAINS}, got {domain!r}")
    if class_id is not None and not 0 <= class_id < world.NUM_CLASSES:
        raise ValueError(f"class_id must be in [0, {world.NUM_CLASSES}), got {class_id}")
    weights = world.class_weights(year)
    primary = _pick(rng, weights) if class_id is None else int(class_id)
    count = _pick(rng, _COUNT_PROBS) + 1
    second = _draw_second_class(rng, year, weights, primary, count)
    labels = [primary] * count + ([second] if second is not None else [])
    typical = typical_colour if year is not None else 0.0
    colour = _object_colour(rng, primary, year, typical)
    object_colours = [colour] * count + ([_object_colour(rng, second, year, typical)] if second is not None else [])
    size_word, positions, halves = _layout(rng, year, len(labels))
    objects = [SceneObject(shape=world.shape_of(cid), pattern=world.pattern_at(cid, year),
                           rgb=world.COLOUR_RGB[c], cx=cx, cy=cy, half=half)
               for cid, c, (cx, cy), half in zip(labels, object_colours, positions, halves)]
    position = _cell_name(positions[0])
    # Caption and timestamp are drawn before the pixels, so they do not depend on image_size.
    caption = _caption(rng, year, domain, labels, object_colours, size_word, position)
    timestamp = _draw_timestamp(rng, year)
    pixels, boxes = render_scene(objects, domain=domain, size=image_size, rng=rng,
                                 clutter=world.clutter_rate(year), quality=world.quality(year))
    meta = {
        "caption": caption,
        "timestamp": timestamp,
        "labels": labels,
        "label_names": [world.CLASSES[cid].name for cid in labels],
        "boxes": [[round(v, 6) for v in box] for box in boxes],
        "domain": domain,
        "colour": colour,
        "size": size_word,
        "position": position,
        "count": count,
        "object_colours": object_colours,
    }
    return Image.fromarray(pixels), meta


def scene_rng(seed: int, *key: int) -> np.random.Generator:
    """The random stream of one rendered scene, keyed by ``(seed, *key)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))


def crop_to_box(image: Image.Image, box: Sequence[float]) -> Image.Image | None:
    """``image`` cropped to the normalised ``[x0, y0, x1, y1]`` box (widened to whole pixels,
    clipped to the image), or None when the clipped box is under ``_MIN_CROP`` pixels a side."""
    w, h = image.size
    x0, y0 = max(0, math.floor(box[0] * w)), max(0, math.floor(box[1] * h))
    x1, y1 = min(w, math.ceil(box[2] * w)), min(h, math.ceil(box[3] * h))
    if x1 - x0 < _MIN_CROP or y1 - y0 < _MIN_CROP:
        return None
    return image.crop((x0, y0, x1, y1))


def _draw_second_class(rng, year, weights, primary, count):
    """A second, different class for some scenes (more often in later years; none in timeless data)."""
    if year is None or count == 3 or rng.random() >= world.second_object_probability(year):
        return None
    w = weights.copy()
    w[primary] = 0.0
    return _pick(rng, w)


def _pick(rng, weights) -> int:
    """Index drawn with probability proportional to ``weights`` (one uniform draw)."""
    cdf = np.cumsum(weights)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def _draw_colour(rng) -> str:
    return world.COLOURS[rng.integers(len(world.COLOURS))]


def _object_colour(rng, class_id: int, year: int | None, typical: float) -> str:
    """A uniform colour, replaced by the class's typical one with probability ``typical``."""
    colour = _draw_colour(rng)
    if typical > 0 and rng.random() < typical:
        colour = world.typical_colour(class_id, year)
    return colour


def _layout(rng, year, n_objects):
    """Size word, object centres and half sizes; centred single objects are common early on."""
    spread = 0.02 + 0.04 * (0.5 if year is None else world.progress(year))
    if n_objects == 1:
        size_word = world.SIZES[rng.integers(3)]
        if rng.random() < world.centre_probability(year):
            cells = ["center"]
        else:
            cells = [world.POSITIONS[1 + rng.integers(len(world.POSITIONS) - 1)]]
        offset = 0.18
    else:
        size_word = world.SIZES[rng.integers(2)]  # two or three objects must fit: small or medium
        layouts = _PAIR_LAYOUTS if n_objects == 2 else _TRIPLE_LAYOUTS
        cells = list(layouts[rng.integers(len(layouts))])
        if rng.random() < 0.5:
            cells.reverse()
        offset = 0.25
    jitter = rng.uniform(-spread, spread, (n_objects, 2))
    positions = [(0.5 + offset * _CELL_OFFSETS[c][0] + jx, 0.5 + offset * _CELL_OFFSETS[c][1] + jy)
                 for c, (jx, jy) in zip(cells, jitter)]
    halves = [_SIZE_HALF[size_word] * rng.uniform(0.92, 1.08) for _ in cells]
    return size_word, positions, halves


def _cell_name(centre) -> str:
    """The 3x3-grid cell holding a (normalised) centre point."""
    col = 0 if centre[0] < 0.4 else (2 if centre[0] > 0.6 else 1)
    row = 0 if centre[1] < 0.4 else (2 if centre[1] > 0.6 else 1)
    vertical, horizontal = ("top", "", "bottom")[row], ("left", "", "right")[col]
    return f"{vertical} {horizontal}".strip() or "center"


def _draw_timestamp(rng, year) -> str | None:
    """A UTC time uniformly spread over ``year``, as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if year is None:
        return None
    start = datetime(year, 1, 1, tzinfo=timezone.utc)
    seconds = int((datetime(year + 1, 1, 1, tzinfo=timezone.utc) - start).total_seconds())
    return (start + timedelta(seconds=int(rng.integers(seconds)))).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------

def _caption(rng, year, domain, labels, colours, size_word, position) -> str:
    """Caption naming the objects and some attributes, in the vocabulary of ``year``."""
    count = labels.count(labels[0])
    static = year is None
    modern = not static and rng.random() < world.modern_caption_probability(year)
    words = [world.NUMBER_WORDS[count]]
    if static or rng.random() < 0.35:
        words.append(size_word)
    if static or rng.random() < 0.85:
        words.append(colours[0])
    words.append(world.display_name(labels[0], year) if count == 1
                 else world.plural_name(labels[0], year))
    desc = " ".join(words)
    if count == len(labels) == 1 and (static or rng.random() < 0.4):
        desc += " " + world.POSITION_PHRASES[position]
    if len(labels) > count:
        second = [world.NUMBER_WORDS[1]]
        if rng.random() < 0.6:
            second.append(colours[-1])
        second.append(world.display_name(labels[-1], year))
        desc += (" and " if rng.random() < 0.5 else " next to ") + " ".join(second)
    if static:
        return fix_articles(world.NEUTRAL_TEMPLATE.format(medium=world.CLASSIC_MEDIUM[domain][0],
                                                           desc=desc))
    templates = world.MODERN_TEMPLATES if modern else world.CLASSIC_TEMPLATES
    mediums = (world.MODERN_MEDIUM if modern else world.CLASSIC_MEDIUM)[domain]
    template = templates[rng.integers(len(templates))]
    tag = world.display_name(labels[0], year).replace(" ", "").replace("-", "")
    return fix_articles(template.format(medium=mediums[rng.integers(len(mediums))], desc=desc,
                                         tag=tag))


def fix_articles(text: str) -> str:
    """Turn "a" into "an" before a vowel ("a apple" -> "an apple")."""
    return _ARTICLE_RE.sub(lambda m: m.group(1) + "n ", text)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

def synthesize_world(out_dir, *, seed: int, years: tuple[int, int] = DEFAULTS["years"],
                     samples_per_year: int = DEFAULTS["samples_per_year"],
                     image_size: int = DEFAULTS["image_size"],
                     samples_per_shard: int = DEFAULTS["samples_per_shard"],
                     workers: int = DEFAULTS["workers"],
                     typical_colour: float = DEFAULTS["typical_colour"], **extra) -> dict:
    """Write the time-evolving dataset (``samples_per_year`` for every year in ``years``,
    inclusive) as img2dataset webdataset shards in ``out_dir``; returns a summary.
    ``typical_colour``: the chance that an object has its class's typical colour (``render_sample``).

    ``extra`` takes ``jpeg_quality``; the other ``DEFAULTS`` keys (``static_samples``) are
    accepted and ignored, so a whole config block can be passed. Unknown keys raise TypeError.
    The summary holds ``samples``, ``shards``, ``per_year``, ``per_domain``, ``seconds``.
    """
    seed = _check_seed(seed)
    jpeg_quality = _jpeg_quality(extra)
    first, last = _check_years(years)
    _check_positive(samples_per_year=samples_per_year, samples_per_shard=samples_per_shard,
                    workers=workers)
    year_list = [y for y in range(first, last + 1) for _ in range(samples_per_year)]
    # A crawl is not sorted by time: spread the years over the shards.
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_ORDER,)))
    years_of_samples = [year_list[i] for i in order.permutation(len(year_list))]
    if not 0.0 <= typical_colour <= 1.0:
        raise ValueError(f"typical_colour must be a probability in [0, 1], got {typical_colour!r}")
    summary = _write_dataset(out_dir, seed=seed, stream=_STREAM_WORLD, years=years_of_samples,
                             image_size=image_size, samples_per_shard=samples_per_shard,
                             workers=workers, jpeg_quality=jpeg_quality, typical_colour=typical_colour)
    summary["years"] = [first, last]
    summary["typical_colour"] = typical_colour
    return summary


def synthesize_static(out_dir, *, seed: int, num_samples: int = DEFAULTS["static_samples"],
                      image_size: int = DEFAULTS["image_size"],
                      samples_per_shard: int = DEFAULTS["samples_per_shard"],
                      workers: int = DEFAULTS["workers"],
                      jpeg_quality: int = DEFAULTS["jpeg_quality"]) -> dict:
    """Write the time-invariant evaluation set in the same shard layout; returns a summary.

    Only timeless classes (``world.timeless_class_ids()``), uniform domain mix, the neutral
    caption template ("a photo of a small red apple in the center."), and ``timestamp`` null.
    Each sample has a single primary class (``labels[0]``, repeated ``count`` times) and a
    ``colour``, for zero-shot object and colour classification and static retrieval.
    """
    _check_positive(num_samples=num_samples, samples_per_shard=samples_per_shard, workers=workers)
    return _write_dataset(out_dir, seed=_check_seed(seed), stream=_STREAM_STATIC,
                          years=[None] * num_samples, image_size=image_size,
                          samples_per_shard=samples_per_shard, workers=workers,
                          jpeg_quality=_jpeg_quality({"jpeg_quality": jpeg_quality}))


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` rendering processes; on Linux they fork, inheriting the imported
    modules instead of importing them again."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _write_dataset(out_dir, *, seed, stream, years, image_size, samples_per_shard, workers,
                   jpeg_quality, typical_colour: float = 0.0) -> dict:
    """Render ``years[i]``'s sample i for every i into shards of ``samples_per_shard``."""
    start = time.perf_counter()
    if not 8 <= image_size <= 1024:
        raise ValueError(f"image_size must be between 8 and 1024 pixels, got {image_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(years) // samples_per_shard)
    _refuse_stale_shards(out_dir, n_shards)
    jobs = [dict(out_dir=str(out_dir), shard_id=s, seed=seed, stream=stream,
                 first_index=s * samples_per_shard,
                 years=years[s * samples_per_shard:(s + 1) * samples_per_shard],
                 image_size=image_size, samples_per_shard=samples_per_shard,
                 jpeg_quality=jpeg_quality, typical_colour=typical_colour)
            for s in range(n_shards)]
    if workers == 1 or n_shards == 1:
        results = [write_shard(job) for job in jobs]
    else:
        with process_pool(min(workers, n_shards)) as pool:
            results = list(pool.map(write_shard, jobs))
    per_year, per_domain = Counter(), Counter()
    for result in results:
        per_year.update(result["per_year"])
        per_domain.update(result["per_domain"])
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "samples": len(years),
        "shards": n_shards,
        "image_size": image_size,
        "samples_per_shard": samples_per_shard,
        "per_year": {y: n for y, n in sorted(per_year.items()) if y is not None},  # {} when static
        "per_domain": {d: per_domain.get(d, 0) for d in world.DOMAINS},
        "seconds": time.perf_counter() - start,
    }


def write_shard(job: dict) -> dict:
    """Render and write one shard (a worker's unit of work); returns its per-year/domain counts."""
    per_year, per_domain = Counter(), Counter()
    with ShardWriter(job["out_dir"], job["shard_id"], samples_per_shard=job["samples_per_shard"],
                     extra_fields=METADATA_FIELDS, url_prefix=f"synthetic://{job['seed']}/") as writer:
        for offset, year in enumerate(job["years"]):
            seq = np.random.SeedSequence(job["seed"], spawn_key=(job["stream"], job["first_index"] + offset))
            image, meta = render_sample(np.random.default_rng(seq), year=year,
                                        image_size=job["image_size"], typical_colour=job["typical_colour"])
            caption = meta.pop("caption")
            writer.write(encode_jpeg(image, job["jpeg_quality"]), caption,
                         width=image.width, height=image.height, extra=meta)
            if year is not None:
                per_year[year] += 1
            per_domain[meta["domain"]] += 1
    return {"per_year": per_year, "per_domain": per_domain}


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG bytes of ``image`` (deterministic for a given image and quality)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _refuse_stale_shards(out_dir: Path, n_shards: int) -> None:
    """Refuse to write into a folder holding shards this run would not overwrite."""
    stale = [p.name for sid, paths in list_shard_files(out_dir).items() if sid >= n_shards
             for p in paths]
    if stale:
        raise FileExistsError(f"{out_dir} holds shards from another run ({', '.join(stale[:3])}"
                              f"{', ...' if len(stale) > 3 else ''}); remove them or use an empty folder")


def _jpeg_quality(extra: dict) -> int:
    unknown = set(extra) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown synthetic data option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    quality = extra.get("jpeg_quality", DEFAULTS["jpeg_quality"])
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg_quality must be between 1 and 100, got {quality}")
    return int(quality)


def _check_years(years) -> tuple[int, int]:
    first, last = (int(y) for y in years)
    if last < first:
        raise ValueError(f"years must be (first, last) with first <= last, got {list(years)}")
    return first, last


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
