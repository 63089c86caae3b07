"""TiC-CLIP's methods, one file each, registered by name in the one method registry.

A method decides, for step ``t`` (0-based) of a scenario: how the model is initialised
(``warm_start``), which steps' training data it sees (``data_plan``), its budget in samples
(``budget``), and what it adds through the hooks of ``ticlip_core.engine.method.Method``.
Adding a method is one file in this package with a ``@register``-decorated class (``study =
"tic"``), plus its name in the config. No torch is imported at module level, so the Snakefile
can read the registry cheaply when it builds the DAG.
"""
from __future__ import annotations

from functools import partial

from ticlip_core import registry
from ticlip_core.registry import register  # noqa: F401 (the decorator the method files use)

STUDY = "tic"
get_method = partial(registry.get_method, STUDY)
available_methods = partial(registry.available_methods, STUDY)
