"""Runs of the TiC study: each configured method, plus the learning-rate ablation's variants.

A run is a method with a name and train-config overrides; every run gets its own
checkpoints, evaluations and row in a table. This module imports no torch, so the
Snakefile can build the DAG from it cheaply.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ticlip_core.tic.methods import get_method

#: what each ablation variant flips, and the run-name suffix for the flipped value
_VARIANTS = {
    "warmup_later_steps": lambda v: (not v, "warmup" if not v else "no_warmup"),
    "max_lr_decay": lambda v: ("cosine" if v == "constant" else "constant",
                               "cosine_max_lr" if v == "constant" else "constant_max_lr"),
}


@dataclass(frozen=True)
class Run:
    """A method trained under ``config['train']`` updated with ``train``, named ``name``."""

    name: str
    method: str
    train: dict = field(default_factory=dict)


def ablation_runs(config: dict) -> list[Run]:
    """The LR ablation's runs, base first: ``method`` as configured, then one variant per switch."""
    abl = config["tic"]["lr_ablation"]
    method = abl["method"]
    if not method:
        return []
    if not get_method(method).warm_start:
        raise ValueError(f"tic.lr_ablation.method: '{method}' initialises every step afresh, so the "
                         "warm-up and max-LR switches (which act on continuing steps) would change nothing")
    runs = [Run(method, method)]
    for switch in abl["variants"]:
        value, suffix = _VARIANTS[switch](config["train"][switch])
        runs.append(Run(f"{method}@{suffix}", method, {switch: value}))
    return runs


def tic_runs(config: dict) -> dict[str, Run]:
    """Every run to train and evaluate, by name: the configured methods, then the ablation variants."""
    runs = {m: Run(m, m) for m in config["tic"]["methods"]}
    for run in ablation_runs(config):
        runs.setdefault(run.name, run)
    return runs


def run_config(config: dict, run: Run) -> dict:
    """A copy of ``config`` with the run's train overrides applied."""
    cfg = copy.deepcopy(config)
    cfg["train"].update(run.train)
    return cfg
