"""CL-CLIP's methods (Ding et al., Sec. IV-V), one file each, registered by name in the one
method registry (``study = "clclip"``).

A method acts on one training session through the hooks of ``ticlip_core.engine.method.Method``:
``before_step`` at the start of a session, ``trainable_parameters`` (which parameters the
optimiser updates; the session runner has already frozen what the variant does not train),
``extra_loss`` (a term added to the cross-entropy over class-prompt logits, Eq. 1) and
``after_step`` (e.g. IMM's weight interpolation). Adding a method is one file in this package
with a ``@register``-decorated class, plus its name in the config. No torch is imported at
module level, so the Snakefile can read the registry cheaply when it builds the DAG.
"""
from __future__ import annotations

from functools import partial

from ticlip_core import registry
from ticlip_core.registry import register  # noqa: F401 (the decorator the method files use)

STUDY = "clclip"
get_method = partial(registry.get_method, STUDY)
available_methods = partial(registry.available_methods, STUDY)
