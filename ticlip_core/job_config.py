"""What each job reads of the config: the exact subset a rule hands its job as the ``cfg`` param.

Snakemake reruns a job when one of its params changes (rerun trigger ``params``). A job that
reads its settings only from ``params.cfg`` is therefore rerun by exactly the config edits that
can change its outputs, and by no other. Jobs see nothing else of the config, so a key a job
reads without it being listed here fails with a ``KeyError`` instead of silently escaping
provenance. This module imports no torch: the Snakefile calls it while it builds the DAG.
"""
from __future__ import annotations

import copy
import json

from ticlip_core.tic.runs import Run

#: the run that trains the shared first step: the plain recipe, named for what it is
FIRST_STEP_RUN = Run("first_step", "sequential")
#: train keys that act only on a step continuing from the previous checkpoint (``tic.train``)
CONTINUING_ONLY = ("warmup_later_steps", "max_lr_decay", "continue_lr", "carry_optimizer")
#: train keys that act only on the first step
FIRST_STEP_ONLY = ("first_step_budget_samples",)


def subset(config: dict, paths: list[str]) -> dict:
    """The nested sub-dict of ``config`` holding only the dotted ``paths`` (e.g. ``"tic.steps"``).

    A path whose key is absent from ``config`` is left out (jobs read optional blocks with
    ``.get``); values are deep copies, so a job may modify its config freely.
    """
    out: dict = {}
    for path in paths:
        keys = path.split(".")
        node = config
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            target = out
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = copy.deepcopy(node)
    return out


def train_job(config: dict, run: Run, step_index: int) -> dict:
    """What one TiC training job reads: seed, model, steps, the train block with the run's
    overrides applied, the method's options, and what the method's hooks read at this step
    (``Method.config_paths``, e.g. Patching's evaluation settings for its alpha search).

    The train keys that cannot act on this step are left out: ``CONTINUING_ONLY`` unless the
    step continues from step t-1's checkpoint (a warm-starting method after the first step), and
    ``FIRST_STEP_ONLY`` after the first step. So an edit of ``train.continue_lr`` reruns the
    continuing steps only, and one of ``train.first_step_budget_samples`` the first steps only
    (and what reads them)."""
    from ticlip_core.tic.methods import get_method

    method = get_method(run.method, **config.get("methods", {}).get(run.method, {}))
    cfg = subset(config, ["seed", "model", "train", "tic.steps", f"methods.{run.method}",
                          *method.config_paths(step_index)])
    cfg["train"].update(run.train)
    continues = step_index > 0 and method.warm_start
    for key in (*(() if continues else CONTINUING_ONLY), *(FIRST_STEP_ONLY if step_index > 0 else ())):
        cfg["train"].pop(key, None)
    return cfg


