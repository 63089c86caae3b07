from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import EstimatorLossMethod, TaskContext


@register
class GCL(EstimatorLossMethod):
    """GCL: a global contrastive loss between images and label texts with moving-average
    estimators (per sample on the image side, per class on the text side) that persist across
    tasks, on the task's data plus the memory (a reconstruction: ``memclip.losses``)."""

    name = "gcl"
    defaults = {"tau": 0.07, "gamma": 0.9}

    def make_loss(self, ctx: TaskContext):
        from ticlip_core.memclip.losses import GlobalContrastiveLoss

        return GlobalContrastiveLoss(ctx.num_train_samples, len(ctx.classnames),
                                     tau=self.options["tau"], gamma=self.options["gamma"])
