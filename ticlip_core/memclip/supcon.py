"""What the two contrastive memclip baselines (Co2L, CaSSLe) share: the supervised contrastive
loss with an anchor mask, Co2L's instance-wise relation distillation, CaSSLe's contrastive
distiller, a cheap two-view augmentation of normalised image tensors, the projection MLP, a linear
probe trained on cached frozen features, and the method base class that carries the heads and the
probe across tasks.

Both methods train the image tower only (``ctx.model.visual``) with a projection head; at test
time they classify with a linear probe on ``ctx.model.visual(x)``, fitted after each task on the
frozen encoder's features. No torch is imported at module level: the method files under
``memclip/methods/`` import the base class from here, and the Snakefile reads that registry.
"""
from __future__ import annotations

import math

from ticlip_core.memclip.methods.base import MemclipMethod, TaskBatch, TaskContext, frozen_copy, local_targets


# -- losses --------------------------------------------------------------------------------------
def _full(x):
    """``x`` in float32 if it is in a lower precision (under autocast), else as it is."""
    import torch

    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def contrastive_rows(anchors, contrast, positives, candidates, temperature: float):
    """Per anchor row i: ``-mean_{j in P(i)} log( exp(s_ij / T) / sum_{k in K(i)} exp(s_ik / T) )``
    with ``s = anchors @ contrast.T``, P(i) the True entries of ``positives[i]`` and K(i) those of
    ``candidates[i]`` (the softmax's support). A row without positives gives 0. Shape ``(N,)``."""
    import torch

    logits = (_full(anchors) @ _full(contrast).T) / temperature
    logits = logits.masked_fill(~candidates, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = positives & candidates
    summed = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1)
    return -summed / positives.sum(1).clamp(min=1)


def supcon_loss(z, labels, temperature: float, *, anchors=None, base_temperature: float | None = None):
    """Supervised contrastive loss (Khosla et al. 2020, Eq. 2, L^sup_out) of the normalised
    features ``z`` ``(N, d)`` (both views stacked) with class ``labels`` ``(N,)``: each anchor i
    is pulled to every other row of its class and pushed from every other row (itself excluded),
    scaled by ``temperature / base_temperature`` (SupContrast's and Co2L's scaling; None: 1).

    ``anchors`` (bool ``(N,)``) keeps only those rows' terms, Co2L's asymmetric SupCon (Co2L
    Sec. 4.1; its code's ``target_labels``): the other rows still act as positives and negatives of the
    anchors. The sum over anchors is divided by N, every row, as Co2L's ``loss.mean()`` over
    masked rows does."""
    import torch

    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    rows = contrastive_rows(z, z, positives, ~eye, temperature)
    if base_temperature is not None:
        rows = rows * (temperature / base_temperature)
    if anchors is not None:
        rows = torch.where(anchors, rows, torch.zeros_like(rows))
    return rows.sum() / n


def ird_loss(z, z_past, current_temp: float, past_temp: float):
    """Co2L's instance-wise relation distillation (IRD, Co2L Sec. 4.2): the cross-entropy
    ``-sum_j p_past(i, j) log p(i, j)``, averaged over rows i, between each row's instance-
    similarity distributions over the other rows of the batch (self excluded): ``p(i, .) =
    softmax_{j != i}(z_i . z_j / current_temp)`` of the current model's normalised features and
    ``p_past`` the same of the frozen previous model's (``past_temp``, no gradient). As Co2L's
    code computes it, a cross-entropy, not a KL: its minimum is the entropy of ``p_past``, reached
    when ``p = p_past``."""
    import torch
    import torch.nn.functional as F

    n = z.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    z, z_past = _full(z), _full(z_past.detach())
    current = ((z @ z.T) / current_temp)[off].view(n, n - 1)
    past = ((z_past @ z_past.T) / past_temp)[off].view(n, n - 1)
    return -(F.softmax(past, dim=1) * F.log_softmax(current, dim=1)).sum(1).mean()