def first_step_key(config: dict, run: Run) -> str | None:
    """What step 0 of ``run`` depends on, as text, when its method trains step 0 by the plain
    recipe (``Method.plain_first_step``); None when it does not. The method's own options and the
    train keys that act only on continuing steps (``CONTINUING_ONLY``) are left out."""
    from ticlip_core.tic.methods import get_method

    if not get_method(run.method, **config.get("methods", {}).get(run.method, {})).plain_first_step:
        return None
    cfg = train_job(config, run, 0)  # holds no CONTINUING_ONLY key
    cfg.pop("methods", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def shared_first_step_runs(config: dict, runs: dict[str, Run]) -> list[str]:
    """The runs whose step 0 is the same training as ``FIRST_STEP_RUN``'s: it is trained once
    (common random numbers make them bit-identical; ``tests/test_methods.py``) and copied to each.
    Empty when fewer than two runs would share it: a copy would then save nothing."""
    reference = first_step_key(config, FIRST_STEP_RUN)
    shared = [name for name, run in runs.items() if first_step_key(config, run) == reference]
    return shared if len(shared) > 1 else []


def evaluate_job(config: dict, dynamic_tasks: list[str]) -> dict:
    """What a TiC evaluation job reads: the eval block, the model (its preprocessing), the data
    source, and the key-to-class tables when the dynamic classification task runs on real data."""
    paths = ["eval", "model", "data.source"]
    if config["data"]["source"] != "synthetic" and "classification" in dynamic_tasks:
        paths.append("data.classification")
    return subset(config, paths)


def clclip_base_job(config: dict) -> dict:
    """What the CL-CLIP original model's training job reads: the seed, the clclip model, and the
    ``train`` block with ``clclip.base`` over it (so an edit of ``train.lr``, which the base's own
    ``lr`` replaces, does not retrain it)."""
    from ticlip_core.clclip.base_model import base_config

    return subset(base_config(config), ["seed", "model", "train"])


def clclip_method_job(config: dict, method: str) -> dict:
    """What a CL-CLIP method job reads (``method == "original"``: the unchanged model's evaluation):
    seed, model, prompts and retrieval folds; for a trained method also its training settings,
    variants, options and the grid of the hyperparameter it tunes."""
    paths = ["seed", "clclip.model", "clclip.templates", "clclip.retrieval_fold_size"]
    if method != "original":
        paths += ["clclip.train", "clclip.variants", f"clclip.method_options.{method}"]
        tuned = _tuned_hyperparameter(config, method)
        if tuned:
            paths.append(f"clclip.grids.{tuned}")
    cfg = subset(config, paths)
    if method != "original":  # a method without options reads an empty entry
        cfg["clclip"].setdefault("method_options", {}).setdefault(method, {})
    return cfg


def clclip_ablation_job(config: dict, ablation: str) -> dict:
    """What a VR-LwF ablation job reads: as a VR-LwF method job (one variant), the values of
    this ablation, and the beta grid only when ``clclip.ablations.beta`` is null (tuned)."""
    acfg = config["clclip"]["ablations"]
    values = {"length": ["length", "caption_replay"], "num_pseudo": ["num_pseudo"]}[ablation]
    paths = ["seed", "clclip.model", "clclip.templates", "clclip.retrieval_fold_size", "clclip.train",
             "clclip.method_options.vr_lwf", "clclip.ablations.beta", *(f"clclip.ablations.{v}" for v in values)]
    if acfg["beta"] is None:
        paths.append("clclip.grids.beta")
    return subset(config, paths)


def _tuned_hyperparameter(config: dict, method: str) -> str | None:
    from ticlip_core.clclip.methods import get_method

    return get_method(method, **config["clclip"]["method_options"].get(method, {})).hyperparameter


def memclip_data_job(config: dict, benchmark: str) -> dict:
    """What a memclip data job reads: the seed, the starting model's name (its input size) and the
    benchmark's block without its memory sizes (a new memory size does not rebuild the data)."""
    block = {k: v for k, v in config["memclip"]["benchmarks"][benchmark].items() if k != "memory_sizes"}
    source = block.get("source", "synthetic")
    block = {k: v for k, v in block.items() if k not in ("synthetic", "real") or k == source}
    return {"seed": config["seed"], "memclip": {"model": {"name": config["memclip"]["model"]["name"]},
                                                "benchmark": {"name": benchmark, **copy.deepcopy(block)}}}


def memclip_memory_job(config: dict, benchmark: str) -> dict:
    """What a memclip memory job reads: the seed and the benchmark's memory sizes."""
    return {"seed": config["seed"],
            "memclip": {"benchmark": {"memory_sizes": list(config["memclip"]["benchmarks"][benchmark]["memory_sizes"])}}}


def memclip_method_job(config: dict, benchmark: str, method: str) -> dict:
    """What a memclip method job reads: seed, starting model, prompts, the method's options and
    grid; a training method also the training block and (if it replays) the benchmark's memory
    sizes; zero-shot only the evaluation settings, so a training edit does not rerun it."""
    from ticlip_core.memclip.methods import get_method

    m = get_method(method, **config["memclip"]["method_options"].get(method, {}))
    paths = ["seed", "memclip.model", "memclip.templates"]
    if m.trains:
        paths += ["memclip.train", f"memclip.grids.{method}"]
    else:
        paths += [f"memclip.train.{k}" for k in ("eval_batch_size", "workers", "threads")]
    cfg = subset(config, paths + [f"memclip.method_options.{method}"])
    cfg["memclip"].setdefault("method_options", {}).setdefault(method, {})
    cfg["memclip"].setdefault("grids", {})
    if m.trains:
        cfg["memclip"]["grids"].setdefault(method, {})
    if m.uses_memory:
        cfg["memclip"]["benchmark"] = {"memory_sizes": list(config["memclip"]["benchmarks"][benchmark]["memory_sizes"])}
    return cfg


def replicate(config: dict, seed) -> dict:
    """``config`` for replicate ``seed``: its ``seed`` (the training seed every training job derives its
    randomness from) replaced; the data jobs keep the config's own ``seed``."""
    return {**config, "seed": int(seed)}

