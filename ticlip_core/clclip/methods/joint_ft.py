from ticlip_core.clclip.methods import register
from ticlip_core.engine.method import Method


@register
class JointFineTune(Method):
    """Joint FT: fine-tuning (Eq. 1) on the data of every session so far; the MST upper bound.

    Identical to ``ft`` except ``trains_on_seen_sessions``: at session s the session runner trains
    on the union of sessions 0..s, so its cross-entropy (Eq. 1) runs over the prompts of every
    seen class (the runner passes them as ``session_classes``). In OST it equals ``ft``.
    """

    name = "joint_ft"
    study = "clclip"
    scenarios = ("mst",)  # in OST, with one session, it is FT itself
    trains_on_seen_sessions = True
