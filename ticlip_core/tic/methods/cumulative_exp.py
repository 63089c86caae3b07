from ticlip_core.tic.methods import register
from ticlip_core.tic.methods.replay import ReplayMethod


@register
class CumulativeExp(ReplayMethod):
    """Cumulative-Exp: warm start, new data plus a buffer of D old samples halved per step (TiC-CLIP Sec. 4)."""

    name = "cumulative_exp"
    study = "tic"
    allocation = "exp"
