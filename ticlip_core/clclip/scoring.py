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
import pandas as pd
import torch

from ticlip_core import rows as row_schema
from ticlip_core import samples
from ticlip_core.clclip.task_files import load_classes, load_retrieval, load_split
from ticlip_core.evaluation import encode_crops, encode_texts, eval_classifier, recall_at_k, zero_shot_accuracy
from ticlip_core.metrics import a_acc, bwt, session_accuracies, ut_acc_mst, ut_acc_ost
from ticlip_core.retrieval import _check_retrieval, dot_scores, hit_credit

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
                      device, fold_size: int, per_query: dict | None = None) -> dict[str, float]:
    """TR@1/5 (image->text) and IR@1/5 (text->image) of images and their captions (several per
    image allowed; ``caption_image`` gives each caption's image), averaged with equal weights
    over folds of ``fold_size`` images (COCO: 5 folds of 1k). A ``per_query`` dict receives
    each query's credit (``query_credits``)."""
    model.eval()
    img, txt = encode_crops(model, images, device), encode_texts(model, tokenizer, captions, device)
    scores = recall_at_k(img, txt, caption_image, ks=(1, 5), pool_size=fold_size, weighting="equal", naming="clclip")
    if per_query is not None:
        per_query.update(query_credits(img, txt, caption_image, (1, 5), fold_size))
    return scores


def retrieval_folds(num_images: int, fold_size: int) -> list[np.ndarray]:
    """The image indices of each retrieval fold, as ``retrieval.recall_at_k`` cuts them."""
    return np.array_split(np.arange(num_images), max(1, round(num_images / fold_size)))


def query_credits(image_features, text_features, caption_image, ks, fold_size: int) -> dict[str, list[float]]:
    """Each query's Recall@k credit within its fold (``retrieval.hit_credit``): ``TR@k`` per image,
    ``IR@k`` per caption, in their order; the fold means of these are ``retrieval_recalls``."""
    img, txt, owner = _check_retrieval(image_features, text_features, caption_image, None)
    out = {f"{d}@{k}": torch.zeros(n, dtype=torch.float64) for d, n in (("TR", len(img)), ("IR", len(txt)))
           for k in ks}
    for fold in retrieval_folds(len(img), fold_size):
        lo, hi = int(fold[0]), int(fold[-1]) + 1
        mine = ((owner >= lo) & (owner < hi)).nonzero().flatten()
        local = owner[mine] - lo
        positive = local[None, :] == torch.arange(hi - lo)[:, None]  # (images, captions) of the fold
        for k, c in hit_credit(dot_scores(img[lo:hi], txt[mine].T), positive, ks).items():
            out[f"TR@{k}"][lo:hi] = c
        for k, c in hit_credit(dot_scores(txt[mine], img[lo:hi].T), positive.T, ks).items():
            out[f"IR@{k}"][mine] = c
    return {name: c.tolist() for name, c in out.items()}


def evaluate_session(model, tokenizer, task: dict, plan, setting: str, session: int, templates: list[str],
                     device, *, retrieval: bool, fold_size: int) -> tuple[dict[str, dict[str, float]], dict]:
    """Scores after a session, per split: accuracy on each session's classes (``acc_s<j>``, the
    mean of its classes' accuracies), UT-Acc so far (OST: overall accuracy; MST: mean over the
    sessions seen), ZS-Acc, A-Acc, and (test only, when ``retrieval``) TR@1/5 and IR@1/5; and the
    test split's per-sample outcomes behind them (``update``, ``zs``: top-1 credit per image;
    ``TR@k``/``IR@k``: credit per query), from which ``chain_entries`` builds the rows' entries."""
    out, outcomes = {}, {}
    sessions = [plan.session_classes(setting, j) for j in range(plan.num_sessions(setting))]
    for split, (update_name, zs_name) in SPLITS.items():
        images, labels = task[update_name]
        # float64, so that the means are the entries' weighted means to the last bits
        correct = class_accuracy(model, tokenizer, images, labels, plan.update_classes, templates, device).double()
        per_session = session_accuracies(correct, labels, sessions)
        scores = {f"{SESSION_ACC}{j}": float(acc) for j, acc in enumerate(per_session)}
        scores["ut_acc"] = ut_acc_ost(correct) if setting == "ost" else float(np.mean(per_session[:session + 1]))
        zs_images, zs_labels = task[zs_name]
        zs_names = plan.zs_val_classes if split == "val" else plan.zs_test_classes
        zs = class_accuracy(model, tokenizer, zs_images, zs_labels, zs_names, templates, device).double()
        scores["zs_acc"] = zs.mean().item()
        scores["a_acc"] = a_acc(scores["ut_acc"], scores["zs_acc"])
        if split == "test":
            outcomes.update(update=correct.tolist(), zs=zs.tolist())
        if retrieval and split == "test":
            images, captions, caption_image = task["retrieval"]
            scores.update(retrieval_recalls(model, tokenizer, images, captions, caption_image, device, fold_size,
                                            per_query=outcomes))
        out[split] = scores
    return out, outcomes


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


