"""open_clip's contrastive training recipe, the pieces a study assembles around ``engine.loop``:
AdamW with open_clip_train's parameter groups and ``cosine_lr`` schedule, ``ClipLoss`` (across
data-parallel ranks when there are several), and the logit scale clamped to ln(100) after each
update. TiC's steps (``tic.train``) and CL-CLIP's original model (``clclip.base_model``) train
with it.
"""
from __future__ import annotations

import math

import torch
from open_clip_train.scheduler import cosine_lr

from ticlip_core.engine.loop import BatchLoss
from ticlip_core.lean_imports import import_open_clip
from ticlip_core.engine.speed import prepare_images



def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's split: no weight decay on gains, biases, embeddings and logit scale."""
    def exclude(name, p):
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def adamw_cosine(model: torch.nn.Module, max_lr: float, weight_decay: float, warmup: int, iterations: int):
    """Fused AdamW over ``param_groups`` and open_clip_train's ``cosine_lr`` schedule (linear
    warm-up for ``warmup`` iterations to ``max_lr``, then cosine to 0 at ``iterations``).
    Returns ``(optimizer, schedule)``; ``schedule(i)`` sets and returns iteration i's LR."""
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=max_lr, fused=True)
    return optimizer, cosine_lr(optimizer, max_lr, warmup, iterations)


#: a state tensor at least this large whose rows are mostly all zero is stored row-sparse (the
#: moments of the token embedding's rows no caption uses are exactly zero: most of the vocabulary)
_SPARSE_MIN_NUMEL = 4096


def save_optimizer_state(optimizer: torch.optim.Optimizer, path) -> None:
    """Write ``optimizer.state_dict()`` (AdamW's per-parameter step counts and moments, and its
    groups) to ``path`` atomically, tensors on the CPU: what a step continuing from this one's
    checkpoint starts from (``load_optimizer_state``), as open_clip_train's ``--resume`` does.
    A large moment whose rows are mostly zero keeps only its non-zero rows (exactly restored)."""
    from ticlip_core.models import atomic_torch_save

    state = _to_cpu(optimizer.state_dict())
    state["state"] = {i: {k: _pack_rows(v) for k, v in s.items()} for i, s in state["state"].items()}
    atomic_torch_save(state, path)


def read_optimizer_state(path) -> dict:
    """The optimizer state_dict ``save_optimizer_state`` wrote to ``path``, row-packed moments
    restored. A missing file raises ``FileNotFoundError``, one that cannot be read or is no
    optimizer state ``ValueError``, each naming the path."""
    import pickle
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"optimizer state {path} does not exist: the step that continues from its "
                                "checkpoint carries it over (train.carry_optimizer); rerun the step that writes it")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"optimizer state {path} is truncated or corrupt, so it cannot be carried over; delete it "
                         f"and rerun the step that writes it ({type(err).__name__}: {str(err)[:300]})") from err
    if not isinstance(saved, dict) or not {"state", "param_groups"} <= set(saved):
        raise ValueError(f"optimizer state {path} is not an optimizer state_dict (no 'state' and 'param_groups')")
    saved["state"] = {i: {k: _unpack_rows(v) for k, v in s.items()} for i, s in saved["state"].items()}
    return saved


def load_optimizer_state(optimizer: torch.optim.Optimizer, path) -> None:
    """Carry the per-parameter state saved at ``path`` (``save_optimizer_state``) into
    ``optimizer``: step counts and moments; the groups' settings (LR, weight decay) stay the new
    optimizer's own. The saved state must be of an optimizer over the same parameters in the same
    groups (the same model and ``param_groups``): a file that cannot be read, or whose groups or
    tensor shapes differ, raises ``ValueError`` naming the path and the problem."""
    saved = read_optimizer_state(path)
    current = optimizer.state_dict()
    sizes = [len(g["params"]) for g in current["param_groups"]]
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    if sizes != saved_sizes:
        raise ValueError(f"optimizer state {path} holds parameter groups of {saved_sizes} tensors, this optimizer "
                         f"{sizes}: it was saved for another model or another parameter split")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for index, state in saved["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != params[index].shape:
                raise ValueError(f"optimizer state {path}: '{key}' of parameter {index} has shape "
                                 f"{tuple(value.shape)}, the parameter {tuple(params[index].shape)}")
    current["state"] = saved["state"]
    optimizer.load_state_dict(current)


def _pack_rows(value):
    """``value``, or, for a large tensor with fewer than half of its rows non-zero, a dict of
    those rows (``rows``, ``values``) and the ``shape`` (``_unpack_rows`` restores it exactly)."""
    if not torch.is_tensor(value) or value.dim() < 2 or value.numel() < _SPARSE_MIN_NUMEL:
        return value
    rows = value.reshape(value.shape[0], -1).ne(0).any(dim=1).nonzero().flatten()
    if len(rows) * 2 >= value.shape[0]:
        return value
    return {"rows": rows, "values": value[rows].clone(), "shape": list(value.shape)}


def _unpack_rows(value):
    """The tensor ``_pack_rows`` packed (anything else unchanged)."""
    if not isinstance(value, dict):
        return value
    full = torch.zeros(value["shape"], dtype=value["values"].dtype)
    full[value["rows"]] = value["values"]
    return full


def _to_cpu(value):
    """``value`` with every tensor in it (nested dicts and lists) moved to the CPU."""
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def clip_loss(world):
    """open_clip's symmetric InfoNCE; with several ranks, each rank's rows against every rank's
    columns, gradients through the gather."""
    open_clip = import_open_clip()
    if world.world_size > 1:
        return open_clip.ClipLoss(local_loss=True, gather_with_grad=True, rank=world.rank,
                                  world_size=world.world_size)
    return open_clip.ClipLoss()


def logit_scale_clamp(model: torch.nn.Module):
    """The loop's ``after_update`` hook: clamp ``model.logit_scale`` to [0, ln(100)] (CLIP's cap)."""
    def clamp() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    return clamp


def contrastive_batch_loss(forward, loss_fn, settings: dict, device, world, forward_macs_per_sample: int):
    """The loop's ``compute_loss`` for image-caption batches (``data.loader.Batch``): images
    prepared by ``engine.speed.prepare_images``, ``loss_fn`` on the forward's features; samples
    and forward MACs counted over every rank (each rank's batch holds as many good samples:
    ``train_batches`` tops them up)."""
    def compute_loss(batch) -> BatchLoss:
        images, texts = prepare_images(batch.images, settings, device), batch.texts.to(device)
        out = forward(images, texts)
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        samples = len(batch.keys) * world.world_size
        return BatchLoss(loss, out, batch, samples=samples, forward_macs=forward_macs_per_sample * samples,
                         skipped=batch.skipped, skipped_by_reason=batch.skipped_by_reason)
    return compute_loss
