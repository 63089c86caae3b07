"""The memclip benchmarks rendered from the synthetic world: object-centred crops of its 48
timeless classes, class-incremental (classes split into tasks) or domain-incremental (one
rendering domain per task), in the ``benchmark`` format.

Every (class, domain) has its own random stream and every sample its own key, and the split is
a hash of the key, so the output depends only on the arguments (not on ``workers``).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ticlip_core.data import world
from ticlip_core.data.bucketing import SPLITS, split_indices
from ticlip_core.data.pixels import PixelSpec
from ticlip_core.data.synthetic import STREAM_MEMCLIP, crop_to_box, process_pool, render_sample, scene_rng
from ticlip_core.memclip.benchmark import SCENARIOS, Benchmark, TaskSpec, write_benchmark

MIXED = "mixed"  # the key's domain part when the world draws each sample's domain


def build_synthetic_benchmark(out_dir: str | os.PathLike, *, name: str, scenario: str, seed: int,
                              num_classes: int, num_tasks: int | None = None, per_class: int,
                              domains: list[str] | None = None, class_order_seed: int | None = None,
                              val_fraction: float, test_fraction: float, image_size: int = 32,
                              render_size: int = 64, workers: int = 1) -> dict:
    """Render a memclip benchmark from the synthetic world into ``out_dir``; returns the summary.

    Classes: the world's 48 timeless classes in the order
    ``np.random.RandomState(class_order_seed or seed).permutation(48)``, the first
    ``num_classes`` kept; label i is the i-th of them. ``scenario="class"``: ``num_tasks``
    equal consecutive chunks of the labels, every sample's domain drawn by the world (uniform,
    as for ``year=None``) and recorded; ``domains`` must be None. ``scenario="domain"``: one task
    per entry of ``domains`` (distinct world domains, in order), named after it, each holding
    every class rendered in that domain; ``num_tasks`` must be None or ``len(domains)``.

    Samples: for each (task, class), timeless scenes whose primary class is forced are rendered
    at ``render_size`` from ``scene_rng(seed, STREAM_MEMCLIP, class id, d, scene)`` (``d`` = 0
    for mixed domains, 1 + the domain's index in ``world.DOMAINS`` when forced, so the streams
    never coincide), the first box of the class is cropped and resized to ``image_size``
    (shortest side bicubic, centre crop), until ``per_class`` crops; too-small boxes are
    skipped and counted. Key ``{name}/{domain or mixed}/{class_name}/{scene:05d}``; the split
    is ``bucketing.split_of_key(key, val_fraction, test_fraction)``, so the per-split counts
    vary around the fractions; every (task, class) must get a train sample (a class never trained
    on cannot be learned) and every task a val and a test sample (its accuracy is pooled over its
    samples, so a class the hash left out of val or test is allowed).
    ``workers`` processes render the (task, class) pairs.
    """
    _check_arguments(name, scenario, num_classes, per_class, val_fraction, test_fraction,
                     image_size, render_size, workers)
    timeless = world.timeless_class_ids()
    order = np.random.RandomState(seed if class_order_seed is None else class_order_seed).permutation(len(timeless))
    class_ids = [int(timeless[i]) for i in order[:num_classes]]
    classnames = [world.class_names()[c] for c in class_ids]
    tasks = _tasks(scenario, num_classes, num_tasks, domains)

    jobs = [dict(seed=int(seed), task=t, label=label, class_id=class_ids[label], domain=task.domain,
                 quota=per_class, render_size=render_size, image_size=image_size)
            for t, task in enumerate(tasks) for label in task.classes]
    if workers == 1 or len(jobs) == 1:
        results = [render_class(job) for job in jobs]
    else:
        with process_pool(min(workers, len(jobs))) as pool:
            results = list(pool.map(render_class, jobs))

    rows, crops, skipped, scenes = [], [], 0, 0
    for job, result in zip(jobs, results):
        folder = f"{name}/{job['domain'] or MIXED}/{classnames[job['label']].replace(' ', '_')}"
        for scene, domain in zip(result["scenes"], result["domains"]):
            rows.append((f"{folder}/{scene:05d}", job["label"], job["task"], domain))
        crops.append(result["crops"])
        skipped += result["skipped"]
        scenes += result["scenes_rendered"]
    table = pd.DataFrame(rows, columns=["key", "label", "task", "domain"])
    images = np.concatenate(crops)
    split = split_indices(table["key"].tolist(), val_fraction, test_fraction)
    _check_every_split(table, split, tasks, classnames, per_class)

    benchmark = Benchmark(
        name=name, scenario=scenario, classnames=classnames, tasks=tasks, image_size=image_size,
        source={"kind": "synthetic", "world_class_ids": class_ids, "stream": STREAM_MEMCLIP,
                "render_size": render_size},
        summary={"seed": int(seed), "options": {
                     "num_classes": num_classes, "num_tasks": len(tasks), "per_class": per_class,
                     "domains": None if domains is None else list(domains),
                     "class_order_seed": class_order_seed, "val_fraction": val_fraction,
                     "test_fraction": test_fraction, "image_size": image_size, "render_size": render_size},
                 "scenes_rendered": scenes, "skipped_small_boxes": skipped})
    chosen = {s: split == i for i, s in enumerate(SPLITS)}
    return write_benchmark(out_dir, benchmark,
                           {s: table[chosen[s]].reset_index(drop=True) for s in SPLITS},
                           {s: images[chosen[s]] for s in SPLITS})


def render_class(job: dict) -> dict:
    """``job["quota"]`` crops of one (task, class) (a worker's unit of work): the uint8 crops,
    the scene number and domain of each, the too-small boxes skipped and the scenes rendered."""
    class_id, forced = job["class_id"], job["domain"]
    stream_domain = 0 if forced is None else 1 + world.DOMAINS.index(forced)
    pixels = PixelSpec(job["image_size"], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    crops, scenes, domains, skipped = [], [], [], 0
    max_scenes = 10 * job["quota"] + 100
    for scene in range(max_scenes):
        rng = scene_rng(job["seed"], STREAM_MEMCLIP, class_id, stream_domain, scene)
        image, meta = render_sample(rng, year=None, image_size=job["render_size"], class_id=class_id,
                                    domain=forced)
        box = meta["boxes"][meta["labels"].index(class_id)]
        crop = crop_to_box(image, box)
        if crop is None:
            skipped += 1
            continue
        crops.append(pixels.to_array(crop))
        scenes.append(scene)
        domains.append(meta["domain"])
        if len(crops) == job["quota"]:
            return {"crops": np.stack(crops), "scenes": scenes, "domains": domains, "skipped": skipped,
                    "scenes_rendered": scene + 1}
    raise RuntimeError(f"synthetic class {world.class_names()[class_id]!r}: only {len(crops)} of "
                       f"{job['quota']} crops in {max_scenes} scenes "
                       f"(render_size {job['render_size']} too small?)")


def _tasks(scenario: str, num_classes: int, num_tasks: int | None, domains) -> list[TaskSpec]:
    if scenario == "class":
        if domains is not None:
            raise ValueError(f"class-incremental benchmark: domains must be None (the world draws each "
                             f"sample's domain), got {domains!r}")
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer)) or num_tasks < 1:
            raise ValueError(f"class-incremental benchmark: num_tasks must be a positive integer, got {num_tasks!r}")
        if num_classes % num_tasks:
            raise ValueError(f"num_classes {num_classes} does not split into num_tasks {num_tasks} equal tasks")
        k = num_classes // num_tasks
        return [TaskSpec(f"task{t}", list(range(t * k, (t + 1) * k)), None) for t in range(num_tasks)]
    if domains is None or isinstance(domains, str) or not list(domains):
        raise ValueError(f"domain-incremental benchmark: domains must be a non-empty list of world "
                         f"domains {world.DOMAINS}, got {domains!r}")
    domains = list(domains)
    unknown = [d for d in domains if d not in world.DOMAINS]
    if unknown:
        raise ValueError(f"domains: unknown domain(s) {unknown}; the world's are {world.DOMAINS}")
    if len(set(domains)) != len(domains):
        raise ValueError(f"domains: {domains} repeat a domain")
    if num_tasks is not None and num_tasks != len(domains):
        raise ValueError(f"domain-incremental benchmark: num_tasks {num_tasks} differs from the "
                         f"{len(domains)} domains {domains} (one task per domain; leave it None)")
    return [TaskSpec(d, list(range(num_classes)), d) for d in domains]


def _check_arguments(name, scenario, num_classes, per_class, val_fraction, test_fraction,
                     image_size, render_size, workers) -> None:
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    n_timeless = len(world.timeless_class_ids())
    if not 1 <= num_classes <= n_timeless:
        raise ValueError(f"num_classes must be 1 to {n_timeless} (the world's timeless classes), got {num_classes}")
    if per_class < 3:
        raise ValueError(f"per_class must be at least 3 (a train, a val and a test sample), got {per_class}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be "
                         "positive with a sum under 1")
    if not 8 <= render_size <= 1024 or not 8 <= image_size <= 1024:
        raise ValueError(f"render_size and image_size must be 8 to 1024 pixels, got {render_size}, {image_size}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")


def _check_every_split(table: pd.DataFrame, split: np.ndarray, tasks: list[TaskSpec],
                       classnames: list[str], per_class: int) -> None:
    """ValueError unless every (task, class) has a train sample and every task a sample in each split."""
    present = set(zip(table["task"], table["label"], split))
    train = SPLITS.index("train")
    missing = [f"{tasks[t].name}/{classnames[c]}/train" for t, task in enumerate(tasks) for c in task.classes
               if (t, c, train) not in present]
    per_task = {(t, s) for t, _, s in present}
    missing += [f"{tasks[t].name}/{SPLITS[s]}" for t in range(len(tasks)) for s in range(len(SPLITS))
                if (t, s) not in per_task]
    if missing:
        raise ValueError(f"{len(missing)} (task, class) train sets or (task) val/test sets got no sample from the hash split, "
                         f"e.g. {missing[:5]}; use a larger per_class than {per_class} "
                         "(or larger val/test fractions)")
