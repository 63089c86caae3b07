"""What the memclip baselines with expanding image encoders (DER, FOSTER) share: frozen copies
of the image tower whose features are concatenated with the trained one's, linear heads over
the classes seen so far that grow when classes arrive (old weights kept, as PyCIL's
``update_fc``/``generate_fc``), the plain-value state these travel in between tasks, and the
base class ``ExpandingHeadMethod`` that keeps their bookkeeping (classes per task, the pending
state of a resumed chain, the head and its scorer).

Heads sit on ``visual(x)``, the image tower's projected (unnormalised) embedding. A module is
rebuilt from saved tensors without drawing from the global RNG (``linear_from_state``), so a
chain resumed from the chain store draws exactly what an uninterrupted one draws. The method
files subclass ``ExpandingHeadMethod`` at module level and the registry reads them without
torch, so torch is imported inside the functions here, never at module level.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ticlip_core.memclip.methods.base import MemclipMethod, TaskContext, head_groups

if TYPE_CHECKING:
    import torch
    from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without any)."""
    import torch

    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def feature_dim(visual: nn.Module, image_size: int | tuple | None = None) -> int:
    """The width of ``visual(x)``: its ``output_dim`` (open_clip's image towers), else found from
    one forward of a zero image of ``image_size`` (default: the tower's ``image_size``)."""
    import torch

    dim = getattr(visual, "output_dim", None)
    if dim is not None:
        return int(dim)
    size = image_size or getattr(visual, "image_size", None)
    if size is None:
        raise ValueError("feature_dim: the extractor has no output_dim and no image_size to probe it with")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    was = visual.training
    visual.eval()
    with torch.no_grad():
        out = visual(torch.zeros(1, 3, h, w, device=module_device(visual)))
    visual.train(was)
    return int(out.shape[-1])


def new_linear(in_dim: int, out_dim: int, device=None) -> nn.Linear:
    """A linear head initialised as PyCIL's ``SimpleLinear``: Kaiming-uniform weights with the
    linear gain (U(-sqrt(3/in), sqrt(3/in))) and zero bias (draws from the global RNG)."""
    import torch
    from torch import nn

    layer = nn.Linear(in_dim, out_dim, device=device)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="linear")
        layer.bias.zero_()
    return layer


def expand_linear(old: nn.Linear | None, in_dim: int, out_dim: int, device=None) -> nn.Linear:
    """A new head ``in_dim -> out_dim`` (``new_linear``) whose top-left block holds ``old``'s
    weights and whose first biases are ``old``'s (PyCIL's ``DERNet``/``FOSTERNet.update_fc``:
    old classes keep their weights on the old extractors' features, which come first; their
    weights on the new extractor's features and every weight of the new classes are fresh)."""
    import torch

    layer = new_linear(in_dim, out_dim, device)
    if old is not None:
        n, m = old.weight.shape
        if n > out_dim or m > in_dim:
            raise ValueError(f"expand_linear: a {n}x{m} head does not fit in a {out_dim}x{in_dim} one")
        with torch.no_grad():
            layer.weight[:n, :m] = old.weight.detach().to(layer.weight)
            layer.bias[:n] = old.bias.detach().to(layer.bias)
    return layer


def linear_state(layer: nn.Linear | None) -> dict | None:
    """``{"weight", "bias"}`` of ``layer`` as CPU tensors (None for no layer)."""
    if layer is None:
        return None
    return {"weight": layer.weight.detach().cpu().clone(), "bias": layer.bias.detach().cpu().clone()}


def linear_from_state(state: dict | None, device=None, *, trainable: bool = True) -> nn.Linear | None:
    """The head ``linear_state`` saved, rebuilt without drawing from the global RNG (the saved
    tensors replace uninitialised storage); frozen when not ``trainable``."""
    import torch
    from torch import nn

    if state is None:
        return None
    out_dim, in_dim = state["weight"].shape
    layer = torch.nn.utils.skip_init(nn.Linear, in_dim, out_dim, device=device)
    with torch.no_grad():
        layer.weight.copy_(state["weight"])
        layer.bias.copy_(state["bias"])
    layer.requires_grad_(trainable)
    return layer


def load_linear_(layer: nn.Linear, state: dict) -> None:
    """Copy ``state`` (``linear_state``) into ``layer`` in place (an optimiser holding its
    parameters keeps them)."""
    import torch

    with torch.no_grad():
        layer.weight.copy_(state["weight"])
        layer.bias.copy_(state["bias"])


