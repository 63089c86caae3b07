"""Importing open_clip without what a job never uses.

Every workflow job is a new Python process, so its imports are paid once per job. open_clip
imports timm for its timm-backed image towers, and timm probes for wandb, an optional
experiment logger that img2dataset installs (``benchmarks/bench_startup.py``: wandb 0.5 s,
timm itself 0.3 s a job). This project never logs to wandb, so during open_clip's import that
probe is answered "not installed". timm is left out the same way when the job names a model
whose config has no ``timm_model_name`` (every ``ticlip-*`` model, the ViTs): such a model
never touches timm. The answer holds only for the duration of the import: a later ``import
wandb`` (img2dataset's) or ``import timm`` works as usual. No third-party file is changed.
"""
from __future__ import annotations

import sys
from types import ModuleType

#: optional packages a dependency probes for at import time and this project never uses
UNUSED_PROBES = ("wandb",)


def needs_timm(model_name: str) -> bool:
    """Whether the open_clip model ``model_name`` has a timm image tower (True when its config
    cannot be read: then timm is imported, as open_clip always does)."""
    from ticlip_core.config_checks import model_config

    try:
        cfg = model_config(model_name)
    except ValueError:
        return True
    return bool(cfg.get("vision_cfg", {}).get("timm_model_name"))


def import_open_clip(model_name: str | None = None) -> ModuleType:
    """The ``open_clip`` module, imported with ``UNUSED_PROBES`` reported missing during the
    import, and timm too when the first import names a model that does not use it."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    probes = UNUSED_PROBES + (("timm",) if model_name is not None and not needs_timm(model_name) else ())
    hidden = [name for name in probes if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes ``import name`` raise ImportError, which timm catches
    try:
        import open_clip
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return open_clip
