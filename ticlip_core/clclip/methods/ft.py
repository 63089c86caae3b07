from ticlip_core.clclip.methods import register
from ticlip_core.engine.method import Method


@register
class FineTune(Method):
    """FT: plain fine-tuning of the variant's tower(s) with the cross-entropy of Eq. 1, nothing added.

    Each session starts from the previous session's model (MST) or the original CLIP (OST) and
    trains on that session's data only; the lower bound every CL-CLIP method should beat.
    """

    name = "ft"
    study = "clclip"
