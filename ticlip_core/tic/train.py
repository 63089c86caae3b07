"""One training step of a continual-training method: init, stream data, optimise, checkpoint.

The recipe is open_clip's (``engine.contrastive``): ``ClipLoss``, AdamW with open_clip_train's
parameter groups and ``cosine_lr`` schedule, logit scale clamped to ln(100), run by the
engine's loop (``engine.loop``). A method plugs in through the hooks of
``ticlip_core.engine.method.Method``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ticlip_core.tic.buffers import draw_replay, shard_keys
from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER, forward_macs_per_sample
from ticlip_core.engine.contrastive import (adamw_cosine, clip_loss, contrastive_batch_loss, load_optimizer_state,
                                            logit_scale_clamp, save_optimizer_state)
from ticlip_core.engine.seeds import derived_seed
from ticlip_core.data.loader import SKIP_REASONS, PixelSpec, train_batches
from ticlip_core.engine.loop import train_loop, use_threads, write_log
from ticlip_core.engine.method import StepContext
from ticlip_core.engine.resume import input_identity
from ticlip_core.tic.methods import get_method
from ticlip_core.engine.distributed import barrier, init_world, sum_over_ranks
from ticlip_core.models import create_model, load_checkpoint, save_checkpoint
from ticlip_core.engine.speed import prepare_model

def step_max_lr(lr: float, t: int, num_steps: int, decay: str, continues: bool,
                continue_lr: float | None = None) -> float:
    """Maximum LR of step ``t`` (TiC-CLIP's LR ablation).

    A freshly initialised step always peaks at ``lr``. A step that continues from step t-1
    peaks at ``continue_lr`` (``lr`` when None), and with ``decay``: ``constant``, at that
    every step (the paper's choice); ``cosine``, at that times ``(1 + cos(pi * t / T)) / 2``,
    as if the whole sequence were one cosine run.
    """
    if not continues:
        return lr
    peak = lr if continue_lr is None else continue_lr
    if decay == "constant":
        return peak
    if decay == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * t / num_steps))
    raise ValueError(f"train.max_lr_decay: unknown value '{decay}' (constant or cosine)")


def matched_budget(t: int, tcfg: dict) -> int:
    """The compute-matched budget of step ``t`` in samples: C (``train.budget_samples``), or at
    the first step ``train.first_step_budget_samples`` when that is set."""
    if t == 0 and tcfg["first_step_budget_samples"] is not None:  # read at the first step only
        return tcfg["first_step_budget_samples"]
    return tcfg["budget_samples"]


def step_budget(method, t: int, tcfg: dict) -> int:
    """Samples step ``t`` of ``method`` sees: the method's budget for the per-step budget C,
    except at a first step given its own budget (``train.first_step_budget_samples``), which
    every method trains alike."""
    if t == 0 and tcfg["first_step_budget_samples"] is not None:
        return matched_budget(0, tcfg)
    return method.budget(t, tcfg["budget_samples"])


def train_step(config: dict, *, method_name: str, step: str, shards_by_step: dict[str, list[str]],
               init_checkpoint: str | None, out_model: str, out_log: str, out_compute: str,
               val_shards_by_step: dict[str, list[str]] | None = None, run_name: str | None = None,
               init_optimizer: str | None = None, out_optimizer: str | None = None) -> dict:
    """Train ``method_name`` at ``step`` and write its checkpoint, CSV log and ``compute.json``.

    ``shards_by_step`` maps step names to their training shards; the method's data plan
    picks from it (all of a step, or a replay sample of its keys drawn with the run's seed).
    ``val_shards_by_step`` is what methods that select hyperparameters may read.
    ``run_name`` names the run in the outputs (an ablation variant of ``method_name``).
    With ``train.carry_optimizer``, a step that continues from ``init_checkpoint`` starts its
    AdamW from the state the previous step saved beside it (``init_optimizer``, as
    open_clip_train's ``--resume``); a step from a fresh initialisation starts a fresh AdamW.
    ``out_optimizer``, when given, receives this step's final AdamW state.
    Raises ``engine.loop.NonFiniteLossError`` naming the step if the loss is not finite; nothing is
    written then, so the previous step's checkpoint stays the last good one.
    """
    tcfg, steps = config["train"], list(config["tic"]["steps"])
    t = steps.index(step)
    run_name = run_name or method_name
    method = get_method(method_name, **config.get("methods", {}).get(method_name, {}))
    use_threads(tcfg)
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's; checked before joining the group
    if tcfg["batch_size"] % processes:
        raise ValueError(f"train.batch_size {tcfg['batch_size']} is not divisible by the {processes} processes")
    budget = step_budget(method, t, tcfg)
    if budget % processes:
        raise ValueError(f"step '{step}': a budget of {budget} samples cannot be split evenly across "
                         f"{processes} processes; choose train.budget_samples divisible by it")
    world = init_world()
    device = world.device()
    # One seed per step, shared by every method and run (common random numbers): at the first
    # step all methods train identically, so they start from the same model, and later
    # differences come from the methods rather than from initialisation luck.
    seed = derived_seed(config["seed"], step)
    torch.manual_seed(seed)

    model, _, _, tokenizer = create_model(config["model"]["name"], config["model"]["pretrained"],
                                                   device=device, seed=seed)
    init_state = None
    if method.warm_start and t > 0:
        if not init_checkpoint:
            raise ValueError(f"{method_name} warm-starts step '{step}' but no previous checkpoint was given")
        load_checkpoint(model, init_checkpoint)
        init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    pixels = PixelSpec.of(model)
    forward_macs = forward_macs_per_sample(model, pixels.size, getattr(model, "context_length", 77))
    forward = prepare_model(model, tcfg, device, data_parallel=world.world_size > 1)

    plan = method.data_plan(t, steps, new_step_size=len(shard_keys(shards_by_step[step])))
    replay_counts = {s: n for s, n in plan.items() if n is not None}
    replay = draw_replay({s: shard_keys(shards_by_step[s]) for s in replay_counts}, replay_counts,
                         derived_seed(seed, "replay"))
    shards = [s for name in plan for s in shards_by_step[name]]
    iterations = math.ceil(budget / tcfg["batch_size"])
    # TiC-CLIP drops warm-up when training *continues* from the previous step; a model that
    # starts from a fresh initialisation (every Oracle and Restart step) always warms up.
    continues = method.warm_start and t > 0
    warmup = tcfg["warmup_iterations"] if (not continues or tcfg["warmup_later_steps"]) else 0
    # the continuing-only keys are read only when the step continues (job_config.CONTINUING_ONLY)
    max_lr = (step_max_lr(tcfg["lr"], t, len(steps), tcfg["max_lr_decay"], True, tcfg["continue_lr"])
              if continues else tcfg["lr"])
    optimizer, schedule = adamw_cosine(model, max_lr, tcfg["weight_decay"], warmup, iterations)
    carry = continues and tcfg["carry_optimizer"]
    if carry:
        if not init_optimizer:
            raise ValueError(f"{method_name} continues step '{step}' with train.carry_optimizer, but no optimizer "
                             "state of the previous step was given")
        load_optimizer_state(optimizer, init_optimizer)
    loss_fn = clip_loss(world)
    ctx = StepContext(method, t, steps, model, tokenizer, config, device, forward_macs_per_sample=forward_macs,
                      init_state=init_state, val_shards=dict(val_shards_by_step or {}))
    method.before_step(ctx)

    resume_path = Path(out_model).with_name("resume.pt")
    inputs = input_identity({s: shards_by_step[s] for s in plan}, val_shards_by_step or {},
                            init_checkpoint if init_state is not None else None,
                            init_optimizer if carry else None)
    fingerprint = _resume_fingerprint(config, run_name, method_name, step, init_checkpoint, inputs)
    replayed_shards = {sh for s in replay for sh in shards_by_step[s]}
    batches = train_batches(shards, batch_size=tcfg["batch_size"] // world.world_size, pixels=pixels,
                            tokenizer=tokenizer, num_samples=budget // world.world_size, seed=seed,
                            shuffle_buffer=tcfg["shuffle_buffer"],
                            keep_keys={k for keys in replay.values() for k in keys} if replay else None,
                            restricted_shards=replayed_shards, rank=world.rank, world_size=world.world_size,
                            split=tcfg["data_split"], workers=tcfg["workers"], cache_mb=tcfg["cache_mb"])
    trained = train_loop(
        batches=batches, compute_loss=contrastive_batch_loss(forward, loss_fn, tcfg, device, world, forward_macs),
        method=method, ctx=ctx, model=model, optimizer=optimizer, settings=tcfg, device=device,
        total_iterations=iterations, name=f"{run_name} at '{step}'", where=f"step '{step}' of method '{method_name}'",
        failure_note=f"no checkpoint written for '{step}', the last good checkpoint is "
                     f"{init_checkpoint or 'none (first step)'}",
        schedule=schedule, after_update=logit_scale_clamp(model), resume_path=resume_path,
        fingerprint=fingerprint, is_main=world.is_main)
    method.after_step(ctx)
    seen = trained.samples
    skipped = sum_over_ranks(trained.skipped, world)
    by_reason = {**dict.fromkeys(SKIP_REASONS, 0), **trained.skipped_by_reason}
    skipped_by_reason = {r: sum_over_ranks(n, world) for r, n in sorted(by_reason.items())}
    rows, seconds = trained.rows, trained.seconds

    macs_per_sample = TRAIN_FORWARD_MULTIPLIER * forward_macs
    compute = {"method": run_name, "base_method": method_name, "step": step, "step_index": t,
               "data_plan": plan, "replay": {s: {"requested": replay_counts[s], "drawn": len(k)} for s, k in replay.items()},
               "samples_seen": seen, "budget_samples": budget, "iterations": len(rows) and rows[-1]["iteration"],
               "macs_per_sample": macs_per_sample, "macs": trained.macs(ctx.extra_macs),
               "extra_macs": ctx.extra_macs, "budget_macs": macs_per_sample * matched_budget(t, tcfg),
               "skipped_corrupt": skipped, "skipped_by_reason": skipped_by_reason, "seconds": round(seconds, 3),
               "samples_per_s": round(seen / seconds, 2), "seed": seed, "warmup_iterations": warmup,
               "max_lr": max_lr, "carried_optimizer": carry, "method_info": ctx.info}

    compute["processes"] = world.world_size
    if world.is_main:
        write_log(rows, out_log)
        Path(out_compute).write_text(json.dumps(compute, indent=2))
        save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, out_model)
        if out_optimizer:
            save_optimizer_state(optimizer, out_optimizer)
        resume_path.unlink(missing_ok=True)
    barrier(world)
    return compute



def _resume_fingerprint(config: dict, run_name: str, method_name: str, step: str, init: str | None,
                        inputs: dict | None = None) -> str:
    """What a resumable state must match to be used: the run, the step, every setting, and the
    identity of its inputs (``engine.resume.input_identity``: data splits and starting weights)."""
    return json.dumps({"run": run_name, "method": method_name, "step": step, "init": init, "seed": config["seed"],
                       "train": config["train"], "methods": config.get("methods", {}),
                       "model": config["model"], "steps": config["tic"]["steps"], "inputs": inputs},
                      sort_keys=True, default=str)
