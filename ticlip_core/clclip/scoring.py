"""CL-CLIP's evaluation suite (Ding et al., Sec. VI-A; docs/metrics.md): which splits and
sessions a model is scored on after each session, and the rows a finished chain writes.

After a session: accuracy on each session's classes of the update task (classified among all
update classes; a row of the accuracy matrix A), UT-Acc, zero-shot accuracy on held-out
classes, A-Acc, and, after the last session, retrieval; the headline scores of a finished
chain. The encoding, classifier, accuracy and Recall@k are the shared evaluation layer's
(``ticlip_core.evaluation``), the formulas the metrics layer's (``ticlip_core.metrics``).
"""
from __future__ import annotations

import numpy as np
import torch

from ticlip_core import rows as row_schema
from ticlip_core.clclip.task_files import load_classes, load_retrieval, load_split
from ticlip_core.evaluation import encode_crops, encode_texts, eval_classifier, recall_at_k, zero_shot_accuracy
from ticlip_core.metrics import a_acc, bwt, session_accuracies, ut_acc_mst, ut_acc_ost

SPLITS = {"val": ("update_val", "zs_val"), "test": ("update_test", "zs_test")}
#: each score of a session (or of the finished chain) as (task, eval_step, metric) of the row
#: schema; ``acc_s<j>`` (A[i][j]) becomes task ``update``, eval_step ``j``, metric ``acc``
ROW_OF = {"ut_acc": ("update", row_schema.NA, "ut_acc"), "bwt": ("update", row_schema.NA, "bwt"),
          "zs_acc": ("zero_shot", row_schema.NA, "zs_acc"), "a_acc": ("overall", row_schema.NA, "a_acc")}
SESSION_ACC = "acc_s"


def class_accuracy(model, tokenizer, images: torch.Tensor, labels: torch.Tensor, classnames: list[str],
                   templates: list[str], device) -> torch.Tensor:
    """Per-sample top-1 credit in [0, 1] (float) of classifying crops among ``classnames`` by
    prompt similarity (``evaluation.zero_shot_accuracy``): 1 or 0 when the best class score is
    unique, the expected credit of a random tie order otherwise, so a constant model scores
    1/C, not 100 % on class 0. Non-finite logits raise ``NonFiniteFeaturesError``."""
    model.eval()
    classifier = eval_classifier(model, tokenizer, classnames, templates, device)
    return zero_shot_accuracy(encode_crops(model, images, device), classifier, labels, ks=(1,), per_sample=True,
                              source=f"the CL-CLIP model classifying among {len(classnames)} classes")["top1"]


def retrieval_recalls(model, tokenizer, images: torch.Tensor, captions: list[str], caption_image: torch.Tensor,
                      device, fold_size: int) -> dict[str, float]:
    """TR@1/5 (image->text) and IR@1/5 (text->image) of images and their captions (several per
    image allowed; ``caption_image`` gives each caption's image), averaged with equal weights
    over folds of ``fold_size`` images (COCO: 5 folds of 1k)."""
    model.eval()
    return recall_at_k(encode_crops(model, images, device), encode_texts(model, tokenizer, captions, device),
                       caption_image, ks=(1, 5), pool_size=fold_size, weighting="equal", naming="clclip")


def evaluate_session(model, tokenizer, task: dict, plan, setting: str, session: int, templates: list[str],
                     device, *, retrieval: bool, fold_size: int) -> dict[str, dict[str, float]]:
    """Scores after a session, per split: accuracy on each session's classes (``acc_s<j>``, the
    mean of its classes' accuracies), UT-Acc so far (OST: overall accuracy; MST: mean over the
    sessions seen), ZS-Acc, A-Acc, and (test only, when ``retrieval``) TR@1/5 and IR@1/5."""
    out = {}
    sessions = [plan.session_classes(setting, j) for j in range(plan.num_sessions(setting))]
    for split, (update_name, zs_name) in SPLITS.items():
        images, labels = task[update_name]
        correct = class_accuracy(model, tokenizer, images, labels, plan.update_classes, templates, device)
        per_session = session_accuracies(correct, labels, sessions)
        scores = {f"{SESSION_ACC}{j}": float(acc) for j, acc in enumerate(per_session)}
        scores["ut_acc"] = ut_acc_ost(correct) if setting == "ost" else float(np.mean(per_session[:session + 1]))
        zs_images, zs_labels = task[zs_name]
        zs_names = plan.zs_val_classes if split == "val" else plan.zs_test_classes
        scores["zs_acc"] = class_accuracy(model, tokenizer, zs_images, zs_labels, zs_names, templates,
                                          device).mean().item()
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
        matrix = np.array([[s["scores"][split][f"{SESSION_ACC}{j}"] for j in range(n)] for s in sessions])
        out["ut_acc"] = ut_acc_mst(matrix)
        out["a_acc"] = a_acc(out["ut_acc"], out["zs_acc"])
        out["bwt"] = bwt(matrix)
    return out


def score_rows(scores: dict[str, float], base: dict) -> list[dict]:
    """``scores`` (a session's or a chain's, by CL-CLIP name) as rows of the one schema, the other
    columns from ``base``: ``acc_s<j>`` -> task ``update``, eval_step ``j``, metric ``acc``;
    TR/IR@k -> task ``retrieval``; the rest as ``ROW_OF`` says."""
    rows = []
    for name, value in scores.items():
        if name.startswith(SESSION_ACC):
            task, eval_step, metric = "update", name[len(SESSION_ACC):], "acc"
        elif name[:3] in ("TR@", "IR@"):
            task, eval_step, metric = "retrieval", row_schema.NA, name
        else:
            task, eval_step, metric = ROW_OF[name]
        rows += row_schema.make_rows({**base, "task": task, "eval_step": eval_step}, {metric: value})
    return rows


def chain_rows(sessions: list[dict], *, setting: str, method: str, variant: str | None = None,
               hyperparameter: str | None = None, chosen=None, split: str = "test") -> list[dict]:
    """The rows of a finished chain on ``split``: every session's scores (train_step = the session)
    and the headline scores (train_step ``final``, ``summary_scores``), in the one schema.
    ``variant``, ``hyperparameter`` and ``chosen`` are ``-`` when they do not apply."""
    base = {"study": "clclip", "scenario": setting, "method": method, "variant": variant,
            "hyperparameter": hyperparameter, "chosen": chosen}
    rows = []
    for s in sessions:
        rows += score_rows(s["scores"][split], {**base, "train_step": s["session"]})
    return rows + score_rows(summary_scores(sessions, setting, split), {**base, "train_step": row_schema.FINAL_STEP})
