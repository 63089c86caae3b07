"""Weight-space interpolation of two checkpoints of the same architecture (patching, IMM)."""
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
