from ticlip_core.tic.methods import register
from ticlip_core.engine.method import Method


@register
class CumulativeAll(Method):
    """Cumulative-All: warm start from step t-1, all data up to t mixed uniformly, budget C (TiC-CLIP Sec. 4)."""

    name = "cumulative_all"
    study = "tic"
    plain_first_step = True
    warm_start = True

    def data_plan(self, t, steps, new_step_size=None):
        return {s: None for s in steps[: t + 1]}
