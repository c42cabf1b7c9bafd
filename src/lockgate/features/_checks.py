"""The ``lockgate pipeline check`` check that runs every on-demand feature's examples.

On-demand features are found in the modules of the pipeline's step functions, and in the
project modules those import (a ``features.py`` next to the pipeline). Each example runs
through the function as a one-row batch, the way serving calls it.

The check lives here, with the features it checks, but ``pipelines`` sits above ``features``:
so it does not import the pipeline machinery. The side that registers it (which may import
both) hands it the result type to build, e.g. ``OnDemandExamplesCheck(CheckResult)``.
"""

from __future__ import annotations

import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyarrow as pa

from lockgate.errors import InvalidInputError
from lockgate.features._catalog import Catalog
from lockgate.features._definitions import OnDemandFeature
from lockgate.features._loader import definitions_in
from lockgate.features._ondemand import ExampleMismatch, check_examples

__all__ = ["OnDemandExamplesCheck", "definitions_of_pipeline", "run_examples"]

R = TypeVar("R")
# Where installed packages and the standard library live: modules from there are not the project's.
_LIBRARIES = tuple(
    sorted({str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "platstdlib", "purelib", "platlib")})
)


class OnDemandExamplesCheck(Generic[R]):
    """Every on-demand feature the pipeline's code defines or imports returns what its examples say."""

    name = "feature_examples"

    def __init__(self, result: Callable[..., R]) -> None:
        self._result = result

    def run(self, graph: Any, ws: Any | None) -> R:
        try:
            catalog = definitions_of_pipeline(graph)
        except InvalidInputError as exc:  # two different definitions under one name
            return self._result(name=self.name, ok=False, message=str(exc), evidence={})
        features = [f for f in catalog.on_demand.values() if isinstance(f, OnDemandFeature)]
        examples = sum(len(f.examples) for f in features)
        mismatches = run_examples(features, catalog)
        names = ", ".join(sorted(f.name for f in features))
        evidence: dict[str, Any] = {
            "features": sorted(f.name for f in features),
            "examples": examples,
            "mismatches": [m.to_dict() for m in mismatches],
        }
        if mismatches:
            shown = "; ".join(str(m) for m in mismatches[:3])
            more = f" (and {len(mismatches) - 3} more)" if len(mismatches) > 3 else ""
            return self._result(
                name=self.name,
                ok=False,
                message=f"{len(mismatches)} of {examples} on-demand feature examples failed: {shown}{more}",
                evidence=evidence,
            )
        if not features:
            message = "no on-demand features in the pipeline's modules"
        else:
            plural = "s" if len(features) != 1 else ""
            message = f"{examples} example{'s' if examples != 1 else ''} of {len(features)} on-demand feature{plural} ({names}) hold"
        return self._result(name=self.name, ok=True, message=message, evidence=evidence)


def run_examples(features: Iterable[OnDemandFeature], catalog: Catalog | None = None) -> list[ExampleMismatch]:
    """The examples that fail, feature by feature; inputs that are view features get the view's type."""
    found: list[ExampleMismatch] = []
    for feature in features:
        types_: dict[str, pa.DataType] = {}
        for ref in feature.feature_refs:
            view_name, _, name = ref.partition(":")
            view = catalog.views.get(view_name) if catalog is not None else None
            if view is not None and name in view.feature_types:
                types_[name] = view.feature_types[name]
        found.extend(check_examples(feature, types_))
    return found


def definitions_of_pipeline(graph: Any) -> Catalog:
    """The definitions in the modules of a traced pipeline's steps and the project modules they import."""
    seen: set[str] = set()
    namespace: dict[str, object] = {}
    for node in getattr(graph, "nodes", []):
        fn = getattr(getattr(node, "step", None), "fn", None)
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        if module is None:
            continue
        for found in [module, *_project_modules(module)]:
            if found.__name__ not in seen:
                seen.add(found.__name__)
                namespace.update({f"{found.__name__}.{k}": v for k, v in vars(found).items()})
    return definitions_in(namespace)


def _project_modules(module: types.ModuleType) -> list[types.ModuleType]:
    """Modules ``module`` imported that are the user's own code (not lockgate, not installed packages)."""
    found = []
    for value in list(vars(module).values()):
        target = (
            value if isinstance(value, types.ModuleType) else sys.modules.get(getattr(value, "__module__", "") or "")
        )
        file = getattr(target, "__file__", None)
        if target is None or file is None or target is module or target.__name__.startswith("lockgate."):
            continue
        path = str(Path(file).resolve())
        if not path.startswith(_LIBRARIES) and target not in found:
            found.append(target)
    return found
