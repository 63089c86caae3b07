"""TiC-CLIP's evaluation suite: which tasks each checkpoint is scored on.

Every step's test split (dynamic retrieval, and zero-shot classification when the data has
classes) and the static sets; the encoding, classifier, accuracy and Recall@k are the shared
evaluation layer's (``ticlip_core.evaluation``). Image features of each set are computed once
per checkpoint and shared by its retrieval and classification tasks. Output: rows of the one
long-format schema (``ticlip_core.rows``, docs/metrics.md), and with
``evaluate_checkpoint_samples`` each recall's and accuracy's per-sample entries
(``ticlip_core.samples``) on the sample sets ``tic/test/<eval_step>`` (a step's test split) and
``tic/static/<name>`` (a static set), indices in the order the set's usable samples are read.
"""
from __future__ import annotations

import logging

import pandas as pd
import torch

from ticlip_core import rows as row_schema
from ticlip_core import samples
from ticlip_core.class_labels import ClassLabels
from ticlip_core.data import world
from ticlip_core.evaluation import EncodedSet, encode_texts, eval_classifier, zero_shot_accuracy
from ticlip_core.evaluation import encode_shards as encode_eval_set  # noqa: F401 (TiC's name; Patching reads it)
from ticlip_core.evaluation import recall_at_k as shared_recall_at_k
from ticlip_core.retrieval import NonFiniteFeaturesError  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)
SYNTHETIC_STATIC = "synthetic"  # name of the synthetic world's own static set (rules/common.smk)
#: a static retrieval sample's metadata key listing all captions of its image (COCO, Flickr30k)
CAPTIONS_KEY = "captions"
#: how far a row may be from its entries' weighted mean: accuracies are float32 means
#: (``zero_shot_accuracy``), within a few 1e-8 of the float64 mean of the same credits
SAMPLES_ATOL = 1e-6


def recall_at_k(image_features: torch.Tensor, text_features: torch.Tensor, ks: list[int], pool_size: int, *,
                image_of_text=None, source: str | None = None, per_query: bool = False):
    """TiC's retrieval score: ``i2t_R@k``, ``t2i_R@k`` and their mean ``mean_R@k`` within pools of
    about ``pool_size`` images, averaged weighted by pool size (so chance is about
    ``1 / pool_size`` whatever the split size). Captions are paired with images unless
    ``image_of_text`` says whose each caption is (several per image allowed). With
    ``per_query``, also each score's ``(image, weight, credit)`` (``evaluation.recall_at_k``)."""
    return shared_recall_at_k(image_features, text_features, image_of_text, ks, pool_size=pool_size,
                              weighting="size", naming="tic", source=source, per_query=per_query)


def accuracy(image_features, classifier, targets, ks=(1, 5), *, sample_index=None, source: str | None = None):
    """``zero_shot_accuracy``'s scores (the same bits) and each one's ``(sample, weight, credit)``:
    ``sample_index[i]`` (default ``i``) is the set index of image ``i``, every weight 1."""
    credits = zero_shot_accuracy(image_features, classifier, targets, ks, per_sample=True, source=source)
    index = torch.arange(len(image_features)) if sample_index is None else torch.as_tensor(sample_index)
    ones = torch.ones(len(index), dtype=torch.float64)
    return ({name: c.mean().item() for name, c in credits.items()},
            {name: (index, ones, c) for name, c in credits.items()})


