"""memclip's methods, one file each, registered by name in the one method registry
(``study = "memclip"``).

A method acts on one task through the hooks of ``ticlip_core.engine.method.Method`` plus the
study's own (``base.MemclipMethod``): which samples it trains on (the task's, the memory's, every
task's so far), and its loss on a batch of image-vs-label-text similarities. Adding a method is
one file here with a ``@register``-decorated class, plus its name in ``memclip.methods``. No
torch is imported at module level, so the Snakefile can read the registry when it builds the DAG.
"""
from __future__ import annotations

from functools import partial

from ticlip_core import registry
from ticlip_core.registry import register  # noqa: F401 (the decorator the method files use)

STUDY = "memclip"
get_method = partial(registry.get_method, STUDY)
available_methods = partial(registry.available_methods, STUDY)
