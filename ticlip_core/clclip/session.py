"""Training one CL-CLIP session.

A session fine-tunes the model on the crops of its classes with cross-entropy over
class-prompt logits (Ding et al., Eq. 1-3) plus the method's own term; only the parameters
the method and the variant allow are updated.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ticlip_core.data.loader import PixelSpec
from ticlip_core.clclip import towers
from ticlip_core.clclip.context import ClassBatch, SessionContext
from ticlip_core.evaluation import class_text_features


def train_session(ctx: SessionContext, method, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                  batch_size: int, lr: float, weight_decay: float, seed: int) -> dict:
    """Fine-tune ``ctx.model`` on one session's crops (labels index ``ctx.classnames``).

    Loss = cross-entropy over the prompts of ``ctx.session_classes`` (Eq. 1) + the method's
    ``extra_loss``. Returns the number of iterations, the samples seen and the last loss.
    Raises ``FloatingPointError`` naming the session if the loss is not finite.
    """
    model, device = ctx.model, ctx.device
    method.before_step(ctx)
    towers.freeze_for(model, ctx.variant)  # what the variant does not train (logit_scale too)
    params = method.trainable_parameters(ctx)
    if not params:
        raise ValueError(f"{method.name}: no trainable parameters in variant '{ctx.variant}'")
    optimizer = torch.optim.AdamW(params, lr=method.learning_rate(lr), weight_decay=weight_decay)
    local = {c: i for i, c in enumerate(ctx.session_classes)}
    keep = torch.tensor([int(y) in local for y in labels.tolist()], dtype=torch.bool)
    images, labels = images[keep], labels[keep]
    if len(labels) == 0:
        raise ValueError(f"session {ctx.session}: no training crops of classes {ctx.session_classes}")
    targets = torch.tensor([local[int(y)] for y in labels.tolist()])
    names = [ctx.classnames[c] for c in ctx.session_classes]
    pixels = PixelSpec.of(model)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    iterations, loss_value = 0, math.nan
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x = pixels.normalise(images[idx]).to(device)
            out = model(x, None)
            class_features = class_text_features(model, ctx.tokenizer, names, ctx.templates, device)
            logits = out["logit_scale"] * out["image_features"] @ class_features.T
            loss = F.cross_entropy(logits, targets[idx].to(device))
            extra = method.extra_loss(ctx, ClassBatch(x, labels[idx]), {**out, "class_features": class_features})
            if extra is not None:
                loss = loss + extra
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method.name}-{ctx.variant}: non-finite loss in session {ctx.session}, "
                                         f"iteration {iterations}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iterations += 1
            loss_value = loss.item()
    method.after_step(ctx)
    model.eval()
    return {"iterations": iterations, "samples": iterations and int(len(labels) * epochs), "loss": loss_value}
