"""Training one CL-CLIP session, on the engine's loop (``engine.loop.train_loop``).

A session fine-tunes the model on the crops of its classes with cross-entropy over
class-prompt logits (Ding et al., Eq. 1-3) plus the method's own term; only the parameters
the method and the variant allow are updated.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ticlip_core.data.pixels import PixelSpec
from ticlip_core.clclip import towers
from ticlip_core.clclip.context import ClassBatch, SessionContext
from ticlip_core.engine.loop import BatchLoss, train_loop
from ticlip_core.engine.speed import adamw, prepare_images, prepare_model
from ticlip_core.evaluation import class_text_features

#: the loop's settings a caller may leave out (the ``clclip.train`` schema defaults)
DEFAULT_SETTINGS = {"precision": "fp32", "tf32": True, "channels_last": False, "compile": False,
                    "grad_checkpointing": False, "log_every": 10, "resume_every": 0}


def train_session(ctx: SessionContext, method, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                  batch_size: int, lr: float, weight_decay: float, seed: int, settings: dict | None = None,
                  resume_path=None, fingerprint: str = "") -> dict:
    """Fine-tune ``ctx.model`` on one session's crops (labels index ``ctx.classnames``).

    Loss = cross-entropy over the prompts of ``ctx.session_classes`` (Eq. 1) + the method's
    ``extra_loss``; AdamW over ``method.trainable_parameters`` (after ``towers.freeze_for``) at
    ``method.learning_rate(lr)``; ``epochs`` passes over the crops, each in the order of a
    ``randperm`` drawn from ``torch.Generator().manual_seed(seed)``. ``settings`` are the
    ``clclip.train`` switches the loop reads (precision, tf32, channels_last, compile,
    grad_checkpointing, log_every, resume_every). With ``resume_path`` the session saves a
    resumable state there every ``resume_every`` iterations and resumes one saved under
    ``fingerprint``. Returns the iterations, samples, last loss, forward MACs, training MACs
    (``clclip.compute``), the method's extra MACs and the seconds spent.
    Raises ``NonFiniteLossError`` (a ``FloatingPointError``) naming the session if the loss is
    not finite.
    """
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    model, device = ctx.model, torch.device(ctx.device)
    method.before_step(ctx)
    towers.freeze_for(model, ctx.variant)  # what the variant does not train (logit_scale too)
    params = method.trainable_parameters(ctx)
    if not params:
        raise ValueError(f"{method.name}: no trainable parameters in variant '{ctx.variant}'")
    optimizer = adamw(params, method.learning_rate(lr), weight_decay)
    local = {c: i for i, c in enumerate(ctx.session_classes)}
    keep = torch.tensor([int(y) in local for y in labels.tolist()], dtype=torch.bool)
    images, labels = images[keep], labels[keep]
    if len(labels) == 0:
        raise ValueError(f"session {ctx.session}: no training crops of classes {ctx.session_classes}")
    targets = torch.tensor([local[int(y)] for y in labels.tolist()])
    names = [ctx.classnames[c] for c in ctx.session_classes]
    prompts = len(names) * len(ctx.templates)
    pixels = PixelSpec.of(model)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    forward = prepare_model(model, settings, device)

    def batches():
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(order), batch_size):
                yield order[start:start + batch_size]

    def compute_loss(idx) -> BatchLoss:
        x = prepare_images(pixels.normalise(images[idx]), settings, device)
        out = forward(x, None)
        class_features = class_text_features(model, ctx.tokenizer, names, ctx.templates, device)
        logits = out["logit_scale"] * out["image_features"] @ class_features.T
        loss = F.cross_entropy(logits, targets[idx].to(device))
        return BatchLoss(loss, {**out, "class_features": class_features}, ClassBatch(x, labels[idx]),
                         samples=len(idx),
                         forward_macs=len(idx) * ctx.image_macs_per_sample + prompts * ctx.text_macs_per_prompt)

    trained = train_loop(
        batches=batches(), compute_loss=compute_loss, method=method, ctx=ctx, model=model, optimizer=optimizer,
        settings=settings, device=device, total_iterations=epochs * math.ceil(len(labels) / batch_size),
        name=f"{method.name}-{ctx.variant} {ctx.setting} session {ctx.session}",
        where=f"session {ctx.session} of {method.name}-{ctx.variant} ({ctx.setting})",
        failure_note="nothing of this session is kept", resume_path=resume_path, fingerprint=fingerprint)
    method.after_step(ctx)
    model.eval()
    return {"iterations": trained.iterations, "samples": trained.samples, "loss": trained.loss,
            "forward_macs": trained.forward_macs, "macs": trained.macs(ctx.extra_macs),
            "extra_macs": ctx.extra_macs, "seconds": trained.seconds}
