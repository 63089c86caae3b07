"""A model's input pixels: resolution, resize and crop, normalisation (open_clip's preprocess config).

Kept apart from the streaming loader so that jobs which only render or resize images (the
synthetic benchmarks, the base pool) need neither torch nor webdataset: torch is imported only
where a tensor is made.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PixelSpec:
    """Input resolution and normalisation of a model (open_clip's preprocess config)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, model) -> "PixelSpec":
        """The pixel spec open_clip records for ``model``."""
        from ticlip_core.lean_imports import import_open_clip

        cfg = import_open_clip().get_model_preprocess_cfg(model)
        size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
        return cls(int(size), tuple(cfg["mean"]), tuple(cfg["std"]))

    def to_array(self, image: Image.Image) -> np.ndarray:
        """RGB uint8 ``(size, size, 3)``: shortest side resized (bicubic), then centre-cropped."""
        image = image.convert("RGB")
        if image.size != (self.size, self.size):
            w, h = image.size
            scale = self.size / min(w, h)
            image = image.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))),
                                 Image.BICUBIC)
            w, h = image.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        return np.asarray(image, dtype=np.uint8)

    def to_tensor(self, arrays: list[np.ndarray]):
        """Stack uint8 HWC arrays into a normalised float ``(N, 3, size, size)`` batch."""
        import torch

        return self.normalise(torch.from_numpy(np.stack(arrays)))

    def normalise(self, images):
        """uint8 ``(N, H, W, 3)`` images -> the model's normalised float ``(N, 3, H, W)`` input."""
        import torch

        x = images.permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)
