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
import json

import torch

from ticlip_core.engine.seeds import derived_seed
from ticlip_core.models import load_start_model
from ticlip_core.engine.chain_store import ChainStore, say_resumed
from ticlip_core.clclip.compute import compute_record
from ticlip_core.engine.compute import tower_macs
from ticlip_core.clclip.methods import get_method
from ticlip_core.clclip.context import SessionContext
from ticlip_core.clclip.scoring import (chain_entries, chain_rows, evaluate_session, load_task, sample_layout,
                                        summary_scores)
from ticlip_core.clclip.session import train_session
from ticlip_core.engine.distributed import init_world
from ticlip_core.engine.loop import use_threads


def default_device(device=None) -> torch.device:
    """``device`` when given, else the engine's (``init_world().device()``: this rank's GPU, or the CPU)."""
    return torch.device(device) if device is not None else init_world().device()


def load_original(config: dict, base_checkpoint: str | None, device):
    """The original CLIP: the configured open_clip model with the base checkpoint's weights."""
    return load_start_model(config["clclip"]["model"], base_checkpoint, device, config["seed"])


def run_chain(config: dict, *, setting: str, method_name: str, variant: str, options: dict, task: dict, plan,
              base_checkpoint: str | None, device, store: ChainStore | None = None, label: str | None = None,
              index: int = 0) -> tuple[list[dict], dict]:
    """Fine-tune the original model through every session of ``setting`` with one method,
    variant and option set; returns per-session statistics (``train_session``'s) and scores,
    and what the method recorded.

    With a ``store`` (the job's work folder), each finished session is persisted there, and a
    chain the store already holds resumes after its last finished session (or is returned as
    saved when finished); ``label`` (default: the method's name) and ``index`` (the
    hyperparameter value's place in the grid) name the chain in it.
    """
    ccfg = config["clclip"]
    tcfg = ccfg["train"]
    model, tokenizer = load_original(config, base_checkpoint, device)
    original = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    previous = original
    method = get_method(method_name, **options)
    images, labels = task["update_train"]
    sessions, info = [], {}
    last = plan.num_sessions(setting) - 1
    path = key = saved = None
    if store is not None:
        path, key = store.chain_key(setting=setting, label=label or method_name, variant=variant, index=index,
                                    options=options)
        saved = store.load(path, key)
    if saved is not None:
        sessions, info = saved["sessions"], saved["info"]
        say_resumed(f"{label or method_name}-{variant} {setting} ({json.dumps(options, default=str)[:120]})",
                    len(sessions), path)
        if saved["done"]:
            return sessions, copy.deepcopy(info)
        method.prepare_model(model, variant)  # e.g. RKR's scales, so its weights load
        model.load_state_dict(saved["model"])
        previous = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.set_rng_state(saved["torch_rng"])
    image_macs, text_macs = tower_macs(model)
    for s in range(len(sessions), last + 1):
        seen = plan.seen_classes(setting, s)
        ctx = SessionContext(model=model, tokenizer=tokenizer, variant=variant, setting=setting, session=s,
                             classnames=plan.update_classes,
                             session_classes=seen if method.trains_on_seen_sessions else plan.session_classes(setting, s),
                             seen_classes=seen, templates=ccfg["templates"], original_state=original,
                             previous_state=previous, device=device, info=info,
                             image_macs_per_sample=image_macs, text_macs_per_prompt=text_macs)
        stats = train_session(ctx, method, images, labels, epochs=tcfg[f"{setting}_epochs"],
                              batch_size=tcfg["batch_size"], lr=tcfg["lr"], weight_decay=tcfg["weight_decay"],
                              seed=derived_seed(config["seed"], "clclip", s), settings=tcfg,
                              resume_path=store.resume_path if store is not None else None,
                              fingerprint=f"{key}:session {s}")
        previous = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        scores, outcomes = evaluate_session(model, tokenizer, task, plan, setting, s, ccfg["templates"], device,
                                            retrieval=s == last, fold_size=ccfg["retrieval_fold_size"])
        # plain Python values (numpy scalars become floats), as a resumed chain reads them back
        sessions.append(json.loads(json.dumps({"session": s, **stats, "scores": scores, "outcomes": outcomes})))
        if store is not None:
            store.save(path, key, sessions=sessions, info=json.loads(json.dumps(info)), done=s == last,
                       model_state=previous, torch_rng=torch.get_rng_state())
    return sessions, copy.deepcopy(info)


