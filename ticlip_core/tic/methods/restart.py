from ticlip_core.tic.methods import register
from ticlip_core.engine.method import Method


@register
class Restart(Method):
    """Restart: random init, all data up to step t, budget C (TiC-CLIP Sec. 4)."""

    name = "restart"
    study = "tic"
    plain_first_step = True

    def data_plan(self, t, steps, new_step_size=None):
        return {s: None for s in steps[: t + 1]}
