"""Compute accounting: multiply-accumulates (MACs) per training sample, counted by PyTorch."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

#: a backward pass costs about twice the forward pass (Kaplan et al. 2020), so a training
#: sample costs three forwards
TRAIN_FORWARD_MULTIPLIER = 3


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: attention kernels PyTorch's flop counter has no formula for; counted like their CUDA
#: counterparts (two batched matmuls), so a CPU count equals a GPU count
_EXTRA_FORMULAS = {op: _cpu_sdpa_flops for op in (
    getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None),) if op is not None}


def forward_macs_per_sample(model: torch.nn.Module, image_size: int, context_length: int) -> int:
    """MACs of one image plus one caption through ``model``'s forward pass (FLOPs / 2).

    The dummy inputs are built on the device of the model's parameters, the image in their
    floating-point dtype (a model moved to a GPU, or cast to bf16, is counted where it lives).
    The count is that of a training forward pass, the same on every device: the inference-only
    fused attention of ``nn.MultiheadAttention`` (whose projections and attention the flop
    counter cannot see) is switched off while counting, and the CPU attention kernel is
    counted like the GPU ones.
    """
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    image = torch.zeros(1, 3, image_size, image_size, device=device, dtype=dtype)
    text = torch.zeros(1, context_length, dtype=torch.long, device=device)
    was_training, fastpath = model.training, torch.backends.mha.get_fastpath_enabled()
    model.eval()  # no dropout, and no batch-norm statistics updated by the dummy input
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(image, text)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
    return counter.get_total_flops() // 2


def tower_macs(model) -> tuple[int, int]:
    """``(image MACs per sample, text MACs per prompt)`` of ``model``'s forward pass (open_clip
    CLIP: ``encode_image``, ``encode_text``; CL-CLIP and memclip count their classification
    training with them: images through the image tower, prompts through the text tower). Every
    module's train/eval mode is left as it was."""
    from ticlip_core.data.pixels import PixelSpec

    class Tower(torch.nn.Module):
        def __init__(self, which: str):
            super().__init__()
            self.model, self.which = model, which

        def forward(self, image, text):
            return self.model.encode_image(image) if self.which == "image" else self.model.encode_text(text)

    modes = {m: m.training for m in model.modules()}
    try:
        size, context = PixelSpec.of(model).size, getattr(model, "context_length", 77)
        image = forward_macs_per_sample(Tower("image"), size, context)
        text = forward_macs_per_sample(Tower("text"), size, context)
    finally:
        for module, training in modes.items():
            module.training = training
    return image, text
