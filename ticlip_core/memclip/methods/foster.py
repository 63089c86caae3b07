from ticlip_core.memclip.expansion import (ExpandingHeadMethod, class_counts, expand_linear, feature_dim,
                                           frozen_from_state, linear_from_state, linear_state, load_linear_,
                                           module_device, module_state, new_linear, train_rows, weight_align_)
from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext, frozen_copy, head_groups, local_targets


def effective_number_weights(counts, beta: float):
    """Per-class weights from the effective number of samples (Cui et al. CVPR 2019, as FOSTER's
    logit adjustment and PyCIL's ``per_cls_weights``): ``w_c = (1 - beta) / (1 - beta ** n_c)``,
    rescaled to sum to the number of classes; a float tensor over ``counts``' classes. A class
    without samples counts as one (the formula divides by zero there)."""
    import torch

    n = torch.tensor([max(int(c), 1) for c in counts], dtype=torch.float64)
    w = (1.0 - beta) / (1.0 - beta ** n)
    return (w / w.sum() * len(n)).float()


def bkd_loss(pred, soft, T: float, weights):
    """Balanced KD (FOSTER's compression stage, PyCIL's ``BKD``): ``losses.kd_loss`` with the teacher's tempered
    probabilities multiplied by the per-class ``weights`` and renormalised per sample."""
    import torch

    target = torch.softmax(soft / T, dim=1) * weights.to(soft)
    target = target / target.sum(1, keepdim=True)
    return -(target * torch.log_softmax(pred / T, dim=1)).sum() / pred.shape[0]


