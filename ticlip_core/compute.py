"""Compute accounting: multiply-accumulates (MACs) per training sample, counted by PyTorch."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

#: a backward pass costs about twice the forward pass (Kaplan et al. 2020), so a training
#: sample costs three forwards
TRAIN_FORWARD_MULTIPLIER = 3


def forward_macs_per_sample(model: torch.nn.Module, image_size: int, context_length: int) -> int:
    """MACs of one image plus one caption through ``model``'s forward pass (FLOPs / 2)."""
    image = torch.zeros(1, 3, image_size, image_size)
    text = torch.zeros(1, context_length, dtype=torch.long)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image, text)
    model.train(was_training)
    return counter.get_total_flops() // 2