def module_state(module: nn.Module) -> dict:
    """``module``'s state dict as CPU tensor copies (plain values for the chain store)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def frozen_from_state(template: nn.Module, state: dict) -> nn.Module:
    """A frozen extractor (eval mode, no gradients) built from a deep copy of ``template``
    (the model's image tower) holding the weights ``state``."""
    out = copy.deepcopy(template)
    out.load_state_dict(state)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def concat_features(frozen: list[nn.Module], trained: nn.Module | None, x) -> tuple:
    """``(features, trained_features)``: the embeddings of ``x`` through every ``frozen``
    extractor (in order, without gradients) and then ``trained`` (with them), concatenated
    along the feature axis (PyCIL's ``DERNet.forward``); ``trained_features`` is the last block
    (None without ``trained``)."""
    import torch

    parts = []
    if frozen:
        with torch.no_grad():
            parts = [f(x) for f in frozen]
    last = trained(x) if trained is not None else None
    if last is not None:
        parts.append(last)
    return torch.cat(parts, dim=1), last


def weight_align_(head: nn.Linear, num_old: int, num_new: int, value: float = 1.0) -> float:
    """Weight aligning (WA, Zhao et al. CVPR 2020, as PyCIL's ``weight_align``): scale the new
    classes' weight rows (the last ``num_new``) by ``gamma = mean ||w_old|| / mean ||w_new|| *
    value ** (num_old / num_new)``; returns gamma (1.0 and nothing changed without old or new
    classes)."""
    import torch

    if num_old <= 0 or num_new <= 0:
        return 1.0
    with torch.no_grad():
        w = head.weight
        norms = w.norm(p=2, dim=1)
        gamma = (norms[:-num_new].mean() / norms[-num_new:].mean()) * value ** (num_old / num_new)
        w[-num_new:] *= gamma
    return float(gamma)


def class_counts(labels, rows, classes: list[int]) -> list[int]:
    """How many of ``rows`` (train-table rows) have each class id of ``classes``, in that order."""
    import numpy as np

    labels = np.asarray(labels)[np.asarray(list(rows), dtype=np.int64)]
    return [int((labels == c).sum()) for c in classes]


def train_rows(ctx) -> list[int]:
    """The rows task ``ctx.t`` trains on by default: its own plus the shared plan's memory
    (``MemclipMethod.training_rows`` for a method with memory), sorted."""
    return sorted(set(int(r) for r in ctx.data.task_rows) | set(int(r) for r in ctx.data.memory_rows))


class ExpandingHeadMethod(MemclipMethod):
    """What DER and FOSTER keep alike: a linear head over every class seen so far on the
    features of frozen copies of the image tower and of the trained tower, concatenated
    (``concat_features``), and the bookkeeping that carries it across tasks.

    The bookkeeping: the classes each task added (``_task_sizes``; ``num_old`` counts those
    before the task the modules are built for), that task (``_task``) and whether its
    ``after_step`` ran (``_done``). ``before_step`` refuses a task without new classes, grows the
    modules (``_grow``) and records the task; called again inside a task the train loop resumed,
    it leaves the modules as they are. ``load_state_dict`` with no model at hand (a chain resumed
    from the chain store) keeps the state pending until the next ``before_step`` or ``scorer``
    rebuilds the modules from it (``_restore``, without drawing from the global RNG); a state of
    the task being trained (the loop's mid-task resume) is copied into the built modules in place,
    so the optimiser holding their parameters keeps them. The image tower trains at the task's LR
    and the heads at the option ``head_lr``. Test time: the head's scores over the concatenated
    features.

    A subclass says which modules it adds and how they travel: ``_reset`` (extend, calling
    this one), ``_grow``, ``_extra_heads``, ``_frozen_extractors``, ``_modules_state``,
    ``_restore_modules``, ``_modules_match``, ``_load_modules_`` and, if it must act once its
    modules are this task's, ``_modules_ready``.
    """

    uses_text = False

    def __init__(self, **options):
        super().__init__(**options)
        self._reset()
        self._pending: dict | None = None

    def _reset(self) -> None:
        """Forget every module and the task bookkeeping (a subclass resets its own modules too)."""
        self._head = None               # the features of every extractor -> every class seen so far
        self._task_sizes: list[int] = []
        self._task: int | None = None   # the task the modules are built for
        self._done = True               # whether that task's after_step ran

    # -- what a subclass says --------------------------------------------------------------------
    def _grow(self, ctx: TaskContext, num_old: int, num_new: int) -> None:
        """Build task ``ctx.t``'s modules (the head over every seen class among them) when
        ``num_old`` classes came before it and it adds ``num_new``."""
        raise NotImplementedError

    def _extra_heads(self) -> list:
        """The trained heads besides ``head`` (None entries are skipped)."""
        return []

    def _frozen_extractors(self) -> list:
        """The frozen extractors whose features come before the trained tower's, in order."""
        return []

    def _modules_state(self) -> dict:
        """The subclass's modules as plain values (``module_state``, ``linear_state``, CPU tensors)."""
        return {}

    def _restore_modules(self, visual, state: dict, device) -> None:
        """Rebuild the subclass's modules from ``state`` (``_modules_state``'s) on ``device``;
        ``visual`` is the model's image tower (the template of a frozen extractor)."""

    def _modules_match(self, state: dict) -> bool:
        """Whether ``state`` holds the same modules as the built ones (so it can be copied in place)."""
        return True

    def _load_modules_(self, state: dict) -> None:
        """Copy the subclass's modules of ``state`` into the built ones in place."""

    def _modules_ready(self) -> None:
        """Called once the modules are this task's, grown or restored (nothing here)."""

    # -- the modules -------------------------------------------------------------------------------
    @property
    def head(self):
        """The linear head over the concatenated features and every class seen so far."""
        return self._head

    @property
    def num_old(self) -> int:
        """Classes seen before the task the modules are built for."""
        return sum(self._task_sizes[:-1])

    def _restore(self, ctx: TaskContext, state: dict) -> None:
        visual = ctx.model.visual
        device = module_device(visual)
        self._head = linear_from_state(state["head"], device)
        self._task_sizes = [int(n) for n in state["task_sizes"]]
        self._task, self._done = int(state["task"]), bool(state["done"])
        self._restore_modules(visual, state, device)
        self._modules_ready()

    def _ensure_built(self, ctx: TaskContext) -> None:
        if self._pending is not None:
            self._restore(ctx, self._pending)
            self._pending = None

    # -- hooks -----------------------------------------------------------------------------------
    def before_step(self, ctx: TaskContext) -> None:
        """Rebuild a pending state's modules, then grow them for task ``ctx.t`` (``_grow``) unless
        they are this task's already (a task resumed mid-way)."""
        self._ensure_built(ctx)
        if self._task == ctx.t and not self._done:
            return  # resumed inside this task: the modules are this task's already
        num_old = sum(self._task_sizes)
        num_new = len(ctx.seen_classes) - num_old
        if num_new <= 0:
            raise ValueError(f"{self.name}, task {ctx.t}: no new classes ({len(ctx.seen_classes)} seen, "
                             f"{num_old} before)")
        self._grow(ctx, num_old, num_new)
        self._task_sizes.append(num_new)
        self._task, self._done = ctx.t, False
        self._modules_ready()

    def trainable_parameters(self, ctx: TaskContext) -> list:
        """The image tower's parameters (the new extractor) at the task's LR, the head's and the
        other trained heads' (``_extra_heads``) at ``head_lr``."""
        heads = [p for module in [self._head, *self._extra_heads()] if module is not None
                 for p in module.parameters()]
        return head_groups([p for p in ctx.model.visual.parameters() if p.requires_grad], heads,
                           self.options["head_lr"])

    def scorer(self, ctx: TaskContext):
        """The head's scores over ``ctx.seen_classes`` on the frozen extractors' features and the
        image tower's, concatenated."""
        self._ensure_built(ctx)
        frozen, head, visual = self._frozen_extractors(), self._head, ctx.model.visual

        def score(x):
            return head(concat_features(frozen, visual, x)[0])

        return score

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The task the modules are for, whether it finished, the classes per task, the head's
        weights and the subclass's modules (CPU tensors and plain values); a pending state as it
        was loaded."""
        if self._head is None:
            return dict(self._pending or {})
        return {"task": self._task, "done": self._done, "task_sizes": list(self._task_sizes),
                "head": linear_state(self._head), **self._modules_state()}

    def load_state_dict(self, state: dict) -> None:
        """Keep ``state`` until the next ``before_step`` rebuilds the modules; a state of the task
        being trained (the loop's mid-task resume) is copied into the built modules in place."""
        if not state:
            return
        same_task = (self._head is not None and not self._done and not state["done"]
                     and int(state["task"]) == self._task and self._modules_match(state))
        if same_task:
            load_linear_(self._head, state["head"])
            self._load_modules_(state)
            return
        self._reset()
        self._pending = dict(state)
