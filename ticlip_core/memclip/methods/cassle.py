from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext
from ticlip_core.memclip.supcon import ContrastiveProbeMethod


@register
class CaSSLe(ContrastiveProbeMethod):
    """CaSSLe (Fini et al., CVPR 2022, "Self-Supervised Models are Continual Learners") with the
    supervised contrastive objective: each domain in turn, no memory; a linear probe on the image
    tower, fitted on the current domain's data, classifies.

    Per batch, two augmented views of each image go through the image tower and a projection MLP;
    the loss is SupCon on the projections (positives: the other view and every sample of the same
    class) plus, for t >= 1, ``distill_lamb`` x CaSSLe's contrastive distiller: a
    predictor MLP g maps the current projection z into the frozen previous model's projection
    space, and the SimCLR-style loss between g(z) and the previous projection z_prev of the same
    view (the same image its positive, every other row of the batch a negative) is taken both
    ways and averaged. The previous model is a frozen copy of the image tower and projector the
    task starts from; the predictor is created at task 1 and carried on (CaSSLe loads each task's
    checkpoint, predictor included, into the next).

    Defaults and their source (DonkeyShot21/cassle): ``temperature`` 0.1, ``proj_hidden_dim`` 2048,
    ``proj_dim`` 128 (cassle/methods/simclr.py, and bash_files/continual/domainnet/
    supcon_distill.sh's ``--temperature 0.1``); ``distill_lamb`` 1.0, ``distill_temperature`` 0.2,
    ``pred_hidden_dim`` 2048 with BatchNorm (cassle/distillers/contrastive.py);
    ``distill_class_positives`` False (its ``simclr_distill_loss_func`` takes no labels, even for
    the supervised method; True adds the same class's rows as positives); ``min_scale`` 0.08
    (cassle/args/dataset.py); the probe: ``probe_epochs`` 100, ``probe_lr`` 1.0,
    ``probe_batch_size`` 256, lr x 0.1 at epochs 60 and 80 (bash_files/linear/domainnet/domain/
    supcon_linear.sh, cassle/methods/linear.py), SGD momentum 0.9 (cassle/args/utils.py).

    Departures: the views are a random-resized crop and a horizontal flip of the normalised tensors
    (``memclip.supcon.random_resized_crop_flip``); CaSSLe adds colour jitter, grayscale, blur and
    solarisation. The predictor sees both views in one batch (its BatchNorm over 2B rows).
    CaSSLe's linear eval trains on every domain after training; here the probe is fitted on the
    frozen tower's un-augmented features of the current domain only (every class appears in every
    domain), standardised, the layer folding it back.
    """

    name = "cassle"
    scenarios = ("domain",)
    uses_memory = False
    defaults = {"temperature": 0.1, "proj_hidden_dim": 2048, "proj_dim": 128, "distill_lamb": 1.0,
                "distill_temperature": 0.2, "pred_hidden_dim": 2048, "distill_class_positives": False,
                "min_scale": 0.08, "probe_epochs": 100, "probe_lr": 1.0, "probe_batch_size": 256}
    probe_milestones = (0.6, 0.8)
    probe_gamma = 0.1
    probe_balanced = False

    def head_specs(self, ctx: TaskContext) -> dict:
        """The projection MLP, and from task 1 the distillation predictor (proj_dim -> proj_dim)."""
        o = self.options
        out = int(o["proj_dim"])
        heads = {"projector": (ctx.model.visual.output_dim, int(o["proj_hidden_dim"]), out, False)}
        if ctx.t >= 1:
            heads["predictor"] = (out, int(o["pred_hidden_dim"]), out, True)
        return heads

    def probe_rows(self, ctx: TaskContext) -> list[int]:
        """The current domain's rows only (no memory)."""
        return list(ctx.data.task_rows)

    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """SupCon on both views' projections, plus ``distill_lamb`` x the predictive contrastive
        distillation for t >= 1."""
        import torch.nn.functional as F

        from ticlip_core.memclip.supcon import contrastive_distill_loss, supcon_loss

        o = self.options
        x, labels = self.views(batch)
        z = self._heads["projector"](ctx.model.visual(x))
        loss = supcon_loss(F.normalize(z, dim=-1), labels, o["temperature"])
        heads = ["projector"]
        if self._frozen is not None:
            p = self._heads["predictor"](z)
            positives_by = labels if o["distill_class_positives"] else None
            loss = loss + o["distill_lamb"] * contrastive_distill_loss(p, self.frozen_projections(x),
                                                                       o["distill_temperature"], positives_by)
            heads.append("predictor")
        self.count_macs(ctx, len(batch.labels), heads)
        return loss
