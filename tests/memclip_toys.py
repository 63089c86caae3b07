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
