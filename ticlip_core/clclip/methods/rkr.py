from ticlip_core.clclip.methods import register
from ticlip_core.clclip import towers
from ticlip_core.engine.method import Method

SCALE = "rkr_scale"
#: where the scaling factors act: every Linear layer's output (the authors' code), or each block's output
SCALE_AT = ("linear", "block")


def _scale_output(module, args, output):
    """Forward hook: a module's output (..., D) times its scaling factors s_w (Eq. 14)."""
    return output * module.rkr_scale


def _scale_attention_output(attn, args, output):
    """Forward hook on ``nn.MultiheadAttention``: its output projection's output (the attention
    output, whatever weights come with it) times the projection's ``rkr_scale``. torch's attention
    applies ``out_proj`` through its weights, never calling the module, so the hook sits here."""
    out, weights = output
    return out * attn.out_proj.rkr_scale, weights


def tower_blocks(model, tower: str) -> list:
    """The transformer blocks of ``model``'s ``"image"`` or ``"text"`` tower (open_clip CLIP)."""
    if tower == "image":
        return list(model.visual.transformer.resblocks)
    if tower == "text":
        text = model.text if hasattr(model, "text") else model
        return list(text.transformer.resblocks)
    raise ValueError(f"rkr: unknown tower '{tower}' (expected image or text)")


def _add_scale(module, width: int, like, hook_on, hook) -> None:
    """Give ``module`` a parameter ``rkr_scale`` of ``width`` ones (dtype and device of the tensor
    ``like``) and ``hook_on`` the forward hook applying it, unless ``module`` already has one."""
    import torch

    if hasattr(module, SCALE):
        return
    module.register_parameter(SCALE, torch.nn.Parameter(torch.ones(width, dtype=like.dtype, device=like.device)))
    hook_on.register_forward_hook(hook)


def install_scaling(model, tower_names, scale_at: str = "linear") -> list:
    """RKR's scaling-factor generator (Eq. 14, o_w = o_w * s_w) on the named towers; returns their
    ``rkr_scale`` parameters.

    ``scale_at="linear"`` (the authors' code): every ``nn.Linear`` of every transformer block of
    ``tower_names`` (``"image"``, ``"text"``) gets a parameter ``rkr_scale`` (ones of its output
    width, so the model's outputs are unchanged) multiplying its output: in open_clip the
    attention's output projection and the MLP's two layers (the query-key-value projection is a
    bare weight, not a Linear, in the authors' CLIP too). ``"block"``: each block's output gets
    one instead. Idempotent: a module that has one keeps it. The state dict gains
    ``...rkr_scale`` entries, so a trained RKR checkpoint loads into a fresh model once this has
    been called with the same ``scale_at``.
    """
    import torch

    if scale_at not in SCALE_AT:
        raise ValueError(f"rkr: unknown scale_at {scale_at!r}; expected one of {', '.join(SCALE_AT)}")
    scales = []
    for tower in tower_names:
        for block in tower_blocks(model, tower):
            if scale_at == "block":
                _add_scale(block, block.ln_1.weight.numel(), block.ln_1.weight, block, _scale_output)
                scales.append(getattr(block, SCALE))
                continue
            for parent in list(block.modules()):
                for child in parent.children():
                    if not isinstance(child, torch.nn.Linear):
                        continue
                    if isinstance(parent, torch.nn.MultiheadAttention) and child is parent.out_proj:
                        _add_scale(child, child.out_features, child.weight, parent, _scale_attention_output)
                    else:
                        _add_scale(child, child.out_features, child.weight, child, _scale_output)
                    scales.append(getattr(child, SCALE))
    return scales


@register
class RKR(Method):
    """RKR (scaling factors only): train output scales s_w, every CLIP weight frozen (Eq. 13-14).

    RKR's rectification generator (Eq. 13) is left out, as in the paper (it destroys the zero-shot
    skill); only the scaling-factor generator is used, on the tower(s) the variant updates (wm:
    both, io: image, to: text). Option ``scale_at``: ``"linear"`` (default, the authors' code, see
    docs/clclip.md) scales the output of every Linear layer of every transformer block (attention
    output projection, MLP in and out) by a vector initialised to ones; ``"block"`` (the paper's
    wording, "we only apply SFG to each block's output") scales each block's output instead. The
    scales are installed at the first session and trained through all sessions (MST); they are
    the only trainable parameters. The factors are new parameters, not pretrained weights, so
    they take their own learning rate (option ``lr``; None: the session's).
    """

    name = "rkr"
    study = "clclip"
    defaults = {"lr": None, "scale_at": "linear"}

    def learning_rate(self, lr):
        return lr if self.options["lr"] is None else float(self.options["lr"])

    def _install(self, model, variant) -> list:
        return install_scaling(model, towers.towers_of(variant), self.options["scale_at"])

    def prepare_model(self, model, variant):
        self._install(model, variant)

    def before_step(self, ctx):
        import torch

        scales = self._install(ctx.model, ctx.variant)
        # a model loaded without its scales (setup before load) gets them back from the session's start state
        named = dict(ctx.model.named_parameters())
        with torch.no_grad():
            for name, value in ctx.previous_state.items():
                if name.endswith(SCALE) and name in named:
                    named[name].copy_(value)
        ctx.info["rkr_scale_parameters"] = sum(s.numel() for s in scales)
        ctx.info["rkr_scale_at"] = self.options["scale_at"]

    def trainable_parameters(self, ctx):
        scales = self._install(ctx.model, ctx.variant)
        ids = {id(s) for s in scales}
        for param in ctx.model.parameters():
            param.requires_grad_(id(param) in ids)
        return scales
