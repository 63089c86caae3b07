"""Pretrained weights: a local checkpoint loads exactly; a tag fails offline with a clear error."""
import os
import subprocess
import sys

import pytest
import torch

from ticlip_core.models import create_model, save_checkpoint


def test_local_checkpoint_loads_its_weights(tmp_path):
    source, *_ = create_model("ticlip-vit-micro", None, seed=1)
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(source.state_dict(), path)
    loaded, *_ = create_model("ticlip-vit-micro", str(path), seed=0)
    fresh, *_ = create_model("ticlip-vit-micro", None, seed=0)
    for (k, a), b, c in zip(source.state_dict().items(), loaded.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(a, c) for a, c in zip(source.state_dict().values(), fresh.state_dict().values()))


def test_missing_checkpoint_and_unknown_tag_are_named():
    with pytest.raises(FileNotFoundError, match="local checkpoint '/nowhere/model.pt' does not exist"):
        create_model("ticlip-vit-micro", "/nowhere/model.pt")
    with pytest.raises(ValueError, match="'nonsense' is neither an open_clip pretrained tag of ViT-B-32 "
                                         r"\(known: openai, .*laion2b_s34b_b79k"):
        create_model("ViT-B-32", "nonsense")


def test_a_tag_without_internet_fails_naming_the_local_alternative():
    # A subprocess, so the Hugging Face hub's offline switch is read at import time.
    code = ("from ticlip_core.models import create_model\n"
            "create_model('ViT-B-32', 'laion2b_s34b_b79k')\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-ticlip-hf-cache"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    assert "could not download the 'laion2b_s34b_b79k' weights of ViT-B-32; this needs the internet" in out.stderr
    assert "set model.pretrained to its local path" in out.stderr


def test_a_tag_sets_the_preprocessing_without_downloading(monkeypatch):
    """Evaluation rebuilds a tag-initialised model without its weights but with its mean/std."""
    import open_clip

    tag_cfg = {"hf_hub": "nobody/nothing", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
               "interpolation": "bicubic", "resize_mode": "shortest"}
    real = open_clip.get_pretrained_cfg
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda name, tag: tag_cfg if tag == "fake-tag" else real(name, tag))
    model, *_ = create_model("ticlip-vit-micro", "fake-tag", load_weights=False)
    cfg = open_clip.get_model_preprocess_cfg(model)
    assert tuple(cfg["mean"]) == (0.5, 0.5, 0.5) and tuple(cfg["std"]) == (0.25, 0.25, 0.25)
    plain, *_ = create_model("ticlip-vit-micro", None)
    assert tuple(open_clip.get_model_preprocess_cfg(plain)["mean"]) != (0.5, 0.5, 0.5)
