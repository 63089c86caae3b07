from ticlip_core.tic.methods import register
from ticlip_core.tic.methods.replay import ReplayMethod


@register
class CumulativeEqual(ReplayMethod):
    """Cumulative-Equal: warm start, new data plus a buffer of D old samples split equally (TiC-CLIP Sec. 4)."""

    name = "cumulative_equal"
    study = "tic"
    allocation = "equal"
