"""memclip's evaluation suite: after task t, accuracy on the samples of every task seen so far,
classified among every class seen so far (no task identity at test time).

The scores of one split after task t: ``acc_task<j>`` = A[t][j], the accuracy on task j's
samples (j <= t), and ``acc_seen`` = A_t, the accuracy over the pooled samples of tasks 0..t.
Ties between class scores get the expected credit of a random order (the shared evaluation
layer's ``zero_shot_accuracy``), so a constant model scores 1/C, not 100 % on one class. Each
score is the float64 mean of the per-sample credits, which ``per_sample`` also returns, so the
rows' entries (``ticlip_core.samples``) give the rows' values exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ticlip_core.data.pixels import PixelSpec
from ticlip_core.evaluation import eval_classifier, zero_shot_accuracy
from ticlip_core.retrieval import topk_credit

TASK_ACC = "acc_task"


def encode_rows(model, images, rows: list[int], device, batch_size: int, workers: int = 0) -> torch.Tensor:
    """L2-normalised image features ``(len(rows), D)``, on the CPU, of the ``rows`` of a split
    (``images``: its ``SplitImages``), ``batch_size`` at a time, decoded in ``workers`` processes."""
    if not rows:
        return torch.zeros(0, 1)
    return score_rows(lambda x: F.normalize(model.encode_image(x), dim=-1), model, images, rows, device, batch_size,
                      workers)


def evaluate_seen(model, tokenizer, images, table, *, t: int, seen_classes: list[int], classnames: list[str],
                  templates: list[str], device, batch_size: int, workers: int = 0, source: str = "",
                  scorer=None, per_sample: bool = False):
    """Scores after task ``t`` on one split (``table``: its rows, ``images``: its pixels):
    ``acc_task<j>`` for every j <= t and ``acc_seen`` (A_t), as fractions. The classifier is the
    label text of ``seen_classes``, or ``scorer`` (a method's own: normalised images to scores
    over ``seen_classes``); either way ties get the expected credit of a random order. With
    ``per_sample``, returns ``(scores, outcomes)``: ``outcomes`` holds ``rows`` (positions in
    ``table`` of the samples scored, tasks 0..t, in table order), their ``task`` and ``credit``."""
    tasks = table["task"].to_numpy()
    rows = np.flatnonzero(tasks <= t).tolist()
    if not rows:
        raise ValueError(f"{source}: no samples of tasks 0..{t} to evaluate")
    local = {c: i for i, c in enumerate(seen_classes)}
    labels = table["label"].to_numpy()[rows]
    unseen = sorted({int(y) for y in labels if int(y) not in local})
    if unseen:
        raise ValueError(f"{source}: samples of tasks 0..{t} have class(es) {unseen} outside the classes seen so far")
    targets = torch.tensor([local[int(y)] for y in labels])
    where = source or f"the memclip model after task {t}"
    if scorer is None:
        classifier = eval_classifier(model, tokenizer, [classnames[c] for c in seen_classes], templates, device)
        features = encode_rows(model, images, rows, device, batch_size, workers)
        credit = zero_shot_accuracy(features, classifier, targets, ks=(1,), per_sample=True, source=where)["top1"]
    else:
        logits = score_rows(scorer, model, images, rows, device, batch_size, workers)
        if logits.shape != (len(rows), len(seen_classes)):
            raise ValueError(f"{where}: the method's scorer gave scores of shape {tuple(logits.shape)}, "
                             f"not ({len(rows)}, {len(seen_classes)}) (samples, classes seen so far)")
        credit = topk_credit(logits, targets, 1, source=where)
    credit, of_task = credit.numpy().astype(np.float64), tasks[rows]
    scores = {f"{TASK_ACC}{j}": float(credit[of_task == j].mean()) for j in range(t + 1) if (of_task == j).any()}
    scores["acc_seen"] = float(credit.mean())
    if per_sample:
        return scores, {"rows": rows, "task": [int(j) for j in of_task], "credit": credit.tolist()}
    return scores


def score_rows(scorer, model, images, rows: list[int], device, batch_size: int, workers: int = 0) -> torch.Tensor:
    """``scorer``'s scores ``(len(rows), C)`` (float, on the CPU) of the ``rows`` of a split, the
    images normalised for ``model``, ``batch_size`` at a time."""
    pixels = PixelSpec.of(model)
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    loader = torch.utils.data.DataLoader(images, batch_sampler=batches, num_workers=workers)
    out = []
    model.eval()
    with torch.no_grad():
        for uint8 in loader:
            out.append(scorer(pixels.normalise(uint8).to(device)).float().cpu())
    return torch.cat(out)