def _row(name: str, base: dict) -> dict:
    """The row labels of score ``name`` (a CL-CLIP name): ``acc_s<j>`` -> task ``update``,
    eval_step ``j``, metric ``acc``; TR/IR@k -> task ``retrieval``; the rest as ``ROW_OF`` says."""
    if name.startswith(SESSION_ACC):
        task, eval_step, metric = "update", name[len(SESSION_ACC):], "acc"
    elif name[:3] in ("TR@", "IR@"):
        task, eval_step, metric = "retrieval", row_schema.NA, name
    else:
        task, eval_step, metric = ROW_OF[name]
    return {**base, "task": task, "eval_step": eval_step, "metric": metric}


def score_rows(scores: dict[str, float], base: dict) -> list[dict]:
    """``scores`` (a session's or a chain's, by CL-CLIP name) as rows of the one schema, the other
    columns from ``base`` (labels as ``_row`` gives them)."""
    rows = []
    for name, value in scores.items():
        row = _row(name, base)
        rows += row_schema.make_rows({k: v for k, v in row.items() if k != "metric"}, {row["metric"]: value})
    return rows


def _base(setting, method, variant=None, hyperparameter=None, chosen=None) -> dict:
    return {"study": "clclip", "scenario": setting, "method": method, "variant": variant,
            "hyperparameter": hyperparameter, "chosen": chosen}


def chain_rows(sessions: list[dict], *, setting: str, method: str, variant: str | None = None,
               hyperparameter: str | None = None, chosen=None, split: str = "test") -> list[dict]:
    """The rows of a finished chain on ``split``: every session's scores (train_step = the session)
    and the headline scores (train_step ``final``, ``summary_scores``), in the one schema.
    ``variant``, ``hyperparameter`` and ``chosen`` are ``-`` when they do not apply."""
    base = _base(setting, method, variant, hyperparameter, chosen)
    rows = []
    for s in sessions:
        rows += score_rows(s["scores"][split], {**base, "train_step": s["session"]})
    return rows + score_rows(summary_scores(sessions, setting, split), {**base, "train_step": row_schema.FINAL_STEP})


def sample_layout(task: dict, plan, setting: str, fold_size: int) -> dict:
    """What ``chain_entries`` needs of the test splits besides the outcomes: the update-task
    labels, each session's classes, the zero-shot set's size, the retrieval folds and each
    caption's image. The same for every method, variant and seed of a setting."""
    return {"setting": setting, "labels": np.asarray(task["update_test"][1]).reshape(-1),
            "sessions": [list(plan.session_classes(setting, j)) for j in range(plan.num_sessions(setting))],
            "zs_size": len(task["zs_test"][1]), "folds": retrieval_folds(len(task["retrieval"][0]), fold_size),
            "caption_image": np.asarray(task["retrieval"][2]).reshape(-1)}


def _retrieval_entries(name: str, credits, layout: dict, row: dict) -> pd.DataFrame:
    """TR@k (a query per image) or IR@k (a query per caption, entered on its image) over the
    folds: sample set ``clclip/retrieval/<fold>`` (its images), each fold weighing 1/F."""
    folds, owner = layout["folds"], layout["caption_image"]
    credits = np.asarray(credits, dtype=np.float64)
    parts = []
    for f, fold in enumerate(folds):
        lo, hi = int(fold[0]), int(fold[-1]) + 1
        queries = np.arange(lo, hi) if name.startswith("TR") else np.flatnonzero((owner >= lo) & (owner < hi))
        image = queries if name.startswith("TR") else owner[queries]
        parts.append(samples.entries(row, f"clclip/retrieval/{f}", hi - lo, credits[queries], image - lo,
                                     1.0 / (len(folds) * len(queries))))
    return pd.concat(parts, ignore_index=True)


