"""Where bucketing puts a step's shards: ``<steps_dir>/<step>/<split>/NNNNN.tar``.

Kept apart from ``bucketing`` (pandas) so that a training job, which only needs the paths,
does not pay for importing pandas.
"""
from __future__ import annotations

from pathlib import Path


def step_shards(steps_dir: str | Path, step: str, split: str) -> list[str]:
    """The shard files of one step's split, in order."""
    return sorted(str(p) for p in (Path(steps_dir) / step / split).glob("*.tar"))
