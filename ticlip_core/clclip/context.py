"""The context of one CL-CLIP training session, as the method hooks see it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ticlip_core.engine.method import StepContext


@dataclass(kw_only=True)
class SessionContext(StepContext):
    """A ``StepContext`` for one CL-CLIP session: ``t`` is the 0-based session, the variant says
    which towers train, and labels index ``classnames``.

    A method that runs extra forward passes (a teacher's) counts them in ``extra_macs``, from
    ``image_macs_per_sample`` (one image through the image tower) and ``text_macs_per_prompt``
    (one prompt through the text tower), as TiC's LwF does with ``forward_macs_per_sample``."""

    variant: str                    # wm | io | to
    setting: str                    # ost | mst
    session: int                    # 0-based (the same as ``t``)
    classnames: list[str]           # every update class; a label is an index into this list
    session_classes: list[int]      # labels trained in this session
    seen_classes: list[int]         # labels of this and every earlier session (OST: all)
    templates: list[str]            # e.g. ["this is a photo of {}."]
    original_state: dict            # the original CLIP's state dict (CPU tensors)
    previous_state: dict            # the model's state at the start of this session (= original at session 0)
    info: dict = field(default_factory=dict)
    image_macs_per_sample: int = 0  # forward MACs of one image through the image tower
    text_macs_per_prompt: int = 0   # forward MACs of one prompt through the text tower

    def __post_init__(self) -> None:
        self.t = self.session
        if self.init_state is None:
            self.init_state = self.previous_state


@dataclass
class ClassBatch:
    """A mini-batch of a classification session: normalised images on the device and their labels
    (indices into ``SessionContext.classnames``)."""

    images: Any
    labels: Any
