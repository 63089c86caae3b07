from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import (MemclipMethod, TaskBatch, TaskContext, frozen_copy, head_groups,
                                              local_targets)


def aux_targets(targets, num_old: int):
    """DER's auxiliary-loss targets (Yan et al. 2021, Sec. 3; PyCIL's ``aux_targets``): 0 for every old
    class (local index ``< num_old``), ``1 + (index - num_old)`` for the new classes, so the
    auxiliary head's ``num_new + 1`` outputs are [old, new_1, ..., new_n]."""
    import torch

    return torch.where(targets >= num_old, targets - num_old + 1, torch.zeros_like(targets))


@register
class DER(MemclipMethod):
    """DER (Yan et al., CVPR 2021, "Dynamically Expandable Representation"), after PyCIL's
    ``models/der.py`` and ``DERNet``, on the CLIP image tower, task's data plus the memory.

    At task t >= 1 a frozen copy of the image tower (the previous task's extractor) joins the
    frozen ones; the model's own tower ``ctx.model.visual`` keeps the previous weights and is
    the new, trained extractor (PyCIL: the new convnet loads the last one's state). The
    features ``visual(x)`` of every extractor, oldest first, are concatenated (``t+1`` times
    d); a linear head over every class seen so far sits on them, grown from the previous one
    (old classes keep their weights on the old features; PyCIL's ``update_fc``), and an
    auxiliary head on the new extractor's features alone has ``n_new + 1`` outputs, every old
    class mapped to output 0 (``aux_targets``). Loss: CE(head) +
    ``aux_weight`` x CE(aux). At t = 0: one extractor, CE over the head. After a task with old
    classes, the new classes' head rows are weight-aligned (PyCIL calls ``weight_align`` after
    every incremental task). Test time: the head's scores over the classes seen so far.

    Simplified: DER's channel-level masks and the pruning of the new extractor (the
    sparsity loss) are left out, as PyCIL's DER leaves them out; the optimiser and its LR are
    the study's (AdamW at ``train.lr``, constant), not PyCIL's SGD with milestones. Only the
    image tower and the heads train; the text tower is unused (``uses_text = False``).

    Options (PyCIL ``models/der.py``): ``aux_weight`` 1.0 (the loss is ``loss_clf + loss_aux``),
    ``weight_align`` True (``self._network.weight_align(...)`` after each incremental task);
    ``head_lr`` 0.01, this project's: the heads' LR (the heads start from scratch; at the
    encoder's fine-tuning LR they barely move in a task's few iterations).
    """

    name = "der"
    scenarios = ("class",)
    uses_memory = True
    uses_text = False
    defaults = {"aux_weight": 1.0, "weight_align": True, "head_lr": 0.01}

    def __init__(self, **options):
        super().__init__(**options)
        self._reset()
        self._pending: dict | None = None

    def _reset(self) -> None:
        self._frozen: list = []         # old extractors, oldest first (frozen)
        self._head = None               # over (len(frozen) + 1) * d features -> seen classes
        self._aux = None                # new extractor's d features -> n_new + 1
        self._task_sizes: list[int] = []
        self._task: int | None = None   # the task the modules are built for
        self._done = True               # whether that task's after_step ran

    # -- the modules --------------------------------------------------------------------------
    @property
    def extractors(self) -> list:
        """The frozen old extractors, oldest first (the trained one is ``ctx.model.visual``)."""
        return list(self._frozen)

    @property
    def head(self):
        """The linear head over the concatenated features and every class seen so far."""
        return self._head

    @property
    def aux_head(self):
        """The auxiliary head (new extractor's features -> old + new classes; None at t = 0)."""
        return self._aux

    @property
    def num_old(self) -> int:
        """Classes seen before the task the modules are built for."""
        return sum(self._task_sizes[:-1])

    def _restore(self, ctx: TaskContext, state: dict) -> None:
        from ticlip_core.memclip.expansion import frozen_from_state, linear_from_state, module_device

        visual = ctx.model.visual
        device = module_device(visual)
        self._frozen = [frozen_from_state(visual, s) for s in state["frozen"]]
        self._head = linear_from_state(state["head"], device)
        self._aux = linear_from_state(state.get("aux_head"), device)
        self._task_sizes = [int(n) for n in state["task_sizes"]]
        self._task, self._done = int(state["task"]), bool(state["done"])

    def _ensure_built(self, ctx: TaskContext) -> None:
        if self._pending is not None:
            self._restore(ctx, self._pending)
            self._pending = None

    # -- hooks --------------------------------------------------------------------------------
    def before_step(self, ctx: TaskContext) -> None:
        """Freeze the previous extractor (t >= 1), grow the head to every class seen so far and
        make a fresh auxiliary head (PyCIL's ``DERNet.update_fc``)."""
        from ticlip_core.memclip.expansion import expand_linear, feature_dim, module_device, new_linear

        self._ensure_built(ctx)
        if self._task == ctx.t and not self._done:
            return  # resumed inside this task: the modules are this task's already
        visual = ctx.model.visual
        device, d = module_device(visual), feature_dim(visual)
        num_old = sum(self._task_sizes)
        num_new = len(ctx.seen_classes) - num_old
        if num_new <= 0:
            raise ValueError(f"der, task {ctx.t}: no new classes ({len(ctx.seen_classes)} seen, {num_old} before)")
        if self._head is not None:
            self._frozen.append(frozen_copy(visual))
        self._head = expand_linear(self._head, d * (len(self._frozen) + 1), len(ctx.seen_classes), device)
        self._aux = new_linear(d, num_new + 1, device) if self._frozen else None
        self._task_sizes.append(num_new)
        self._task, self._done = ctx.t, False

    def trainable_parameters(self, ctx: TaskContext) -> list:
        """The image tower's parameters (the new extractor) at the task's LR and the two heads' at
        ``head_lr``."""
        heads = list(self._head.parameters()) + (list(self._aux.parameters()) if self._aux is not None else [])
        return head_groups([p for p in ctx.model.visual.parameters() if p.requires_grad], heads,
                           self.options["head_lr"])

    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """CE of the head over the concatenated features plus ``aux_weight`` x CE of the
        auxiliary head on the new extractor's features (old classes as one class)."""
        import torch.nn.functional as F

        from ticlip_core.memclip.expansion import concat_features

        x = batch.images
        features, new = concat_features(self._frozen, ctx.model.visual, x)
        ctx.extra_macs += len(x) * ctx.image_macs * len(self._frozen)
        targets = local_targets(batch.labels, batch.seen)
        loss = F.cross_entropy(self._head(features), targets)
        if self._aux is not None:
            aux = F.cross_entropy(self._aux(new), aux_targets(targets, self.num_old))
            loss = loss + self.options["aux_weight"] * aux
        return loss

    def after_step(self, ctx: TaskContext) -> None:
        """Weight-align the new classes' head rows (t >= 1, option ``weight_align``) and drop
        the auxiliary head (PyCIL builds a fresh one each task)."""
        from ticlip_core.memclip.expansion import weight_align_

        if self.options["weight_align"] and self._frozen:
            weight_align_(self._head, self.num_old, self._task_sizes[-1])
        self._aux = None
        self._done = True

    def scorer(self, ctx: TaskContext):
        """The head's scores over ``ctx.seen_classes`` on the concatenated features."""
        self._ensure_built(ctx)
        frozen, head, visual = list(self._frozen), self._head, ctx.model.visual

        def score(x):
            from ticlip_core.memclip.expansion import concat_features

            return head(concat_features(frozen, visual, x)[0])

        return score

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The old extractors' weights (state dicts), the heads' weights, the classes per task,
        the task the modules are for and whether it finished (CPU tensors and plain values)."""
        from ticlip_core.memclip.expansion import linear_state, module_state

        if self._head is None:
            return dict(self._pending or {})
        return {"task": self._task, "done": self._done, "task_sizes": list(self._task_sizes),
                "frozen": [module_state(f) for f in self._frozen], "head": linear_state(self._head),
                "aux_head": linear_state(self._aux)}

    def load_state_dict(self, state: dict) -> None:
        """Keep ``state`` until the next ``before_step`` rebuilds the modules; a state of the task
        being trained (the loop's mid-task resume) is copied into the built modules in place."""
        from ticlip_core.memclip.expansion import load_linear_

        if not state:
            return
        same_task = (self._head is not None and not self._done and not state["done"]
                     and int(state["task"]) == self._task and len(state["frozen"]) == len(self._frozen))
        if same_task:
            for module, saved in zip(self._frozen, state["frozen"]):
                module.load_state_dict(saved)
            load_linear_(self._head, state["head"])
            if self._aux is not None and state.get("aux_head") is not None:
                load_linear_(self._aux, state["aux_head"])
            return
        self._reset()
        self._pending = dict(state)
