from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import MemclipMethod


@register
class FineTune(MemclipMethod):
    """Fine-tune: cross-entropy over the label-text logits of every class seen so far, on the
    task's data plus the fixed memory (M = 0: no replay)."""

    name = "finetune"
