"""CL-CLIP methods (Ding et al., Sec. IV-V), one file each, registered by name.

A method acts on one training session through the hooks of ``base.ClMethod``: ``setup`` at the
start of a session, ``trainable_parameters`` (which parameters the optimiser updates),
``extra_loss`` (a term added to the cross-entropy over class-prompt logits, Eq. 1) and
``after_session`` (e.g. IMM's weight interpolation). Adding a method is one file in this package
with a ``@register``-decorated class, plus its name in the config.

This package imports no torch at module level (nor do the method files), so the Snakefile can
read the registry cheaply when it builds the DAG.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import ClMethod

REGISTRY: dict[str, type[ClMethod]] = {}


def register(cls: type[ClMethod]) -> type[ClMethod]:
    """Class decorator: add a ``ClMethod`` subclass to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"CL-CLIP method name '{cls.name}' registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str, **options) -> ClMethod:
    """Instantiate the registered CL-CLIP method ``name`` with its config ``options``."""
    _discover()
    if name not in REGISTRY:
        raise KeyError(f"unknown CL-CLIP method '{name}'; registered methods: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)


def available_methods() -> list[str]:
    """Names of every registered CL-CLIP method, sorted."""
    _discover()
    return sorted(REGISTRY)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
