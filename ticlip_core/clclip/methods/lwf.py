from ticlip_core.clclip.methods import register
from ticlip_core.engine.method import Method
from ticlip_core.clclip.distill import count_forwards, beta_of, seen_class_features, teacher_from, teacher_seen_class_features


@register
class LwF(Method):
    """LwF: cross-entropy + beta * KL(p_old || p_new) over the seen classes' prompts (Eq. 4-5).

    The teacher is the model at the start of the session, ``ctx.previous_state``: the original
    CLIP in OST (and at MST's first session), the previous session's model in MST. p_old and
    p_new are the softmax over the prompts of every seen class (current and previous sessions)
    of ``logit_scale * <f, t_c>`` (Eq. 1), each model with its own image and text features and
    its own logit scale. Eq. 5 as printed is -sum_c p_new^c log p_old^c; we use the standard
    LwF direction KL(p_old || p_new) (see ``losses.kl_distillation``). Option ``beta`` (default 1.0),
    tuned on validation A-Acc.
    """

    name = "lwf"
    study = "clclip"
    hyperparameter = "beta"
    defaults = {"beta": 1.0}

    def before_step(self, ctx):
        self.beta = beta_of(self)
        self.teacher = teacher_from(ctx.previous_state, ctx)
        # the teacher is frozen, so its class features are fixed for the whole session
        self.teacher_classes = teacher_seen_class_features(self.teacher, ctx)
        ctx.info["beta"] = self.beta
        ctx.info["lwf_distilled_classes"] = len(self.teacher_classes)

    def extra_loss(self, ctx, batch, out):
        images, class_features = batch.images, out["class_features"]
        import torch

        from ticlip_core.losses import kl_distillation

        with torch.no_grad():
            old = self.teacher(images, None)
            old_logits = old["logit_scale"] * old["image_features"] @ self.teacher_classes.T
        count_forwards(ctx, images=len(images))
        new_logits = out["logit_scale"] * out["image_features"] @ seen_class_features(ctx, class_features).T
        return self.beta * kl_distillation(new_logits, old_logits)

    def after_step(self, ctx):
        self.teacher = self.teacher_classes = None
