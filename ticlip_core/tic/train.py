"""One training step of a continual-training method: init, stream data, optimise, checkpoint.

The loop is open_clip's: ``ClipLoss``, AdamW with open_clip_train's parameter groups and
``cosine_lr`` schedule, logit scale clamped to ln(100). A method plugs in through the hooks
of ``ticlip_core.tic.methods.base.Method``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import zlib
from pathlib import Path

import open_clip
import torch
from open_clip_train.scheduler import cosine_lr
from tqdm import tqdm

from ticlip_core.tic.buffers import draw_replay, shard_keys
from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER, forward_macs_per_sample
from ticlip_core.data.layout import file_sha256, shards_digest
from ticlip_core.data.loader import SKIP_REASONS, PixelSpec, train_batches
from ticlip_core.engine.method import StepContext
from ticlip_core.tic.methods import get_method
from ticlip_core.engine.distributed import barrier, init_world, sum_over_ranks
from ticlip_core.models import atomic_torch_save, create_model, load_checkpoint, save_checkpoint
from ticlip_core.engine.speed import autocast, prepare_images, prepare_model


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the step's checkpoint is not written."""


def derived_seed(*parts) -> int:
    """A stable 31-bit seed from the run seed and names (method, step, purpose)."""
    return zlib.crc32(":".join(map(str, parts)).encode()) & 0x7FFFFFFF


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's split: no weight decay on gains, biases, embeddings and logit scale."""
    def exclude(name, p):
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def step_max_lr(lr: float, t: int, num_steps: int, decay: str, continues: bool) -> float:
    """Maximum LR of step ``t`` (TiC-CLIP's LR ablation).

    ``constant``: every step peaks at ``lr`` (the paper's choice). ``cosine``: a step that
    continues from step t-1 peaks at ``lr * (1 + cos(pi * t / T)) / 2``, as if the whole
    sequence were one cosine run; a freshly initialised step always peaks at ``lr``.
    """
    if decay == "constant" or not continues:
        return lr
    if decay == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * t / num_steps))
    raise ValueError(f"train.max_lr_decay: unknown value '{decay}' (constant or cosine)")