def contrastive_distill_loss(p, z_past, temperature: float, labels=None):
    """CaSSLe's contrastive distiller (Fini et al. 2022: the distillation loss L(g(z), z_prev) with
    the SimCLR loss as L; the reference code's ``distillers/contrastive.py``): the predictor's outputs ``p``
    ``(N, d)`` against the frozen previous model's projections ``z_past`` (no gradient), both
    L2-normalised, as ``(L(p, z_past) + L(z_past, p)) / 2`` where ``L(a, b)`` is, per row i,
    ``-mean_{j in P(i)} log( exp(a_i . b_j / T) / sum_k exp(a_i . b_k / T) )`` over all N rows
    of ``b``. Positives: the same row (the same image, the same view), as CaSSLe's
    ``simclr_distill_loss_func``; with ``labels`` also every row of the same class."""
    import torch
    import torch.nn.functional as F

    n = p.shape[0]
    p = F.normalize(_full(p), dim=-1)
    z_past = F.normalize(_full(z_past.detach()), dim=-1)
    positives = torch.eye(n, dtype=torch.bool, device=p.device)
    if labels is not None:
        positives = positives | (labels[:, None] == labels[None, :])
    everything = torch.ones_like(positives)
    forward = contrastive_rows(p, z_past, positives, everything, temperature).mean()
    backward = contrastive_rows(z_past, p, positives.T, everything, temperature).mean()
    return (forward + backward) / 2


# -- augmentation and heads ----------------------------------------------------------------------
def random_resized_crop_flip(x, min_scale: float, ratio: tuple[float, float] = (3 / 4, 4 / 3)):
    """Each image of the batch ``x`` ``(B, C, S, S)`` (already normalised) cropped to a random
    box of area fraction U(min_scale, 1) and log-uniform aspect ratio in ``ratio`` (clipped to
    the image), resized back to S x S (bilinear), and mirrored with probability 1/2: torchvision's
    RandomResizedCrop + RandomHorizontalFlip done batched with one ``affine_grid``. The random
    numbers come from torch's global CPU generator (the chain saves and restores its state)."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    r = torch.rand(b, 5)
    area = min_scale + (1 - min_scale) * r[:, 0]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * r[:, 1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    flip = torch.where(r[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = (1 - w) * (2 * r[:, 2] - 1)
    theta[:, 1, 1] = h
    theta[:, 1, 2] = (1 - h) * (2 * r[:, 3] - 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def two_views(x, min_scale: float):
    """``(2B, C, S, S)``: two independent ``random_resized_crop_flip`` views of the batch ``x``,
    the first B rows the first view."""
    import torch

    return torch.cat([random_resized_crop_flip(x, min_scale), random_resized_crop_flip(x, min_scale)])


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False):
    """Linear(in, hidden) [-> BatchNorm1d] -> ReLU -> Linear(hidden, out): the projection head of
    SupContrast/Co2L and SimCLR/CaSSLe (no BatchNorm) and CaSSLe's distillation predictor (with)."""
    from torch import nn

    middle = [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), *middle, nn.ReLU(), nn.Linear(hidden_dim, out_dim))


def linear_macs(module) -> int:
    """Multiply-accumulates of one sample through the Linear layers of ``module``."""
    from torch import nn

    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


# -- linear probe --------------------------------------------------------------------------------
def encoder_features(ctx: TaskContext, rows: list[int]):
    """``(features (n, D), labels (n,))`` on the CPU: ``ctx.model.visual`` of the train ``rows``
    (in order), in eval mode without gradients; the pass is added to ``ctx.extra_macs``."""
    import torch

    model = ctx.model
    was_training = model.training
    model.eval()
    feats, labels = [], []
    with torch.no_grad():
        for _, x, y in ctx.data.batches(rows, shuffle=False):
            feats.append(model.visual(x).float().cpu())
            labels.append(y.cpu())
    model.train(was_training)
    ctx.extra_macs += len(rows) * ctx.image_macs
    return torch.cat(feats), torch.cat(labels)