def run_method(config: dict, *, setting: str, method_name: str, task_dir: str, base_checkpoint: str | None,
               device=None, variants: list[str] | None = None, options: dict | None = None,
               label: str | None = None, grid: list | None = None, store: ChainStore | None = None,
               samples: list | None = None) -> tuple[list[dict], dict, list[dict]]:
    """Every variant of ``method_name`` in ``setting``, its hyperparameter chosen by validation
    A-Acc. Returns long-format rows (test scores of the chosen value, per session and final),
    a record of the choice, and the compute records (``clclip.compute.compute_record``: one per
    variant). ``options`` override the method's config options (ablations);
    ``label`` names the run in the rows (default: the method's name); ``grid`` replaces the
    config's grid of the tuned hyperparameter (a one-value grid fixes it). ``device``: default
    the engine's (``default_device``); ``store``: the job's work folder (``run_chain``); ``samples``:
    a list that receives the test rows' per-sample entries (``scoring.chain_entries``)."""
    ccfg = config["clclip"]
    use_threads(ccfg["train"])
    device = default_device(device)
    task, plan = load_task(task_dir)
    base_options = {**ccfg["method_options"].get(method_name, {}), **(options or {})}
    tuned = get_method(method_name, **base_options).hyperparameter
    grid = (grid or ccfg["grids"][tuned]) if tuned else [None]
    rows, record, compute = [], {}, []
    for variant in variants or ccfg["variants"]:
        tried = {}
        for index, value in enumerate(grid):
            opts = {**base_options, **({tuned: value} if tuned else {})}
            sessions, info = run_chain(config, setting=setting, method_name=method_name, variant=variant,
                                       options=opts, task=task, plan=plan, base_checkpoint=base_checkpoint,
                                       device=device, store=store, label=label, index=index)
            tried[value] = (sessions, info, summary_scores(sessions, setting, "val")["a_acc"])
        best = max(grid, key=lambda v: tried[v][2])  # the first of equals
        sessions, info, _ = tried[best]
        compute.append(compute_record(setting, label or method_name, variant, sessions, [t[0] for t in tried.values()]))
        record[variant] = {"hyperparameter": tuned, "chosen": best, "method_info": info,
                           "val_a_acc": {str(v): tried[v][2] for v in grid}}
        rows += chain_rows(sessions, setting=setting, method=label or method_name, variant=variant,
                           hyperparameter=tuned, chosen=best)
        if samples is not None:
            samples += chain_entries(sessions, sample_layout(task, plan, setting, ccfg["retrieval_fold_size"]),
                                     setting=setting, method=label or method_name, variant=variant)
    return rows, record, compute


def evaluate_original(config: dict, *, setting: str, task_dir: str, base_checkpoint: str | None,
                      device=None, samples: list | None = None) -> list[dict]:
    """Rows of the original model (no update) in ``setting``, scored as a finished chain
    (``device``: default the engine's, ``default_device``); ``samples``: as ``run_method``'s."""
    ccfg = config["clclip"]
    device = default_device(device)
    task, plan = load_task(task_dir)
    model, tokenizer = load_original(config, base_checkpoint, device)
    last = plan.num_sessions(setting) - 1
    sessions = []
    for s in range(last + 1):
        scores, outcomes = evaluate_session(model, tokenizer, task, plan, setting, s, ccfg["templates"], device,
                                            retrieval=s == last, fold_size=ccfg["retrieval_fold_size"])
        sessions.append({"session": s, "scores": scores, "outcomes": outcomes})
    if samples is not None:
        samples += chain_entries(sessions, sample_layout(task, plan, setting, ccfg["retrieval_fold_size"]),
                                 setting=setting, method="original")
    return chain_rows(sessions, setting=setting, method="original")
