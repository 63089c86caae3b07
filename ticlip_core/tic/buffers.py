"""Replay buffers for TiC-CLIP's Cumulative-Exp and Cumulative-Equal (TiC-CLIP Sec. 4).

A buffer of ``D`` samples is split among the previous steps ``0 .. t-1`` at step ``t``; the
keys are drawn at the start of the step, uniformly without replacement with the run's seed,
and then streamed shuffled together with all of step ``t``'s new data.

Counts are integers: each share is rounded down and the remainder goes one sample at a time
to the most recent past steps, so the shares always add up to exactly ``D``.
"""
from __future__ import annotations

import random
import tarfile


def _with_remainder(shares: list[int], total: int) -> list[int]:
    """Give ``total - sum(shares)`` extra samples, one each, to the most recent steps."""
    shares = list(shares)
    for i in range(total - sum(shares)):
        shares[len(shares) - 1 - (i % len(shares))] += 1
    return shares


def exp_allocation(t: int, size: int) -> list[int]:
    """Cumulative-Exp: samples replayed from steps ``0 .. t-1`` at step ``t >= 1``.

    Each new step halves what every older step keeps: the most recent past step holds
    ``D/2``, the one before ``D/4``, ..., and the two oldest ``D/2^(t-1)`` each
    (t = 1: ``[D]``; t = 2: ``[D/2, D/2]``; t = 3: ``[D/4, D/4, D/2]``).
    """
    if t < 1:
        return []
    exponents = [t - 1] + [t - j for j in range(1, t)]
    return _with_remainder([size // 2 ** e for e in exponents], size)


def equal_allocation(t: int, size: int) -> list[int]:
    """Cumulative-Equal: ``D`` split equally among the ``t`` previous steps."""
    if t < 1:
        return []
    return _with_remainder([size // t] * t, size)


ALLOCATIONS = {"exp": exp_allocation, "equal": equal_allocation}


def shard_keys(shards: list[str]) -> list[str]:
    """Sample keys stored in webdataset ``shards``, in stored order (tar headers only, no decoding)."""
    from webdataset.tariterators import base_plus_ext  # imports torch: not at module level

    keys: list[str] = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for name in tar.getnames():
                key, _ = base_plus_ext(name)
                if key is not None and (not keys or keys[-1] != key):
                    keys.append(key)
    return keys


def draw_replay(keys_by_step: dict[str, list[str]], counts: dict[str, int], seed: int) -> dict[str, list[str]]:
    """Draw ``counts[step]`` distinct keys from each step, uniformly without replacement.

    A step holding fewer keys than asked gives all of them (the shortfall is visible in the
    returned lengths, which the training job records). Same seed, same keys.
    """
    drawn = {}
    for step, n in counts.items():
        pool = sorted(set(keys_by_step[step]))
        drawn[step] = sorted(random.Random(f"{seed}:{step}").sample(pool, min(n, len(pool))))
    return drawn
