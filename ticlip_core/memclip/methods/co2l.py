from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext
from ticlip_core.memclip.supcon import ContrastiveProbeMethod


@register
class Co2L(ContrastiveProbeMethod):
    """Co2L (Cha et al., ICCV 2021): asymmetric supervised contrastive learning plus
    instance-wise relation distillation, on the task's data plus the memory; a class-balanced
    linear probe on the image tower classifies.

    Per batch, two augmented views of each image go through the image tower and a projection MLP
    (normalised output). The loss is the asymmetric SupCon (Co2L Sec. 4.1: only samples of the
    current task's classes are anchors; memory samples are positives and negatives only) plus,
    for t >= 1, ``distill_power`` x IRD (Co2L Sec. 4.2: the cross-entropy between the previous
    model's and the current model's softmax of instance similarities within the batch, self
    excluded). The previous model is a frozen copy of the image tower and projector the task
    starts from. After each task a linear probe over the classes seen so far is fitted on the
    frozen tower's features of the memory plus the task's data, classes weighted by 1 / count
    (Co2L's class-balanced sampler, in expectation).

    Defaults and their source (chaht01/Co2L): ``temperature`` 0.5 and ``base_temperature`` 0.07
    (run.sh ``--temp 0.5``; SupConLoss's ``base_temperature``: the loss is scaled by 0.5 / 0.07);
    ``current_temp`` 0.2, ``past_temp`` 0.01, ``distill_power`` 1.0 (main.py's defaults, also in
    run.sh); ``proj_dim`` 128 and a hidden width equal to the encoder's output (``proj_hidden_dim``
    None; networks/resnet_big.py SupConResNet's head dim_in -> dim_in -> 128); ``min_scale`` 0.2
    (main.py's RandomResizedCrop scale (0.2, 1) for CIFAR-10); the probe: ``probe_epochs`` 100,
    ``probe_batch_size`` 256, SGD momentum 0.9, lr x 0.2 at epochs 60/75/90 of 100
    (main_linear_buffer.py's defaults) and ``probe_lr`` 1.0 (run.sh's linear eval).

    Departures: the views are a random-resized crop and a horizontal flip of the normalised tensors
    (``memclip.supcon.random_resized_crop_flip``); Co2L adds colour jitter (p 0.8), random
    grayscale (p 0.2) and, above 32 px, Gaussian blur. The probe is fitted on cached, un-augmented
    features (standardised; the layer folds it back), with a loss weighted by class instead of a
    class-balanced sampler. Co2L samples its own memory; here it is the study's shared
    class-balanced memory.
    """

    name = "co2l"
    scenarios = ("class",)
    defaults = {"temperature": 0.5, "base_temperature": 0.07, "current_temp": 0.2, "past_temp": 0.01,
                "distill_power": 1.0, "proj_dim": 128, "proj_hidden_dim": None, "min_scale": 0.2,
                "probe_epochs": 100, "probe_lr": 1.0, "probe_batch_size": 256}
    probe_milestones = (0.6, 0.75, 0.9)
    probe_gamma = 0.2
    probe_balanced = True

    def __init__(self, **options):
        super().__init__(**options)
        self._current = None  # class ids of the task being trained (the anchors' classes)

    def head_specs(self, ctx: TaskContext) -> dict:
        """The projection MLP: encoder output -> hidden (default: the same width) -> proj_dim."""
        width = ctx.model.visual.output_dim
        hidden = self.options["proj_hidden_dim"] or width
        return {"projector": (width, int(hidden), int(self.options["proj_dim"]), False)}

    def before_step(self, ctx: TaskContext) -> None:
        import torch

        super().before_step(ctx)
        classes = sorted({int(ctx.data.labels[r]) for r in ctx.data.task_rows})
        self._current = torch.tensor(classes, dtype=torch.long, device=ctx.device)

    def probe_rows(self, ctx: TaskContext) -> list[int]:
        """The memory plus the task's own rows (Co2L's linear eval on buffer + current data)."""
        return list(ctx.data.task_rows) + list(ctx.data.memory_rows)

    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """Asymmetric SupCon on both views' projections, plus ``distill_power`` x IRD for t >= 1."""
        import torch
        import torch.nn.functional as F

        from ticlip_core.memclip.supcon import ird_loss, supcon_loss

        o = self.options
        x, labels = self.views(batch)
        z = F.normalize(self._heads["projector"](ctx.model.visual(x)), dim=-1)
        anchors = torch.isin(labels, self._current)
        loss = supcon_loss(z, labels, o["temperature"], anchors=anchors, base_temperature=o["base_temperature"])
        if self._frozen is not None:
            z_past = F.normalize(self.frozen_projections(x), dim=-1)
            loss = loss + o["distill_power"] * ird_loss(z, z_past, o["current_temp"], o["past_temp"])
        self.count_macs(ctx, len(batch.labels), ["projector"])
        return loss
