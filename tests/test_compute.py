"""MACs per sample: counted where the model lives (its device and dtype), the same on every device."""
import copy

import pytest
import torch
from torch import nn

from ticlip_core.engine.compute import forward_macs_per_sample
from ticlip_core.data.loader import PixelSpec
from ticlip_core.models import create_model


class TinyClip(nn.Module):
    """An image conv and a text self-attention; the forward refuses inputs off the parameters' device."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=4, stride=4)    # 8x8 image -> 4 channels x 2 x 2
        self.embed = nn.Embedding(10, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, image, text):
        device = self.conv.weight.device
        assert image.device == device and text.device == device, (image.device, text.device, device)
        assert image.dtype == self.conv.weight.dtype
        t = self.embed(text)
        return self.conv(image).flatten(1), self.attn(t, t, t, need_weights=False)[0]


# conv: 16 outputs x 48 MACs; attention over 5 tokens of width 8 in 2 heads of 4: the q, k, v
# projections (5 x 8 x 24), q.k and attention.v (2 x 2 heads x 5 x 5 x 4), the output projection (5 x 8 x 8)
TINY_MACS = 16 * 48 + 5 * 8 * 24 + 2 * 2 * 5 * 5 * 4 + 5 * 8 * 8


@pytest.fixture(scope="module")
def micro():
    model, _, _, _ = create_model("ticlip-vit-micro", None, seed=0)
    return model, PixelSpec.of(model).size, model.context_length


def test_dummies_are_built_on_the_models_device():
    # the meta device stands in for a GPU: parameters off the default (CPU) device, and the
    # flop counter counts meta tensors; CPU dummies would hit the forward's device check
    model = TinyClip().to("meta")
    assert forward_macs_per_sample(model, 8, 5) == TINY_MACS


def test_a_training_forward_is_counted_on_cpu():
    # the attention projections and the attention itself count, though inference on CPU would
    # take a fused kernel the flop counter cannot look into
    model = TinyClip().train()
    assert forward_macs_per_sample(model, 8, 5) == TINY_MACS
    assert model.training and torch.backends.mha.get_fastpath_enabled()  # both restored
    model.eval()
    assert forward_macs_per_sample(model, 8, 5) == TINY_MACS and not model.training


def test_the_open_clip_model_counts_the_same_on_every_device_and_dtype(micro):
    model, size, context = micro
    on_cpu = forward_macs_per_sample(model, size, context)
    assert on_cpu > 0
    assert forward_macs_per_sample(copy.deepcopy(model).to("meta"), size, context) == on_cpu
    assert forward_macs_per_sample(copy.deepcopy(model).to(torch.bfloat16), size, context) == on_cpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_open_clip_model_is_counted_on_cuda(micro):
    model, size, context = micro
    on_cuda, _, _, _ = create_model("ticlip-vit-micro", None, device="cuda", seed=0)
    assert next(on_cuda.parameters()).is_cuda
    assert forward_macs_per_sample(on_cuda, size, context) == forward_macs_per_sample(model, size, context)
    assert forward_macs_per_sample(on_cuda.to(torch.bfloat16), size, context) == \
        forward_macs_per_sample(model, size, context)
