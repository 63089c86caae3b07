"""The original CLIP of the clclip study when no pretrained model is configured: a model the
pipeline trains itself on a base pool of image-caption shards (in the default, captioned object
crops of the synthetic world, ``base_pool.build_synthetic_base_pool``), with the TiC study's
training loop as one step from scratch."""
from __future__ import annotations

import copy

BASE_STEP = "base"
TRAIN_KEYS = ("budget_samples", "batch_size", "lr")  # clclip.base keys that override train.*


def base_config(config: dict) -> dict:
    """The config ``train_step`` sees: the clclip model, ``clclip.base`` over ``train``, one step."""
    cfg = copy.deepcopy(config)
    ccfg = config["clclip"]
    cfg["model"] = {"name": ccfg["model"]["name"], "pretrained": None}
    cfg["train"].update({k: v for k, v in ccfg["base"].items() if k in TRAIN_KEYS})
    cfg["tic"] = {**cfg["tic"], "steps": [BASE_STEP]}
    return cfg


def train_base(config: dict, *, shards: list[str], out_model: str, out_log: str, out_compute: str) -> dict:
    """Contrastively train the original CLIP from scratch on ``shards`` for ``clclip.base.budget_samples``
    samples (open_clip's ClipLoss); writes the checkpoint, the training log and compute record.
    ``config`` is already the base model's (``base_config``, as the workflow's job config is)."""
    from ticlip_core.tic.train import train_step  # here, not at the top: the DAG builder reads base_config without torch

    if not shards:
        raise ValueError("clclip base model: the base pool has no training shards")
    return train_step(config, method_name="sequential", step=BASE_STEP,
                      shards_by_step={BASE_STEP: shards}, init_checkpoint=None, out_model=out_model,
                      out_log=out_log, out_compute=out_compute, run_name="clclip_base")
