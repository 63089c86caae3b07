"""iCaRL (Rebuffi et al., 2017) as PyCIL implements it (models/icarl.py, models/base.py), on
memclip's runner.

Each task trains with fine-tuning's cross-entropy over the label-text logits of every class seen
so far plus a distillation of the old classes' logits from the model of the previous task, on the
task's data plus iCaRL's own exemplars (chosen by herding within the study's total memory M).
At test time it classifies by the nearest mean of exemplars on the normalised image features.
"""
from __future__ import annotations

from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import MemclipMethod, TaskContext, frozen_copy


def herding(features, m: int) -> list[int]:
    """iCaRL's herding (Rebuffi et al. Alg. 4; PyCIL's ``_construct_exemplar``): the indices of
    ``m`` rows of ``features`` ``(n, D)`` in the order picked, each the not yet picked row ``i``
    that brings the mean of the picked rows and ``i``, ``(S + f_i) / k``, closest (Euclidean) to
    the class mean ``mu = mean(features)``; the first of equals on a tie."""
    import torch

    feats = features.detach().to(torch.float64)
    mu = feats.mean(dim=0)
    picked, total = [], torch.zeros_like(mu)
    free = torch.ones(len(feats), dtype=torch.bool)
    for k in range(1, min(m, len(feats)) + 1):
        dist = ((mu - (feats + total) / k) ** 2).sum(dim=1)
        dist[~free] = float("inf")
        i = int(torch.argmin(dist))
        picked.append(i)
        free[i] = False
        total = total + feats[i]
    return picked


def update_exemplars(exemplars: dict, candidates: dict, size: int, features_of) -> dict:
    """The exemplar sets after a task, within ``size`` samples in all: each class (old ones in
    ``exemplars``, class -> rows in herding order; new ones in ``candidates``, class -> the task's
    rows of it) gets its quota of ``memory.quotas`` (equal shares, water-filled: an old class can
    hold at most what it holds, a new class what the task has); an old class keeps the first
    ``quota`` of its herding order (iCaRL's ReduceExemplarSet, PyCIL's ``_reduce_exemplar``); a
    new class gets ``herding`` on ``features_of(rows)`` (its normalised features). Returns class
    -> rows, old classes first, in the order given."""
    from ticlip_core.memclip.memory import quotas

    available = {c: len(rows) for c, rows in exemplars.items()}
    available.update({c: len(rows) for c, rows in candidates.items()})
    quota = quotas(available, int(size))
    out = {c: list(rows[:quota[c]]) for c, rows in exemplars.items() if c not in candidates}
    for c, rows in candidates.items():
        out[c] = [rows[i] for i in herding(features_of(rows), quota[c])] if quota[c] else []
    return out


def class_mean(features):
    """A class's mean of exemplars (Rebuffi et al. Alg. 1): the mean of the L2-normalised
    ``features`` ``(n, D)``, renormalised."""
    import torch.nn.functional as F

    return F.normalize(F.normalize(features, dim=-1).mean(dim=0), dim=-1)


def nme_scores(features, means):
    """Nearest-mean-of-exemplars scores ``(B, C)``: cosine similarity of the L2-normalised
    ``features`` ``(B, D)`` with each normalised class mean of ``means`` ``(C, D)`` (on unit
    vectors ``||f - mu||^2 = 2 - 2 cos``, so the same argmax as PyCIL's squared distance)."""
    import torch.nn.functional as F

    return F.normalize(features, dim=-1) @ F.normalize(means, dim=-1).T