def all_captions(enc: EncodedSet, encode) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The caption features to retrieve against and each one's image (None: paired with the images).

    When samples carry a ``captions`` list in their metadata (static COCO/Flickr sets: every
    caption of the image), those captions replace the sample's one caption, encoded by
    ``encode(texts) -> (M, D)``; a sample without the list keeps its own caption's features.
    """
    if not any(m.get(CAPTIONS_KEY) for m in enc.meta):
        return enc.text_features, None
    owners, texts, listed_at, own_at = [], [], [], []
    for i, m in enumerate(enc.meta):
        captions = m.get(CAPTIONS_KEY)
        if captions:
            if not isinstance(captions, list) or not all(isinstance(c, str) and c for c in captions):
                raise ValueError(f"sample {m.get('key', i)}: '{CAPTIONS_KEY}' must be a list of non-empty "
                                 f"strings, got {captions!r}")
            listed_at += range(len(owners), len(owners) + len(captions))
            texts += captions
            owners += [i] * len(captions)
        else:
            own_at.append((len(owners), i))
            owners.append(i)
    features = torch.empty(len(owners), enc.text_features.shape[1], dtype=enc.text_features.dtype)
    features[listed_at] = encode(texts).to(features.dtype)
    for j, i in own_at:
        features[j] = enc.text_features[i]
    return features, torch.tensor(owners)


def classification_scores(enc: EncodedSet, classifier: torch.Tensor, labels: ClassLabels,
                          ks=(1, 5), *, source: str | None = None) -> tuple[dict[str, float] | None, int, dict]:
    """Zero-shot top-k accuracy over the samples of ``enc`` that have a class; also returns how
    many samples had none (left out of this task, still used for retrieval), and each score's
    per-sample ``(sample, weight, credit)`` (``accuracy``; samples index ``enc``)."""
    targets = [labels.labels_of(m) for m in enc.meta]
    keep = [i for i, t in enumerate(targets) if t]
    if not keep:
        return None, len(targets), {}
    scores, per = accuracy(enc.image_features[keep], classifier, [targets[i] for i in keep], ks, sample_index=keep,
                           source=source)
    return scores, len(targets) - len(keep), per


def evaluate_checkpoint(model, tokenizer, **kwargs) -> pd.DataFrame:
    """All tasks for one checkpoint, as rows of the one schema (``evaluate_checkpoint_samples``'s
    rows; the same keyword arguments)."""
    return evaluate_checkpoint_samples(model, tokenizer, **kwargs)[0]


def evaluate_checkpoint_samples(model, tokenizer, *, config: dict, study: str, method: str,
                                train_step: str, test_shards: dict[str, list[str]],
                                dynamic_labels: ClassLabels | None,
                                static_sets: dict[str, tuple[list[str], ClassLabels | None]],
                                checkpoint: str | None = None, scenario: str | None = None,
                                decoded=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All tasks for one checkpoint, as rows of the one schema (``ticlip_core.rows``), and the
    entries (``ticlip_core.samples``) of every row: all of them are recalls or accuracies.

    Dynamic: retrieval on every step's test split, and zero-shot classification on it when
    ``dynamic_labels`` is given. Static: for each set in ``static_sets`` (name -> shards and
    labels), task ``static_<name>``: classification when the set has labels, retrieval
    otherwise (against all captions of each image when the samples list them); the synthetic
    world's static set (name ``synthetic``) gives its own three tasks. ``scenario`` names the
    benchmark in the rows. ``checkpoint`` (the weights' path) is named in the error if a feature
    is NaN or inf. ``decoded`` (``evaluation.DecodedSets``) keeps the decoded sets for the
    job's next checkpoint. Entries name the samples of ``tic/test/<eval_step>`` and
    ``tic/static/<name>`` by their index among the set's usable samples, in reading order.
    """
    ecfg = config["eval"]
    device = next(model.parameters()).device
    model.eval()
    rows: list[dict] = []
    parts: list[pd.DataFrame] = []

    def add(task, eval_step, scored, sample_set, set_size):
        metrics, per = scored
        base = {"study": study, "scenario": scenario, "method": method, "train_step": train_step, "task": task,
                "eval_step": eval_step}
        rows.extend(row_schema.make_rows(base, metrics))
        for metric, (sample, weight, credit) in per.items():
            parts.append(samples.entries({**base, "metric": metric}, sample_set, set_size, credit.double().numpy(),
                                         sample.numpy(), weight.numpy()))

    def retrieval(enc, text_features=None, image_of_text=None):
        return recall_at_k(enc.image_features, enc.text_features if text_features is None else text_features,
                           ecfg["recall_at"], ecfg["retrieval_pool_size"], image_of_text=image_of_text,
                           source=checkpoint, per_query=True)

    classifier = (eval_classifier(model, tokenizer, dynamic_labels.classnames, dynamic_labels.templates, device)
                  if dynamic_labels else None)
    for eval_step, shards in test_shards.items():
        enc = encode_eval_set(model, tokenizer, shards, ecfg["batch_size"], device, source=checkpoint,
                              decoded=decoded)
        test_set = f"tic/test/{eval_step}"
        add("retrieval", eval_step, retrieval(enc), test_set, len(enc.meta))
        without = 0
        if dynamic_labels:
            scores, without, per = classification_scores(enc, classifier, dynamic_labels, source=checkpoint)
            if scores is None:
                raise ValueError(f"step {eval_step}: no test sample has a class (data.classification.key_to_class)")
            add("classification", eval_step, (scores, per), test_set, len(enc.meta))
        log.info("%s: %d samples evaluated (%d without a class), %s",
                 eval_step, len(enc.meta), without, enc.skipped_text())

    for name, (shards, labels) in static_sets.items():
        enc = encode_eval_set(model, tokenizer, shards, ecfg["batch_size"], device, source=checkpoint,
                              decoded=decoded)
        log.info("static %s: %d samples evaluated, %s", name, len(enc.meta), enc.skipped_text())
        static_set, size = f"tic/static/{name}", len(enc.meta)
        if name == SYNTHETIC_STATIC:
            tasks = synthetic_static_tasks(model, tokenizer, enc, ecfg, device, checkpoint, per_sample=True)
            for task, scored in tasks.items():
                add(task, row_schema.STATIC_EVAL_STEP, scored, static_set, size)
        elif labels is None:
            texts, owners = all_captions(enc, lambda t: encode_texts(model, tokenizer, t, device, ecfg["batch_size"]))
            if owners is not None:
                log.info("static %s: %d captions of %d images", name, len(owners), len(enc.meta))
            add(f"static_{name}", row_schema.STATIC_EVAL_STEP, retrieval(enc, texts, owners), static_set, size)
        else:
            clf = eval_classifier(model, tokenizer, labels.classnames, labels.templates, device)
            scores, without, per = classification_scores(enc, clf, labels, source=checkpoint)
            if scores is None:
                raise ValueError(f"static set {name}: no sample has a class label")
            add(f"static_{name}", row_schema.STATIC_EVAL_STEP, (scores, per), static_set, size)
    return row_schema.frame(rows), samples.frame(parts)