def train_step(config: dict, *, method_name: str, step: str, shards_by_step: dict[str, list[str]],
               init_checkpoint: str | None, out_model: str, out_log: str, out_compute: str,
               val_shards_by_step: dict[str, list[str]] | None = None, run_name: str | None = None) -> dict:
    """Train ``method_name`` at ``step`` and write its checkpoint, CSV log and ``compute.json``.

    ``shards_by_step`` maps step names to their training shards; the method's data plan
    picks from it (all of a step, or a replay sample of its keys drawn with the run's seed).
    ``val_shards_by_step`` is what methods that select hyperparameters may read.
    ``run_name`` names the run in the outputs (an ablation variant of ``method_name``).
    Raises ``NonFiniteLossError`` naming the step if the loss is not finite; nothing is
    written then, so the previous step's checkpoint stays the last good one.
    """
    tcfg, steps = config["train"], list(config["tic"]["steps"])
    t = steps.index(step)
    run_name = run_name or method_name
    method = get_method(method_name, **config.get("methods", {}).get(method_name, {}))
    torch.set_num_threads(tcfg["threads"])
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's; checked before joining the group
    if tcfg["batch_size"] % processes:
        raise ValueError(f"train.batch_size {tcfg['batch_size']} is not divisible by the {processes} processes")
    budget = method.budget(t, tcfg["budget_samples"])
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
    max_lr = step_max_lr(tcfg["lr"], t, len(steps), tcfg["max_lr_decay"], continues)
    optimizer = torch.optim.AdamW(param_groups(model, tcfg["weight_decay"]), lr=max_lr, fused=True)
    schedule = cosine_lr(optimizer, max_lr, warmup, iterations)
    # across ranks: each rank's rows against every rank's columns, gradients through the gather
    loss_fn = open_clip.ClipLoss(local_loss=True, gather_with_grad=True, rank=world.rank,
                                 world_size=world.world_size) if world.world_size > 1 else open_clip.ClipLoss()
    ctx = StepContext(method, t, steps, model, tokenizer, config, device, forward_macs_per_sample=forward_macs,
                      init_state=init_state, val_shards=dict(val_shards_by_step or {}))
    method.before_step(ctx)

    resume_path = Path(out_model).with_name("resume.pt")
    inputs = _input_identity({s: shards_by_step[s] for s in plan}, val_shards_by_step or {},
                             init_checkpoint if init_state is not None else None)
    fingerprint = _resume_fingerprint(config, run_name, method_name, step, init_checkpoint, inputs)
    state = load_resume_state(resume_path, fingerprint, set_aside=world.is_main)
    replayed_shards = {sh for s in replay for sh in shards_by_step[s]}
    batches = train_batches(shards, batch_size=tcfg["batch_size"] // world.world_size, pixels=pixels,
                            tokenizer=tokenizer, num_samples=budget // world.world_size, seed=seed,
                            shuffle_buffer=tcfg["shuffle_buffer"],
                            keep_keys={k for keys in replay.values() for k in keys} if replay else None,
                            restricted_shards=replayed_shards, rank=world.rank, world_size=world.world_size,
                            split=tcfg["data_split"], workers=tcfg["workers"])
    rows, seen, skipped, start = [], 0, 0, time.perf_counter()
    skipped_by_reason = dict.fromkeys(SKIP_REASONS, 0)
    done = 0  # iterations already trained (a resumed job skips their batches)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rows, seen, skipped, done = state["rows"], state["seen"], state["skipped"], state["iteration"]
        skipped_by_reason.update(state["skipped_by_reason"])
        ctx.extra_macs, ctx.info = state["extra_macs"], state["info"]
        print(f"resuming {run_name} at '{step}' from iteration {done} ({resume_path})", file=sys.stderr)
    window_start, window_seen = start, 0
    progress = tqdm(total=budget, initial=seen, unit="sample", desc=f"{method_name} {step}", file=sys.stderr,
                    mininterval=5, disable=not world.is_main)
    for i, batch in enumerate(batches):
        if i < done:  # the data stream is deterministic: replaying it restores the data position
            if i == done - 1:
                torch.set_rng_state(state["torch_rng"])
            continue
        lr = schedule(i)
        images, texts = prepare_images(batch.images, tcfg, device), batch.texts.to(device)
        with autocast(tcfg, device):
            out = forward(images, texts)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
            extra = method.extra_loss(ctx, batch, out)
            if extra is not None:
                loss = loss + extra
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at step '{step}' of method '{method_name}', iteration {i}; "
                f"no checkpoint written for '{step}', the last good checkpoint is "
                f"{init_checkpoint or 'none (first step)'}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        # every rank's batch holds the same number of good samples (train_batches tops them up)
        seen += len(batch.keys) * world.world_size
        skipped += batch.skipped
        for reason, n in batch.skipped_by_reason.items():
            skipped_by_reason[reason] = skipped_by_reason.get(reason, 0) + n
        window_seen += len(batch.keys) * world.world_size
        progress.update(len(batch.keys) * world.world_size)
        if (i + 1) % tcfg["log_every"] == 0 or seen >= budget:
            now = time.perf_counter()
            rows.append({"iteration": i + 1, "samples_seen": seen, "loss": round(loss.item(), 6), "lr": lr,
                         "samples_per_s": round(window_seen / max(now - window_start, 1e-9), 2),
                         "skipped_corrupt": skipped})
            window_start, window_seen = now, 0
        every = tcfg["resume_every"]
        if every and (i + 1) % every == 0 and seen < budget and world.is_main:
            save_resume_state(resume_path, {
                "fingerprint": fingerprint, "iteration": i + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "rows": rows,
                "seen": seen, "skipped": skipped, "skipped_by_reason": dict(skipped_by_reason),
                "extra_macs": ctx.extra_macs, "info": ctx.info})
    progress.close()
    method.after_step(ctx)
    seconds = time.perf_counter() - start
    skipped = sum_over_ranks(skipped, world)
    skipped_by_reason = {r: sum_over_ranks(n, world) for r, n in sorted(skipped_by_reason.items())}

    macs_per_sample = TRAIN_FORWARD_MULTIPLIER * forward_macs
    compute = {"method": run_name, "base_method": method_name, "step": step, "step_index": t,
               "data_plan": plan, "replay": {s: {"requested": replay_counts[s], "drawn": len(k)} for s, k in replay.items()},
               "samples_seen": seen, "budget_samples": budget, "iterations": len(rows) and rows[-1]["iteration"],
               "macs_per_sample": macs_per_sample, "macs": macs_per_sample * seen + ctx.extra_macs,
               "extra_macs": ctx.extra_macs, "budget_macs": macs_per_sample * tcfg["budget_samples"],
               "skipped_corrupt": skipped, "skipped_by_reason": skipped_by_reason, "seconds": round(seconds, 3),
               "samples_per_s": round(seen / seconds, 2), "seed": seed, "warmup_iterations": warmup,
               "max_lr": max_lr, "method_info": ctx.info}

    compute["processes"] = world.world_size
    if world.is_main:
        _write_csv(rows, out_log)
        Path(out_compute).write_text(json.dumps(compute, indent=2))
        save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, out_model)
        resume_path.unlink(missing_ok=True)
    barrier(world)
    return compute