@register
class ICaRL(MemclipMethod):
    """iCaRL: cross-entropy over the label-text logits of the classes seen so far plus
    ``losses.kd_loss`` (temperature ``T``) between the old classes' label-text logits of the model and
    of the frozen model of the previous task (PyCIL's iCaRL: ``loss_clf + loss_kd``), on the
    task's rows plus its own exemplars; nearest-mean-of-exemplars classification.

    Exemplars are chosen after each task on ``encode_image(x, normalize=True)`` (eval mode) by
    ``update_exemplars``: herding for the new classes, the herding prefix for the old ones, with
    quotas over the classes seen so far totalling M (``ctx.memory_size``); the shared memory
    plan is not used. The class means are taken on the exemplars with the model after the task
    (PyCIL also averages with horizontally flipped images; not done here). The scorer is the
    cosine to each class mean (``nme_scores``). With M = 0, or while any seen class has no
    exemplar (M below the number of seen classes), there is no mean for it: the scorer falls
    back to the label-text classifier (returns None).

    Default ``T`` = 2: PyCIL's models/icarl.py (``T = 2``, used in ``_KD_loss``). The frozen
    model's image forwards and the exemplar feature passes are counted in ``ctx.extra_macs``.
    """

    name = "icarl"
    scenarios = ("class",)
    uses_memory = True
    defaults = {"T": 2.0}

    def __init__(self, **options):
        super().__init__(**options)
        self.exemplars: dict[int, list[int]] = {}   # class -> train rows, herding order
        self.means: dict = {}                         # class -> normalised mean of exemplars (CPU)
        self._old = None                              # the frozen model of the previous task
        self._old_text = None                         # its label-text features of the old classes
        self._old_classes: list[int] = []

    def training_rows(self, t: int, task_of_row, memory_rows) -> list[int]:
        """Task ``t``'s own rows plus this method's exemplars (``memory_rows``, the shared random
        plan, is ignored)."""
        import numpy as np

        own = np.flatnonzero(np.asarray(task_of_row) == t).tolist()
        return sorted(set(own) | {int(r) for rows in self.exemplars.values() for r in rows})

    def before_step(self, ctx: TaskContext) -> None:
        """From the second task on: a frozen copy of the model (the previous task's) and its
        label-text features of the old classes (those of tasks 0..t-1)."""
        import torch

        from ticlip_core.evaluation import class_text_features

        self._old = self._old_text = None
        current = {int(ctx.data.labels[r]) for r in ctx.data.task_rows}
        self._old_classes = [c for c in ctx.seen_classes if c not in current]
        if ctx.t >= 1 and self._old_classes:
            self._old = frozen_copy(ctx.model)
            with torch.no_grad():
                self._old_text = class_text_features(self._old, ctx.tokenizer,
                                                     [ctx.classnames[c] for c in self._old_classes],
                                                     ctx.templates, ctx.device)

    def loss(self, ctx: TaskContext, batch):
        """Fine-tuning's cross-entropy over the seen classes plus, from the second task on, the
        distillation of the old classes' logits (``losses.kd_loss``)."""
        import torch

        from ticlip_core.losses import kd_loss

        ce = super().loss(ctx, batch)
        if self._old is None:
            return ce
        cols = torch.tensor(self._old_classes, dtype=torch.long, device=batch.sims.device)
        with torch.no_grad():
            old = self._old.logit_scale.exp() * self._old.encode_image(batch.images, normalize=True) @ self._old_text.T
        ctx.extra_macs += len(batch.labels) * ctx.image_macs
        return ce + kd_loss(batch.logit_scale * batch.sims[:, cols], old.to(batch.sims.dtype), self.options["T"])

    def _features(self, ctx: TaskContext, rows: list[int]):
        """Normalised image features ``(len(rows), D)`` on the CPU, in eval mode without gradients."""
        import torch
        import torch.nn.functional as F

        model, out = ctx.model, []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for _, x, _ in ctx.data.batches(rows, shuffle=False):
                out.append(F.normalize(model.encode_image(x, normalize=True).float(), dim=-1).cpu())
        model.train(was_training)
        ctx.extra_macs += len(rows) * ctx.image_macs
        return torch.cat(out)

    def after_step(self, ctx: TaskContext) -> None:
        """Reduce the old classes' exemplars, herd the new classes', and take every class's mean
        of exemplars with the model after the task."""
        self._old = self._old_text = None
        data = ctx.data
        candidates: dict[int, list[int]] = {}
        for r in data.task_rows:
            candidates.setdefault(int(data.labels[r]), []).append(int(r))
        candidates = {c: candidates[c] for c in ctx.seen_classes if c in candidates}
        self.exemplars = update_exemplars(self.exemplars, candidates, ctx.memory_size or 0,
                                          lambda rows: self._features(ctx, rows))
        self.means = {}
        held = [c for c, rows in self.exemplars.items() if rows]
        if held:
            rows = [r for c in held for r in self.exemplars[c]]
            feats = self._features(ctx, rows)
            start = 0
            for c in held:
                n = len(self.exemplars[c])
                self.means[c] = class_mean(feats[start:start + n])
                start += n

    def scorer(self, ctx: TaskContext):
        """Nearest mean of exemplars over ``ctx.seen_classes`` (``nme_scores`` of the model's
        normalised image features), or None (the label-text classifier) when a seen class has no
        exemplar."""
        import torch

        if not all(c in self.means for c in ctx.seen_classes):
            return None
        model = ctx.model
        means = torch.stack([self.means[c] for c in ctx.seen_classes])

        def score(x):
            return nme_scores(model.encode_image(x, normalize=True).float(), means.to(x.device))

        return score

    def state_dict(self) -> dict:
        """The exemplar rows per class (herding order) and the class means (CPU tensors)."""
        import torch

        classes = list(self.exemplars)
        state = {"classes": classes, "rows": [list(self.exemplars[c]) for c in classes],
                 "mean_classes": [c for c in classes if c in self.means]}
        if state["mean_classes"]:
            state["means"] = torch.stack([self.means[c].detach().cpu() for c in state["mean_classes"]])
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.exemplars = {int(c): [int(r) for r in rows] for c, rows in zip(state["classes"], state["rows"])}
        self.means = {int(c): state["means"][i].clone() for i, c in enumerate(state.get("mean_classes", []))}

