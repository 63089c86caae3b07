"""The one registry of methods, for every study, filled by one file per method.

Each study keeps its methods in its own package (``ticlip_core/<study>/methods/``, one file
each, a class decorated with ``@register``); the registry maps ``(study, name)`` to the class.
Importing this module imports no method; the first lookup of a study imports its package's
modules, so a Snakefile can validate names without importing torch.
"""
from __future__ import annotations

import importlib
import pkgutil

#: where each study's methods live
STUDY_PACKAGES = {"tic": "ticlip_core.tic.methods", "clclip": "ticlip_core.clclip.methods",
                  "memclip": "ticlip_core.memclip.methods"}

#: each study's name in messages
STUDY_TITLES = {"tic": "TiC", "clclip": "CL-CLIP", "memclip": "memclip"}

_CLASSES: dict[tuple[str, str], type] = {}


def title(study: str) -> str:
    """How messages name ``study`` ("CL-CLIP" for "clclip")."""
    return STUDY_TITLES.get(study, study)


def register(cls: type) -> type:
    """Class decorator: add ``cls`` under ``(cls.study, cls.name)``."""
    if not cls.name or not cls.study:
        raise ValueError(f"{cls.__qualname__} needs a name and a study")
    key = (cls.study, cls.name)
    if key in _CLASSES and _CLASSES[key] is not cls:
        raise ValueError(f"{title(cls.study)} method name '{cls.name}' registered twice")
    _CLASSES[key] = cls
    return cls


def unregister(study: str, name: str) -> None:
    """Remove a registered method (tests that register a throwaway one)."""
    _CLASSES.pop((study, name), None)


def _discover(study: str) -> None:
    if study not in STUDY_PACKAGES:
        raise KeyError(f"unknown study '{study}'; studies: {', '.join(sorted(STUDY_PACKAGES))}")
    package = importlib.import_module(STUDY_PACKAGES[study])
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")


def method_class(study: str, name: str) -> type:
    """The class registered as ``name`` in ``study``."""
    _discover(study)
    if (study, name) not in _CLASSES:
        raise KeyError(f"unknown {title(study)} method '{name}'; registered methods: {', '.join(available_methods(study))}")
    return _CLASSES[(study, name)]


def get_method(study: str, name: str, **options):
    """An instance of ``study``'s method ``name``, given its config ``options``."""
    return method_class(study, name)(**options)


def available_methods(study: str, scenario: str | None = None) -> list[str]:
    """Names of ``study``'s registered methods (those supporting ``scenario`` when given), sorted."""
    _discover(study)
    return sorted(name for (s, name), cls in _CLASSES.items()
                  if s == study and (scenario is None or not cls.scenarios or scenario in cls.scenarios))


def check_methods(study: str, names, key: str, scenarios=()) -> None:
    """Refuse, naming ``key``, a configured method that ``study`` does not register or that
    supports none of ``scenarios`` (a bad pairing fails when the DAG is built, not in a job)."""
    unknown = sorted(set(names) - set(available_methods(study)))
    if unknown:
        raise ValueError(f"{key}: unknown {title(study)} method(s) {', '.join(unknown)}; "
                         f"registered: {', '.join(available_methods(study))}")
    for name in names:
        cls = _CLASSES[(study, name)]
        if scenarios and cls.scenarios and not set(scenarios) & set(cls.scenarios):
            raise ValueError(f"{key}: {title(study)} method '{name}' supports only {', '.join(cls.scenarios)}, "
                             f"not {', '.join(scenarios)}")
