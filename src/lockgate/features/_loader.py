"""Definitions from a Python file: import it and collect its module-level definitions.

``lockgate features apply features.py`` and ``pipeline check`` read definitions this way; a
process that serves on-demand features imports their functions from the same file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import types
from pathlib import Path

from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.features._catalog import Catalog
from lockgate.features._specs import kind_of

__all__ = ["definitions_in", "load_definitions"]


def load_definitions(path: str | Path) -> Catalog:
    """Every Entity, FeatureView, OnDemandFeature and FeatureService at the top level of ``path``.

    The file is imported afresh each time (it may have changed since), with its folder on
    ``sys.path`` so it (and its functions, when they run) can import the project's own modules. A file that does not import, or
    that defines nothing, is refused in one sentence.
    """
    file = Path(path)
    if not file.is_file():
        raise NotFoundError(f"definitions file {path} does not exist; check the path")
    module = _import(file.resolve(), shown=str(path))
    catalog = definitions_in(vars(module))
    if not len(catalog):
        raise InvalidInputError(
            f"{path} defines no Entity, FeatureView, OnDemandFeature or FeatureService at its top level"
        )
    return catalog


def definitions_in(namespace: dict[str, object]) -> Catalog:
    """The definitions among a module's names (a pipeline's module, a definitions file)."""
    return Catalog.of(value for value in list(namespace.values()) if kind_of(value) is not None)


def _import(path: Path, *, shown: str) -> types.ModuleType:
    name = "lockgate_features_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"{shown} is not a Python file lockgate can import; give a .py file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    # Registered while it runs, as a normal import would be: dataclasses and pickling look the
    # module up by name.
    sys.modules[name] = module
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if previous is not None:
            sys.modules[name] = previous
        else:
            del sys.modules[name]
        if added:
            sys.path.remove(folder)
        raise InvalidInputError(
            f"{shown} does not import ({type(exc).__name__}: {exc}); fix the file and retry"
        ) from exc
    return module
