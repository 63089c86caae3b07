"""Model factory: open_clip models, the project's tiny CPU configs, tokenizer and checkpoints.

Every model is an open_clip model. The tiny configs in ``model_configs/`` are registered with
``open_clip.add_model_config`` so they are created by name like any other open_clip model.
"""
from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


def register_model_configs() -> None:
    """Register the project's model configs (``ticlip-vit-tiny``, ...) with open_clip, once."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


def _is_local_checkpoint(pretrained: str | None) -> bool:
    return pretrained is not None and (os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors")))


def create_model(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
                 image_size: int | None = None, seed: int = 0):
    """Create an open_clip model by name and return ``(model, preprocess_train, preprocess_val, tokenizer)``.

    ``pretrained`` is an open_clip pretrained tag (downloaded by open_clip, so it needs the
    internet), or a path to a local checkpoint, or ``None`` for a random initialisation drawn
    from ``seed`` (the global RNG state is left as it was).
    """
    register_model_configs()
    if _is_local_checkpoint(pretrained) and not Path(pretrained).is_file():
        raise FileNotFoundError(f"model.pretrained: local checkpoint '{pretrained}' does not exist")
    kwargs = {"force_image_size": image_size} if image_size else {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, output_dict=True, **kwargs)
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess_train, preprocess_val, tokenizer


def save_checkpoint(state_dict: dict, path: str | Path) -> None:
    """Write a plain state dict to ``path`` atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state_dict, tmp)
    os.replace(tmp, path)


def load_checkpoint(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a plain state dict (``weights_only=True``) from ``path`` into ``model``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model
