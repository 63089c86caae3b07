"""One CL-CLIP method in one setting, in each update variant: the chain of sessions, the
hyperparameter chosen on validation, and long-format evaluation rows.

For every variant (WM, IO, TO) and every value of the method's tuned hyperparameter (beta for
the distillation methods, alpha for IMM; a grid from the config), the original model is
fine-tuned session after session (OST: one session of all update classes; MST: eight class
sessions). After each session the model is evaluated on the validation and test splits of the
update task (accuracy on each session's classes, classified among all update classes), on
zero-shot classification of the held-out classes, and, after the last session, on retrieval.
The value with the best validation A-Acc = (UT-Acc + ZS-Acc) / 2 is kept (Ding et al.,
Sec. VI-A); its test rows are written, and every value's validation scores are recorded.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ticlip_core.models import create_model, load_checkpoint
from ticlip_core.clclip.methods import get_method
from ticlip_core.clclip.context import SessionContext
from ticlip_core.clclip.metrics import a_acc, bwt, ut_acc_mst
from ticlip_core.clclip.protocol import load_classes, load_split, load_retrieval
from ticlip_core.clclip.session import class_accuracy, retrieval_recalls, train_session

SPLITS = {"val": ("update_val", "zs_val"), "test": ("update_test", "zs_test")}


def load_original(config: dict, base_checkpoint: str | None, device):
    """The original CLIP: the configured open_clip model with the base checkpoint's weights."""
    mcfg = config["clclip"]["model"]
    model, _, _, tokenizer = create_model(mcfg["name"], mcfg["pretrained"] if not base_checkpoint else None,
                                          device=device, seed=config["seed"])
    if base_checkpoint:
        load_checkpoint(model, base_checkpoint)
    model.eval()
    return model, tokenizer


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


def run_chain(config: dict, *, setting: str, method_name: str, variant: str, options: dict, task: dict, plan,
              base_checkpoint: str | None, device) -> tuple[list[dict], dict]:
    """Fine-tune the original model through every session of ``setting`` with one method,
    variant and option set; returns per-session scores and what the method recorded."""
    ccfg = config["clclip"]
    tcfg = ccfg["train"]
    model, tokenizer = load_original(config, base_checkpoint, device)
    original = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    previous = original
    method = get_method(method_name, **options)
    images, labels = task["update_train"]
    sessions, info = [], {}
    last = plan.num_sessions(setting) - 1
    for s in range(last + 1):
        seen = plan.seen_classes(setting, s)
        ctx = SessionContext(model=model, tokenizer=tokenizer, variant=variant, setting=setting, session=s,
                             classnames=plan.update_classes,
                             session_classes=seen if method.trains_on_seen_sessions else plan.session_classes(setting, s),
                             seen_classes=seen, templates=ccfg["templates"], original_state=original,
                             previous_state=previous, device=device, info=info)
        stats = train_session(ctx, method, images, labels, epochs=tcfg[f"{setting}_epochs"],
                              batch_size=tcfg["batch_size"], lr=tcfg["lr"], weight_decay=tcfg["weight_decay"],
                              seed=config["seed"] * 1000 + s)
        previous = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        scores = evaluate_session(model, tokenizer, task, plan, setting, s, ccfg["templates"], device,
                                  retrieval=s == last, fold_size=ccfg["retrieval_fold_size"])
        sessions.append({"session": s, **stats, "scores": scores})
    return sessions, copy.deepcopy(info)


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


def run_method(config: dict, *, setting: str, method_name: str, task_dir: str, base_checkpoint: str | None,
               device="cpu", variants: list[str] | None = None, options: dict | None = None,
               label: str | None = None, grid: list | None = None) -> tuple[list[dict], dict]:
    """Every variant of ``method_name`` in ``setting``, its hyperparameter chosen by validation
    A-Acc. Returns long-format rows (test scores of the chosen value, per session and final) and
    a record of the choice. ``options`` override the method's config options (ablations);
    ``label`` names the run in the rows (default: the method's name); ``grid`` replaces the
    config's grid of the tuned hyperparameter (a one-value grid fixes it)."""
    ccfg = config["clclip"]
    task, plan = load_task(task_dir)
    base_options = {**ccfg["method_options"].get(method_name, {}), **(options or {})}
    tuned = get_method(method_name, **base_options).hyperparameter
    grid = (grid or ccfg["grids"][tuned]) if tuned else [None]
    rows, record = [], {}
    for variant in variants or ccfg["variants"]:
        tried = {}
        for value in grid:
            opts = {**base_options, **({tuned: value} if tuned else {})}
            sessions, info = run_chain(config, setting=setting, method_name=method_name, variant=variant,
                                       options=opts, task=task, plan=plan, base_checkpoint=base_checkpoint,
                                       device=device)
            tried[value] = (sessions, info, summary_scores(sessions, setting, "val")["a_acc"])
        best = max(grid, key=lambda v: tried[v][2])  # the first of equals
        sessions, info, _ = tried[best]
        record[variant] = {"hyperparameter": tuned, "chosen": best, "method_info": info,
                           "val_a_acc": {str(v): tried[v][2] for v in grid}}
        name = label or method_name
        base = {"study": "clclip", "setting": setting, "method": name, "variant": variant,
                "hyperparameter": tuned or "", "chosen": "" if best is None else best}
        for s in sessions:
            for metric, value in s["scores"]["test"].items():
                rows.append({**base, "session": s["session"], "metric": metric, "value": value})
        for metric, value in summary_scores(sessions, setting, "test").items():
            rows.append({**base, "session": "final", "metric": metric, "value": value})
    return rows, record


def evaluate_original(config: dict, *, setting: str, task_dir: str, base_checkpoint: str | None,
                      device="cpu") -> list[dict]:
    """Rows of the original model (no update) in ``setting``, scored as a finished chain."""
    ccfg = config["clclip"]
    task, plan = load_task(task_dir)
    model, tokenizer = load_original(config, base_checkpoint, device)
    last = plan.num_sessions(setting) - 1
    sessions = [{"session": s, "scores": evaluate_session(model, tokenizer, task, plan, setting, s, ccfg["templates"],
                                                          device, retrieval=s == last,
                                                          fold_size=ccfg["retrieval_fold_size"])}
                for s in range(last + 1)]
    base = {"study": "clclip", "setting": setting, "method": "original", "variant": "-", "hyperparameter": "",
            "chosen": ""}
    rows = [{**base, "session": s["session"], "metric": m, "value": v}
            for s in sessions for m, v in s["scores"]["test"].items()]
    rows += [{**base, "session": "final", "metric": m, "value": v}
             for m, v in summary_scores(sessions, setting, "test").items()]
    return rows
