"""Evaluation of one checkpoint on every step's test split and on the static tasks.

Image features of each evaluation set are computed once per checkpoint and shared by the
retrieval and classification tasks of that set. Output: long-format rows
``study, method, train_step, task, eval_step, metric, value`` (DESIGN.md section 3).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F

from .data import world
from .data.loader import PixelSpec, eval_batches

log = logging.getLogger(__name__)
ROW_COLUMNS = ["study", "method", "train_step", "task", "eval_step", "metric", "value"]


@dataclass
class EncodedSet:
    """L2-normalised image and caption features of one evaluation set, plus sample metadata."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    meta: list[dict]
    skipped: int


@torch.no_grad()
def encode_eval_set(model, tokenizer, shards: list[str], batch_size: int,
                    device: torch.device) -> EncodedSet:
    """Encode every image and caption of ``shards`` once (corrupt images skipped and counted)."""
    images, texts, meta, skipped = [], [], [], 0
    for batch in eval_batches(shards, batch_size=batch_size, pixels=PixelSpec.of(model), tokenizer=tokenizer):
        skipped += batch.skipped
        if not batch.keys:
            continue
        images.append(F.normalize(model.encode_image(batch.images.to(device)), dim=-1).cpu())
        texts.append(F.normalize(model.encode_text(batch.texts.to(device)), dim=-1).cpu())
        meta.extend(batch.meta)
    if not meta:
        raise ValueError(f"evaluation set {shards[:1]}... holds no usable samples")
    return EncodedSet(torch.cat(images), torch.cat(texts), meta, skipped)


def recall_at_k(image_features: torch.Tensor, text_features: torch.Tensor, ks: list[int],
                pool_size: int) -> dict[str, float]:
    """Image->text and text->image Recall@k, and their mean, for paired features.

    The set is cut into ``round(N / pool_size)`` near-equal pools (at least one) and recall is
    averaged over pools, so chance level is about ``1 / pool_size`` whatever the split size.
    """
    n = len(image_features)
    pools = np.array_split(np.arange(n), max(1, round(n / pool_size)))
    sums = {f"{d}_R@{k}": 0.0 for d in ("i2t", "t2i") for k in ks}
    for idx in pools:
        idx = torch.as_tensor(idx)
        sim = image_features[idx] @ text_features[idx].T
        target = torch.arange(len(idx))
        for direction, s in (("i2t", sim), ("t2i", sim.T)):
            # rank of the true partner = number of candidates scoring strictly higher
            rank = (s > s[target, target][:, None]).sum(dim=1)
            for k in ks:
                sums[f"{direction}_R@{k}"] += (rank < k).float().mean().item() * len(idx) / n
    for k in ks:
        sums[f"mean_R@{k}"] = (sums[f"i2t_R@{k}"] + sums[f"t2i_R@{k}"]) / 2
    return sums


def zero_shot_accuracy(image_features: torch.Tensor, classifier: torch.Tensor,
                       targets: list[set[int]], ks=(1, 5)) -> dict[str, float]:
    """Top-k zero-shot accuracy; a sample is correct if a top-k class is one of its ``targets``."""
    logits = image_features @ classifier
    out = {}
    for k in ks:
        k = min(k, logits.shape[1])
        top = logits.topk(k, dim=1).indices.tolist()
        out[f"top{k}"] = float(np.mean([bool(set(row) & t) for row, t in zip(top, targets)]))
    return out


@torch.no_grad()
def build_classifier(model, tokenizer, classnames: list[str], templates: list[str], device) -> torch.Tensor:
    """open_clip's zero-shot classifier: mean normalised prompt embedding per class, ``(D, C)``."""
    return open_clip.build_zero_shot_classifier(
        model, tokenizer, classnames, [t.format for t in templates], num_classes_per_batch=16,
        device=device).cpu()


def evaluate_checkpoint(model, tokenizer, *, config: dict, study: str, method: str,
                        train_step: str, test_shards: dict[str, list[str]],
                        static_shards: list[str]) -> pd.DataFrame:
    """All tasks for one checkpoint: dynamic retrieval and classification on every step's test
    split, and the static tasks (object and colour classification, retrieval) on the static set."""
    ecfg = config["eval"]
    device = next(model.parameters()).device
    model.eval()
    rows: list[tuple] = []

    def add(task, eval_step, metrics):
        rows.extend((study, method, train_step, task, eval_step, m, float(v)) for m, v in metrics.items())

    class_names = world.class_names()
    classifier = build_classifier(model, tokenizer, class_names, ecfg["templates"], device)
    for eval_step, shards in test_shards.items():
        enc = encode_eval_set(model, tokenizer, shards, ecfg["batch_size"], device)
        add("retrieval", eval_step, recall_at_k(enc.image_features, enc.text_features, ecfg["recall_at"],
                                                ecfg["retrieval_pool_size"]))
        add("classification", eval_step, zero_shot_accuracy(enc.image_features, classifier,
                                                            [set(m["labels"]) for m in enc.meta]))
        log.info("%s: %d samples evaluated, %d corrupt skipped", eval_step, len(enc.meta), enc.skipped)

    enc = encode_eval_set(model, tokenizer, static_shards, ecfg["batch_size"], device)
    log.info("static: %d samples evaluated, %d corrupt skipped", len(enc.meta), enc.skipped)
    add("static_retrieval", "static", recall_at_k(enc.image_features, enc.text_features, ecfg["recall_at"],
                                                  ecfg["retrieval_pool_size"]))
    timeless = world.timeless_class_ids()
    index = {c: i for i, c in enumerate(timeless)}
    static_clf = build_classifier(model, tokenizer, [class_names[c] for c in timeless], ecfg["templates"], device)
    add("static_objects", "static", zero_shot_accuracy(
        enc.image_features, static_clf, [{index[c] for c in m["labels"] if c in index} for m in enc.meta]))
    colours = list(world.COLOURS)
    colour_clf = build_classifier(model, tokenizer, colours, ecfg["colour_templates"], device)
    add("static_colours", "static", zero_shot_accuracy(
        enc.image_features, colour_clf, [{colours.index(c) for c in m["object_colours"]} for m in enc.meta],
        ks=(1,)))
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
