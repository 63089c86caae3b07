"""Evaluation of one checkpoint on every step's test split and on the static tasks.

Image features of each evaluation set are computed once per checkpoint and shared by the
retrieval and classification tasks of that set. Output: long-format rows
``study, method, train_step, task, eval_step, metric, value`` (docs/metrics.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import open_clip
import pandas as pd
import torch
import torch.nn.functional as F

from ticlip_core.class_labels import ClassLabels
from ticlip_core.data import world
from ticlip_core.data.loader import PixelSpec, eval_batches
from ticlip_core.retrieval import NonFiniteFeaturesError, check_finite, dot_scores, topk_credit  # noqa: F401 (re-exported)
from ticlip_core.retrieval import recall_at_k as _recall_at_k

log = logging.getLogger(__name__)
ROW_COLUMNS = ["study", "method", "train_step", "task", "eval_step", "metric", "value"]
SYNTHETIC_STATIC = "synthetic"  # name of the synthetic world's own static set (rules/common.smk)


@dataclass
class EncodedSet:
    """L2-normalised image and caption features of one evaluation set, plus sample metadata."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    meta: list[dict]
    skipped: int
    #: bad samples skipped, by reason (``data.loader.SKIP_REASONS``)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    def skipped_text(self) -> str:
        """``"N bad samples skipped (reason n, ...)"`` for the logs."""
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.skipped_by_reason.items()))
        return f"{self.skipped} bad samples skipped ({reasons or 'none'})"


@torch.no_grad()
def encode_eval_set(model, tokenizer, shards: list[str], batch_size: int,
                    device: torch.device, source: str | None = None) -> EncodedSet:
    """Encode every image and caption of ``shards`` once (bad samples skipped and counted by reason).

    Raises ``NonFiniteFeaturesError`` naming ``source`` (e.g. the checkpoint path) and the set
    if any feature is NaN or inf.
    """
    images, texts, meta, skipped, by_reason = [], [], [], 0, {}
    for batch in eval_batches(shards, batch_size=batch_size, pixels=PixelSpec.of(model), tokenizer=tokenizer):
        skipped += batch.skipped
        for reason, n in batch.skipped_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        if not batch.keys:
            continue
        images.append(F.normalize(model.encode_image(batch.images.to(device)), dim=-1).cpu())
        texts.append(F.normalize(model.encode_text(batch.texts.to(device)), dim=-1).cpu())
        meta.extend(batch.meta)
    if not meta:
        raise ValueError(f"evaluation set {shards[:1]}... holds no usable samples")
    enc = EncodedSet(torch.cat(images), torch.cat(texts), meta, skipped, by_reason)
    what = f"{source or 'the model'} on evaluation set {shards[:1]}..."
    check_finite(enc.image_features, "image features", what)
    check_finite(enc.text_features, "text features", what)
    return enc


def recall_at_k(image_features: torch.Tensor, text_features: torch.Tensor, ks: list[int],
                pool_size: int, *, source: str | None = None) -> dict[str, float]:
    """Image->text and text->image Recall@k, and their mean, for paired features.

    The set is cut into ``round(N / pool_size)`` near-equal pools (at least one) and recall is
    averaged over pools weighted by their size, so chance level is about ``1 / pool_size``
    whatever the split size. Ties get the expected credit of a random tie order, so constant
    features score chance (``retrieval.recall_at_k``, the project's one implementation).
    """
    out = _recall_at_k(image_features, text_features, None, ks, pool_size=pool_size, weighting="size",
                       source=source)
    for k in ks:
        out[f"mean_R@{k}"] = (out[f"i2t_R@{k}"] + out[f"t2i_R@{k}"]) / 2
    return out


def zero_shot_accuracy(image_features: torch.Tensor, classifier: torch.Tensor,
                       targets: list[set[int]], ks=(1, 5), *, source: str | None = None) -> dict[str, float]:
    """Top-k zero-shot accuracy; a sample is correct if a top-k class is one of its ``targets``.

    Ties among class scores get the expected credit of a random tie order
    (``retrieval.topk_credit``), so a constant model scores chance, not 100 % on class 0.
    """
    logits = dot_scores(image_features, classifier)
    out = {}
    for k in ks:
        k = min(k, logits.shape[1])
        out[f"top{k}"] = topk_credit(logits, targets, k, source=source).mean().item()
    return out


@torch.no_grad()
def build_classifier(model, tokenizer, classnames: list[str], templates: list[str], device) -> torch.Tensor:
    """open_clip's zero-shot classifier: mean normalised prompt embedding per class, ``(D, C)``."""
    return open_clip.build_zero_shot_classifier(
        model, tokenizer, classnames, [t.format for t in templates], num_classes_per_batch=16,
        device=device).cpu()


