from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import EstimatorLossMethod, TaskContext


@register
class GDRO(EstimatorLossMethod):
    """GDRO: class-level distributionally robust reweighting (weights softmax(v / lambda) of
    moving-average class losses) of a pairwise squared-hinge loss between images and label
    texts, robustly averaged over negatives, on the task's data plus the memory (a
    reconstruction: ``memclip.losses``)."""

    name = "gdro"
    defaults = {"margin": 0.5, "lam": 1.0, "lam_in": 1.0, "gamma": 0.9, "gamma_v": 0.9}

    def make_loss(self, ctx: TaskContext):
        from ticlip_core.memclip.losses import GroupDROLoss

        o = self.options
        return GroupDROLoss(ctx.num_train_samples, len(ctx.classnames), margin=o["margin"], lam=o["lam"],
                            lam_in=o["lam_in"], gamma=o["gamma"], gamma_v=o["gamma_v"])
