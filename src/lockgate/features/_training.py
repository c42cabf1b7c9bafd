"""Training sets: the point-in-time join of the requested views, on-demand features computed
over its columns, and what lineage records about them.

The join itself is the offline engine's (:func:`~lockgate.features._offline.point_in_time_join`);
this module decides what to ask it for and completes the table the way serving will.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from lockgate.entities import NodeKind
from lockgate.errors import InvalidInputError
from lockgate.features._catalog import Catalog, ResolvedFeature
from lockgate.features._definitions import FeatureService, FeatureView, OnDemandFeature
from lockgate.features._ondemand import compute
from lockgate.features._registry import definition_node

if TYPE_CHECKING:
    from lockgate.features._offline import OfflineStore

__all__ = ["Requests", "build", "requests_for", "sources"]

Requests = list[tuple[FeatureView, list[str]]]


def requests_for(catalog: Catalog, features: Sequence[ResolvedFeature]) -> Requests:
    """The view features to join, grouped per view in order (on-demand inputs included)."""
    view_features, _ = catalog.inputs_of(features)
    by_view: dict[str, list[str]] = {}
    for f in view_features:
        by_view.setdefault(f.view, []).append(f.name)
    return [(catalog.view(v), names) for v, names in by_view.items()]


def build(
    store: OfflineStore,
    entity: pa.Table,
    features: Sequence[ResolvedFeature],
    requests: Requests,
    on_demand: Sequence[OnDemandFeature],
    *,
    as_of: datetime | None,
    timestamp_column: str,
) -> pa.Table:
    """The entity rows plus each requested feature as of the row's timestamp; view features
    joined only as on-demand inputs are dropped again."""
    from lockgate.features._offline import feature_columns, point_in_time_join

    for od in on_demand:
        absent = [f for f in od.request_fields if f not in entity.column_names]
        if absent:
            raise InvalidInputError(
                f"on-demand feature '{od.name}' takes the request field '{absent[0]}', which the entity rows "
                "lack; add that column"
            )
        if od.name in entity.column_names:
            raise InvalidInputError(
                f"on-demand feature '{od.name}' would be column '{od.name}', which the entity rows already have; "
                "rename the column"
            )
    if requests:
        table = point_in_time_join(entity, requests, timestamp_column=timestamp_column, as_of=as_of, store=store)
        columns = feature_columns(requests, entity_columns=entity.column_names)
    else:
        table, columns = entity, {}
    for od in on_demand:
        inputs = {OnDemandFeature.argument(ref): table.column(_column(columns, ref)) for ref in od.inputs}
        output = compute(od, inputs, rows=table.num_rows)
        table = table.append_column(pa.field(od.name, output.type), output)
    wanted = {columns[(f.view, f.name)] for f in features if f.view}
    extra = [c for c in columns.values() if c not in wanted]
    return table.drop_columns(extra) if extra else table


def sources(
    store: OfflineStore,
    catalog: Catalog,
    features: Sequence[ResolvedFeature],
    requests: Requests,
    service: FeatureService | None,
) -> list[tuple[str, str, str]]:
    """What a training set is built from, as lineage ``(kind, node id, relation)``: each definition
    version, and the fingerprint of every file set read (a computed view's output, whose own
    upstream is its source, and pushed rows)."""
    found: list[tuple[str, str, str]] = []
    for view, _ in requests:
        read = store.lineage(view)
        found.append((NodeKind.FEATURE_VIEW, definition_node(view.name, view.version), "features"))
        found.append((NodeKind.DATASET, f"{read.data}@{read.fingerprint}", f"source:{view.name}"))
        if read.pushed is not None:
            found.append((NodeKind.DATASET, f"{read.pushed}@{read.pushed_fingerprint}", f"pushed:{view.name}"))
    for f in features:
        if not f.view:
            od = catalog.on_demand_feature(f.name)
            found.append((NodeKind.ON_DEMAND_FEATURE, definition_node(od.name, od.version), "features"))
    if service is not None:
        found.append((NodeKind.FEATURE_SERVICE, definition_node(service.name, service.version), "features"))
    return list(dict.fromkeys(found))


def _column(columns: dict[tuple[str, str], str], ref: str) -> str:
    """The column an on-demand input is in: a joined feature's column, or the request field itself."""
    view, sep, name = ref.partition(":")
    return columns[(view, name)] if sep else ref
