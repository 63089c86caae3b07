"""A registry of classes by name, filled by the modules of a package (one file per method).

Importing a package's registry imports no module of it; the first lookup imports them all,
so a Snakefile can validate names without importing torch at module level.
"""
from __future__ import annotations

import importlib
import pkgutil


class Registry:
    """Classes of the package ``package`` (its ``__path__`` is ``path``) registered by ``name``;
    ``kind`` names them in error messages (e.g. "method", "CL-CLIP method")."""

    def __init__(self, package: str, path, kind: str):
        self.package, self.path, self.kind = package, path, kind
        self.classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Class decorator: add ``cls`` under ``cls.name``."""
        if not cls.name:
            raise ValueError(f"{cls.__qualname__} has no name")
        if cls.name in self.classes and self.classes[cls.name] is not cls:
            raise ValueError(f"{self.kind} name '{cls.name}' registered twice")
        self.classes[cls.name] = cls
        return cls

    def create(self, name: str, **options):
        """An instance of the class registered as ``name``, given its config ``options``."""
        self._discover()
        if name not in self.classes:
            raise KeyError(f"unknown {self.kind} '{name}'; registered methods: {', '.join(sorted(self.classes))}")
        return self.classes[name](**options)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._discover()
        return sorted(self.classes)

    def _discover(self) -> None:
        for info in pkgutil.iter_modules(self.path):
            if info.name != "base":
                importlib.import_module(f"{self.package}.{info.name}")
