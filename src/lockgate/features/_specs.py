"""Definitions as the registry stores them: canonical specs, rebuilt into definitions, and
compared field by field so ``apply`` can say exactly what changed.

>>> from lockgate.features import Entity
>>> old = Entity("card", join_keys=["card_id"]).spec()
>>> new = Entity("card", join_keys=["card_id"], description="a payment card").spec()
>>> [str(c) for c in spec_changes(old, new)]
["description: None → 'a payment card'"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from lockgate.errors import InvalidInputError
from lockgate.features._definitions import (
    Aggregation,
    Count,
    CountDistinct,
    Entity,
    FeatureService,
    FeatureView,
    Max,
    Mean,
    Min,
    OnDemandFeature,
    ParquetSource,
    Sum,
)

__all__ = ["KINDS", "FieldChange", "entity_from_spec", "service_from_spec", "spec_changes", "view_from_spec"]

KINDS: Final = ("entity", "feature_view", "on_demand_feature", "feature_service")
"""The kinds of definition, in the order ``apply`` reports them (each may use the ones before)."""

_KIND_OF: Final[dict[type[Any], str]] = {
    Entity: "entity",
    FeatureView: "feature_view",
    OnDemandFeature: "on_demand_feature",
    FeatureService: "feature_service",
}
_AGGREGATIONS: Final[dict[str, type[Aggregation]]] = {
    cls.function: cls for cls in (Count, CountDistinct, Sum, Mean, Min, Max)
}


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs between two versions of a definition (``ttl``,
    ``aggregations[avg_amount_7d].window``, ``features.amount``)."""

    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        if isinstance(self.old, str) and isinstance(self.new, str) and "\n" in self.old + self.new:
            # Function source or SQL: the full text is in to_dict(); a line says that it changed.
            before, after = len(self.old.splitlines()), len(self.new.splitlines())
            return f"{self.field}: changed ({before} → {after} lines)"
        return f"{self.field}: {_show(self.old)} → {_show(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


def kind_of(definition: object) -> str | None:
    """The kind of a definition object, or None for anything else."""
    return _KIND_OF.get(type(definition))


def spec_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every field that differs, as dotted paths; lists of named things are compared by name."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[FieldChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            found.extend(spec_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key)))
        return found
    if _named_list(old) and _named_list(new):
        before = {item["name"]: item for item in old}
        after = {item["name"]: item for item in new}
        found = []
        for name in [*before, *(n for n in after if n not in before)]:
            found.extend(spec_changes(before.get(name), after.get(name), f"{path}[{name}]"))
        if not found and [i["name"] for i in old] != [i["name"] for i in new]:
            found.append(FieldChange(f"{path} (order)", [i["name"] for i in old], [i["name"] for i in new]))
        return found
    return [] if old == new else [FieldChange(path, old, new)]


def entity_from_spec(spec: dict[str, Any]) -> Entity:
    return Entity(name=spec["name"], join_keys=list(spec["join_keys"]), description=spec.get("description"))


def view_from_spec(spec: dict[str, Any]) -> FeatureView:
    """The feature view a stored spec describes (the registry keeps specs, not objects)."""
    source = spec["source"]
    if source.get("type") != "parquet":
        raise InvalidInputError(
            f"feature view '{spec['name']}' has a {source.get('type')!r} source this lockgate cannot read; upgrade it"
        )
    aggregations = []
    for a in spec.get("aggregations", []):
        cls = _AGGREGATIONS.get(a["function"])
        if cls is None:
            raise InvalidInputError(
                f"feature view '{spec['name']}' aggregates with {a['function']!r}, which this lockgate does not know"
            )
        aggregations.append(cls(column=a["column"], window=a["window"], name=a["name"]))
    return FeatureView(
        name=spec["name"],
        entities=[entity_from_spec(e) for e in spec["entities"]],
        ttl=spec["ttl"],
        source=ParquetSource(
            path=source["path"],
            event_time=source["event_time"],
            created_time=source["created_time"],
            contract=source.get("contract"),
        ),
        features=dict(spec.get("features") or {}),
        aggregations=aggregations,
        sql=spec.get("sql"),
        owner=spec.get("owner"),
        description=spec.get("description"),
        tags=dict(spec.get("tags") or {}),
        freshness_sla=spec.get("freshness_sla"),
        stale_policy=spec.get("stale_policy", "last_known"),
        defaults=dict(spec.get("defaults") or {}),
        online=bool(spec.get("online", True)),
    )


def service_from_spec(spec: dict[str, Any]) -> FeatureService:
    return FeatureService(
        name=spec["name"],
        features=list(spec["features"]),
        description=spec.get("description"),
        owner=spec.get("owner"),
    )


def _named_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)
        and len({i["name"] for i in value}) == len(value)
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
