"""Continual-training methods, one file each, registered by name.

A method decides, for step ``t`` (0-based) of a scenario: how the model is initialised
(``warm_start``), which steps' training data it sees (``data_plan``), its budget in samples
(``budget``), and what it adds through hooks (see ``base.Method``). Adding a method is one
file in this package with a ``@register``-decorated class, plus its name in the config.

This package imports no torch at module level, so the Snakefile can read the registry
cheaply when it builds the DAG.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Method

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a ``Method`` subclass to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name '{cls.name}' registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str, **options) -> Method:
    """Instantiate the registered method ``name`` with its config ``options``."""
    _discover()
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}'; registered methods: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)


def available_methods() -> list[str]:
    """Names of every registered method."""
    _discover()
    return sorted(REGISTRY)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
