from ticlip_core.clclip.methods import register
from ticlip_core.clclip import towers
from ticlip_core.engine.method import Method


def interpolate(old_state: dict, new_state: dict, alpha: float, names) -> dict:
    """IMM-mean / WiSE-FT weights (Eq. 11-12): (1 - alpha) * old + alpha * new for each of ``names``.

    Returns a new state dict: ``new_state`` with every entry named in ``names`` replaced by the
    interpolation (``torch.lerp``, exact at alpha 0 and 1, computed on ``new_state``'s device and
    dtype); every other entry is ``new_state``'s own tensor. A name missing from either state
    raises a KeyError naming it.
    """
    import torch

    names = list(names)
    missing = [n for n in names if n not in old_state or n not in new_state]
    if missing:
        raise KeyError(f"imm: parameter(s) missing from the old or the new state: {', '.join(missing)}")
    merged = dict(new_state)
    for name in names:
        new = new_state[name]
        old = old_state[name].to(device=new.device, dtype=new.dtype)
        merged[name] = torch.lerp(old, new, float(alpha))
    return merged


@register
class IMM(Method):
    """IMM-mean: fine-tune, then set the trained tower(s) to (1 - alpha) * old + alpha * new (Eq. 11-12).

    Training is plain fine-tuning of the variant's tower(s); ``after_session`` replaces their
    parameters by the weighted average of the fine-tuned weights and the old ones, where old is
    ``ctx.previous_state``: the original CLIP in OST, the previous session's model in MST.
    The frozen tower and ``logit_scale`` are untouched. Option ``alpha`` in [0, 1] (default 0.5),
    tuned on validation A-Acc; alpha = 1 is plain fine-tuning, alpha = 0 the old model.
    """

    name = "imm"
    study = "clclip"
    hyperparameter = "alpha"
    defaults = {"alpha": 0.5}

    def __init__(self, **options):
        super().__init__(**options)
        alpha = float(self.options["alpha"])
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"imm: alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha

    def before_step(self, ctx):
        ctx.info["alpha"] = self.alpha

    def after_step(self, ctx):
        names = towers.trainable_names(ctx.model, ctx.variant)
        merged = interpolate(ctx.previous_state, ctx.model.state_dict(), self.alpha, names)
        ctx.model.load_state_dict(merged)
        ctx.info["imm_interpolated_parameters"] = len(names)
