from ticlip_core.memclip.methods import register
from ticlip_core.memclip.methods.base import MemclipMethod


@register
class ZeroShot(MemclipMethod):
    """Zero-shot: the starting CLIP, never trained, evaluated after every task among the classes
    seen so far (the floor every method must clear)."""

    name = "zero_shot"
    trains = False
    uses_memory = False