def session_entries(session: dict, layout: dict, base: dict) -> dict[str, pd.DataFrame]:
    """The entries (``ticlip_core.samples``) of each test score of one session record, by CL-CLIP
    name: ``acc_s<j>`` weighs each sample 1/(classes x its class's samples) on
    ``clclip/<setting>/update_test``; UT-Acc is OST's sample mean or MST's mean over the sessions
    seen; ZS-Acc on ``clclip/zs_test``; A-Acc their halves; TR/IR@k per fold. A score whose value
    is NaN (a session without test samples) gets none."""
    if "outcomes" not in session:
        raise ValueError(f"session {session['session']} has no per-sample outcomes (saved by an older version "
                         "of the code?); remove the job's .work folder and rerun")
    outcomes, scores = session["outcomes"], session["scores"]["test"]
    base = {**base, "train_step": session["session"]}
    labels, update = layout["labels"], np.asarray(outcomes["update"], dtype=np.float64)
    update_set = f"clclip/{layout['setting']}/update_test"
    out = {}
    for j, classes in enumerate(layout["sessions"]):
        mine = np.flatnonzero(np.isin(labels, classes))
        if len(mine):
            counts = np.bincount(labels[mine])
            weight = 1.0 / (counts[labels[mine]] * np.count_nonzero(counts))
            out[f"{SESSION_ACC}{j}"] = samples.entries(_row(f"{SESSION_ACC}{j}", base), update_set, len(labels),
                                                       update[mine], mine, weight)
    if layout["setting"] == "ost":
        out["ut_acc"] = samples.entries(_row("ut_acc", base), update_set, len(labels), update)
    else:
        seen = [out.get(f"{SESSION_ACC}{j}") for j in range(session["session"] + 1)]
        if all(p is not None for p in seen):
            out["ut_acc"] = samples.combine(seen, [1 / len(seen)] * len(seen), _row("ut_acc", base))
    out["zs_acc"] = samples.entries(_row("zs_acc", base), "clclip/zs_test", layout["zs_size"], outcomes["zs"])
    if "ut_acc" in out:
        out["a_acc"] = samples.combine([out["ut_acc"], out["zs_acc"]], [0.5, 0.5], _row("a_acc", base))
    for name in outcomes:
        if name[:3] in ("TR@", "IR@"):
            out[name] = _retrieval_entries(name, outcomes[name], layout, _row(name, base))
    return {name: part for name, part in out.items() if np.isfinite(scores[name])}


def chain_entries(sessions: list[dict], layout: dict, *, setting: str, method: str,
                  variant: str | None = None) -> list[pd.DataFrame]:
    """The entries of every test row ``chain_rows`` writes that is an accuracy, a recall or built
    from them: each session's (``session_entries``) and the headline scores' (train_step
    ``final``): the last session's, and in MST Bwt = 1/(S-1) sum_{i<S-1} (A[S-1][i] - A[i][i]) as
    differences of the two models' outcomes on session i's samples (``samples.difference``)."""
    base = _base(setting, method, variant)
    per_session = [session_entries(s, layout, base) for s in sessions]
    final = {**base, "train_step": row_schema.FINAL_STEP}
    summary = {name: samples.combine([part], [1.0], _row(name, final)) for name, part in per_session[-1].items()
               if not name.startswith(SESSION_ACC)}
    if setting == "mst":
        S = len(sessions)
        acc = [f"{SESSION_ACC}{i}" for i in range(S - 1)]
        if S >= 2 and all(a in per_session[-1] and a in per_session[i] for i, a in enumerate(acc)):
            diffs = [samples.difference(per_session[-1][a], per_session[i][a], _row("bwt", final))
                     for i, a in enumerate(acc)]
            summary["bwt"] = samples.combine(diffs, [1 / (S - 1)] * (S - 1), _row("bwt", final))
    return [part for parts in per_session for part in parts.values()] + list(summary.values())
