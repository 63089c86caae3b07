from ticlip_core.clclip.methods import register
from ticlip_core.clclip import towers
from ticlip_core.engine.method import Method


def interpolate(old_state: dict, new_state: dict, alpha: float, names) -> dict:
    """IMM-mean / WiSE-FT weights (Eq. 11-12): (1 - alpha) * old + alpha * new for each of ``names``.

    Returns a new state dict: ``new_state`` with every entry named in ``names`` replaced by the
    interpolation (``engine.weights.interpolate_state_dicts``, exact at alpha 0 and 1); every
    other entry is ``new_state``'s own tensor. A name missing from either state raises a KeyError
    naming it.
    """
    from ticlip_core.engine.weights import interpolate_state_dicts

    names = list(names)
    missing = [n for n in names if n not in old_state or n not in new_state]
    if missing:
        raise KeyError(f"imm: parameter(s) missing from the old or the new state: {', '.join(missing)}")
    new = {n: new_state[n] for n in names}
    old = {n: old_state[n].to(device=new[n].device, dtype=new[n].dtype) for n in names}
    return {**new_state, **interpolate_state_dicts(old, new, alpha)}


@register
class IMM(Method):
    """IMM-mean: fine-tune, then set the trained tower(s) to (1 - alpha) * old + alpha * new (Eq. 11-12).

    Training is plain fine-tuning of the variant's tower(s); ``after_step`` replaces their
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
