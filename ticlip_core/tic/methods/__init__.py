"""Continual-training methods, one file each, registered by name.

A method decides, for step ``t`` (0-based) of a scenario: how the model is initialised
(``warm_start``), which steps' training data it sees (``data_plan``), its budget in samples
(``budget``), and what it adds through hooks (see ``base.Method``). Adding a method is one
file in this package with a ``@register``-decorated class, plus its name in the config.

This package imports no torch at module level, so the Snakefile can read the registry
cheaply when it builds the DAG.
"""
from __future__ import annotations

from ticlip_core.registry import Registry
from ticlip_core.tic.methods.base import Method

_registry = Registry(__name__, __path__, "method")
REGISTRY: dict[str, type[Method]] = _registry.classes
register = _registry.register


def get_method(name: str, **options) -> Method:
    """Instantiate the registered method ``name`` with its config ``options``."""
    return _registry.create(name, **options)


def available_methods() -> list[str]:
    """Names of every registered method, sorted."""
    return _registry.names()
