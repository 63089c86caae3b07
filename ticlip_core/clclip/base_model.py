"""The original CLIP of the clclip study when no pretrained model is configured: a model the
pipeline trains itself, from scratch, on a base pool of image-caption shards (in the default,
captioned object crops of the synthetic world, ``protocol.build_synthetic_base_pool``), with
open_clip's contrastive recipe (``engine.contrastive``) on the engine's loop (``engine.loop``).

It trains exactly as a first TiC step named ``base`` would (the seed derived from the run seed
and that name, the same data stream, optimiser, schedule and operations), so the checkpoint is
the one the TiC training step made before CL-CLIP had its own entry.
"""
from __future__ import annotations

import copy

BASE_STEP = "base"
TRAIN_KEYS = ("budget_samples", "batch_size", "lr", "warmup_iterations")  # clclip.base keys that override train.*
#: train.* keys only TiC's continual steps read (the order of steps, what carries across them); a
#: single from-scratch run has none of these, so the base model's job is not given them
TIC_STEP_KEYS = ("first_step_budget_samples", "continue_lr", "carry_optimizer")


def base_config(config: dict) -> dict:
    """What the base model's training reads: the seed, the clclip model (no pretrained weights)
    and the ``train`` block, less ``TIC_STEP_KEYS``, with ``clclip.base``'s budget, batch size,
    LR and warm-up over it."""
    ccfg = config["clclip"]
    train = {k: v for k, v in copy.deepcopy(config["train"]).items() if k not in TIC_STEP_KEYS}
    train.update({k: v for k, v in ccfg["base"].items() if k in TRAIN_KEYS})
    return {"seed": config["seed"], "model": {"name": ccfg["model"]["name"], "pretrained": None}, "train": train}


def train_base(config: dict, *, shards: list[str], out_model: str, out_log: str, out_compute: str) -> dict:
    """Contrastively train the original CLIP from scratch on ``shards`` for ``train.budget_samples``
    samples (open_clip's ClipLoss, AdamW, cosine LR with ``train.warmup_iterations`` of warm-up);
    writes the checkpoint, the training log and the compute record, and returns the record.
    ``config`` is already the base model's (``base_config``, as the workflow's job config is).
    A killed job resumes from ``resume.pt`` beside the checkpoint (``train.resume_every``)."""
    # torch here, not at the top: the DAG builder reads base_config without it
    import json
    import math
    from pathlib import Path

    import torch

    from ticlip_core.data.loader import SKIP_REASONS, PixelSpec, train_batches
    from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER, forward_macs_per_sample
    from ticlip_core.engine.contrastive import adamw_cosine, clip_loss, contrastive_batch_loss, logit_scale_clamp
    from ticlip_core.engine.seeds import derived_seed
    from ticlip_core.engine.distributed import World
    from ticlip_core.engine.loop import train_loop, use_threads, write_log
    from ticlip_core.engine.method import Method, StepContext
    from ticlip_core.engine.resume import fingerprint, input_identity
    from ticlip_core.engine.speed import prepare_model
    from ticlip_core.models import create_model, save_checkpoint

    if not shards:
        raise ValueError("clclip base model: the base pool has no training shards")
    tcfg = config["train"]
    use_threads(tcfg)
    world = World()  # one process
    device = world.device()
    seed = derived_seed(config["seed"], BASE_STEP)
    torch.manual_seed(seed)
    model, _, _, tokenizer = create_model(config["model"]["name"], None, device=device, seed=seed)
    model.train()
    pixels = PixelSpec.of(model)
    forward_macs = forward_macs_per_sample(model, pixels.size, getattr(model, "context_length", 77))
    forward = prepare_model(model, tcfg, device)
    budget = tcfg["budget_samples"]
    iterations = math.ceil(budget / tcfg["batch_size"])
    warmup = tcfg["warmup_iterations"]
    optimizer, schedule = adamw_cosine(model, tcfg["lr"], tcfg["weight_decay"], warmup, iterations)
    method = Method()  # plain contrastive training: every hook a no-op
    ctx = StepContext(method, 0, [BASE_STEP], model, tokenizer, config, device, forward_macs_per_sample=forward_macs)
    batches = train_batches(shards, batch_size=tcfg["batch_size"], pixels=pixels, tokenizer=tokenizer,
                            num_samples=budget, seed=seed, shuffle_buffer=tcfg["shuffle_buffer"], keep_keys=None,
                            restricted_shards=set(), split=tcfg["data_split"], workers=tcfg["workers"],
                            cache_mb=tcfg["cache_mb"])
    resume_path = Path(out_model).with_name("resume.pt")
    trained = train_loop(
        batches=batches, compute_loss=contrastive_batch_loss(forward, clip_loss(world), tcfg, device, world,
                                                             forward_macs),
        method=method, ctx=ctx, model=model, optimizer=optimizer, settings=tcfg, device=device,
        total_iterations=iterations, name="clclip base model", where="the clclip base model's training",
        failure_note="no checkpoint written", schedule=schedule, after_update=logit_scale_clamp(model),
        resume_path=resume_path,
        fingerprint=fingerprint(run="clclip_base", config=config, inputs=input_identity({BASE_STEP: shards}, {}, None)))
    seen, macs_per_sample = trained.samples, TRAIN_FORWARD_MULTIPLIER * forward_macs
    compute = {"method": "clclip_base", "step": BASE_STEP, "samples_seen": seen, "budget_samples": budget,
               "iterations": trained.iterations, "macs_per_sample": macs_per_sample, "macs": trained.macs(ctx.extra_macs),
               "extra_macs": ctx.extra_macs, "budget_macs": macs_per_sample * budget, "skipped_corrupt": trained.skipped,
               "skipped_by_reason": dict(sorted({**dict.fromkeys(SKIP_REASONS, 0), **trained.skipped_by_reason}.items())),
               "seconds": round(trained.seconds, 3), "samples_per_s": round(seen / trained.seconds, 2), "seed": seed,
               "warmup_iterations": warmup, "max_lr": tcfg["lr"], "processes": 1}
    write_log(trained.rows, out_log)
    Path(out_compute).write_text(json.dumps(compute, indent=2))
    save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, out_model)
    resume_path.unlink(missing_ok=True)
    return compute
