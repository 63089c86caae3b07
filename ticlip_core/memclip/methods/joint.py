from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import MemclipMethod


@register
class Joint(MemclipMethod):
    """Joint: fine-tuning (cross-entropy over the classes seen so far) on all training data of
    every task so far; the upper bound, independent of the memory size."""

    name = "joint"
    uses_memory = False
    trains_on_seen_sessions = True
