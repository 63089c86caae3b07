from ticlip_core.tic.methods import register
from ticlip_core.engine.method import Method


@register
class Oracle(Method):
    """Oracle: random init, all data up to step t, budget t x C (TiC-CLIP Sec. 4)."""

    name = "oracle"
    study = "tic"
    plain_first_step = True

    def data_plan(self, t, steps, new_step_size=None):
        return {s: None for s in steps[: t + 1]}

    def budget(self, t, base_budget):
        return (t + 1) * base_budget
