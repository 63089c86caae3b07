from ticlip_core.tic.methods import register
from ticlip_core.engine.method import Method


@register
class Sequential(Method):
    """Sequential: warm start from step t-1, data of step t only, budget C (TiC-CLIP Sec. 4)."""

    name = "sequential"
    study = "tic"
    plain_first_step = True
    warm_start = True
