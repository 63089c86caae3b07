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

from ticlip_core.registry import Registry
from ticlip_core.clclip.methods.base import ClMethod

_registry = Registry(__name__, __path__, "CL-CLIP method")
REGISTRY: dict[str, type[ClMethod]] = _registry.classes
register = _registry.register


def get_method(name: str, **options) -> ClMethod:
    """Instantiate the registered CL-CLIP method ``name`` with its config ``options``."""
    return _registry.create(name, **options)


def available_methods() -> list[str]:
    """Names of every registered CL-CLIP method, sorted."""
    return _registry.names()