def train_linear_probe(features, targets, num_classes: int, *, epochs: int, lr: float, batch_size: int, seed: int,
                       milestones: tuple[float, ...], gamma: float, momentum: float = 0.9, balanced: bool = False):
    """A linear classifier ``(weight (C, D), bias (C,))`` of the cached ``features`` ``(n, D)``
    for ``targets`` ``(n,)`` in ``0..num_classes-1``: SGD with ``momentum``, ``lr`` multiplied by
    ``gamma`` after each fraction ``milestones`` of the ``epochs``, mini-batches of ``batch_size``
    in an order drawn from ``seed``, from a zero initialisation (the problem is convex).

    The features are standardised per dimension and scaled to unit mean norm first, so that one
    learning rate serves any backbone width; the returned layer folds that in and acts on the raw
    features. ``balanced``: cross-entropy weighted by 1 / (the class's count), the expectation of
    Co2L's class-balanced ``WeightedRandomSampler``."""
    import torch
    import torch.nn.functional as F

    features = features.float()
    n, dim = features.shape
    mean = features.mean(0)
    scale = features.std(0, unbiased=False).clamp(min=1e-6) * math.sqrt(dim)
    x = (features - mean) / scale
    weight = torch.zeros(num_classes, dim, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr, momentum=momentum)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [round(m * epochs) for m in milestones], gamma=gamma)
    class_weight = None
    if balanced:
        counts = torch.bincount(targets, minlength=num_classes).float()
        class_weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(x[idx] @ weight.T + bias, targets[idx], weight=class_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    with torch.no_grad():
        folded = weight / scale
        return folded.clone(), (bias - folded @ mean).clone()


# -- the method base -----------------------------------------------------------------------------
class ContrastiveProbeMethod(MemclipMethod):
    """A contrastive memclip baseline: the image tower and projection heads trained with a
    contrastive loss on two augmented views, a frozen copy of the task's starting image tower and
    projector for the distillation of tasks t >= 1, and a linear probe on the image tower's
    features fitted after each task, which classifies at test time.

    Subclasses give ``head_specs`` (the heads a task needs), ``probe_rows``, ``loss`` and the
    probe's schedule (``probe_milestones``, ``probe_gamma``, ``probe_balanced``); options
    ``probe_epochs``, ``probe_lr``, ``probe_batch_size`` and ``min_scale`` are read here. The heads
    and the probe are kept in ``state_dict`` as tensors and rebuilt at the next ``before_step``."""

    uses_text = False
    probe_milestones: tuple[float, ...] = ()
    probe_gamma: float = 0.1
    probe_balanced: bool = False

    def __init__(self, **options):
        super().__init__(**options)
        self._heads: dict = {}           # name -> nn.Module on the device
        self._specs: dict = {}           # name -> [in, hidden, out, batch_norm]
        self._probe: dict | None = None  # {"weight": (C, D), "bias": (C,)} CPU tensors
        self._pending: dict | None = None
        self._frozen = None              # (image tower, projector) the task started from; t >= 1

    # -- what a subclass says --------------------------------------------------------------------
    def head_specs(self, ctx: TaskContext) -> dict:
        """``{name: (in_dim, hidden_dim, out_dim, batch_norm)}`` of the heads task ``ctx.t``
        trains (a "projector" always)."""
        raise NotImplementedError

    def probe_rows(self, ctx: TaskContext) -> list[int]:
        """The train rows the linear probe is fitted on after task ``ctx.t``."""
        raise NotImplementedError

    # -- hooks -----------------------------------------------------------------------------------
    def before_step(self, ctx: TaskContext) -> None:
        """Rebuild the heads a resumed chain saved (without touching the global RNG), create
        the ones this task adds (from the global RNG), and freeze a copy of the starting image
        tower and projector for t >= 1."""
        import torch

        pending, self._pending = self._pending or {}, None
        if "probe" in pending:
            self._probe = pending["probe"]
        for name, saved in pending.get("heads", {}).items():
            with torch.random.fork_rng(devices=[]):
                module = projection_mlp(*saved["spec"])
            module.load_state_dict(saved["weights"])
            self._heads[name], self._specs[name] = module.to(ctx.device), list(saved["spec"])
        for name, spec in self.head_specs(ctx).items():
            if name not in self._heads:
                self._heads[name], self._specs[name] = projection_mlp(*spec).to(ctx.device), list(spec)
        for module in self._heads.values():
            module.train()
        self._frozen = None
        if ctx.t >= 1:
            self._frozen = (frozen_copy(ctx.model.visual), frozen_copy(self._heads["projector"]))

    def trainable_parameters(self, ctx: TaskContext) -> list:
        """The image tower's parameters and the heads' (never the text tower)."""
        params = [p for p in ctx.model.visual.parameters() if p.requires_grad]
        return params + [p for module in self._heads.values() for p in module.parameters()]

    def after_step(self, ctx: TaskContext) -> None:
        """Fit the linear probe over ``ctx.seen_classes`` on the frozen image tower's features of
        ``probe_rows`` (computed once), and drop the frozen previous model."""
        from ticlip_core.engine.seeds import derived_seed

        self._frozen = None
        rows = sorted(set(int(r) for r in self.probe_rows(ctx)))
        features, labels = encoder_features(ctx, rows)
        targets = local_targets(labels, labels.new_tensor(ctx.seen_classes))
        o = self.options
        weight, bias = train_linear_probe(
            features, targets, len(ctx.seen_classes), epochs=int(o["probe_epochs"]), lr=float(o["probe_lr"]),
            batch_size=int(o["probe_batch_size"]), seed=derived_seed(ctx.data.seed, self.name, "probe"),
            milestones=self.probe_milestones, gamma=self.probe_gamma, balanced=self.probe_balanced)
        self._probe = {"weight": weight, "bias": bias}

    def scorer(self, ctx: TaskContext):
        """The linear probe on ``ctx.model.visual(x)``: scores over ``ctx.seen_classes``."""
        if self._probe is None:
            raise RuntimeError(f"{self.name}: no linear probe after task {ctx.t} (after_step did not run)")
        weight, bias = self._probe["weight"], self._probe["bias"]
        if weight.shape[0] != len(ctx.seen_classes):
            raise RuntimeError(f"{self.name}: the probe scores {weight.shape[0]} classes, not the "
                               f"{len(ctx.seen_classes)} seen after task {ctx.t}")
        model = ctx.model

        def score(x):
            return model.visual(x).float() @ weight.to(x.device).T + bias.to(x.device)

        return score

    def state_dict(self) -> dict:
        """The heads (their shapes and weights) and the probe, as CPU tensors and plain values."""
        if not self._heads:
            return dict(self._pending or {})
        from ticlip_core.memclip.expansion import module_state

        out = {"heads": {name: {"spec": list(self._specs[name]), "weights": module_state(module)}
                         for name, module in self._heads.items()}}
        if self._probe is not None:
            out["probe"] = {k: v.detach().cpu().clone() for k, v in self._probe.items()}
        return out

    def load_state_dict(self, state: dict) -> None:
        """Keep ``state`` until ``before_step`` rebuilds the heads (a resumed chain), or load it
        into the live heads (a task resumed mid-way, after ``before_step``)."""
        if not state:
            return
        if not self._heads:
            self._pending = dict(state)
            return
        for name, saved in state.get("heads", {}).items():
            self._heads[name].load_state_dict(saved["weights"])
        if "probe" in state:
            self._probe = dict(state["probe"])

    # -- helpers for the subclasses' losses ------------------------------------------------------
    def views(self, batch: TaskBatch):
        """The batch's two augmented views ``(2B, ...)`` and their labels ``(2B,)``."""
        return two_views(batch.images, float(self.options["min_scale"])), batch.labels.repeat(2)

    def frozen_projections(self, x):
        """The frozen previous image tower and projector on ``x`` (no gradient)."""
        import torch

        visual, projector = self._frozen
        with torch.no_grad():
            return projector(visual(x))

    def count_macs(self, ctx: TaskContext, batch_size: int, heads: list[str]) -> None:
        """Add to ``ctx.extra_macs`` what a batch of ``batch_size`` images costs beyond the one
        image-tower pass the runner counts: the second view through the tower and both views
        through ``heads`` (forward and backward), and both views through the frozen tower and
        projector when distilling."""
        from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER

        head = sum(linear_macs(self._heads[name]) for name in heads)
        extra = TRAIN_FORWARD_MULTIPLIER * (batch_size * ctx.image_macs + 2 * batch_size * head)
        if self._frozen is not None:
            extra += 2 * batch_size * (ctx.image_macs + linear_macs(self._frozen[1]))
        ctx.extra_macs += extra
