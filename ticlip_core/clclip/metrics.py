"""CL-CLIP metrics (Ding et al., Sec. VI-A; docs/metrics.md).

Accuracy matrix convention: ``A[i][j]`` is the accuracy on session ``j``'s classes (update-task
test crops of those classes) after training session ``i``, for ``S`` sessions (0-based; NaN
above the diagonal is allowed, the formulas never read it):

* UT-Acc, OST: overall accuracy over all update-task test samples (``ut_acc_ost``).
* UT-Acc, MST: ``(1/S) sum_j A[S-1][j]``, the mean over sessions of the final model's
  accuracy on each session's classes (``ut_acc_mst``).
* Bwt: ``1/(S-1) sum_{i=0}^{S-2} (A[S-1][i] - A[i][i])`` (the paper's formula, from GEM; the
  authors' code divides by S instead).
* A-Acc: ``(UT-Acc + ZS-Acc) / 2``.
* TR@k / IR@k: image->text and text->image Recall@k; an image may have several captions
  (COCO: about five), and is retrieved correctly at k if any of them is among the top k
  texts. COCO reports the mean over 5 folds of 1k test images (``recall_folds``).

Accuracies and recalls are fractions in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ticlip_core.retrieval import recall_at_k as _recall_at_k


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------

def accuracy_matrix(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """``A`` as a float ``(S, S)`` array from ``rows[i][j]`` = accuracy on session ``j``'s classes
    after session ``i``. Rows may be shorter than ``S`` (the missing upper entries become NaN);
    the diagonal and everything below it must be finite."""
    S = len(rows)
    if S == 0:
        raise ValueError("accuracy matrix: no sessions")
    A = np.full((S, S), np.nan)
    for i, row in enumerate(rows):
        if not i + 1 <= len(row) <= S:
            raise ValueError(f"accuracy matrix: row {i} has {len(row)} entries; expected {i + 1} to {S}")
        A[i, :len(row)] = np.asarray(row, dtype=float)
    _check_matrix(A)
    return A


def _check_matrix(A) -> np.ndarray:
    """``A`` as a float array, checked square with a finite lower triangle (diagonal included)."""
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square S x S with S >= 1, got shape {A.shape}")
    lower = A[np.tril_indices(A.shape[0])]
    if not np.isfinite(lower).all():
        raise ValueError("accuracy matrix: entries on or below the diagonal must be finite "
                         "(A[i][j] for j <= i: accuracy on session j after session i)")
    return A


def session_accuracies(correct, labels, sessions: Sequence[Sequence[int]]) -> np.ndarray:
    """Accuracy on each session's classes: ``out[j]`` = mean of ``correct`` over the samples
    whose label is in ``sessions[j]`` (NaN if there are none). One row of ``A``. ``correct``
    is per-sample correctness, boolean or a credit in [0, 1] (``session.class_accuracy``)."""
    correct = _credit(correct)
    labels = torch.as_tensor(labels).long().flatten()
    if correct.shape != labels.shape:
        raise ValueError(f"session_accuracies: {len(correct)} correctness flags for {len(labels)} labels")
    out = np.full(len(sessions), np.nan)
    for j, classes in enumerate(sessions):
        mask = torch.isin(labels, torch.as_tensor(list(classes), dtype=torch.long))
        if mask.any():
            out[j] = correct[mask].mean().item()
    return out


def ut_acc_ost(correct) -> float:
    """OST UT-Acc: correct predictions / all update-task test samples (the mean of per-sample
    correctness, boolean or a credit in [0, 1])."""
    correct = _credit(correct)
    if correct.numel() == 0:
        raise ValueError("ut_acc_ost: no test samples")
    return correct.mean().item()


def _credit(correct) -> torch.Tensor:
    """Per-sample correctness as a flat float64 tensor, checked to lie in [0, 1]."""
    correct = torch.as_tensor(correct, dtype=torch.float64).flatten()
    if not ((correct >= 0) & (correct <= 1)).all():
        raise ValueError("per-sample correctness must be booleans or credits in [0, 1]")
    return correct


def ut_acc_mst(A) -> float:
    """MST UT-Acc = (1/S) sum_{j=0}^{S-1} A[S-1][j]: the final model's accuracy on each
    session's classes, averaged over sessions (not over samples)."""
    A = _check_matrix(A)
    return float(A[-1].mean())


def bwt(A) -> float:
    """Backward transfer = 1/(S-1) sum_{i=0}^{S-2} (A[S-1][i] - A[i][i]).

    Ding et al.'s formula (after GEM): the mean change of accuracy on each earlier session's
    classes between just after it was trained and after the last session; negative means
    forgetting. (The authors' code divides by S; docs/metrics.md follows the paper.) S >= 2.
    """
    A = _check_matrix(A)
    S = A.shape[0]
    if S < 2:
        raise ValueError(f"bwt needs at least 2 sessions, got {S} (OST has no backward transfer)")
    return float(np.mean(A[-1, :-1] - np.diag(A)[:-1]))


def a_acc(ut_acc: float, zs_acc: float) -> float:
    """A-Acc = (UT-Acc + ZS-Acc) / 2, the paper's single score (model selection on validation)."""
    return (float(ut_acc) + float(zs_acc)) / 2


# ---------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------

def recall_at_k(image_features, text_features, image_of_text, ks: Sequence[int] = (1, 5),
                chunk: int = 1024) -> dict[str, float]:
    """TR@k (image->text) and IR@k (text->image) for images with one or more captions each.

    ``image_features`` ``(N, D)`` and ``text_features`` ``(M, D)`` are compared by dot product
    (pass L2-normalised features for cosine similarity); ``image_of_text[m]`` is the index of
    caption ``m``'s image. TR@k = fraction of images with at least one of their captions among
    the k best-scoring texts; IR@k = fraction of captions whose image is among the k
    best-scoring images. Tied scores get the expected credit of a random tie order, so constant
    features score chance (``ticlip_core.retrieval.recall_at_k``, shared with TiC). Returns
    ``{"TR@k": .., "IR@k": ..}`` for every k.
    """
    return _named(_recall_at_k(image_features, text_features, image_of_text, ks, chunk=chunk), ks)


def recall_folds(image_features, text_features, image_of_text, ks: Sequence[int] = (1, 5),
                 fold_size: int = 1000) -> dict[str, float]:
    """``recall_at_k`` averaged over folds of images (COCO: 5k test images, 5 folds of 1k).

    The images are cut, in order, into ``max(1, round(N / fold_size))`` near-equal consecutive
    folds (the pool rule of ``evaluate.recall_at_k``; ``fold_size >= N`` gives one fold); each
    fold is scored with the captions of its own images only, and the scores are averaged over
    folds (unweighted, as the COCO 5-fold protocol does).
    """
    return _named(_recall_at_k(image_features, text_features, image_of_text, ks, pool_size=fold_size,
                               weighting="equal"), ks)


def _named(scores: dict[str, float], ks: Sequence[int]) -> dict[str, float]:
    """The shared recall's ``i2t_R@k`` / ``t2i_R@k`` under CL-CLIP's names ``TR@k`` / ``IR@k``."""
    return {**{f"TR@{k}": scores[f"i2t_R@{k}"] for k in ks}, **{f"IR@{k}": scores[f"t2i_R@{k}"] for k in ks}}
