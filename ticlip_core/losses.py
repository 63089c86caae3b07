"""Loss terms added to open_clip's contrastive ``ClipLoss`` by continual-training methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_logits(image_features: torch.Tensor, text_features: torch.Tensor,
                      logit_scale: torch.Tensor) -> torch.Tensor:
    """The CLIP image-text similarity matrix of a batch, ``scale * I @ T^T`` (rows = images)."""
    return logit_scale * image_features @ text_features.T


def similarity_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """LwF for CLIP (TiC-CLIP Sec. 4, after Ding et al. 2022): KL(teacher || student) of the
    image-text similarity matrices, softmax over each row, averaged over both directions.

    ``KL_i2t = mean_i KL(softmax(T_i.) || softmax(S_i.))`` over images (rows) and ``KL_t2i``
    the same over texts (columns); the loss is ``(KL_i2t + KL_t2i) / 2``. It is zero when the
    two matrices are equal and positive otherwise. The teacher carries no gradient.
    """
    teacher_logits = teacher_logits.detach()
    def kl(s, t):
        return F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), log_target=True, reduction="batchmean")
    return (kl(student_logits, teacher_logits) + kl(student_logits.T, teacher_logits.T)) / 2
