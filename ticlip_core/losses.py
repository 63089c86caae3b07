"""Distillation terms the methods of every study add to their study's loss (one KL, used by
TiC's similarity-matrix LwF and CL-CLIP's LwF family; PyCIL's tempered KD, used by memclip's
iCaRL and FOSTER)."""
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
    return (kl_distillation(student_logits, teacher_logits) + kl_distillation(student_logits.T, teacher_logits.T)) / 2


def kl_distillation(student_logits, teacher_logits):
    """KL(p_old || p_new), averaged over the batch: the LwF term of Eq. 5 and Eq. 17.

    KL(p_old || p_new) = -sum_c p_old^c log p_new^c + (the teacher's entropy, a constant): the
    standard LwF direction (Li & Hoiem), the teacher's probabilities weighting the student's
    log-probabilities. Eq. 5 and 17 as printed write -sum_c p_new^c log p_old^c, the roles
    swapped; we follow LwF. Gradients flow through ``student_logits`` only.
    """
    return F.kl_div(F.log_softmax(student_logits.float(), dim=-1),
                    F.log_softmax(teacher_logits.detach().float(), dim=-1),
                    log_target=True, reduction="batchmean")


def kd_loss(pred, soft, T: float):
    """PyCIL's ``_KD_loss`` (Hinton et al.'s distillation without the T^2 factor): the
    cross-entropy ``-sum_c softmax(soft / T)_c log_softmax(pred / T)_c``, summed over classes and
    averaged over the batch; ``soft`` are the old model's logits ``(B, K)``, ``pred`` the new
    model's on the same K classes."""
    return -(torch.softmax(soft / T, dim=1) * torch.log_softmax(pred / T, dim=1)).sum() / pred.shape[0]
