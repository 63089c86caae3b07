from ticlip_core.memclip.expansion import (ExpandingHeadMethod, concat_features, expand_linear, feature_dim,
                                           frozen_from_state, linear_from_state, linear_state, load_linear_,
                                           module_device, module_state, new_linear, weight_align_)
from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext, frozen_copy, local_targets


def aux_targets(targets, num_old: int):
    """DER's auxiliary-loss targets (Yan et al. 2021, Sec. 3; PyCIL's ``aux_targets``): 0 for every old
    class (local index ``< num_old``), ``1 + (index - num_old)`` for the new classes, so the
    auxiliary head's ``num_new + 1`` outputs are [old, new_1, ..., new_n]."""
    import torch

    return torch.where(targets >= num_old, targets - num_old + 1, torch.zeros_like(targets))


@register
class DER(ExpandingHeadMethod):
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
    defaults = {"aux_weight": 1.0, "weight_align": True, "head_lr": 0.01}

    def _reset(self) -> None:
        super()._reset()
        self._frozen: list = []         # old extractors, oldest first (frozen)
        self._aux = None                # new extractor's d features -> n_new + 1

    # -- the modules --------------------------------------------------------------------------
    @property
    def extractors(self) -> list:
        """The frozen old extractors, oldest first (the trained one is ``ctx.model.visual``)."""
        return list(self._frozen)

    @property
    def aux_head(self):
        """The auxiliary head (new extractor's features -> old + new classes; None at t = 0)."""
        return self._aux

    def _grow(self, ctx: TaskContext, num_old: int, num_new: int) -> None:
        """Freeze the previous extractor (t >= 1), grow the head onto ``(t + 1) * d`` features and
        every class seen so far and make a fresh auxiliary head (PyCIL's ``DERNet.update_fc``)."""
        visual = ctx.model.visual
        device, d = module_device(visual), feature_dim(visual)
        if self._head is not None:
            self._frozen.append(frozen_copy(visual))
        self._head = expand_linear(self._head, d * (len(self._frozen) + 1), len(ctx.seen_classes), device)
        self._aux = new_linear(d, num_new + 1, device) if self._frozen else None

    def _extra_heads(self) -> list:
        """The auxiliary head (trained beside the main head)."""
        return [self._aux]

    def _frozen_extractors(self) -> list:
        """The old extractors, oldest first."""
        return list(self._frozen)

    def _modules_state(self) -> dict:
        """The old extractors' state dicts and the auxiliary head's weights."""
        return {"frozen": [module_state(f) for f in self._frozen], "aux_head": linear_state(self._aux)}

    def _restore_modules(self, visual, state: dict, device) -> None:
        """The old extractors (copies of ``visual`` with the saved weights) and the auxiliary head."""
        self._frozen = [frozen_from_state(visual, s) for s in state["frozen"]]
        self._aux = linear_from_state(state.get("aux_head"), device)

    def _modules_match(self, state: dict) -> bool:
        """As many saved old extractors as built ones."""
        return len(state["frozen"]) == len(self._frozen)

    def _load_modules_(self, state: dict) -> None:
        """The old extractors' weights and the auxiliary head's, in place."""
        for module, saved in zip(self._frozen, state["frozen"]):
            module.load_state_dict(saved)
        if self._aux is not None and state.get("aux_head") is not None:
            load_linear_(self._aux, state["aux_head"])

    # -- hooks --------------------------------------------------------------------------------
    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """CE of the head over the concatenated features plus ``aux_weight`` x CE of the
        auxiliary head on the new extractor's features (old classes as one class)."""
        import torch.nn.functional as F

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
        if self.options["weight_align"] and self._frozen:
            weight_align_(self._head, self.num_old, self._task_sizes[-1])
        self._aux = None
        self._done = True
