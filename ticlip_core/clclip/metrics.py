"""CL-CLIP metrics (Ding et al., Sec. VI-A; DESIGN.md section 4).

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
    whose label is in ``sessions[j]`` (NaN if there are none). One row of ``A``."""
    correct = torch.as_tensor(correct).bool().flatten()
    labels = torch.as_tensor(labels).long().flatten()
    if correct.shape != labels.shape:
        raise ValueError(f"session_accuracies: {len(correct)} correctness flags for {len(labels)} labels")
    out = np.full(len(sessions), np.nan)
    for j, classes in enumerate(sessions):
        mask = torch.isin(labels, torch.as_tensor(list(classes), dtype=torch.long))
        if mask.any():
            out[j] = correct[mask].float().mean().item()
    return out


def ut_acc_ost(correct) -> float:
    """OST UT-Acc: correct predictions / all update-task test samples."""
    correct = torch.as_tensor(correct).bool().flatten()
    if correct.numel() == 0:
        raise ValueError("ut_acc_ost: no test samples")
    return correct.float().mean().item()


def ut_acc_mst(A) -> float:
    """MST UT-Acc = (1/S) sum_{j=0}^{S-1} A[S-1][j]: the final model's accuracy on each
    session's classes, averaged over sessions (not over samples)."""
    A = _check_matrix(A)
    return float(A[-1].mean())


def bwt(A) -> float:
    """Backward transfer = 1/(S-1) sum_{i=0}^{S-2} (A[S-1][i] - A[i][i]).

    Ding et al.'s formula (after GEM): the mean change of accuracy on each earlier session's
    classes between just after it was trained and after the last session; negative means
    forgetting. (The authors' code divides by S; DESIGN.md follows the paper.) S >= 2.
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
    best-scoring images. The rank of a true partner counts the candidates scoring strictly
    higher (ties count in its favour, as ``evaluate.recall_at_k``). Returns
    ``{"TR@k": .., "IR@k": ..}`` for every k.
    """
    img, txt, owner = _check_retrieval(image_features, text_features, image_of_text)
    N = len(img)
    tr_rank = torch.empty(N, dtype=torch.long)
    ir_rank = torch.empty(len(txt), dtype=torch.long)
    positive_score = torch.empty(len(txt), dtype=img.dtype)
    for start in range(0, N, chunk):  # rows of the N x M similarity, a chunk at a time
        rows = torch.arange(start, min(start + chunk, N))
        sim = img[rows] @ txt.T
        is_pos = owner[None, :] == rows[:, None]
        best_pos = sim.masked_fill(~is_pos, float("-inf")).max(dim=1).values
        tr_rank[rows] = (sim > best_pos[:, None]).sum(dim=1)
        mine = (owner >= start) & (owner < start + len(rows))
        positive_score[mine] = sim[owner[mine] - start, mine.nonzero().flatten()]
    for start in range(0, N, chunk):  # texts: images scoring above the true image
        sim = img[start:start + chunk] @ txt.T
        part = (sim > positive_score[None, :]).sum(dim=0)
        ir_rank = part if start == 0 else ir_rank + part
    out = {}
    for k in ks:
        out[f"TR@{k}"] = (tr_rank < k).float().mean().item()
    for k in ks:
        out[f"IR@{k}"] = (ir_rank < k).float().mean().item()
    return out


def recall_folds(image_features, text_features, image_of_text, ks: Sequence[int] = (1, 5),
                 fold_size: int = 1000) -> dict[str, float]:
    """``recall_at_k`` averaged over folds of images (COCO: 5k test images, 5 folds of 1k).

    The images are cut, in order, into ``max(1, round(N / fold_size))`` near-equal consecutive
    folds (the pool rule of ``evaluate.recall_at_k``; ``fold_size >= N`` gives one fold); each
    fold is scored with the captions of its own images only, and the scores are averaged over
    folds (unweighted, as the COCO 5-fold protocol does).
    """
    if fold_size < 1:
        raise ValueError(f"fold_size must be at least 1, got {fold_size}")
    img, txt, owner = _check_retrieval(image_features, text_features, image_of_text)
    folds = np.array_split(np.arange(len(img)), max(1, round(len(img) / fold_size)))
    totals: dict[str, float] = {}
    for fold in folds:
        lo, hi = int(fold[0]), int(fold[-1]) + 1
        mask = (owner >= lo) & (owner < hi)
        scores = recall_at_k(img[lo:hi], txt[mask], owner[mask] - lo, ks)
        for key, value in scores.items():
            totals[key] = totals.get(key, 0.0) + value / len(folds)
    return totals


def _check_retrieval(image_features, text_features, image_of_text):
    """Features as float tensors and caption owners as a long tensor, checked consistent."""
    img = torch.as_tensor(image_features)
    txt = torch.as_tensor(text_features)
    img = img if img.is_floating_point() else img.float()
    txt = txt.to(img.dtype)
    owner = torch.as_tensor(image_of_text).long().flatten()
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"retrieval: features must be (N, D) and (M, D), got {tuple(img.shape)} "
                         f"and {tuple(txt.shape)}")
    if len(img) == 0 or len(txt) == 0:
        raise ValueError("retrieval: no images or no captions")
    if len(owner) != len(txt):
        raise ValueError(f"retrieval: {len(owner)} caption owners for {len(txt)} captions")
    if owner.min() < 0 or owner.max() >= len(img):
        raise ValueError(f"retrieval: image_of_text must index the {len(img)} images")
    without = torch.nonzero(torch.bincount(owner, minlength=len(img)) == 0).flatten()
    if len(without):
        raise ValueError(f"retrieval: image(s) {without[:10].tolist()} have no caption")
    return img, txt, owner
