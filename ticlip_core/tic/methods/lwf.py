from ticlip_core.tic.methods import register
from ticlip_core.engine.method import Method


@register
class LwF(Method):
    """LwF: warm start, new data only, plus beta x KL between old and new similarity matrices (TiC-CLIP Sec. 4).

    Option ``beta``: weight of the distillation term. The teacher is the frozen model of
    step t-1, run in inference mode on every mini-batch; its forward passes are counted as
    extra compute, so LwF spends more than the compute budget C (as the paper notes).
    At the first step there is no previous model and LwF is plain training.
    """

    name = "lwf"
    study = "tic"
    plain_first_step = True  # no teacher at step 0
    defaults = {"beta": 1.0}
    warm_start = True

    def before_step(self, ctx):
        self.teacher = None
        if ctx.t > 0:
            from ticlip_core.engine.weights import frozen_copy

            self.teacher = frozen_copy(ctx.model)
        ctx.info["beta"] = self.beta

    @property
    def beta(self) -> float:
        return float(self.options.get("beta", 1.0))

    def extra_loss(self, ctx, batch, outputs):
        import torch

        from ticlip_core.losses import similarity_distillation_loss, similarity_logits

        if self.teacher is None:
            return None
        with torch.inference_mode():
            t_out = self.teacher(batch.images.to(ctx.device), batch.texts.to(ctx.device))
            teacher = similarity_logits(t_out["image_features"], t_out["text_features"], t_out["logit_scale"])
        ctx.extra_macs += ctx.forward_macs_per_sample * len(batch.keys)
        student = similarity_logits(outputs["image_features"], outputs["text_features"], outputs["logit_scale"])
        # clone(): an inference-mode tensor cannot be saved for the student's backward pass
        return self.beta * similarity_distillation_loss(student, teacher.clone())

    def after_step(self, ctx):
        self.teacher = None