def classification_scores(enc: EncodedSet, classifier: torch.Tensor, labels: ClassLabels,
                          ks=(1, 5), *, source: str | None = None) -> tuple[dict[str, float] | None, int]:
    """Zero-shot top-k accuracy over the samples of ``enc`` that have a class; also returns how
    many samples had none (left out of this task, still used for retrieval)."""
    targets = [labels.labels_of(m) for m in enc.meta]
    keep = [i for i, t in enumerate(targets) if t]
    if not keep:
        return None, len(targets)
    scores = zero_shot_accuracy(enc.image_features[keep], classifier, [targets[i] for i in keep], ks, source=source)
    return scores, len(targets) - len(keep)


def evaluate_checkpoint(model, tokenizer, *, config: dict, study: str, method: str,
                        train_step: str, test_shards: dict[str, list[str]],
                        dynamic_labels: ClassLabels | None,
                        static_sets: dict[str, tuple[list[str], ClassLabels | None]],
                        checkpoint: str | None = None) -> pd.DataFrame:
    """All tasks for one checkpoint.

    Dynamic: retrieval on every step's test split, and zero-shot classification on it when
    ``dynamic_labels`` is given. Static: for each set in ``static_sets`` (name -> shards and
    labels), task ``static_<name>``: classification when the set has labels, retrieval
    otherwise; the synthetic world's static set (name ``synthetic``) gives its own three tasks.
    ``checkpoint`` (the weights' path) is named in the error if a feature is NaN or inf.
    """
    ecfg = config["eval"]
    device = next(model.parameters()).device
    model.eval()
    rows: list[tuple] = []

    def add(task, eval_step, metrics):
        rows.extend((study, method, train_step, task, eval_step, m, float(v)) for m, v in metrics.items())

    def retrieval(enc):
        return recall_at_k(enc.image_features, enc.text_features, ecfg["recall_at"], ecfg["retrieval_pool_size"],
                           source=checkpoint)

    classifier = (build_classifier(model, tokenizer, dynamic_labels.classnames, dynamic_labels.templates, device)
                  if dynamic_labels else None)
    for eval_step, shards in test_shards.items():
        enc = encode_eval_set(model, tokenizer, shards, ecfg["batch_size"], device, source=checkpoint)
        add("retrieval", eval_step, retrieval(enc))
        without = 0
        if dynamic_labels:
            scores, without = classification_scores(enc, classifier, dynamic_labels, source=checkpoint)
            if scores is None:
                raise ValueError(f"step {eval_step}: no test sample has a class (data.classification.key_to_class)")
            add("classification", eval_step, scores)
        log.info("%s: %d samples evaluated (%d without a class), %s",
                 eval_step, len(enc.meta), without, enc.skipped_text())

    for name, (shards, labels) in static_sets.items():
        enc = encode_eval_set(model, tokenizer, shards, ecfg["batch_size"], device, source=checkpoint)
        log.info("static %s: %d samples evaluated, %s", name, len(enc.meta), enc.skipped_text())
        if name == SYNTHETIC_STATIC:
            for task, metrics in synthetic_static_tasks(model, tokenizer, enc, ecfg, device, checkpoint).items():
                add(task, "static", metrics)
        elif labels is None:
            add(f"static_{name}", "static", retrieval(enc))
        else:
            clf = build_classifier(model, tokenizer, labels.classnames, labels.templates, device)
            scores, without = classification_scores(enc, clf, labels, source=checkpoint)
            if scores is None:
                raise ValueError(f"static set {name}: no sample has a class label")
            add(f"static_{name}", "static", scores)
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def synthetic_static_tasks(model, tokenizer, enc: EncodedSet, ecfg: dict, device,
                           source: str | None = None) -> dict[str, dict[str, float]]:
    """The synthetic world's static tasks: retrieval, timeless-object and colour classification."""
    class_names = world.class_names()
    timeless = world.timeless_class_ids()
    index = {c: i for i, c in enumerate(timeless)}
    static_clf = build_classifier(model, tokenizer, [class_names[c] for c in timeless], ecfg["templates"], device)
    colours = list(world.COLOURS)
    colour_clf = build_classifier(model, tokenizer, colours, ecfg["colour_templates"], device)
    return {
        "static_retrieval": recall_at_k(enc.image_features, enc.text_features, ecfg["recall_at"],
                                        ecfg["retrieval_pool_size"], source=source),
        "static_objects": zero_shot_accuracy(
            enc.image_features, static_clf, [{index[c] for c in m["labels"] if c in index} for m in enc.meta],
            source=source),
        "static_colours": zero_shot_accuracy(
            enc.image_features, colour_clf, [{colours.index(c) for c in m["object_colours"]} for m in enc.meta],
            ks=(1,), source=source),
    }
