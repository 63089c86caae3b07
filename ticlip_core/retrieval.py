"""The project's one Recall@k and one top-k accuracy, shared by the TiC and CL-CLIP studies.

Both are ranking questions: a query (an image, a caption, a sample to classify) scores every
candidate (captions, images, classes), some of which are its true partners, and it counts as
found at ``k`` if a true partner is among the ``k`` best-scoring candidates.

Ties. ``topk``/``argmax`` (and a rank that counts only candidates scoring *strictly* higher)
resolve a tie in favour of the lowest index or of the true partner, so a collapsed model with
constant features scored perfect recall, and 100 % accuracy on class 0. Here a query's credit
at ``k`` is the *probability* that a true partner lands in the top ``k`` when tied candidates
are put in a uniformly random order: with ``h`` candidates scoring strictly above the best
true partner, and ``p`` true partners and ``q`` other candidates tied with it, the credit is
``1 - P(the first k - h of the p + q tied candidates are all wrong)``; for one true partner
that is ``clamp((k - h) / (q + 1), 0, 1)``. It is deterministic, equals what a random
tie-break gives on average, gives a constant-feature model exactly chance (``k / n`` for one
true partner among ``n`` candidates), and is the old 0/1 hit whenever nothing is tied. (For
comparison, clip_benchmark ranks with ``topk``, which breaks ties by candidate index.)

Ties are equal scores, so scores must not depend on the order BLAS sums a dot product in: a
float32 matrix product can give identical vectors dot products a few ulps apart (its edge
tiles sum differently). ``dot_scores`` therefore computes in float64 and rounds to the
features' precision (at least float32), where equal dot products compare equal.

Non-finite features, scores or logits are refused with ``NonFiniteFeaturesError``: a NaN
compares false with everything, so it would otherwise rank first.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class NonFiniteFeaturesError(ValueError):
    """Features, similarity scores or logits hold NaN or inf, so no ranking means anything."""


def check_finite(tensor: torch.Tensor, what: str, source: str | None = None) -> None:
    """Raise ``NonFiniteFeaturesError`` naming ``what`` (and ``source``, e.g. a checkpoint
    path) if ``tensor`` holds NaN or inf."""
    bad = ~torch.isfinite(tensor)
    if bad.any():
        rows = bad.reshape(len(tensor), -1).any(dim=1).nonzero().flatten() if tensor.ndim else []
        where = f" from {source}" if source else ""
        raise NonFiniteFeaturesError(
            f"{what}{where} hold {int(bad.sum())} non-finite value(s) (NaN/inf), in row(s) "
            f"{list(map(int, rows[:10]))}; the model (weights or inputs) is broken, so it cannot be scored")


def dot_scores(queries: torch.Tensor, candidates_t: torch.Tensor) -> torch.Tensor:
    """``queries @ candidates_t`` computed in float64 and rounded to the inputs' precision (at
    least float32): the same dot product gives the same score wherever it sits in the matrix."""
    dtype = torch.promote_types(torch.promote_types(queries.dtype, candidates_t.dtype), torch.float32)
    return (queries.double() @ candidates_t.double()).to(dtype)


def hit_credit(scores: torch.Tensor, positive: torch.Tensor, ks: Sequence[int]) -> dict[int, torch.Tensor]:
    """Per-query credit in [0, 1] for "a true partner is in the top k", for every ``k`` in ``ks``.

    ``scores`` ``(Q, C)`` are each query's candidate scores (higher is better) and ``positive``
    ``(Q, C)`` marks its true partners. The credit is the probability that a true partner is
    among the ``k`` best under a uniformly random order of tied scores (module docstring);
    a query without a true partner gets 0. ``scores`` must be finite.
    """
    positive = positive.bool()
    best = scores.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
    higher = (scores > best).sum(dim=1)
    tied = scores == best
    tied_pos = (tied & positive).sum(dim=1).double()
    tied_neg = (tied & ~positive).sum(dim=1).double()
    has_partner = positive.any(dim=1)
    out = {}
    for k in ks:
        room = k - higher  # places of the top k left for the tied group
        miss = torch.ones(len(scores), dtype=torch.float64)
        for i in range(k):  # P(the first `room` tied candidates drawn are all wrong)
            wrong_next = torch.where(i < tied_neg, (tied_neg - i) / (tied_neg + tied_pos - i), 0.0)
            miss = torch.where(i < room, miss * wrong_next, miss)
        out[k] = torch.where(has_partner, 1 - miss, 0.0)
    return out


def topk_credit(logits: torch.Tensor, targets, k: int, *, source: str | None = None) -> torch.Tensor:
    """Per-sample top-``k`` classification credit in [0, 1], ``(N,)``.

    ``logits`` ``(N, C)`` (compute them with ``dot_scores`` so that equal scores tie);
    ``targets`` is either a class index per sample (``(N,)``) or a set of classes per sample,
    any of which counts as correct (an empty set scores 0). The credit is 1 or 0 when nothing
    is tied, and under ties the probability that a correct class is in the top ``k`` in a
    random order of the tied classes, so a constant model scores exactly ``k / C`` on
    one-target samples (``argmax``/``topk`` would give class 0 every time).
    Non-finite logits raise ``NonFiniteFeaturesError`` naming ``source``.
    """
    check_finite(logits, "classification logits", source)
    logits = logits.cpu()
    n, c = logits.shape
    one_per_sample = isinstance(targets, torch.Tensor) or (
        len(targets) and not isinstance(targets[0], (set, frozenset, list, tuple)))
    if one_per_sample:
        index = torch.as_tensor(targets).long().flatten().cpu()
        if len(index) != n or (n and (index.min() < 0 or index.max() >= c)):
            raise ValueError(f"topk_credit: need {n} class indices in [0, {c}), got {index.tolist()[:10]}...")
        positive = torch.zeros(n, c, dtype=torch.bool)
        positive[torch.arange(n), index] = True
    else:
        if len(targets) != n:
            raise ValueError(f"topk_credit: {len(targets)} target sets for {n} samples")
        positive = torch.zeros(n, c, dtype=torch.bool)
        for i, classes in enumerate(targets):
            positive[i, list(classes)] = True
    return hit_credit(logits, positive, [k])[k].float()


def recall_at_k(image_features, text_features, image_of_text=None, ks: Sequence[int] = (1, 5), *,
                pool_size: int | None = None, weighting: str = "size", chunk: int = 1024,
                source: str | None = None, per_query: bool = False):
    """Image->text and text->image Recall@k, ``{"i2t_R@k": .., "t2i_R@k": ..}`` for each k.

    ``image_features`` ``(N, D)`` and ``text_features`` ``(M, D)`` are compared by dot product
    (pass L2-normalised features for cosine similarity). ``image_of_text[m]`` is caption
    ``m``'s image (default: paired features, caption ``i`` belongs to image ``i``). i2t: an
    image is found at k if one of its captions is among the k best texts; t2i: a caption is
    found if its image is among the k best images. Ties get the expected credit of a random
    tie order (module docstring), so constant features score chance.

    Pools: with ``pool_size``, the images are cut, in order, into ``max(1, round(N /
    pool_size))`` near-equal consecutive pools, each scored against its own images' captions
    only (chance ~ ``1 / pool_size`` whatever N). ``weighting`` averages the pools' scores
    weighted by their number of queries (``"size"``: TiC's convention, the mean over all
    queries) or equally (``"equal"``: the COCO 5-fold convention of CL-CLIP). Similarities
    are computed ``chunk`` queries at a time. Non-finite features raise
    ``NonFiniteFeaturesError`` naming ``source``.

    With ``per_query``, also returns each score's queries as ``(image, weight, credit)`` tensors
    (the image each query is or belongs to, its weight in the mean, its credit), such that the
    score is ``sum(weight * credit) / sum(weight)`` (``ticlip_core.samples``).
    """
    if weighting not in ("size", "equal"):
        raise ValueError(f"retrieval: weighting must be 'size' or 'equal', got {weighting!r}")
    img, txt, owner = _check_retrieval(image_features, text_features, image_of_text, source)
    n = len(img)
    if pool_size is not None and pool_size < 1:
        raise ValueError(f"retrieval: the pool size (pool_size / fold_size) must be at least 1, got {pool_size}")
    pools = np.array_split(np.arange(n), max(1, round(n / pool_size))) if pool_size else [np.arange(n)]
    out = {f"{d}_R@{k}": 0.0 for d in ("i2t", "t2i") for k in ks}
    kept = {name: [] for name in out} if per_query else None
    for pool in pools:
        lo, hi = int(pool[0]), int(pool[-1]) + 1
        mask = (owner >= lo) & (owner < hi)
        p_img, p_txt, p_owner = img[lo:hi], txt[mask], owner[mask] - lo
        i2t, i2t_credits = _credit_sums(p_img, p_txt, lambda q: p_owner[None, :] == q[:, None], ks, chunk,
                                        source)
        t2i, t2i_credits = _credit_sums(p_txt, p_img,
                                        lambda q: torch.arange(len(p_img))[None, :] == p_owner[q][:, None],
                                        ks, chunk, source)
        for d, sums, queries, total in (("i2t", i2t, len(p_img), n), ("t2i", t2i, len(p_txt), len(txt))):
            for k in ks:
                out[f"{d}_R@{k}"] += sums[k] / (total if weighting == "size" else queries * len(pools))
        if per_query:
            for d, credits, images in (("i2t", i2t_credits, torch.arange(lo, hi)), ("t2i", t2i_credits, owner[mask])):
                w = torch.full((len(images),), 1.0 if weighting == "size" else 1.0 / len(images), dtype=torch.float64)
                for k in ks:
                    kept[f"{d}_R@{k}"].append((images, w, credits[k]))
    if not per_query:
        return out
    return out, {name: tuple(torch.cat(part) for part in zip(*parts)) for name, parts in kept.items()}


def _credit_sums(queries, candidates, partners, ks, chunk, source) -> tuple[dict[int, float], dict]:
    """Sum over ``queries`` of their ``hit_credit`` against ``candidates``, ``chunk`` queries at a
    time, and each query's credit (float64, in query order); ``partners(q)`` marks the true
    partners of query indices ``q``, ``(len(q), C)``."""
    sums = {k: 0.0 for k in ks}
    credits = {k: [] for k in ks}
    for start in range(0, len(queries), chunk):
        q = torch.arange(start, min(start + chunk, len(queries)))
        scores = dot_scores(queries[q], candidates.T)
        check_finite(scores, "retrieval similarity scores", source)
        for k, credit in hit_credit(scores, partners(q), ks).items():
            sums[k] += credit.sum().item()
            credits[k].append(credit)
    return sums, {k: torch.cat(c) for k, c in credits.items()}


def _check_retrieval(image_features, text_features, image_of_text, source):
    """Features as finite float tensors and caption owners as a long tensor, checked consistent."""
    img = torch.as_tensor(image_features).cpu()
    txt = torch.as_tensor(text_features).cpu()
    img = img if img.is_floating_point() else img.float()
    txt = txt.to(img.dtype)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"retrieval: features must be (N, D) and (M, D), got {tuple(img.shape)} "
                         f"and {tuple(txt.shape)}")
    if len(img) == 0 or len(txt) == 0:
        raise ValueError("retrieval: no images or no captions")
    owner = torch.arange(len(img)) if image_of_text is None else torch.as_tensor(image_of_text).long().flatten()
    if len(owner) != len(txt):
        raise ValueError(f"retrieval: {len(owner)} caption owners for {len(txt)} captions")
    if owner.min() < 0 or owner.max() >= len(img):
        raise ValueError(f"retrieval: image_of_text must index the {len(img)} images")
    without = torch.nonzero(torch.bincount(owner, minlength=len(img)) == 0).flatten()
    if len(without):
        raise ValueError(f"retrieval: image(s) {without[:10].tolist()} have no caption")
    check_finite(img, "image features", source)
    check_finite(txt, "text features", source)
    return img, txt, owner
