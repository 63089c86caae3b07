from ticlip_core.clclip.methods import register
from ticlip_core.clclip import towers
from ticlip_core.engine.method import Method

SCALE = "rkr_scale"


def _scale_output(block, args, output):
    """Forward hook: a block's output (N, L, D) times its scaling factors s_w (Eq. 14)."""
    return output * block.rkr_scale


def tower_blocks(model, tower: str) -> list:
    """The transformer blocks of ``model``'s ``"image"`` or ``"text"`` tower (open_clip CLIP)."""
    if tower == "image":
        return list(model.visual.transformer.resblocks)
    if tower == "text":
        text = model.text if hasattr(model, "text") else model
        return list(text.transformer.resblocks)
    raise ValueError(f"rkr: unknown tower '{tower}' (expected image or text)")


def install_scaling(model, tower_names) -> list:
    """RKR's scaling-factor generator (Eq. 14, o_w = o_w * s_w) on every block of the named towers.

    Each transformer block of ``tower_names`` (``"image"``, ``"text"``) gets a parameter
    ``rkr_scale`` (ones of the block width, so the model's outputs are unchanged) and a forward
    hook multiplying the block's output by it. Idempotent: a block that has one keeps it. The
    state dict gains ``...resblocks.<i>.rkr_scale`` entries, so a trained RKR checkpoint loads into
    a fresh model once this has been called. Returns the towers' ``rkr_scale`` parameters.
    """
    import torch

    scales = []
    for tower in tower_names:
        for block in tower_blocks(model, tower):
            if not hasattr(block, SCALE):
                ref = block.ln_1.weight
                block.register_parameter(SCALE, torch.nn.Parameter(torch.ones_like(ref, requires_grad=True)))
                block.register_forward_hook(_scale_output)
            scales.append(getattr(block, SCALE))
    return scales


@register
class RKR(Method):
    """RKR (scaling factors only): train per-block output scales s_w, every CLIP weight frozen (Eq. 13-14).

    RKR's rectification generator (Eq. 13) is left out, as in the paper (it destroys the zero-shot
    skill); only the scaling-factor generator is used: each transformer block's output is
    multiplied by a learned vector ``rkr_scale`` initialised to ones, on the tower(s) the variant
    updates (wm: both, io: image, to: text). The scales are installed at the first session and
    trained through all sessions (MST); they are the only trainable parameters. The factors are
    new parameters, not pretrained weights, so they take their own learning rate (option
    ``lr``; None: the session's).
    """

    name = "rkr"
    study = "clclip"
    defaults = {"lr": None}

    def learning_rate(self, lr):
        return lr if self.options["lr"] is None else float(self.options["lr"])

    def prepare_model(self, model, variant):
        install_scaling(model, towers.towers_of(variant))

    def before_step(self, ctx):
        import torch

        scales = install_scaling(ctx.model, towers.towers_of(ctx.variant))
        # a model loaded without its scales (setup before load) gets them back from the session's start state
        named = dict(ctx.model.named_parameters())
        with torch.no_grad():
            for name, value in ctx.previous_state.items():
                if name.endswith(SCALE) and name in named:
                    named[name].copy_(value)
        ctx.info["rkr_scale_parameters"] = sum(s.numel() for s in scales)

    def trainable_parameters(self, ctx):
        scales = install_scaling(ctx.model, towers.towers_of(ctx.variant))
        ids = {id(s) for s in scales}
        for param in ctx.model.parameters():
            param.requires_grad_(id(param) in ids)
        return scales
