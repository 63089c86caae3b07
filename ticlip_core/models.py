"""Model factory: open_clip models, the project's tiny CPU configs, tokenizer and checkpoints.

Every model is an open_clip model. The tiny configs in ``model_configs/`` are registered with
``open_clip.add_model_config`` so they are created by name like any other open_clip model.
"""
from __future__ import annotations

import errno
import functools
import os
import pickle
import shutil
from pathlib import Path

import torch

from ticlip_core.config_checks import check_model, is_local_checkpoint
from ticlip_core.lean_imports import import_open_clip

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


class NonFiniteWeightsError(ValueError):
    """A state dict holds NaN or inf weights (a diverged run); it is neither written nor loaded."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file cannot be read: truncated (an interrupted copy or write) or corrupt."""


def register_model_configs() -> None:
    """Register the project's model configs (``ticlip-vit-tiny``, ...) with open_clip, once."""
    global _registered
    if not _registered:
        import_open_clip().add_model_config(MODEL_CONFIG_DIR)
        _registered = True


def check_pretrained(name: str, pretrained: str | None) -> None:
    """Fail early, naming the problem, for an unknown model, a missing local checkpoint or a tag
    open_clip does not know (the checks the workflow also runs on the config at dry-run)."""
    register_model_configs()
    check_model({"name": name, "pretrained": pretrained}, "model")


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
    open_clip = import_open_clip(name)  # the first import leaves out what this model does not use
    check_pretrained(name, pretrained)
    kwargs = {"force_image_size": image_size} if image_size else {}
    tag = pretrained if pretrained and not is_local_checkpoint(pretrained) else None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
                name, pretrained=pretrained if load_weights else None, device=device, output_dict=True, **kwargs)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            if load_weights and is_local_checkpoint(pretrained):
                raise CorruptCheckpointError(
                    f"model.pretrained: could not load the local checkpoint '{pretrained}' into {name}: it is "
                    f"truncated, corrupt, or not a {name} state dict; replace the file ({err})") from err
            if tag and load_weights and "Failed to download" in str(err):
                raise RuntimeError(
                    f"model.pretrained: open_clip could not download the '{tag}' weights of {name}; this needs "
                    "the internet (none here?). Offline, fetch the checkpoint on a connected machine "
                    "(open_clip_pytorch_model.bin from the tag's Hugging Face repo) and set model.pretrained "
                    f"to its local path. ({err})") from err
            raise
    if load_weights and is_local_checkpoint(pretrained):
        check_finite_weights(model.state_dict(), f"model.pretrained: local checkpoint '{pretrained}'", "load")
    if tag and not load_weights:
        cfg = open_clip.factory.merge_preprocess_dict(open_clip.get_model_preprocess_cfg(model),
                                                      open_clip.get_pretrained_cfg(name, tag))
        open_clip.set_model_preprocess_cfg(model, cfg)
    return model, preprocess_train, preprocess_val, tokenizer_of(name)


@functools.lru_cache(maxsize=None)
def tokenizer_of(name: str):
    """open_clip's tokenizer for model ``name``, built once per process: a job that creates a model per
    grid point, session chain or memory size otherwise rebuilt the BPE tables each time (0.2 s). The
    tokenizer keeps no state that changes its output (only a cache of words already split)."""
    return import_open_clip(name).get_tokenizer(name)


def check_finite_weights(state_dict: dict, where: str, action: str) -> None:
    """Raise ``NonFiniteWeightsError`` naming ``where`` (a path) and the first offending keys if
    any floating-point tensor of ``state_dict`` holds NaN or inf; ``action`` is what is refused."""
    if not isinstance(state_dict, dict):
        return  # not a state dict: load_state_dict says so
    bad = [key for key, value in state_dict.items()
           if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise NonFiniteWeightsError(
            f"{where}: refusing to {action} weights holding NaN/inf in {', '.join(bad[:5])}{more} "
            "(the training run diverged or the file was damaged)")


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically: written (and fsynced) under ``path.tmp``, then
    renamed, so ``path`` is either its old content or the complete new file.

    If writing fails (a full disk, a quota, a read-only or vanished filesystem) the partial
    ``.tmp`` is removed, ``path`` is left as it was, and an ``OSError`` names the path and says
    why: "no space left on the disk" when the error is ENOSPC or the filesystem is (nearly)
    full, else that the disk/filesystem is unwritable. torch's own error (a C++ stream error
    that names neither the file nor the disk) is chained as the cause.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        full = _no_space(err, path.parent)
        tmp.unlink(missing_ok=True)
        reason = ("no space left on the disk/filesystem holding it; free some space and rerun" if full else
                  "the disk/filesystem is full or unwritable (quota, read-only, permissions); fix it and rerun")
        kept = "the earlier file there is unchanged" if path.exists() else "nothing was written"
        raise OSError(errno.ENOSPC if full else getattr(err, "errno", None) or errno.EIO,
                      f"could not write {path}: {reason} ({kept}; {type(err).__name__}: {err})") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _no_space(err: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC anywhere in the exception chain, or under
    1 MiB free on the filesystem of ``folder`` (checked while the partial file still holds its share)."""
    seen = err
    while seen is not None:
        if getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(folder).free < 2 ** 20
    except OSError:
        return False


def save_checkpoint(state_dict: dict, path: str | Path) -> None:
    """Write a plain state dict to ``path`` atomically (``atomic_torch_save``).

    Weights holding NaN or inf are refused (``NonFiniteWeightsError`` naming the path and the
    tensors) and nothing is written.
    """
    check_finite_weights(state_dict, str(path), "save")
    atomic_torch_save(state_dict, path)


def load_checkpoint(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a plain state dict (``weights_only=True``) from ``path`` into ``model``.

    A truncated or unreadable file raises ``CorruptCheckpointError`` naming the path; weights
    holding NaN or inf raise ``NonFiniteWeightsError`` naming the path and the tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise CorruptCheckpointError(
            f"checkpoint {path} is truncated or corrupt (or not a plain state dict), so it cannot be loaded; "
            f"delete it and rerun the rule that writes it ({type(err).__name__}: {str(err)[:300]})") from err
    check_finite_weights(state, str(path), "load")
    model.load_state_dict(state)
    return model


def load_start_model(model_cfg: dict, base_checkpoint: str | None, device, seed: int):
    """A study's starting CLIP in eval mode, with its tokenizer: ``model_cfg``'s open_clip model
    (``{name, pretrained}``: a pretrained tag or local checkpoint), or, when ``base_checkpoint``
    is given, that model with the pipeline-trained base checkpoint's weights."""
    model, _, _, tokenizer = create_model(model_cfg["name"], None if base_checkpoint else model_cfg["pretrained"],
                                          device=device, seed=seed)
    if base_checkpoint:
        load_checkpoint(model, base_checkpoint)
    model.eval()
    return model, tokenizer