def _input_identity(train_shards: dict[str, list[str]], val_shards: dict[str, list[str]],
                    init_checkpoint: str | None) -> dict:
    """The identity of what a step reads: a digest of each training and validation split it is
    given (the split's shard index, see ``data.layout.shards_digest``) and the sha256 of the
    checkpoint it starts from (None for a fresh initialisation)."""
    return {"train": {s: shards_digest(shards) for s, shards in sorted(train_shards.items())},
            "val": {s: shards_digest(shards) for s, shards in sorted(val_shards.items())},
            "init_sha256": file_sha256(init_checkpoint) if init_checkpoint else None}


def _resume_fingerprint(config: dict, run_name: str, method_name: str, step: str, init: str | None,
                        inputs: dict | None = None) -> str:
    """What a resumable state must match to be used: the run, the step, every setting, and the
    identity of its inputs (``_input_identity``: data splits and starting weights)."""
    return json.dumps({"run": run_name, "method": method_name, "step": step, "init": init, "seed": config["seed"],
                       "train": config["train"], "methods": config.get("methods", {}),
                       "model": config["model"], "steps": config["tic"]["steps"], "inputs": inputs},
                      sort_keys=True, default=str)


def save_resume_state(path: Path, state: dict) -> None:
    """Write a resumable training state atomically (``models.atomic_torch_save``: temporary
    name, then rename; on a full disk an OSError naming the path, and no ``.tmp`` left)."""
    atomic_torch_save(state, path)


def load_resume_state(path: Path, fingerprint: str, set_aside: bool = True) -> dict | None:
    """The resumable state at ``path`` if it exists and belongs to this very run and step.

    A state that cannot be loaded (garbage bytes, a truncated file) or that another run saved
    (its fingerprint differs: other settings, other data, other starting weights) is not used:
    the step starts afresh, and with ``set_aside`` (the main process) the file is renamed to
    ``resume.pt.unreadable`` or ``resume.pt.foreign`` (replacing an older one), with a warning
    on stderr, so that it neither blocks every rerun nor is silently overwritten; it is kept
    for inspection and can be deleted.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a training state")
    except Exception as err:  # torch raises several types for garbage or truncated files
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        _set_aside(path, "unreadable", f"it cannot be loaded ({type(err).__name__}: {first_line})", set_aside)
        return None
    if state.get("fingerprint") != fingerprint:
        _set_aside(path, "foreign", "it was saved by another configuration, from other data or from other "
                                    "starting weights", set_aside)
        return None
    return state


def _set_aside(path: Path, kind: str, why: str, move: bool) -> None:
    """Rename an unusable resume state to ``<name>.<kind>`` (when ``move``) and say so on stderr."""
    if not move:
        print(f"warning: ignoring {path}: {why}; starting the step afresh", file=sys.stderr)
        return
    target = path.with_name(f"{path.name}.{kind}")
    os.replace(path, target)
    print(f"warning: {path}: {why}; moved it to {target} and starting the step afresh", file=sys.stderr)


def _write_csv(rows: list[dict], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["iteration", "samples_seen", "loss", "lr", "samples_per_s",
                                               "skipped_corrupt"])
        writer.writeheader()
        writer.writerows(rows)
