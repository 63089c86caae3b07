"""EWC (Kirkpatrick et al., 2017) as PyCIL implements it (models/ewc.py), on memclip's runner.

Each task trains with fine-tuning's loss (cross-entropy over the label-text logits of every class
seen so far, on the task's data plus the memory) plus, from the second task on, a quadratic
penalty that pulls every weight back to its value at the end of the previous task, weighted by a
diagonal Fisher information that is blended over the tasks.
"""
from __future__ import annotations

from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import MemclipMethod, TaskContext, local_targets

#: parameters never anchored: the temperature stays the starting model's (it is not trained)
FROZEN = ("logit_scale",)


def fisher_diagonal(params: dict, batches, loss_fn, max_value: float | None = None) -> dict:
    """The diagonal empirical Fisher of PyCIL's ``getFisherDiagonal``: for every named parameter
    of ``params``, the mean over the batches of the squared gradient of ``loss_fn(batch)`` (the
    batch's mean loss), clamped elementwise to ``max_value`` (PyCIL's ``fishermax``; None: no
    clamp). A parameter the loss does not reach gets zeros. Returns ``{name: tensor}``."""
    import torch

    names = list(params)
    tensors = [params[n] for n in names]
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    count = 0
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(batch), tensors, allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                fisher[n] += g.detach().float().pow(2)
        count += 1
    for n in names:
        fisher[n] /= max(count, 1)
        if max_value is not None:
            fisher[n] = fisher[n].clamp(max=max_value)
    return fisher


def blend_fisher(old: dict | None, new: dict, alpha: float) -> dict:
    """PyCIL's running Fisher: ``alpha * F_old + (1 - alpha) * F_new`` per parameter, ``alpha`` =
    known classes / total classes after the task; ``new`` itself when there is no ``old``."""
    if old is None:
        return {n: f.clone() for n, f in new.items()}
    return {n: alpha * old[n].to(f.device) + (1 - alpha) * f for n, f in new.items()}


def ewc_penalty(params: dict, anchor: dict, fisher: dict, lamda: float):
    """The EWC penalty ``lamda * sum_i F_i (theta_i - theta*_i)^2 / 2`` (Kirkpatrick et al.
    Eq. 3; PyCIL's ``lamda * compute_ewc()``) over the named parameters of ``params`` held in
    ``fisher``, ``anchor`` being the weights theta* at the end of the previous task."""
    total = 0.0
    for n, f in fisher.items():
        total = total + (f * (params[n] - anchor[n]).pow(2)).sum() / 2
    return lamda * total


def anchored_parameters(model) -> dict:
    """The named parameters EWC anchors: every one of ``model`` but the frozen temperature."""
    return {n: p for n, p in model.named_parameters() if n not in FROZEN}


@register
class EWC(MemclipMethod):
    """EWC: fine-tuning's cross-entropy over the label-text logits of the classes seen so far (on
    the task's data plus the memory, M = 0 included) plus ``lamda/2 * sum F (theta - theta*)^2``
    from the second task on (Kirkpatrick et al. Eq. 3), classifying with the label text.

    After each task, the diagonal Fisher is the mean over the task's own training rows (not the
    memory: PyCIL's EWC computes it on its training loader, which holds the new task's data only)
    of the squared gradient of the batch's cross-entropy over the seen classes' label-text logits
    (image and text towers), in batches of the training batch size shuffled by a seed derived from
    the task's, clamped to ``fisher_max``; it is blended with the previous one as
    ``alpha * F_old + (1 - alpha) * F_new``, ``alpha`` = old classes / seen classes; theta* are the
    weights after the task. The temperature ``logit_scale`` is frozen and never anchored.

    Defaults, from PyCIL's models/ewc.py: ``lamda`` 1000 and ``fisher_max`` 1e-4 (``fishermax``).
    Unlike PyCIL, whose later tasks use a cross-entropy over the new classes only, the
    classification loss is fine-tuning's over every class seen so far (the study's common loss).
    """

    name = "ewc"
    scenarios = ("class",)
    uses_memory = True
    defaults = {"lamda": 1000.0, "fisher_max": 1e-4}

    def __init__(self, **options):
        super().__init__(**options)
        self.fisher: dict | None = None   # name -> blended Fisher (on the device once a task starts)
        self.anchor: dict | None = None   # name -> weights at the end of the previous task

    def before_step(self, ctx: TaskContext) -> None:
        """Moves the Fisher and the anchor (restored from a chain store on the CPU) to the device."""
        if self.fisher is not None:
            self.fisher = {n: f.to(ctx.device) for n, f in self.fisher.items()}
            self.anchor = {n: a.to(ctx.device) for n, a in self.anchor.items()}

    def penalty(self, model):
        """The EWC penalty of ``model``'s weights (0.0 before the first task has ended)."""
        if self.fisher is None:
            return 0.0
        return ewc_penalty(anchored_parameters(model), self.anchor, self.fisher, self.options["lamda"])

    def loss(self, ctx: TaskContext, batch):
        """Fine-tuning's cross-entropy over the seen classes plus the EWC penalty."""
        return super().loss(ctx, batch) + self.penalty(ctx.model)

    def consolidate(self, model, new_fisher: dict, alpha: float) -> None:
        """End of a task: blend ``new_fisher`` into the running Fisher with weight ``alpha`` on the
        old one and take ``model``'s current weights as the anchor."""
        self.fisher = blend_fisher(self.fisher, new_fisher, alpha)
        self.anchor = {n: p.detach().clone() for n, p in anchored_parameters(model).items()}

    def after_step(self, ctx: TaskContext) -> None:
        """The task's Fisher (one forward and backward pass over its rows, counted in
        ``ctx.extra_macs`` as a training pass), blended, and the new anchor."""
        import torch
        import torch.nn.functional as F

        from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER
        from ticlip_core.engine.seeds import derived_seed
        from ticlip_core.evaluation import class_text_features

        model, data = ctx.model, ctx.data
        seen = torch.tensor(ctx.seen_classes, dtype=torch.long, device=ctx.device)
        names = [ctx.classnames[c] for c in ctx.seen_classes]
        was_training = model.training
        model.train()  # as PyCIL's getFisherDiagonal

        def batch_loss(batch):
            _, x, labels = batch
            text = class_text_features(model, ctx.tokenizer, names, ctx.templates, ctx.device)
            logits = model.logit_scale.exp() * model.encode_image(x, normalize=True) @ text.T
            return F.cross_entropy(logits, local_targets(labels, seen))

        batches = data.batches(data.task_rows, epochs=1, seed=derived_seed(data.seed, "ewc", "fisher"))
        params = {n: p for n, p in anchored_parameters(model).items() if p.requires_grad}
        new_fisher = fisher_diagonal(params, batches, batch_loss, self.options["fisher_max"])
        model.train(was_training)
        ctx.extra_macs += TRAIN_FORWARD_MULTIPLIER * len(data.task_rows) * ctx.image_macs
        current = {int(data.labels[r]) for r in data.task_rows}
        alpha = sum(c not in current for c in ctx.seen_classes) / len(ctx.seen_classes)
        self.consolidate(model, new_fisher, alpha)

    def state_dict(self) -> dict:
        """The running Fisher and the anchor weights (CPU tensors); empty before the first task."""
        if self.fisher is None:
            return {}
        return {"fisher": {n: f.detach().cpu().clone() for n, f in self.fisher.items()},
                "anchor": {n: a.detach().cpu().clone() for n, a in self.anchor.items()}}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.fisher = {n: f.clone() for n, f in state["fisher"].items()}
        self.anchor = {n: a.clone() for n, a in state["anchor"].items()}
