"""What the CL-CLIP distillation methods share: their weight ``beta``, the frozen teacher (the
model at the start of the session), and the text features of the classes seen so far.

torch is imported inside the functions, so the method registry can be read without it.
"""
from __future__ import annotations

from ticlip_core.clclip.context import SessionContext
from ticlip_core.engine.method import Method
from ticlip_core.evaluation import class_text_features  # noqa: F401 (the methods' prompt features)


def teacher_from(state: dict, ctx: SessionContext):
    """A frozen, eval-mode copy of ``ctx.model`` holding the weights ``state`` (the old model), on
    ``ctx.device`` (``engine.weights.frozen_copy``)."""
    from ticlip_core.engine.weights import frozen_copy

    return frozen_copy(ctx.model, state, ctx.device)


def beta_of(method: Method) -> float:
    """The weight ``beta`` of a method's distillation term(s) (Eq. 4, 9-10, 17), checked >= 0."""
    beta = float(method.options["beta"])
    if not beta >= 0:
        raise ValueError(f"CL-CLIP method '{method.name}': beta must be >= 0, got {beta}")
    return beta


def count_forwards(ctx: SessionContext, *, images: int = 0, prompts: int = 0, trained: bool = False) -> None:
    """Add to ``ctx.extra_macs`` the MACs of passes beyond the session's own cross-entropy:
    ``images`` images through the image tower and ``prompts`` prompts through the text tower,
    forward only for a frozen teacher, or times the training multiplier (forward + backward) for
    the student's own extra encodings (``trained``), as ``clclip/compute.py`` counts training."""
    from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER

    factor = TRAIN_FORWARD_MULTIPLIER if trained else 1
    ctx.extra_macs += factor * (images * ctx.image_macs_per_sample + prompts * ctx.text_macs_per_prompt)


def previous_classes(ctx: SessionContext) -> list[int]:
    """The labels of earlier sessions: ``ctx.seen_classes`` minus ``ctx.session_classes``, in order."""
    current = set(ctx.session_classes)
    return [c for c in ctx.seen_classes if c not in current]


def seen_class_features(ctx: SessionContext, class_features):
    """The current model's text features of every seen class, ordered session classes first, then
    ``previous_classes(ctx)`` (reusing ``class_features`` for the session's own classes)."""
    import torch

    previous = previous_classes(ctx)
    if not previous:
        return class_features
    names = [ctx.classnames[c] for c in previous]
    count_forwards(ctx, prompts=len(names) * len(ctx.templates), trained=True)
    return torch.cat([class_features, class_text_features(ctx.model, ctx.tokenizer, names, ctx.templates,
                                                          ctx.device)])


def teacher_seen_class_features(teacher, ctx: SessionContext):
    """The teacher's text features of every seen class, in the order of ``seen_class_features``."""
    import torch

    labels = list(ctx.session_classes) + previous_classes(ctx)
    count_forwards(ctx, prompts=len(labels) * len(ctx.templates))
    with torch.no_grad():
        return class_text_features(teacher, ctx.tokenizer, [ctx.classnames[c] for c in labels], ctx.templates,
                                   ctx.device)
