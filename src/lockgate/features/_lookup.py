"""Online lookups through the definitions: entity rows in, every requested feature out (from
several views and on-demand features) with its age and status.

An on-demand feature is computed by the same function as in training, over the request's
fields and the view values just read; its age is its oldest input's, its status its worst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lockgate.errors import InvalidInputError
from lockgate.features._catalog import Catalog, ResolvedFeature
from lockgate.features._definitions import OnDemandFeature, StalePolicy
from lockgate.features._ondemand import compute
from lockgate.features._online_results import EntityRows, FeatureStatus, FeatureValue
from lockgate.tables import to_arrow

if TYPE_CHECKING:  # the stores and the join import DuckDB and pyarrow.dataset: not at CLI start
    from lockgate.features._online import OnlineStore

__all__ = ["OnlineEntity", "OnlineResult", "entity_rows", "lookup"]

# Worse statuses win when an on-demand feature combines inputs (or a row sums up its features).
_SEVERITY: dict[str, int] = {"fresh": 0, "default": 1, "stale": 2, "missing": 3}


@dataclass(frozen=True, slots=True)
class OnlineEntity:
    """One entity's answer: each requested feature's value, event time, age (seconds) and status."""

    entity: dict[str, Any]
    values: dict[str, Any]
    event_times: dict[str, datetime | None]
    ages: dict[str, float | None]
    statuses: dict[str, FeatureStatus]

    def feature(self, name: str) -> FeatureValue:
        return FeatureValue(self.values[name], self.event_times[name], self.ages[name], self.statuses[name])

    @property
    def status(self) -> FeatureStatus:
        """The worst status among its features."""
        return _worst(self.statuses.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "values": self.values,
            "ages": self.ages,
            "statuses": self.statuses,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class OnlineResult(EntityRows[OnlineEntity]):
    """The answer to an online lookup: one :class:`OnlineEntity` per entity row, in request order."""

    features: tuple[str, ...]
    rows: list[OnlineEntity]
    now: datetime

    @property
    def status(self) -> FeatureStatus:
        """The worst status of any value in the answer."""
        return _worst(row.status for row in self.rows)

    def to_arrow(self) -> pa.Table:
        """The feature values as a table, a row per entity (what a model's ``predict`` takes)."""
        return pa.table({name: self.column(name) for name in self.features})

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "now": self.now.isoformat(), "rows": [r.to_dict() for r in self.rows]}


def entity_rows(rows: Any) -> list[dict[str, Any]]:
    """Entity rows as a list of dicts: one mapping, a list of them, or a table or frame."""
    if isinstance(rows, Mapping):
        return [dict(rows)]
    if isinstance(rows, (list, tuple)):
        if not all(isinstance(r, Mapping) for r in rows):
            raise InvalidInputError("entity rows must be mappings like {'card_id': 'c42'}, or a table")
        return [dict(r) for r in rows]
    try:
        return list(to_arrow(rows).to_pylist())
    except InvalidInputError:
        raise InvalidInputError(
            f"entity rows must be a mapping, a list of mappings, or a table or frame, not {type(rows).__name__}"
        ) from None


def lookup(
    store: OnlineStore,
    catalog: Catalog,
    features: Sequence[ResolvedFeature],
    rows: list[dict[str, Any]],
    functions: Mapping[str, OnDemandFeature],
    *,
    now: datetime,
    policy: StalePolicy | None = None,
) -> OnlineResult:
    """Read the view features each entity row asks for and compute the on-demand ones."""
    from lockgate.features._pit_join import feature_columns  # the column names training sets use

    view_features, _ = catalog.inputs_of(features)
    for wanted in (f for f in features if not f.view):
        for field in catalog.on_demand_feature(wanted.name).request_fields:
            if any(field not in row for row in rows):
                raise InvalidInputError(
                    f"on-demand feature '{wanted.name}' takes the request field '{field}', which an entity row "
                    "lacks; pass it with the entity rows"
                )
    by_view: dict[str, list[str]] = {}
    for f in view_features:
        by_view.setdefault(f.view, []).append(f.name)
    requests = [(catalog.view(v), names) for v, names in by_view.items()]
    entity_columns = sorted({k for row in rows for k in row})
    columns = feature_columns(requests, entity_columns=entity_columns) if requests else {}
    n = len(rows)
    values: dict[str, list[Any]] = {}
    times: dict[str, list[datetime | None]] = {}
    ages: dict[str, list[float | None]] = {}
    statuses: dict[str, list[FeatureStatus]] = {}
    for view, names in requests:
        answer = store.read(view, rows, names, now=now, policy=policy)
        for name in names:
            column = columns[(view.name, name)]
            values[column] = [r.values[name] for r in answer.rows]
            times[column] = [r.event_time for r in answer.rows]
            ages[column] = [r.age for r in answer.rows]
            statuses[column] = [r.status for r in answer.rows]
    for feature in features:
        if feature.view:
            continue
        od = functions[feature.name]
        inputs: dict[str, Any] = {}
        taken: list[str] = []
        for ref in od.inputs:
            argument = OnDemandFeature.argument(ref)
            if ":" in ref:
                view_name, name = ref.split(":", 1)
                column = columns[(view_name, name)]
                inputs[argument] = pa.array(values[column], type=catalog.view(view_name).feature_types[name])
                taken.append(column)
            else:
                inputs[argument] = pa.array([row[ref] for row in rows])
        values[feature.name] = compute(od, inputs, rows=n).to_pylist()
        times[feature.name] = [_oldest([times[c][i] for c in taken]) for i in range(n)]
        ages[feature.name] = [_largest([ages[c][i] for c in taken]) for i in range(n)]
        statuses[feature.name] = [_worst([statuses[c][i] for c in taken]) for i in range(n)]
    names = [columns[(f.view, f.name)] if f.view else f.name for f in features]
    answer_rows = [
        OnlineEntity(
            entity=rows[i],
            values={c: values[c][i] for c in names},
            event_times={c: times[c][i] for c in names},
            ages={c: ages[c][i] for c in names},
            statuses={c: statuses[c][i] for c in names},
        )
        for i in range(n)
    ]
    return OnlineResult(features=tuple(names), rows=answer_rows, now=now)


def _worst(statuses: Any) -> FeatureStatus:
    found: FeatureStatus = "fresh"
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[found]:
            found = status
    return found


def _oldest(times: list[datetime | None]) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _largest(ages: list[float | None]) -> float | None:
    known = [a for a in ages if a is not None]
    return max(known) if known else None
