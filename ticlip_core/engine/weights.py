"""Weight-space helpers the methods share: interpolating two checkpoints of one architecture
(Patching, IMM) and a frozen copy of a model (the teacher of LwF and its kin)."""
from __future__ import annotations

import torch


def interpolate_state_dicts(theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor],
                            alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * theta0 + alpha * theta1`` for every floating-point tensor (Ilharco et al. 2022, Eq. 1).

    ``torch.lerp`` is exact at the ends: ``alpha = 0`` returns ``theta0`` and ``alpha = 1``
    ``theta1`` bit for bit. Non-float tensors (integer buffers) must be equal in both and are
    copied. The two state dicts must have the same keys and shapes.
    """
    if theta0.keys() != theta1.keys():
        raise ValueError(f"state dicts differ in keys: {sorted(set(theta0) ^ set(theta1))[:5]}")
    out = {}
    for k, a in theta0.items():
        b = theta1[k]
        if a.shape != b.shape:
            raise ValueError(f"'{k}' has shape {tuple(a.shape)} in one state dict and {tuple(b.shape)} in the other")
        if a.is_floating_point():
            out[k] = torch.lerp(a, b.to(a.dtype), float(alpha))
        else:
            if not torch.equal(a, b):
                raise ValueError(f"non-float tensor '{k}' differs between the state dicts; cannot interpolate")
            out[k] = a.clone()
    return out


def frozen_copy(model: torch.nn.Module, state: dict | None = None, device=None) -> torch.nn.Module:
    """A frozen, eval-mode deep copy of ``model`` (no gradients, none required), holding the
    weights ``state`` when given, on ``device`` when given: a distillation teacher."""
    import copy

    teacher = copy.deepcopy(model)
    if state is not None:
        teacher.load_state_dict(state)
    for param in teacher.parameters():
        param.grad = None
    if device is not None:
        teacher = teacher.to(device)
    return teacher.eval().requires_grad_(False)
