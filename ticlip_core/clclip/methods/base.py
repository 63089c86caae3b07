"""The interface every CL-CLIP method implements, and the helpers the methods share.

The training loss of a session, computed by the session runner, is the cross-entropy over the
class-prompt logits ``logit_scale * <f, t_c>`` (Ding et al., Eq. 1) plus the method's
``extra_loss``. torch is imported inside the functions, so the registry can be read without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ticlip_core.clclip import towers


@dataclass
class SessionContext:
    """What a method sees of one training session."""

    model: Any                      # the CLIP being trained (open_clip CLIP, output_dict=True)
    tokenizer: Callable
    variant: str                    # wm | io | to
    setting: str                    # ost | mst
    session: int                    # 0-based
    classnames: list[str]           # every update class; a label is an index into this list
    session_classes: list[int]      # labels trained in this session
    seen_classes: list[int]         # labels of this and every earlier session (OST: all)
    templates: list[str]            # e.g. ["this is a photo of {}."]
    original_state: dict            # the original CLIP's state dict (CPU tensors)
    previous_state: dict            # the model's state at the start of this session (= original at session 0)
    device: Any                     # torch.device
    info: dict = field(default_factory=dict)   # what the method records (counts, warnings, chosen values)


class ClMethod:
    """A CL-CLIP method: which parameters train, an extra loss term, and per-session hooks.

    Options are declared in ``defaults`` (name -> default value); ``__init__`` rejects any other
    option with a TypeError naming it, and ``self.options`` holds the defaults updated by the
    given options. Hooks are no-ops here; a method overrides only what it changes.
    """

    name: str = ""
    #: the option tuned on validation A-Acc ("beta" or "alpha"), or None
    hyperparameter: str | None = None
    #: train on the data of every session so far (joint fine-tuning, the MST upper bound)
    trains_on_seen_sessions: bool = False
    #: the options this method accepts, with their defaults
    defaults: dict[str, Any] = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise TypeError(f"CL-CLIP method '{self.name}' got unknown option(s) {', '.join(map(repr, unknown))}; "
                            f"its options: {known}")
        self.options = {**self.defaults, **options}

    def prepare_model(self, model, variant: str) -> None:
        """Called on a freshly created model before a checkpoint of this method is loaded into it
        (training a later session, or evaluating). No-op except for methods that add parameters (RKR)."""

    def setup(self, ctx: SessionContext) -> None:
        """Called at the start of every session, after the model is loaded."""

    def trainable_parameters(self, ctx: SessionContext) -> list:
        """Freeze what this method does not train and return the parameters the optimiser updates.

        Default: the towers of ``ctx.variant`` (``towers.freeze_for``); ``logit_scale`` stays frozen.
        """
        return towers.freeze_for(ctx.model, ctx.variant)

    def learning_rate(self, lr: float) -> float:
        """The optimiser's learning rate given the session's ``lr`` (default: ``lr`` itself)."""
        return lr

    def extra_loss(self, ctx: SessionContext, *, images, labels, out, class_features):
        """A term added to the cross-entropy of Eq. 1 on each mini-batch, or ``None``.

        ``out`` is ``ctx.model(images, None)`` (normalised ``image_features``, ``logit_scale``);
        ``class_features`` are the normalised text features of ``ctx.session_classes``' prompts
        from the current model, in that order.
        """
        return None

    def after_session(self, ctx: SessionContext) -> None:
        """Called after the last iteration of a session, before the checkpoint is written."""

    def describe(self) -> str:
        """One line for logs and docs."""
        return (self.__doc__ or self.name).strip().splitlines()[0]


def beta_of(method: ClMethod) -> float:
    """The weight ``beta`` of a method's distillation term(s) (Eq. 4, 9-10, 17), checked >= 0."""
    beta = float(method.options["beta"])
    if not beta >= 0:
        raise ValueError(f"CL-CLIP method '{method.name}': beta must be >= 0, got {beta}")
    return beta


def teacher_from(state: dict, ctx: SessionContext):
    """A frozen, eval-mode copy of ``ctx.model`` holding the weights ``state`` (the old model)."""
    import copy

    teacher = copy.deepcopy(ctx.model)
    teacher.load_state_dict(state)
    for param in teacher.parameters():
        param.grad = None
    return teacher.to(ctx.device).eval().requires_grad_(False)


def class_text_features(model, tokenizer, names: list[str], templates: list[str], device):
    """Normalised text features of the classes ``names`` (Eq. 3's classifier weights t_c).

    Each class's prompts (one per template, ``template.format(name)``) are encoded and
    normalised, averaged over templates and renormalised. Returns a (len(names), D) tensor,
    differentiable through ``model`` unless called under ``torch.no_grad``.
    """
    import torch.nn.functional as F

    prompts = [template.format(name) for name in names for template in templates]
    tokens = tokenizer(prompts).to(device)
    features = model.encode_text(tokens, normalize=True)
    features = features.reshape(len(names), len(templates), -1).mean(dim=1)
    return F.normalize(features, dim=-1)


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
    return torch.cat([class_features, class_text_features(ctx.model, ctx.tokenizer, names, ctx.templates,
                                                          ctx.device)])


def teacher_seen_class_features(teacher, ctx: SessionContext):
    """The teacher's text features of every seen class, in the order of ``seen_class_features``."""
    import torch

    labels = list(ctx.session_classes) + previous_classes(ctx)
    with torch.no_grad():
        return class_text_features(teacher, ctx.tokenizer, [ctx.classnames[c] for c in labels], ctx.templates,
                                   ctx.device)


def kl_distillation(student_logits, teacher_logits):
    """KL(p_old || p_new), averaged over the batch: the LwF term of Eq. 5 and Eq. 17.

    KL(p_old || p_new) = -sum_c p_old^c log p_new^c + (the teacher's entropy, a constant): the
    standard LwF direction (Li & Hoiem), the teacher's probabilities weighting the student's
    log-probabilities. Eq. 5 and 17 as printed write -sum_c p_new^c log p_old^c, the roles
    swapped; we follow LwF. Gradients flow through ``student_logits`` only.
    """
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student_logits.float(), dim=-1),
                    F.log_softmax(teacher_logits.detach().float(), dim=-1),
                    log_target=True, reduction="batchmean")