def synthetic_static_tasks(model, tokenizer, enc: EncodedSet, ecfg: dict, device,
                           source: str | None = None, per_sample: bool = False) -> dict:
    """The synthetic world's static tasks: retrieval, timeless-object and colour classification,
    ``{task: scores}``, or with ``per_sample`` ``{task: (scores, per-sample (sample, weight, credit))}``."""
    class_names = world.class_names()
    timeless = world.timeless_class_ids()
    index = {c: i for i, c in enumerate(timeless)}
    static_clf = eval_classifier(model, tokenizer, [class_names[c] for c in timeless], ecfg["templates"], device)
    colours = list(world.COLOURS)
    colour_clf = eval_classifier(model, tokenizer, colours, ecfg["colour_templates"], device)
    tasks = {
        "static_retrieval": recall_at_k(enc.image_features, enc.text_features, ecfg["recall_at"],
                                        ecfg["retrieval_pool_size"], source=source, per_query=True),
        "static_objects": accuracy(
            enc.image_features, static_clf, [{index[c] for c in m["labels"] if c in index} for m in enc.meta],
            source=source),
        "static_colours": accuracy(
            enc.image_features, colour_clf, [{colours.index(c) for c in m["object_colours"]} for m in enc.meta],
            ks=(1,), source=source),
    }
    return tasks if per_sample else {task: scores for task, (scores, _) in tasks.items()}