@register
class FOSTER(ExpandingHeadMethod):
    """FOSTER (Wang et al., ECCV 2022, "Feature Boosting and Compression"), after PyCIL's
    ``models/foster.py``, ``FOSTERNet`` and ``exps/foster.json``, on the CLIP image tower, task's
    data plus the memory.

    t = 0: one extractor (``ctx.model.visual``) and a linear head over its features, plain CE.
    Boosting (t >= 1): the extractor at the start of the task is frozen (the old one); the
    model's tower keeps its weights and trains beside it as the new one. A head over every
    class seen so far sits on [old, new] features (grown from the old head, whose weights stay
    in the top-left block; PyCIL's ``update_fc``), a head on the new features alone
    (``fe_fc``), and the old head on the old features gives the old model's logits. Loss:
    CE(logits / per-class weights from the effective number with ``beta1``, the
    logit adjustment) + ``lambda_fe`` x CE(new-features head) + ``lambda_okd`` x KD(head's
    old-class logits, old logits, ``T``). Compression (in ``after_step``): the boosted teacher
    (both extractors + head) is distilled into a student, one extractor initialised from the
    old extractor with a head whose old classes start from the old head (PyCIL's
    ``_feature_compression``: ``convnets[0]`` and ``copy_fc(oldfc)``), by balanced KD (per-class
    weights with ``beta2``) for ``compression_epochs`` over the task's rows + memory; the student
    is then the single model (its weights in ``ctx.model.visual``, its head kept).

    Simplified: the study's optimiser (AdamW, constant LR: the task's ``lr`` unless
    ``compression_lr``; no weight decay in compression as in PyCIL) instead of SGD with a
    cosine schedule; the class counts are those of the rows the task trains on (PyCIL: memory
    per class for old classes, the dataset's count for new ones); the teacher's logits are
    computed once per row before compression (the images are not augmented here, so they are
    the same every epoch). Only the image tower and the heads train; the text tower is unused.

    Options (PyCIL ``exps/foster.json`` unless said): ``beta1`` 0.96, ``beta2`` 0.97, ``T`` 2,
    ``lambda_okd`` 1, ``lambda_fe`` 1 (PyCIL adds ``loss_fe`` unweighted), ``oofc`` "ft" ("az":
    the new classes' weights on the old features start at zero and stay there), ``is_teacher_wa``
    / ``is_student_wa`` False, ``wa_value`` 1, ``compression_epochs`` 2 (PyCIL: 130 against 170
    boosting epochs; here a task trains 2 epochs, and 2 compression epochs over cached teacher
    logits keep FOSTER near 2.7x fine-tuning's MACs), ``compression_lr`` None (the task's LR, as
    PyCIL's ``lr``); ``head_lr`` 0.01, this project's: the heads' LR in both stages (they start
    from scratch; at the encoder's fine-tuning LR they barely move in a task's few iterations).
    """

    name = "foster"
    scenarios = ("class",)
    uses_memory = True
    defaults = {"beta1": 0.96, "beta2": 0.97, "T": 2.0, "lambda_okd": 1.0, "lambda_fe": 1.0, "oofc": "ft",
                "is_teacher_wa": False, "is_student_wa": False, "wa_value": 1.0, "compression_epochs": 2,
                "compression_lr": None, "head_lr": 0.01}

    def __init__(self, **options):
        super().__init__(**options)
        if self.options["oofc"] not in ("ft", "az"):
            raise ValueError(f"foster: oofc must be 'ft' or 'az', not {self.options['oofc']!r}")
        if int(self.options["compression_epochs"]) < 1:
            raise ValueError("foster: compression_epochs must be at least 1 (the student is the next task's model)")
        self._lr = None

    def _reset(self) -> None:
        # the head: d -> seen at t = 0 and after compression; 2d -> seen while boosting
        super()._reset()
        self._old = None                # the frozen old extractor (boosting only)
        self._old_head = None           # the frozen old head, d -> old classes (boosting only)
        self._fe_head = None            # new features -> seen classes (boosting only)
        self._per_cls = None            # beta1 weights (boosting only)

    # -- the modules --------------------------------------------------------------------------
    @property
    def old_extractor(self):
        """The frozen old extractor while boosting (None otherwise)."""
        return self._old

    @property
    def old_head(self):
        """The frozen old head on the old extractor's features while boosting (None otherwise)."""
        return self._old_head

    @property
    def fe_head(self):
        """The head on the new extractor's features alone while boosting (None otherwise)."""
        return self._fe_head

    @property
    def per_class_weights(self):
        """The logit-adjustment weights (``beta1``) of the classes seen so far while boosting."""
        return self._per_cls

    def _grow(self, ctx: TaskContext, num_old: int, num_new: int) -> None:
        """t = 0: a head on the extractor. t >= 1 (boosting): freeze the extractor and head as
        the old ones, grow the head onto [old, new] features, make the new-features head and the
        ``beta1`` per-class weights of the task's training rows."""
        import torch

        visual = ctx.model.visual
        device, d = module_device(visual), feature_dim(visual)
        seen = len(ctx.seen_classes)
        if self._head is None:
            self._head = new_linear(d, seen, device)
        else:
            self._old = frozen_copy(visual)
            self._old_head = frozen_copy(self._head)
            self._head = expand_linear(self._old_head, 2 * d, seen, device)
            if self.options["oofc"] == "az":
                with torch.no_grad():
                    self._head.weight[num_old:, :d] = 0
            self._fe_head = new_linear(d, seen, device)
            counts = class_counts(ctx.data.labels, train_rows(ctx), ctx.seen_classes)
            self._per_cls = effective_number_weights(counts, self.options["beta1"]).to(device)

    def _extra_heads(self) -> list:
        """The new-features head (while boosting)."""
        return [self._fe_head]

    def _frozen_extractors(self) -> list:
        """The old extractor while boosting, else none."""
        return [self._old] if self._old is not None else []

    def _modules_state(self) -> dict:
        """The old extractor's state dict, the old and new-features heads' weights (while
        boosting) and the logit-adjustment weights."""
        return {"old": module_state(self._old) if self._old is not None else None,
                "old_head": linear_state(self._old_head), "fe_head": linear_state(self._fe_head),
                "per_cls_weights": self._per_cls.detach().cpu().clone() if self._per_cls is not None else None}

    def _restore_modules(self, visual, state: dict, device) -> None:
        """The old extractor (a copy of ``visual`` with the saved weights), the frozen old head,
        the new-features head and the logit-adjustment weights, where saved."""
        self._old = frozen_from_state(visual, state["old"]) if state.get("old") is not None else None
        self._old_head = linear_from_state(state.get("old_head"), device, trainable=False)
        self._fe_head = linear_from_state(state.get("fe_head"), device)
        per_cls = state.get("per_cls_weights")
        self._per_cls = per_cls.to(device) if per_cls is not None else None

    def _modules_match(self, state: dict) -> bool:
        """Both boosting (an old extractor saved and built) or neither."""
        return (state.get("old") is None) == (self._old is None)

    def _load_modules_(self, state: dict) -> None:
        """While boosting: the old extractor's weights and the old and new-features heads', in place."""
        if self._old is not None:
            self._old.load_state_dict(state["old"])
            load_linear_(self._old_head, state["old_head"])
            load_linear_(self._fe_head, state["fe_head"])

    def _modules_ready(self) -> None:
        """oofc "az": keep the new classes' weights on the old features at zero (their gradient
        is masked; PyCIL zeroes ``p.grad`` there before each step)."""
        if self.options["oofc"] != "az" or self._old is None or self._done:
            return
        d = self._old_head.weight.shape[1]
        num_old = self.num_old

        def mask(grad):
            grad = grad.clone()
            grad[num_old:, :d] = 0
            return grad

        self._head.weight.register_hook(mask)

    # -- hooks --------------------------------------------------------------------------------
    def learning_rate(self, lr: float) -> float:
        """The task's LR, unchanged (kept as the compression's LR unless ``compression_lr``)."""
        self._lr = lr
        return lr

    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """t = 0: CE over the head. Boosting: logit-adjusted CE + ``lambda_fe`` x CE of the
        new-features head + ``lambda_okd`` x KD from the old model's logits on the old classes
        (PyCIL's ``_feature_boosting``)."""
        import torch
        import torch.nn.functional as F

        from ticlip_core.losses import kd_loss

        x, visual = batch.images, ctx.model.visual
        targets = local_targets(batch.labels, batch.seen)
        if self._old is None:
            return F.cross_entropy(self._head(visual(x)), targets)
        with torch.no_grad():
            old_features = self._old(x)
            old_logits = self._old_head(old_features)
        ctx.extra_macs += len(x) * ctx.image_macs
        new_features = visual(x)
        logits = self._head(torch.cat([old_features, new_features], dim=1))
        loss_clf = F.cross_entropy(logits / self._per_cls, targets)
        loss_fe = F.cross_entropy(self._fe_head(new_features), targets)
        loss_kd = kd_loss(logits[:, :self.num_old], old_logits, self.options["T"])
        return loss_clf + self.options["lambda_fe"] * loss_fe + self.options["lambda_okd"] * loss_kd

    def after_step(self, ctx: TaskContext) -> None:
        """t >= 1: weight-align the teacher (``is_teacher_wa``), then compress it into the
        student (``compress``); the student is the next task's single extractor and head."""
        if self._old is not None:
            if self.options["is_teacher_wa"]:
                weight_align_(self._head, self.num_old, self._task_sizes[-1], self.options["wa_value"])
            self.compress(ctx)
        self._done = True

    def compress(self, ctx: TaskContext) -> None:
        """Feature compression (FOSTER Sec. 3.3, PyCIL's ``_feature_compression``): the teacher's
        logits on every training row (task + memory; one pass, no gradients), then
        ``ctx.model.visual`` takes the old extractor's weights and trains, with a head over the
        seen classes whose old rows start as the old head's, on balanced KD (``beta2`` weights,
        ``T``) for ``compression_epochs`` epochs; they replace the boosted pair and head."""
        import torch

        from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER
        from ticlip_core.engine.seeds import derived_seed
        from ticlip_core.engine.speed import adamw

        visual = ctx.model.visual
        device = module_device(visual)
        rows = train_rows(ctx)
        position = {r: i for i, r in enumerate(rows)}
        was_training = visual.training
        visual.eval()
        teacher = torch.zeros(len(rows), self._head.out_features, device=device)
        with torch.no_grad():
            for batch_rows, x, _ in ctx.data.batches(rows, epochs=1, shuffle=False):
                features = torch.cat([self._old(x), visual(x)], dim=1)
                teacher[[position[r] for r in batch_rows]] = self._head(features).float()
        ctx.extra_macs += 2 * len(rows) * ctx.image_macs

        counts = class_counts(ctx.data.labels, rows, ctx.seen_classes)
        weights = effective_number_weights(counts, self.options["beta2"]).to(device)
        d = self._old_head.in_features
        student_head = expand_linear(self._old_head, d, self._head.out_features, device)
        visual.load_state_dict(self._old.state_dict())
        visual.train()
        lr = self.options["compression_lr"] if self.options["compression_lr"] is not None else self._lr
        if lr is None:
            raise ValueError("foster: no learning rate for compression (set compression_lr, or train the task "
                             "through train_task)")
        params = head_groups([p for p in visual.parameters() if p.requires_grad], student_head.parameters(),
                             self.options["head_lr"])
        optimizer = adamw(params, lr, 0.0)
        seed = derived_seed(ctx.data.seed, "foster", "compression")
        for batch_rows, x, _ in ctx.data.batches(rows, epochs=int(self.options["compression_epochs"]), seed=seed):
            soft = teacher[[position[r] for r in batch_rows]]
            loss = bkd_loss(student_head(visual(x)), soft, self.options["T"], weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ctx.extra_macs += TRAIN_FORWARD_MULTIPLIER * len(batch_rows) * ctx.image_macs
        visual.train(was_training)
        if self.options["is_student_wa"]:
            weight_align_(student_head, self.num_old, self._task_sizes[-1], self.options["wa_value"])
        self._head = student_head
        self._old = self._old_head = self._fe_head = self._per_cls = None
