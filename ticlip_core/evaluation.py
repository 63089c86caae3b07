"""The evaluation layer every study shares (docs/metrics.md): encode a set once (shards or
in-memory crops), one prompt-classifier builder, one zero-shot accuracy and one Recall@k entry,
both ranking through ``ticlip_core.retrieval`` (the project's one ranking module and its tie rule).

What a study evaluates after each step (which sets, tasks and splits) is its own suite:
``tic/evaluate.py`` for TiC-CLIP, ``clclip/scoring.py`` for CL-CLIP. torch is imported inside
the functions, so importing this module stays cheap.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: classes encoded per text forward when a classifier is built for evaluation: bounds the
#: memory of many classes x templates, and is open_clip's batching (``build_zero_shot_classifier``
#: with ``num_classes_per_batch=16``, which TiC used), so the features are the same bits
EVAL_CLASSES_PER_BATCH = 16
#: Recall@k result names: TiC's (and their mean, the Table 2 score) or CL-CLIP's
RECALL_NAMES = {"tic": ("i2t_R@{k}", "t2i_R@{k}"), "clclip": ("TR@{k}", "IR@{k}")}


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

@dataclass
class EncodedSet:
    """L2-normalised image and caption features of one evaluation set, plus sample metadata."""

    image_features: "torch.Tensor"  # noqa: F821
    text_features: "torch.Tensor"  # noqa: F821
    meta: list[dict]
    skipped: int
    #: bad samples skipped, by reason (``data.loader.SKIP_REASONS``)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    def skipped_text(self) -> str:
        """``"N bad samples skipped (reason n, ...)"`` for the logs."""
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.skipped_by_reason.items()))
        return f"{self.skipped} bad samples skipped ({reasons or 'none'})"


class DecodedSets:
    """Decoded evaluation batches (``data.loader.eval_batches``) kept in memory, so that a job
    which evaluates several checkpoints (a TiC evaluation job's four, Patching's alpha grid)
    reads and decodes each set once. Sets are kept whole while the total stays within
    ``limit_mb``; a set that does not fit is decoded again on every pass, as without the cache.
    The batches are the same objects every time, so the features are the same bits."""

    def __init__(self, limit_mb: float):
        self.limit = float(limit_mb) * 2**20
        self.used = 0
        self._kept: dict[tuple, list] = {}

    def batches(self, shards: list[str], *, batch_size: int, pixels, tokenizer):
        """The batches of ``shards``, from memory when kept, else decoded (and kept if they fit)."""
        from ticlip_core.data.loader import eval_batches

        key = (tuple(shards), batch_size, pixels, id(tokenizer))
        if key in self._kept:
            yield from self._kept[key]
            return
        kept, size = [], 0
        for batch in eval_batches(shards, batch_size=batch_size, pixels=pixels, tokenizer=tokenizer):
            yield batch
            if kept is not None:
                size += batch.images.nbytes + batch.texts.nbytes + 512 * len(batch.keys)
                kept = kept if self.used + size <= self.limit else None
                if kept is not None:
                    kept.append(batch)
        if kept is not None:
            self._kept[key] = kept
            self.used += size


def encode_shards(model, tokenizer, shards: list[str], batch_size: int, device,
                  source: str | None = None, decoded: DecodedSets | None = None) -> EncodedSet:
    """Encode every image and caption of ``shards`` once (``data.loader.eval_batches``, or
    ``decoded``'s copy in memory; bad samples skipped and counted by reason), features
    L2-normalised, on the CPU.

    Raises ``NonFiniteFeaturesError`` naming ``source`` (e.g. the checkpoint path) and the set
    if any feature is NaN or inf, and ``ValueError`` if no sample is usable.
    """
    import torch
    import torch.nn.functional as F

    from ticlip_core.data.loader import PixelSpec, eval_batches
    from ticlip_core.retrieval import check_finite

    images, texts, meta, skipped, by_reason = [], [], [], 0, {}
    with torch.no_grad():
        pixels = PixelSpec.of(model)
        batches = (decoded.batches(shards, batch_size=batch_size, pixels=pixels, tokenizer=tokenizer) if decoded
                   else eval_batches(shards, batch_size=batch_size, pixels=pixels, tokenizer=tokenizer))
        for batch in batches:
            skipped += batch.skipped
            for reason, n in batch.skipped_by_reason.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            if not batch.keys:
                continue
            images.append(F.normalize(model.encode_image(batch.images.to(device)), dim=-1).cpu())
            texts.append(F.normalize(model.encode_text(batch.texts.to(device)), dim=-1).cpu())
            meta.extend(batch.meta)
    if not meta:
        raise ValueError(f"evaluation set {shards[:1]}... holds no usable samples")
    enc = EncodedSet(torch.cat(images), torch.cat(texts), meta, skipped, by_reason)
    what = f"{source or 'the model'} on evaluation set {shards[:1]}..."
    check_finite(enc.image_features, "image features", what)
    check_finite(enc.text_features, "text features", what)
    return enc


def encode_crops(model, images, device, batch_size: int = 256):
    """L2-normalised image features ``(N, D)``, on the CPU, of uint8 crops ``(N, H, W, 3)`` held
    in memory (normalised as the model's preprocessing does, ``PixelSpec``)."""
    import torch
    import torch.nn.functional as F

    from ticlip_core.data.pixels import PixelSpec

    pixels = PixelSpec.of(model)
    with torch.no_grad():
        feats = [F.normalize(model.encode_image(pixels.normalise(images[i:i + batch_size]).to(device)), dim=-1)
                 for i in range(0, len(images), batch_size)]
    return torch.cat(feats).cpu()


def encode_texts(model, tokenizer, texts: Sequence[str], device, batch_size: int = 256):
    """L2-normalised text features ``(M, D)``, on the CPU, of ``texts``, ``batch_size`` at a time."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        feats = [F.normalize(model.encode_text(tokenizer(list(texts[i:i + batch_size])).to(device)), dim=-1).cpu()
                 for i in range(0, len(texts), batch_size)]
    return torch.cat(feats)


# ---------------------------------------------------------------------------------------------
# The prompt classifier
# ---------------------------------------------------------------------------------------------

def class_text_features(model, tokenizer, names: list[str], templates: list[str], device, *,
                        classes_per_batch: int | None = None):
    """Normalised text features of the classes ``names``, ``(len(names), D)``: the zero-shot
    classifier's weights t_c (Ding et al. Eq. 3; TiC's zero-shot classification).

    Each class's prompts (one per template, ``template.format(name)``) are encoded and
    normalised, averaged over templates and renormalised (open_clip's
    ``build_zero_shot_classifier``, transposed). Differentiable through ``model`` unless called
    under ``torch.no_grad`` (training and the methods call it with gradients; evaluation without).
    ``classes_per_batch`` encodes that many classes per text forward (default: all at once).
    """
    import torch
    import torch.nn.functional as F

    if not names or not templates:
        raise ValueError(f"class_text_features: need class names and templates, got {len(names)} names "
                         f"and {len(templates)} templates")
    step = classes_per_batch or len(names)
    chunks = []
    for start in range(0, len(names), step):
        batch = names[start:start + step]
        prompts = [template.format(name) for name in batch for template in templates]
        features = model.encode_text(_prompt_tokens(tokenizer, prompts).to(device), normalize=True)
        chunks.append(F.normalize(features.reshape(len(batch), len(templates), -1).mean(dim=1), dim=-1))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


_TOKENS: dict[tuple, object] = {}


def _prompt_tokens(tokenizer, prompts: list[str]):
    """``tokenizer(prompts)``, remembered: training builds the same classes' prompts every batch,
    and BPE-encoding them cost 3% of a memclip job. The tensors are never written to."""
    key = (id(tokenizer), tuple(prompts))  # the entry holds the tokenizer, so its id is not reused
    if key not in _TOKENS:
        if len(_TOKENS) >= 1024:
            _TOKENS.clear()
        _TOKENS[key] = (tokenizer, tokenizer(prompts))
    return _TOKENS[key][1]


def eval_classifier(model, tokenizer, names: list[str], templates: list[str], device):
    """``class_text_features`` for evaluation: no gradients, ``EVAL_CLASSES_PER_BATCH`` classes per
    forward, on the CPU."""
    import torch

    with torch.no_grad():
        return class_text_features(model, tokenizer, names, templates, device,
                                   classes_per_batch=EVAL_CLASSES_PER_BATCH).cpu()


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------

def zero_shot_accuracy(image_features, class_features, targets, ks: Sequence[int] = (1, 5), *,
                       per_sample: bool = False, source: str | None = None) -> dict:
    """Top-k zero-shot accuracy ``{"top<k>": ...}`` of images against class features.

    ``image_features`` ``(N, D)`` and ``class_features`` ``(C, D)`` (``class_text_features``) are
    compared by dot product (``retrieval.dot_scores``); ``targets`` is a class index per sample
    or a set of classes per sample, any of which counts. A ``k`` above ``C`` is read as ``C``.
    Ties among class scores get the expected credit of a random tie order
    (``retrieval.topk_credit``), so a constant model scores chance, not 100 % on class 0.
    Returns the mean credit, or with ``per_sample`` the ``(N,)`` credits (float32). Non-finite
    logits raise ``NonFiniteFeaturesError`` naming ``source``.
    """
    from ticlip_core.retrieval import dot_scores, topk_credit

    logits = dot_scores(image_features, class_features.T)
    out = {}
    for k in ks:
        k = min(k, logits.shape[1])
        credit = topk_credit(logits, targets, k, source=source)
        out[f"top{k}"] = credit if per_sample else credit.mean().item()
    return out


def recall_at_k(image_features, text_features, image_of_text=None, ks: Sequence[int] = (1, 5), *,
                pool_size: int | None = None, weighting: str = "size", naming: str = "tic",
                chunk: int = 1024, source: str | None = None, per_query: bool = False):
    """Image->text and text->image Recall@k for every ``k`` in ``ks``.

    ``image_of_text[m]`` is caption ``m``'s image (default: caption ``i`` belongs to image ``i``;
    an image may have several captions and is found if any is in the top k). Pools vs folds and
    their weighting are parameters of the one ranking (``retrieval.recall_at_k``): the images
    are cut into ``round(N / pool_size)`` consecutive pools (none: the whole set), each scored
    against its own captions, and averaged weighted by their queries (``"size"``, TiC's pools)
    or equally (``"equal"``, the COCO 5-fold protocol of CL-CLIP). Ties get the expected credit
    of a random tie order. ``naming``: ``"tic"`` gives ``i2t_R@k``, ``t2i_R@k`` and their mean
    ``mean_R@k``; ``"clclip"`` gives ``TR@k`` and ``IR@k``.

    With ``per_query``, also returns for each score its ``(image, weight, credit)`` tensors
    (``retrieval.recall_at_k``): ``mean_R@k``'s are both directions', each direction's weights
    scaled to sum to 1/2, so every score is ``sum(weight * credit) / sum(weight)``.
    """
    from ticlip_core.retrieval import recall_at_k as rank_recall

    if naming not in RECALL_NAMES:
        raise ValueError(f"recall_at_k: naming must be one of {sorted(RECALL_NAMES)}, got {naming!r}")
    import torch

    scores = rank_recall(image_features, text_features, image_of_text, ks, pool_size=pool_size,
                         weighting=weighting, chunk=chunk, source=source, per_query=per_query)
    scores, credits = scores if per_query else (scores, {})
    i2t, t2i = RECALL_NAMES[naming]
    names = {**{i2t.format(k=k): f"i2t_R@{k}" for k in ks}, **{t2i.format(k=k): f"t2i_R@{k}" for k in ks}}
    out = {name: scores[ours] for name, ours in names.items()}
    per = {name: credits[ours] for name, ours in names.items()} if per_query else {}
    if naming == "tic":
        for k in ks:
            out[f"mean_R@{k}"] = (out[f"i2t_R@{k}"] + out[f"t2i_R@{k}"]) / 2
            if per_query:
                halves = [(image, 0.5 * w / w.sum(), c) for image, w, c in (per[f"i2t_R@{k}"], per[f"t2i_R@{k}"])]
                per[f"mean_R@{k}"] = tuple(torch.cat(part) for part in zip(*halves))
    return (out, per) if per_query else out
