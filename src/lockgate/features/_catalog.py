"""A consistent set of definitions, and feature references resolved against it.

A catalog is what a definitions file holds, what the registry holds, or the registry with a
file applied on top; the same rules resolve ``"view:feature"``, ``"view:*"`` and on-demand
names everywhere (training, serving, binding, checking an apply).

>>> from datetime import timedelta
>>> from lockgate.features import Entity, FeatureView, ParquetSource
>>> card = Entity("card", join_keys=["card_id"])
>>> view = FeatureView(name="card_stats", entities=[card], ttl=timedelta(days=1),
...     source=ParquetSource("stats/", event_time="ts"), features={"spend": "float64", "n": "int64"})
>>> [f.ref for f in Catalog.of([view]).resolve(["card_stats:*"])]
['card_stats:spend', 'card_stats:n']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.features._definitions import (
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeature,
    parse_feature_ref,
)
from lockgate.features._specs import kind_of

__all__ = ["Catalog", "OnDemandSpec", "ResolvedFeature", "feature_type_names"]


@dataclass(frozen=True, slots=True)
class ResolvedFeature:
    """One feature a reference stands for: its view (``""`` for an on-demand feature), name and type."""

    view: str
    name: str
    dtype: str

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}" if self.view else self.name

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "view": self.view, "feature": self.name, "type": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedFeature:
        return cls(view=str(data.get("view") or ""), name=str(data["feature"]), dtype=str(data["type"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class OnDemandSpec:
    """An on-demand feature as the registry holds it: everything but its function, which
    lives in the definitions file (function objects are not storable)."""

    name: str
    inputs: tuple[str, ...]
    dtype: str
    version: str
    spec: dict[str, Any] = field(repr=False, compare=False)

    @property
    def feature_refs(self) -> list[str]:
        return [ref for ref in self.inputs if ":" in ref]

    @property
    def request_fields(self) -> list[str]:
        return [ref for ref in self.inputs if ":" not in ref]

    @classmethod
    def from_spec(cls, spec: dict[str, Any], version: str) -> OnDemandSpec:
        return cls(name=spec["name"], inputs=tuple(spec["inputs"]), dtype=spec["dtype"], version=version, spec=spec)


OnDemand = OnDemandFeature | OnDemandSpec


def feature_type_names(view: FeatureView) -> dict[str, str]:
    """Each feature of a view with its type name (``float64``, ``int64``, …)."""
    if view.aggregations:
        return {a.feature_name: a.output_type for a in view.aggregations}
    return dict(view.features)


@dataclass(slots=True)
class Catalog:
    """Definitions by kind and name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    on_demand: dict[str, OnDemand] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)

    @classmethod
    def of(cls, definitions: Iterable[Any]) -> Catalog:
        """Collect definitions (entities used by views come along); two different definitions
        of one kind under one name are refused."""
        catalog = cls()
        for item in definitions:
            kind = kind_of(item)
            if kind is None:
                raise InvalidInputError(
                    f"{type(item).__name__} is not a feature definition; pass Entity, FeatureView, "
                    "OnDemandFeature or FeatureService objects"
                )
            catalog._add(kind, item)
            if isinstance(item, FeatureView):
                for entity in item.entities:
                    catalog._add("entity", entity)
        return catalog

    def _add(self, kind: str, item: Any) -> None:
        table = self.table(kind)
        seen = table.get(item.name)
        if seen is not None and seen.version != item.version:
            label = kind.replace("_", " ")
            raise InvalidInputError(
                f"two different definitions of {label} '{item.name}' were given; keep one "
                "(a feature view's entities must match the Entity definitions of the same name)"
            )
        table[item.name] = item

    def table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "entity": self.entities,
            "feature_view": self.views,
            "on_demand_feature": self.on_demand,
            "feature_service": self.services,
        }
        return tables[kind]

    def items(self) -> list[tuple[str, str, Any]]:
        """``(kind, name, definition)`` for everything, kind by kind, names sorted."""
        return [
            (kind, name, self.table(kind)[name])
            for kind in ("entity", "feature_view", "on_demand_feature", "feature_service")
            for name in sorted(self.table(kind))
        ]

    def __len__(self) -> int:
        return len(self.entities) + len(self.views) + len(self.on_demand) + len(self.services)

    def overlay(self, other: Catalog) -> Catalog:
        """This catalog with ``other``'s definitions in place of same-named ones."""
        return Catalog(
            entities={**self.entities, **other.entities},
            views={**self.views, **other.views},
            on_demand={**self.on_demand, **other.on_demand},
            services={**self.services, **other.services},
        )

    # -- finding -----------------------------------------------------------------------------

    def view(self, name: str) -> FeatureView:
        found = self.views.get(name)
        if found is None:
            raise NotFoundError(
                f"no feature view named '{name}' is registered (views: {_names(self.views)}); "
                "see: lockgate features list"
            )
        return found

    def service(self, name: str) -> FeatureService:
        found = self.services.get(name)
        if found is None:
            raise NotFoundError(
                f"no feature service named '{name}' is registered (services: {_names(self.services)}); "
                "see: lockgate features list"
            )
        return found

    def on_demand_feature(self, name: str) -> OnDemand:
        found = self.on_demand.get(name)
        if found is None:
            raise NotFoundError(
                f"no on-demand feature named '{name}' is registered (on-demand features: "
                f"{_names(self.on_demand)}); a view's feature is written VIEW:FEATURE"
            )
        return found

    def resolve(self, refs: Sequence[str]) -> list[ResolvedFeature]:
        """The features ``refs`` stand for, in order, each once; unknown names are refused.

        Two views may have features of one name (their columns are then ``view__feature``),
        but an on-demand feature may not share its name with a requested view feature."""
        if isinstance(refs, str):
            refs = [refs]
        found: dict[str, ResolvedFeature] = {}
        for ref in refs:
            view_name, name = parse_feature_ref(ref)
            if not view_name:
                od = self.on_demand_feature(name)
                found.setdefault(name, ResolvedFeature("", name, od.dtype))
                continue
            view = self.view(view_name)
            types = feature_type_names(view)
            if name == "*":
                picked = list(types)
            elif name in types:
                picked = [name]
            else:
                raise NotFoundError(
                    f"feature view '{view_name}' has no feature '{name}' (its features: {', '.join(types)}); "
                    f"see: lockgate features show {view_name}"
                )
            for feature in picked:
                resolved = ResolvedFeature(view_name, feature, types[feature])
                found.setdefault(resolved.ref, resolved)
        clash = sorted({f.name for f in found.values() if f.view} & {f.name for f in found.values() if not f.view})
        if clash:
            raise InvalidInputError(
                f"on-demand feature '{clash[0]}' has the name of a requested view feature, so both would be "
                f"column '{clash[0]}'; rename one of them"
            )
        return list(found.values())

    def inputs_of(self, features: Sequence[ResolvedFeature]) -> tuple[list[ResolvedFeature], list[str]]:
        """What computing ``features`` reads: the view features (requested ones and those on-demand
        features take) and the request fields on-demand features take."""
        view_features: dict[str, ResolvedFeature] = {}
        fields: dict[str, None] = {}
        for feature in features:
            if feature.view:
                view_features.setdefault(feature.ref, feature)
                continue
            od = self.on_demand_feature(feature.name)
            for extra in self.resolve(od.feature_refs):
                view_features.setdefault(extra.ref, extra)
            for name in od.request_fields:
                fields[name] = None
        return list(view_features.values()), list(fields)

    def problems(self) -> list[str]:
        """Every reference in services and on-demand inputs that does not resolve, in one sentence each."""
        found = []
        for name, od in sorted(self.on_demand.items()):
            for ref in od.feature_refs:
                problem = self._problem(ref)
                if problem:
                    found.append(f"on-demand feature '{name}' takes {ref!r}, but {problem}")
        for name, service in sorted(self.services.items()):
            broken = [(ref, p) for ref in service.features if (p := self._problem(ref))]
            found.extend(f"feature service '{name}' lists {ref!r}, but {problem}" for ref, problem in broken)
            if not broken:
                try:
                    self.resolve(service.features)
                except InvalidInputError as exc:
                    found.append(f"feature service '{name}': {exc}")
        return found

    def _problem(self, ref: str) -> str | None:
        view_name, name = parse_feature_ref(ref)
        if not view_name:
            return None if name in self.on_demand else f"no on-demand feature is called '{name}'"
        view = self.views.get(view_name)
        if view is None:
            return f"no feature view is called '{view_name}'"
        if name != "*" and name not in feature_type_names(view):
            return f"feature view '{view_name}' has no feature '{name}'"
        return None


def _names(table: Mapping[str, Any]) -> str:
    return ", ".join(sorted(table)) or "none"
