"""The VR-LwF ablations of Ding et al. (Tables V-VIII), as named option sets."""
from __future__ import annotations

import random
import tarfile


def caption_corpus(shards: list[str], limit: int, seed: int) -> list[str]:
    """Up to ``limit`` captions (``.txt`` members of ``shards``, the TiC scenes' train shards), a
    seeded sample: the corpus of the caption-replay variant (the paper samples MSCOCO captions)."""
    captions = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".txt"):
                    captions.append(tar.extractfile(member).read().decode("utf-8"))
    if not captions:
        raise ValueError("caption replay: the given shards hold no captions")
    random.Random(seed).shuffle(captions)
    return captions[:limit]


def ablation_runs(config: dict, ablation: str, base_shards: list[str]) -> list[tuple[str, dict]]:
    """``(label, vr_lwf options)`` of each row of an ablation table: ``length`` (M, plus the
    caption-replay row when enabled) or ``num_pseudo`` (Ks)."""
    acfg = config["clclip"]["ablations"]
    if ablation == "length":
        runs = [(f"M={m}", {"length": m}) for m in acfg["length"]]
        if acfg["caption_replay"]:
            runs.append(("caption replay", {"corpus": caption_corpus(base_shards, 5000, config["seed"])}))
        return runs
    if ablation == "num_pseudo":
        return [(f"Ks={k}", {"num_pseudo": k}) for k in acfg["num_pseudo"]]
    raise ValueError(f"unknown clclip ablation '{ablation}' (length or num_pseudo)")
