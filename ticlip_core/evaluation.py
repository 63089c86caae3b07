"""The evaluation layer every study shares: encode a set once, one prompt-classifier builder,
one zero-shot accuracy, one Recall@k (``ticlip_core.retrieval``).

torch is imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations


def class_text_features(model, tokenizer, names: list[str], templates: list[str], device):
    """Normalised text features of the classes ``names`` (Eq. 3's classifier weights t_c).

    Each class's prompts (one per template, ``template.format(name)``) are encoded and
    normalised, averaged over templates and renormalised. Returns a (len(names), D) tensor,
    differentiable through ``model`` unless called under ``torch.no_grad``.
    """
    import torch.nn.functional as F

    prompts = [template.format(name) for name in names for template in templates]
    tokens = tokenizer(prompts).to(device)
    features = model.encode_text(tokens, normalize=True)
    features = features.reshape(len(names), len(templates), -1).mean(dim=1)
    return F.normalize(features, dim=-1)
