"""PEP 562 lazy exports: a package lists its public names by module and imports a module on first use of a name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, tuple[str, ...]],
                 renamed: Mapping[str, tuple[str, str]] | None = None,
                 companions: Mapping[str, tuple[str, ...]] | None = None
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """A package's module `__getattr__` and `__dir__` (PEP 562) and its sorted `__all__`, from a table of its names.

    `gist_engine.X` (and `from gist_engine import X`) imports the module that defines X the first time X is asked
    for and keeps the value in the package's namespace, so the module is never looked up twice; a package whose
    names are only listed imports none of its modules (none of torch, timm, onnx) until one is used.

    Args:
        package: The package's `__name__` (relative module names resolve against it).
        namespace: The package's `globals()`: where a loaded name is kept.
        exports: module (relative, e.g. ".runs.pairs") -> the names it gives the package under their own names.
        renamed: public name -> (module, name in that module), for names exported under another name.
        companions: module -> modules imported with it, before its name is handed out: those that register
            something in it on import (e.g. the study kind of gallery bundles), as an eager package imported them.

    Returns:
        (`__getattr__`, `__dir__`, `__all__`).

    Raises:
        ValueError: a name listed twice (the table is checked once, when the package is imported). The returned
            `__getattr__` raises AttributeError for a name that is neither in the table nor a submodule, as a
            module does.
    """
    where: dict[str, tuple[str, str]] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name} is exported by {where[name][0]} and {module}")
            where[name] = (module, name)
    for name, target in (renamed or {}).items():
        if name in where:
            raise ValueError(f"{package}: {name} is exported by {where[name][0]} and renamed from {target[0]}")
        where[name] = target

    def __getattr__(name: str) -> Any:
        if name not in where:
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")  # a submodule, as `import package.name` gives
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where[name]
        value = getattr(importlib.import_module(module, package), attr)
        for companion in (companions or {}).get(module, ()):
            importlib.import_module(companion, package)
        namespace[name] = value  # the next look-up is an ordinary global
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    shadowed = {name for name in where if importlib.util.find_spec(f"{package}.{name}") is not None}
    if shadowed:  # e.g. gist_engine.train: the function, as before, not the subpackage of the same name
        sys.modules[package].__class__ = _keep_exports(shadowed)
    return __getattr__, __dir__, sorted(where)


HEAVY_LIBRARIES = ("torch", "timm", "onnx")  # what the model code imports, in that order (seconds each on a CPU)


def preload(libraries: tuple[str, ...] = HEAVY_LIBRARIES) -> list[str]:
    """Import the heavy third-party libraries the model code needs (torch, timm, onnx), one after another; returns
    the names imported now. Meant for a background thread at an app's start: a later first use of the engine finds
    them in sys.modules. Only third-party libraries are imported here, never the package's own modules, so a thread
    running this cannot deadlock with another thread importing the engine (neither waits for a lock the other
    holds in a cycle). A library that is not installed is skipped (its absence is reported where it is needed).
    """
    done = []
    for name in libraries:
        if name in sys.modules or importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name)
        done.append(name)
    return done


def _keep_exports(names: set[str]) -> type[types.ModuleType]:
    """A module class (Python's documented way to customise a module's attribute setting) that keeps the exported
    `names` when the import system binds a submodule of the same name on the package (it does so on every first
    import of `package.name`); the submodule stays in sys.modules, where `from .name import ...` finds it."""

    class Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in names and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
                return
            super().__setattr__(name, value)

    return Package
