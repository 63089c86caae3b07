"""Training one memclip task, on the engine's loop (``engine.loop.train_loop``).

A task trains the whole model on the rows its method chooses (the task's own plus the memory,
or every task's so far) for a number of epochs. Each batch's images are compared with the label
text of every class seen so far (prompts through the text tower, which trains too); the method
turns those similarities into its loss (cross-entropy for fine-tuning, GCL, GDRO). The
temperature ``logit_scale`` stays the starting model's.
"""
from __future__ import annotations

import math

import torch

from ticlip_core.data.pixels import PixelSpec
from ticlip_core.engine.loop import BatchLoss, train_loop
from ticlip_core.engine.speed import adamw, prepare_images, prepare_model
from ticlip_core.evaluation import class_text_features
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext

#: the loop's settings a caller may leave out (the ``memclip.train`` schema defaults)
DEFAULT_SETTINGS = {"precision": "fp32", "tf32": True, "channels_last": False, "compile": False,
                    "grad_checkpointing": False, "log_every": 20, "resume_every": 0, "workers": 0}


def row_batches(rows: list[int], *, epochs: int, batch_size: int, seed: int) -> list[list[int]]:
    """``epochs`` passes over ``rows``, each in the order of a ``randperm`` drawn from
    ``torch.Generator().manual_seed(seed)``, cut into batches of ``batch_size`` (the last of a
    pass may be smaller)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        out += [[rows[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    return out


def image_batches(images, batches: list[list[int]], workers: int = 0):
    """``(rows, uint8 images (B, H, W, 3))`` for each batch of train-table rows, in order; decoded
    in ``workers`` data-loader processes (0: in this process)."""
    loader = torch.utils.data.DataLoader(images, batch_sampler=batches, num_workers=workers,
                                         persistent_workers=False)
    return zip(batches, loader)


def train_task(ctx: TaskContext, method, images, labels, rows: list[int], *, epochs: int, batch_size: int,
               lr: float, weight_decay: float, seed: int, settings: dict | None = None, resume_path=None,
               fingerprint: str = "", image_macs: int = 0, text_macs: int = 0) -> dict:
    """Train ``ctx.model`` on the train-table ``rows`` of task ``ctx.t`` with ``method``'s loss.

    ``images`` is the train split's ``SplitImages`` and ``labels`` the class id of every train
    row. Per batch: the images' features against the label-text features of ``ctx.seen_classes``
    (``evaluation.class_text_features`` over ``ctx.templates``, differentiable), scattered into a
    ``(B, C)`` similarity matrix, then ``method.loss`` (a method with ``uses_text = False`` gets
    the normalised images only and does its own forward). AdamW at ``lr`` over
    ``method.trainable_parameters`` (every parameter but the temperature; a method's heads too).
    With ``resume_path`` the loop saves a resumable state every ``resume_every`` iterations and
    resumes one saved under ``fingerprint``. Returns the
    iterations, samples, last loss, training MACs (image and prompt forwards x 3) and seconds.
    """
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    if not rows:
        raise ValueError(f"{ctx.benchmark}, task {ctx.t}: {method.name} has no training rows")
    model, device = ctx.model, torch.device(ctx.device)
    method.before_step(ctx)
    model.logit_scale.requires_grad_(False)  # the temperature stays the starting model's
    params = method.trainable_parameters(ctx)
    optimizer = adamw(params, method.learning_rate(lr), weight_decay)
    names = [ctx.classnames[c] for c in ctx.seen_classes]
    seen = torch.tensor(ctx.seen_classes, dtype=torch.long, device=device)
    labels = torch.as_tensor(labels, dtype=torch.long)
    pixels = PixelSpec.of(model)
    batches = row_batches(rows, epochs=epochs, batch_size=batch_size, seed=seed)
    model.train()
    forward = prepare_model(model, settings, device)
    prompts = len(names) * len(ctx.templates)

    def compute_loss(batch) -> BatchLoss:
        batch_rows, uint8 = batch
        x = prepare_images(pixels.normalise(uint8), settings, device)
        rows_t = torch.tensor(batch_rows, dtype=torch.long)
        task_batch = TaskBatch(sims=None, labels=labels[rows_t].to(device), indices=rows_t.to(device), seen=seen,
                               logit_scale=model.logit_scale.exp(), images=x)
        out, macs = {}, len(batch_rows) * image_macs
        if method.uses_text:
            out = forward(x, None)
            class_features = class_text_features(model, ctx.tokenizer, names, ctx.templates, device)
            sims_seen = out["image_features"] @ class_features.T
            task_batch.sims = sims_seen.new_zeros(len(batch_rows), len(ctx.classnames)).index_copy(1, seen, sims_seen)
            task_batch.logit_scale, task_batch.image_features = out["logit_scale"], out["image_features"]
            macs += prompts * text_macs
        return BatchLoss(method.loss(ctx, task_batch), out, task_batch, samples=len(batch_rows), forward_macs=macs)

    where = f"task {ctx.t} of {method.name} on {ctx.benchmark} (memory {ctx.memory_size})"
    trained = train_loop(
        batches=image_batches(images, batches, settings["workers"]), compute_loss=compute_loss, method=method,
        ctx=ctx, model=model, optimizer=optimizer, settings=settings, device=device,
        total_iterations=len(batches), name=f"{method.name} {ctx.benchmark} M={ctx.memory_size} task {ctx.t}",
        where=where, failure_note="nothing of this task is kept", resume_path=resume_path, fingerprint=fingerprint)
    method.after_step(ctx)
    model.eval()
    return {"iterations": trained.iterations, "samples": trained.samples, "loss": trained.loss,
            "macs": trained.macs(ctx.extra_macs), "seconds": round(trained.seconds, 3),
            "rows": len(rows), "epochs_planned": epochs, "iterations_planned": math.ceil(len(rows) / batch_size) * epochs}
