"""What the memclip baselines with expanding image encoders (DER, FOSTER) share: frozen copies
of the image tower whose features are concatenated with the trained one's, linear heads over
the classes seen so far that grow when classes arrive (old weights kept, as PyCIL's
``update_fc``/``generate_fc``), and the plain-value state these travel in between tasks.

Heads sit on ``visual(x)``, the image tower's projected (unnormalised) embedding. A module is
rebuilt from saved tensors without drawing from the global RNG (``linear_from_state``), so a
chain resumed from the chain store draws exactly what an uninterrupted one draws. Only the
method files import this module, inside their hooks (the registry reads them without torch).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without any)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def feature_dim(visual: nn.Module, image_size: int | tuple | None = None) -> int:
    """The width of ``visual(x)``: its ``output_dim`` (open_clip's image towers), else found from
    one forward of a zero image of ``image_size`` (default: the tower's ``image_size``)."""
    dim = getattr(visual, "output_dim", None)
    if dim is not None:
        return int(dim)
    size = image_size or getattr(visual, "image_size", None)
    if size is None:
        raise ValueError("feature_dim: the extractor has no output_dim and no image_size to probe it with")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    was = visual.training
    visual.eval()
    with torch.no_grad():
        out = visual(torch.zeros(1, 3, h, w, device=module_device(visual)))
    visual.train(was)
    return int(out.shape[-1])


def new_linear(in_dim: int, out_dim: int, device=None) -> nn.Linear:
    """A linear head initialised as PyCIL's ``SimpleLinear``: Kaiming-uniform weights with the
    linear gain (U(-sqrt(3/in), sqrt(3/in))) and zero bias (draws from the global RNG)."""
    layer = nn.Linear(in_dim, out_dim, device=device)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="linear")
        layer.bias.zero_()
    return layer


def expand_linear(old: nn.Linear | None, in_dim: int, out_dim: int, device=None) -> nn.Linear:
    """A new head ``in_dim -> out_dim`` (``new_linear``) whose top-left block holds ``old``'s
    weights and whose first biases are ``old``'s (PyCIL's ``DERNet``/``FOSTERNet.update_fc``:
    old classes keep their weights on the old extractors' features, which come first; their
    weights on the new extractor's features and every weight of the new classes are fresh)."""
    layer = new_linear(in_dim, out_dim, device)
    if old is not None:
        n, m = old.weight.shape
        if n > out_dim or m > in_dim:
            raise ValueError(f"expand_linear: a {n}x{m} head does not fit in a {out_dim}x{in_dim} one")
        with torch.no_grad():
            layer.weight[:n, :m] = old.weight.detach().to(layer.weight)
            layer.bias[:n] = old.bias.detach().to(layer.bias)
    return layer


def linear_state(layer: nn.Linear | None) -> dict | None:
    """``{"weight", "bias"}`` of ``layer`` as CPU tensors (None for no layer)."""
    if layer is None:
        return None
    return {"weight": layer.weight.detach().cpu().clone(), "bias": layer.bias.detach().cpu().clone()}


def linear_from_state(state: dict | None, device=None, *, trainable: bool = True) -> nn.Linear | None:
    """The head ``linear_state`` saved, rebuilt without drawing from the global RNG (the saved
    tensors replace uninitialised storage); frozen when not ``trainable``."""
    if state is None:
        return None
    out_dim, in_dim = state["weight"].shape
    layer = torch.nn.utils.skip_init(nn.Linear, in_dim, out_dim, device=device)
    with torch.no_grad():
        layer.weight.copy_(state["weight"])
        layer.bias.copy_(state["bias"])
    layer.requires_grad_(trainable)
    return layer


def load_linear_(layer: nn.Linear, state: dict) -> None:
    """Copy ``state`` (``linear_state``) into ``layer`` in place (an optimiser holding its
    parameters keeps them)."""
    with torch.no_grad():
        layer.weight.copy_(state["weight"])
        layer.bias.copy_(state["bias"])


def module_state(module: nn.Module) -> dict:
    """``module``'s state dict as CPU tensor copies (plain values for the chain store)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def frozen_from_state(template: nn.Module, state: dict) -> nn.Module:
    """A frozen extractor (eval mode, no gradients) built from a deep copy of ``template``
    (the model's image tower) holding the weights ``state``."""
    out = copy.deepcopy(template)
    out.load_state_dict(state)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def concat_features(frozen: list[nn.Module], trained: nn.Module | None, x) -> tuple:
    """``(features, trained_features)``: the embeddings of ``x`` through every ``frozen``
    extractor (in order, without gradients) and then ``trained`` (with them), concatenated
    along the feature axis (PyCIL's ``DERNet.forward``); ``trained_features`` is the last block
    (None without ``trained``)."""
    parts = []
    if frozen:
        with torch.no_grad():
            parts = [f(x) for f in frozen]
    last = trained(x) if trained is not None else None
    if last is not None:
        parts.append(last)
    return torch.cat(parts, dim=1), last


def weight_align_(head: nn.Linear, num_old: int, num_new: int, value: float = 1.0) -> float:
    """Weight aligning (WA, Zhao et al. CVPR 2020, as PyCIL's ``weight_align``): scale the new
    classes' weight rows (the last ``num_new``) by ``gamma = mean ||w_old|| / mean ||w_new|| *
    value ** (num_old / num_new)``; returns gamma (1.0 and nothing changed without old or new
    classes)."""
    if num_old <= 0 or num_new <= 0:
        return 1.0
    with torch.no_grad():
        w = head.weight
        norms = w.norm(p=2, dim=1)
        gamma = (norms[:-num_new].mean() / norms[-num_new:].mean()) * value ** (num_old / num_new)
        w[-num_new:] *= gamma
    return float(gamma)


def class_counts(labels, rows, classes: list[int]) -> list[int]:
    """How many of ``rows`` (train-table rows) have each class id of ``classes``, in that order."""
    import numpy as np

    labels = np.asarray(labels)[np.asarray(list(rows), dtype=np.int64)]
    return [int((labels == c).sum()) for c in classes]


def train_rows(ctx) -> list[int]:
    """The rows task ``ctx.t`` trains on by default: its own plus the shared plan's memory
    (``MemclipMethod.training_rows`` for a method with memory), sorted."""
    return sorted(set(int(r) for r in ctx.data.task_rows) | set(int(r) for r in ctx.data.memory_rows))
