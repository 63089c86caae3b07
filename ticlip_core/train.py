"""One training step of a continual-training method: init, stream data, optimise, checkpoint.

The loop is open_clip's: ``ClipLoss``, AdamW with open_clip_train's parameter groups and
``cosine_lr`` schedule, logit scale clamped to ln(100). A method plugs in through the hooks
of ``ticlip_core.methods.base.Method``.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch
from open_clip_train.scheduler import cosine_lr
from tqdm import tqdm

from .compute import training_macs_per_sample
from .data.loader import PixelSpec, train_batches
from .methods import get_method
from .models import create_model, load_checkpoint, save_checkpoint


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the step's checkpoint is not written."""


@dataclass
class StepContext:
    """What a method's hooks can see and use during one training step."""

    method: object
    t: int
    steps: list[str]
    model: torch.nn.Module
    tokenizer: object
    config: dict
    device: torch.device
    extra: dict = field(default_factory=dict)
    #: MACs spent beyond the model's own training passes (e.g. a teacher's forwards)
    extra_macs: int = 0


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


def train_step(config: dict, *, method_name: str, step: str, shards_by_step: dict[str, list[str]],
               init_checkpoint: str | None, out_model: str, out_log: str, out_compute: str) -> dict:
    """Train ``method_name`` at ``step`` and write its checkpoint, CSV log and ``compute.json``.

    ``shards_by_step`` maps step names to their training shards; the method's data plan picks from it.
    Raises ``NonFiniteLossError`` naming the step if the loss is not finite; nothing is
    written then, so the previous step's checkpoint stays the last good one.
    """
    tcfg, steps = config["train"], list(config["tic"]["steps"])
    t = steps.index(step)
    method = get_method(method_name, **config.get("methods", {}).get(method_name, {}))
    torch.set_num_threads(tcfg["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seed = derived_seed(config["seed"], method_name, step)
    torch.manual_seed(seed)

    model, _, _, tokenizer = create_model(config["model"]["name"], config["model"]["pretrained"],
                                                   device=device, seed=seed)
    if method.warm_start and t > 0:
        if not init_checkpoint:
            raise ValueError(f"{method_name} warm-starts step '{step}' but no previous checkpoint was given")
        load_checkpoint(model, init_checkpoint)
    model.train()

    plan = method.data_plan(t, steps)
    shards = [s for name in plan for s in shards_by_step[name]]
    budget = method.budget(t, tcfg["budget_samples"])
    iterations = math.ceil(budget / tcfg["batch_size"])
    # TiC-CLIP drops warm-up when training *continues* from the previous step; a model that
    # starts from a fresh initialisation (every Oracle and Restart step) always warms up.
    continues = method.warm_start and t > 0
    warmup = tcfg["warmup_iterations"] if (not continues or tcfg["warmup_later_steps"]) else 0
    optimizer = torch.optim.AdamW(param_groups(model, tcfg["weight_decay"]), lr=tcfg["lr"], fused=True)
    schedule = cosine_lr(optimizer, tcfg["lr"], warmup, iterations)
    loss_fn = open_clip.ClipLoss()
    ctx = StepContext(method, t, steps, model, tokenizer, config, device)
    method.before_step(ctx)

    batches = train_batches(shards, batch_size=tcfg["batch_size"], pixels=PixelSpec.of(model), tokenizer=tokenizer,
                            num_samples=budget, seed=seed, shuffle_buffer=tcfg["shuffle_buffer"])
    rows, seen, skipped, start = [], 0, 0, time.perf_counter()
    window_start, window_seen = start, 0
    progress = tqdm(total=budget, unit="sample", desc=f"{method_name} {step}", file=sys.stderr, mininterval=5)
    for i, batch in enumerate(batches):
        lr = schedule(i)
        images, texts = batch.images.to(device), batch.texts.to(device)
        out = model(images, texts)
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
        seen += len(batch.keys)
        skipped += batch.skipped
        window_seen += len(batch.keys)
        progress.update(len(batch.keys))
        if (i + 1) % tcfg["log_every"] == 0 or seen >= budget:
            now = time.perf_counter()
            rows.append({"iteration": i + 1, "samples_seen": seen, "loss": round(loss.item(), 6), "lr": lr,
                         "samples_per_s": round(window_seen / max(now - window_start, 1e-9), 2),
                         "skipped_corrupt": skipped})
            window_start, window_seen = now, 0
    progress.close()
    method.after_step(ctx)
    seconds = time.perf_counter() - start

    context_length = model.context_length if hasattr(model, "context_length") else 77
    image_size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    macs_per_sample = training_macs_per_sample(model, image_size, context_length)
    compute = {"method": method_name, "step": step, "step_index": t, "data_plan": plan,
               "samples_seen": seen, "budget_samples": budget, "iterations": len(rows) and rows[-1]["iteration"],
               "macs_per_sample": macs_per_sample, "macs": macs_per_sample * seen + ctx.extra_macs,
               "extra_macs": ctx.extra_macs, "skipped_corrupt": skipped, "seconds": round(seconds, 3),
               "samples_per_s": round(seen / seconds, 2), "seed": seed, "warmup_iterations": warmup}

    _write_csv(rows, out_log)
    Path(out_compute).write_text(json.dumps(compute, indent=2))
    save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, out_model)
    return compute


def _write_csv(rows: list[dict], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["iteration", "samples_seen", "loss", "lr", "samples_per_s",
                                               "skipped_corrupt"])
        writer.writeheader()
        writer.writerows(rows)
