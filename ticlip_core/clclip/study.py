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

import torch

from ticlip_core.models import create_model, load_checkpoint
from ticlip_core.clclip.methods import get_method
from ticlip_core.clclip.context import SessionContext
from ticlip_core.clclip.scoring import chain_rows, evaluate_session, load_task, summary_scores
from ticlip_core.clclip.session import train_session

def load_original(config: dict, base_checkpoint: str | None, device):
    """The original CLIP: the configured open_clip model with the base checkpoint's weights."""
    mcfg = config["clclip"]["model"]
    model, _, _, tokenizer = create_model(mcfg["name"], mcfg["pretrained"] if not base_checkpoint else None,
                                          device=device, seed=config["seed"])
    if base_checkpoint:
        load_checkpoint(model, base_checkpoint)
    model.eval()
    return model, tokenizer


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
        rows += chain_rows(sessions, setting=setting, method=label or method_name, variant=variant,
                           hyperparameter=tuned, chosen=best)
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
    return chain_rows(sessions, setting=setting, method="original")
