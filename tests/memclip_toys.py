"""Stand-in "CLIP" models for the memclip baselines' mechanism tests: only the image tower the
methods with their own heads use (``model.visual``, with open_clip's ``output_dim``), tiny and
linear so every test runs in well under a second.

``Toy`` (DER, FOSTER) maps hand-made 4-d inputs to d = 3 features; ``Model`` (Co2L, CaSSLe)
maps ``(B, 3, 8, 8)`` images to 4 features."""
from torch import nn

D, IN = 3, 4


class Extractor(nn.Module):
    """A linear "image tower": 4-d inputs to d = 3 features (``output_dim`` as open_clip's)."""

    output_dim = D

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(IN, D)

    def forward(self, x):
        """The features ``(B, D)`` of inputs ``(B, IN)``."""
        return self.proj(x)


class Toy(nn.Module):
    """A "CLIP" with only the image tower the methods use."""

    def __init__(self):
        super().__init__()
        self.visual = Extractor()


class Tower(nn.Module):
    """A linear "image tower" on flattened ``(B, 3, 8, 8)`` images: 4 features (``output_dim``)."""

    output_dim = 4

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        """The features ``(B, 4)`` of images ``(B, 3, 8, 8)``."""
        return self.fc(x.flatten(1))


class Model(nn.Module):
    """A "CLIP" with only ``Tower`` as its image tower."""

    def __init__(self):
        super().__init__()
        self.visual = Tower()


def micro_study_config(*, method_options=None, grids=None, benchmark=None, **train) -> dict:
    """The memclip config block the in-process study tests run: the micro model, one epoch, one
    thread, no periodic resume points; ``train`` overrides the training keys."""
    memclip = {
        "model": {"name": "ticlip-vit-micro", "pretrained": None}, "templates": ["a photo of a {}."],
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "threads": 1, "log_every": 100,
                  "resume_every": 0, "eval_batch_size": 64, "workers": 0, **train},
        "method_options": method_options or {}, "grids": grids or {}}
    if benchmark is not None:
        memclip["benchmark"] = benchmark
    return {"seed": 0, "memclip": memclip}
