"""Importing open_clip without what a job never uses.

Every workflow job is a new Python process, so its imports are paid once per job. open_clip
imports timm, and timm probes for wandb, an optional experiment logger. img2dataset installs
wandb, and importing it costs about 0.5 s per job (``benchmarks/bench_startup.py``). This
project never logs to wandb, so during open_clip's import that probe is answered "not
installed". The answer holds only for the duration of the import: a later ``import wandb``
(img2dataset's) works as usual. No third-party file is changed.
"""
from __future__ import annotations

import sys
from types import ModuleType

#: optional packages a dependency probes for at import time and this project never uses
UNUSED_PROBES = ("wandb",)


def import_open_clip() -> ModuleType:
    """The ``open_clip`` module, imported with ``UNUSED_PROBES`` reported missing during the import."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    hidden = [name for name in UNUSED_PROBES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes ``import name`` raise ImportError, which timm catches
    try:
        import open_clip
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return open_clip
