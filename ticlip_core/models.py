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


def model_image_size(name: str) -> int:
    """Input resolution (pixels per side) of the open_clip model ``name``, from its config."""
    register_model_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"unknown open_clip model '{name}'")
    size = cfg["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _is_local_checkpoint(pretrained: str | None) -> bool:
    return pretrained is not None and (os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors")))


def check_pretrained(name: str, pretrained: str | None) -> None:
    """Fail early, naming the problem, for a missing local checkpoint or a tag open_clip does not know."""
    register_model_configs()
    if pretrained is None:
        return
    if _is_local_checkpoint(pretrained):
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"model.pretrained: local checkpoint '{pretrained}' does not exist")
        return
    if not open_clip.get_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(f"model.pretrained: '{pretrained}' is neither an open_clip pretrained tag of {name} "
                         f"(known: {', '.join(tags) or 'none'}) nor a local checkpoint path")


def create_model(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
                 image_size: int | None = None, seed: int = 0, load_weights: bool = True):
    """Create an open_clip model by name and return ``(model, preprocess_train, preprocess_val, tokenizer)``.

    ``pretrained`` is an open_clip pretrained tag (downloaded by open_clip, so it needs the
    internet), a path to a local checkpoint (a state dict, as open_clip's or this pipeline's
    ``model.pt``), or ``None`` for a random initialisation drawn from ``seed`` (the global RNG
    state is left as it was). With ``load_weights=False`` the weights stay random but a tag's
    preprocessing (mean, std, interpolation) is applied, so checkpoints trained from it can be
    loaded and evaluated without downloading anything.
    """
    check_pretrained(name, pretrained)
    kwargs = {"force_image_size": image_size} if image_size else {}
    tag = pretrained if pretrained and not _is_local_checkpoint(pretrained) else None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
                name, pretrained=pretrained if load_weights else None, device=device, output_dict=True, **kwargs)
        except RuntimeError as err:
            if tag and load_weights and "Failed to download" in str(err):
                raise RuntimeError(
                    f"model.pretrained: open_clip could not download the '{tag}' weights of {name}; this needs "
                    "the internet (none here?). Offline, fetch the checkpoint on a connected machine "
                    "(open_clip_pytorch_model.bin from the tag's Hugging Face repo) and set model.pretrained "
                    f"to its local path. ({err})") from err
            raise
    if tag and not load_weights:
        cfg = open_clip.factory.merge_preprocess_dict(open_clip.get_model_preprocess_cfg(model),
                                                      open_clip.get_pretrained_cfg(name, tag))
        open_clip.set_model_preprocess_cfg(model, cfg)
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
