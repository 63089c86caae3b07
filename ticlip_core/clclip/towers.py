"""Which tower a CL-CLIP variant trains (Ding et al., Sec. IV-A "Building Options").

CLIP has an image encoder and a text encoder; a method may update the Whole Model (``wm``),
the Image encoder Only (``io``) or the Text encoder Only (``to``). Parameters are assigned to a
tower by their open_clip names. The temperature (``logit_scale``, and ``logit_bias`` where a
model has one) belongs to neither tower and is never trained: every variant keeps the
original CLIP's temperature.

No torch import here: the module only reads parameter names and flips ``requires_grad``.
"""
from __future__ import annotations

VARIANTS = ("wm", "io", "to")

#: the towers each variant updates
VARIANT_TOWERS = {"wm": ("image", "text"), "io": ("image",), "to": ("text",)}

_IMAGE_PREFIXES = ("visual.",)
# open_clip CLIP keeps its text tower at the top level; CustomTextCLIP under ``text.``
_TEXT_PREFIXES = ("token_embedding.", "transformer.", "ln_final.", "text_projection.", "text.")
_TEXT_NAMES = ("positional_embedding", "text_projection")
_SHARED_NAMES = ("logit_scale", "logit_bias")


def check_variant(variant: str) -> str:
    """Return ``variant`` if it is one of ``VARIANTS``, else raise a ValueError naming it."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CL-CLIP variant '{variant}'; expected one of {', '.join(VARIANTS)} "
                         "(wm: whole model, io: image encoder only, to: text encoder only)")
    return variant


def towers_of(variant: str) -> tuple[str, ...]:
    """The towers (``"image"``, ``"text"``) that ``variant`` updates."""
    return VARIANT_TOWERS[check_variant(variant)]


def tower_of(param_name: str) -> str:
    """``"image"``, ``"text"`` or ``"shared"`` for an open_clip CLIP parameter name.

    ``visual.*`` is the image tower; the token and positional embeddings, the text
    transformer, ``ln_final`` and ``text_projection`` are the text tower; ``logit_scale`` and
    ``logit_bias`` are shared. Any other name raises a ValueError rather than being guessed.
    """
    if param_name.startswith(_IMAGE_PREFIXES):
        return "image"
    if param_name in _TEXT_NAMES or param_name.startswith(_TEXT_PREFIXES):
        return "text"
    if param_name in _SHARED_NAMES:
        return "shared"
    raise ValueError(f"parameter '{param_name}' belongs to no known CLIP tower (image: visual.*; text: "
                     "token_embedding, positional_embedding, transformer, ln_final, text_projection; "
                     "shared: logit_scale, logit_bias)")


def trainable_names(model, variant: str) -> list[str]:
    """Names of the parameters ``variant`` updates: wm, image + text towers; io, image; to, text.

    ``logit_scale`` (the temperature of Eq. 1) is never among them: it stays the original's.
    """
    towers = towers_of(variant)
    return [name for name, _ in model.named_parameters() if tower_of(name) in towers]


def freeze_for(model, variant: str) -> list:
    """Set ``requires_grad`` so only ``variant``'s towers train; return their parameters.

    Everything else (the other tower, ``logit_scale``) gets ``requires_grad=False``. Raises a
    ValueError naming ``variant`` when it is not one of ``VARIANTS``.
    """
    names = set(trainable_names(model, variant))
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        if name in names:
            trainable.append(param)
    return trainable
