from ticlip_core.clclip.methods import register
from ticlip_core.clclip.methods.base import ClMethod


@register
class JointFineTune(ClMethod):
    """Joint FT: fine-tuning (Eq. 1) on the data of every session so far; the MST upper bound.

    Identical to ``ft`` except ``trains_on_seen_sessions``: at session s the session runner trains
    on the union of sessions 0..s, so its cross-entropy (Eq. 1) runs over the prompts of every
    seen class (the runner passes them as ``session_classes``). In OST it equals ``ft``.
    """

    name = "joint_ft"
    trains_on_seen_sessions = True
