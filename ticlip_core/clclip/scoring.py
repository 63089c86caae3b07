"""Scoring a CL-CLIP model after a session (Ding et al., Sec. VI-A; docs/metrics.md): accuracy on
each session's classes of the update task, UT-Acc, zero-shot accuracy on held-out classes,
A-Acc, retrieval after the last session, and the headline scores of a finished chain.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ticlip_core.clclip.metrics import a_acc, bwt, recall_folds, ut_acc_mst
from ticlip_core.clclip.task_files import load_classes, load_retrieval, load_split
from ticlip_core.data.loader import PixelSpec
from ticlip_core.retrieval import dot_scores, topk_credit
from ticlip_core.tic.evaluate import build_classifier

@torch.no_grad()
def image_features(model, images: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    """Normalised image features of uint8 crops, ``(N, D)``."""
    pixels = PixelSpec.of(model)
    feats = [F.normalize(model.encode_image(pixels.normalise(images[i:i + batch_size]).to(device)), dim=-1)
             for i in range(0, len(images), batch_size)]
    return torch.cat(feats).cpu()


@torch.no_grad()
def class_accuracy(model, tokenizer, images: torch.Tensor, labels: torch.Tensor, classnames: list[str],
                   templates: list[str], device) -> torch.Tensor:
    """Per-sample top-1 credit in [0, 1] (float) of classifying crops among ``classnames`` by
    prompt similarity: 1 or 0 when the best class score is unique, the expected credit of a
    random tie order otherwise, so a constant model scores 1/C, not 100 % on class 0
    (``retrieval.topk_credit``). Non-finite logits raise ``NonFiniteFeaturesError``."""
    model.eval()
    classifier = build_classifier(model, tokenizer, classnames, templates, device)
    logits = dot_scores(image_features(model, images, device), classifier)
    return topk_credit(logits, labels, 1, source=f"the CL-CLIP model classifying among {len(classnames)} classes")


@torch.no_grad()
def retrieval_recalls(model, tokenizer, images: torch.Tensor, captions: list[str], caption_image: torch.Tensor,
                      device, fold_size: int) -> dict[str, float]:
    """TR@1/5 (image->text) and IR@1/5 (text->image) of images and their captions (several per
    image allowed; ``caption_image`` gives each caption's image), averaged over folds of
    ``fold_size`` images (COCO: 5 folds of 1k)."""
    model.eval()
    img = image_features(model, images, device)
    txt = torch.cat([F.normalize(model.encode_text(tokenizer(captions[i:i + 256]).to(device)), dim=-1).cpu()
                     for i in range(0, len(captions), 256)])
    return recall_folds(img, txt, caption_image, ks=(1, 5), fold_size=fold_size)


SPLITS = {"val": ("update_val", "zs_val"), "test": ("update_test", "zs_test")}


def evaluate_session(model, tokenizer, task: dict, plan, setting: str, session: int, templates: list[str],
                     device, *, retrieval: bool, fold_size: int) -> dict[str, dict[str, float]]:
    """Scores after a session, per split: accuracy on each session's classes (``acc_s<j>``), UT-Acc
    so far (OST: overall accuracy; MST: mean over the sessions seen), ZS-Acc, and (test only,
    when ``retrieval``) TR@1/5 and IR@1/5."""
    out = {}
    for split, (update_name, zs_name) in SPLITS.items():
        images, labels = task[update_name]
        correct = class_accuracy(model, tokenizer, images, labels, plan.update_classes, templates, device)
        scores = {}
        per_session = []
        for j in range(plan.num_sessions(setting)):
            mask = torch.isin(labels, torch.tensor(plan.session_classes(setting, j)))
            acc = correct[mask].float().mean().item() if mask.any() else float("nan")
            scores[f"acc_s{j}"] = acc
            if j <= session:
                per_session.append(acc)
        scores["ut_acc"] = correct.float().mean().item() if setting == "ost" else float(np.mean(per_session))
        zs_images, zs_labels = task[zs_name]
        zs_names = plan.zs_val_classes if split == "val" else plan.zs_test_classes
        scores["zs_acc"] = class_accuracy(model, tokenizer, zs_images, zs_labels, zs_names, templates,
                                          device).float().mean().item()
        scores["a_acc"] = a_acc(scores["ut_acc"], scores["zs_acc"])
        if retrieval and split == "test":
            images, captions, caption_image = task["retrieval"]
            scores.update(retrieval_recalls(model, tokenizer, images, captions, caption_image, device, fold_size))
        out[split] = scores
    return out


def load_task(task_dir: str) -> tuple[dict, object]:
    """Every split of the prepared task (crops as uint8 tensors) and its class plan."""
    task = {name: load_split(task_dir, name) for names in SPLITS.values() for name in names}
    task["update_train"] = load_split(task_dir, "update_train")
    task["retrieval"] = load_retrieval(task_dir)
    return task, load_classes(task_dir)


def summary_scores(sessions: list[dict], setting: str, split: str) -> dict[str, float]:
    """The headline scores of a finished chain on ``split``: UT-Acc, ZS-Acc, A-Acc, retrieval,
    and, in MST, Bwt from the accuracy matrix A[i][j] (sessions x sessions)."""
    final = dict(sessions[-1]["scores"][split])
    out = {k: final[k] for k in ("ut_acc", "zs_acc", "a_acc", "TR@1", "TR@5", "IR@1", "IR@5") if k in final}
    if setting == "mst":
        n = len(sessions)
        matrix = np.array([[s["scores"][split][f"acc_s{j}"] for j in range(n)] for s in sessions])
        out["ut_acc"] = ut_acc_mst(matrix)
        out["a_acc"] = a_acc(out["ut_acc"], out["zs_acc"])
        out["bwt"] = bwt(matrix)
    return out
