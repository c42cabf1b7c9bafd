"""Point-in-time joins: for each entity row, each feature as it was known at that row's time.

For an entity row with keys ``k`` and timestamp ``t``, a view contributes the row of ``k``
with the latest event time ``<= t``; among rows with that event time the latest created time
wins (no created time counts as the earliest), and among rows equal in both, the one written
last (later in the source's files, in path order; pushed rows after the source, in push
order). If that row's event time is before ``t - ttl`` the features are null: older rows are
older still, so nothing fresher exists. Entity rows are all kept, in their order, duplicates
included; a row whose keys have no match (or has a null key) gets nulls.

``as_of`` keeps only rows known by then: created time ``<= as_of`` (a row without a created
time is then left out), or, for a view without a created time, event time ``<= as_of``. The
result is the training set one would have built at ``as_of``, reproducible later.

Times are compared at microsecond precision; timezone-aware and naive times must not be mixed
(see :mod:`lockgate.features._offline_schema`).

The work is one DuckDB ``ASOF LEFT JOIN`` per view, over the view's Parquet files streamed
through Arrow. Ties are broken inside the join: its inequality compares a struct (event time,
created time, ordinal), which DuckDB orders field by field, so no deduplication pass is
needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from lockgate.errors import InvalidInputError
from lockgate.features._definitions import FeatureView
from lockgate.features._offline_engine import RowStream, connect, quote
from lockgate.features._offline_schema import (
    as_arrow,
    is_aware,
    key_family,
    mixed_time_kinds,
    show_type,
    timestamp_scalar,
    to_microseconds,
)
from lockgate.features._offline_store import OfflineStore

__all__ = ["FeatureRequest", "feature_columns", "point_in_time_join"]

FeatureRequest = tuple[FeatureView, Sequence[str]]

# Internal column names hold a dot, which no entity key, feature or event time name can.
_ROW, _TS, _KEY, _ORD = "lg.row", "lg.ts", "lg.key", "lg.ord"
_MAX_ORDINAL = np.iinfo(np.int64).max


def point_in_time_join(
    entity_df: Any,
    requests: Sequence[FeatureRequest],
    *,
    timestamp_column: str = "event_timestamp",
    as_of: datetime | None = None,
    store: OfflineStore,
) -> pa.Table:
    """The entity rows, in their order and with all their columns, plus the requested features
    as of each row's timestamp (the rules are in the module docstring).

    ``entity_df`` is an Arrow table (a pandas or polars frame is converted); ``requests`` pairs
    each feature view with the names of the features wanted from it. Feature columns are named
    by :func:`feature_columns`. What lineage records about each view (its version, the
    fingerprints of what was read) is :meth:`OfflineStore.lineage`.
    """
    entity = as_arrow(entity_df, what="the entity rows")
    plan = _plan(requests)
    names = feature_columns(plan, entity_columns=entity.column_names)
    ts = _entity_timestamps(entity, timestamp_column)
    aware = is_aware(ts.type)
    # Every view is checked before any is joined: a bad last view fails in milliseconds.
    checked = []
    for view, features in plan:
        dataset = store.scan(view)
        keys = _entity_keys(entity, view, dataset.schema)
        _check_time_kind(view, dataset.schema, aware, timestamp_column)
        cutoff = None
        if as_of is not None:
            against = view.source.created_time or view.source.event_time
            cutoff = timestamp_scalar(
                as_of, aware=aware, what="as_of", other=f"feature view '{view.name}''s '{against}'"
            )
        checked.append((view, features, dataset, keys, cutoff))
    row = pa.array(np.arange(entity.num_rows, dtype=np.int64))
    ts_us = to_microseconds(ts, aware=aware)
    out = entity
    with connect() as con:
        for view, features, dataset, keys, cutoff in checked:
            left = pa.Table.from_arrays([*keys.values(), ts_us, row], names=[*keys, _TS, _ROW])
            columns = _join_view(con, view, features, dataset, left, aware=aware, cutoff=cutoff)
            types = view.feature_types
            for feature, column in zip(features, columns, strict=True):
                out = out.append_column(pa.field(names[(view.name, feature)], types[feature]), column)
    return out


def _join_view(
    con: Any,
    view: FeatureView,
    features: list[str],
    dataset: ds.Dataset,
    left: pa.Table,
    *,
    aware: bool,
    cutoff: pa.Scalar | None,
) -> Iterator[pa.ChunkedArray]:
    """One view's features for the ``left`` rows (keys, time, row number), in the rows' order."""
    stream = RowStream(
        dataset,
        columns=[*view.join_keys, *_times(view), *features],
        times=_times(view),
        ordinal=_ORD,
        label=f"feature view '{view.name}'",
    )
    con.register("lg_entity", left)
    con.register("lg_rows", stream.reader())
    try:
        joined = con.sql(_asof_sql(view, features, aware=aware, cutoff=cutoff)).to_arrow_table()
    except Exception:
        if stream.error is not None:
            raise stream.error from None
        raise
    finally:
        con.unregister("lg_entity")
        con.unregister("lg_rows")
    n = left.num_rows
    if joined.num_rows != n:  # ASOF LEFT JOIN yields each left row exactly once
        raise AssertionError(f"the join of '{view.name}' returned {joined.num_rows} rows for {n}")
    # Back to the rows' order: result row r belongs to entity row joined[_ROW][r].
    where = np.empty(n, dtype=np.int64)
    where[joined.column(_ROW).to_numpy()] = np.arange(n, dtype=np.int64)
    order = pa.array(where)
    found = joined.columns[1:]
    del joined  # each joined column is released once reordered, not all at the end
    types = view.feature_types
    for i, feature in enumerate(features):
        column, found[i] = found[i].take(order), None
        yield column.cast(types[feature])


def feature_columns(
    requests: Sequence[FeatureRequest], *, entity_columns: Sequence[str] = ()
) -> dict[tuple[str, str], str]:
    """The column each requested feature gets, by ``(view name, feature name)``.

    A feature keeps its own name unless another requested view has a feature of that name or
    the entity rows have a column of that name; then it is ``<view>__<feature>``. A name that
    still clashes is an error.

    >>> from lockgate.features import Entity, FeatureView, ParquetSource
    >>> card = Entity("card", join_keys=["card_id"])
    >>> def view(name): return FeatureView(name=name, entities=[card], ttl="1d",
    ...     source=ParquetSource("x/", event_time="ts"), features={"amount": "float64", name + "_n": "int64"})
    >>> feature_columns([(view("a"), ["amount", "a_n"]), (view("b"), ["amount"])])
    {('a', 'amount'): 'a__amount', ('a', 'a_n'): 'a_n', ('b', 'amount'): 'b__amount'}
    """
    plan = _plan(requests)
    taken = set(entity_columns)
    counts = Counter(feature for _, features in plan for feature in features)
    names: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for view, features in plan:
        for feature in features:
            name = feature if counts[feature] == 1 and feature not in taken else f"{view.name}__{feature}"
            if name in taken or name in used:
                raise InvalidInputError(
                    f"feature '{feature}' of view '{view.name}' would be column '{name}', which "
                    f"{'the entity rows already have' if name in taken else 'another feature has'}; rename one of them"
                )
            used.add(name)
            names[(view.name, feature)] = name
    return names


# -- validation -----------------------------------------------------------------------------


def _plan(requests: Sequence[FeatureRequest]) -> list[tuple[FeatureView, list[str]]]:
    """Requests merged per view, in order, each feature once; unknown names are an error."""
    merged: dict[str, tuple[FeatureView, list[str]]] = {}
    for item in requests:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], FeatureView)):
            raise InvalidInputError(
                f"a feature request must be a (FeatureView, [feature names]) pair, not {type(item).__name__}"
            )
        view, features = item
        if isinstance(features, str) or not all(isinstance(f, str) for f in features):
            raise InvalidInputError(
                f"the features of view '{view.name}' must be a list of names, e.g. [{view.feature_names[0]!r}]"
            )
        known = view.feature_names
        unknown = [f for f in features if f not in known]
        if unknown:
            raise InvalidInputError(
                f"feature view '{view.name}' has no feature '{unknown[0]}'; its features are: {', '.join(known)}"
            )
        if not features:
            raise InvalidInputError(f"no feature of view '{view.name}' is requested; name at least one")
        earlier = merged.get(view.name)
        if earlier is not None and earlier[0].version != view.version:
            raise InvalidInputError(f"feature view '{view.name}' is requested with two different definitions; use one")
        wanted = earlier[1] if earlier is not None else []
        wanted.extend(f for f in features if f not in wanted)
        merged[view.name] = (view, wanted)
    if not merged:
        raise InvalidInputError("no features are requested; pass [(view, ['feature', ...])]")
    return list(merged.values())


def _entity_timestamps(entity: pa.Table, column: str) -> pa.ChunkedArray:
    if column not in entity.column_names:
        raise InvalidInputError(
            f"the entity rows have no timestamp column '{column}' (columns: {', '.join(entity.column_names) or 'none'}); "
            "add it, or pass timestamp_column= naming the column that holds each row's time"
        )
    ts = entity.column(column)
    if not pa.types.is_timestamp(ts.type):
        raise InvalidInputError(
            f"the entity rows' '{column}' is {show_type(ts.type)}, not a timestamp; convert it "
            "(e.g. pandas pd.to_datetime(column, utc=True))"
        )
    if ts.null_count:
        raise InvalidInputError(
            f"{ts.null_count} entity rows have no '{column}'; every row needs the time to look features up at"
        )
    return ts


def _entity_keys(entity: pa.Table, view: FeatureView, schema: pa.Schema) -> dict[str, pa.ChunkedArray]:
    keys = {}
    for key in view.join_keys:
        if key not in entity.column_names:
            raise InvalidInputError(
                f"the entity rows have no column '{key}', the join key of feature view '{view.name}'; add it"
            )
        column = entity.column(key)
        family = key_family(column.type)
        stored = schema.field(key).type
        if family != stored:
            raise InvalidInputError(
                f"join key '{key}' is {show_type(column.type)} in the entity rows but {show_type(stored)} in "
                f"feature view '{view.name}'; convert one of them"
            )
        try:
            keys[key] = column.cast(stored)
        except pa.ArrowInvalid:  # an unsigned value past the int64 range
            raise InvalidInputError(
                f"join key '{key}' of the entity rows holds values beyond {show_type(stored)}, the type of "
                f"feature view '{view.name}''s keys; fix those values"
            ) from None
    return keys


def _check_time_kind(view: FeatureView, schema: pa.Schema, aware: bool, column: str) -> None:
    event = schema.field(view.source.event_time).type
    if is_aware(event) != aware:
        raise mixed_time_kinds(
            f"the entity rows' '{column}'",
            aware,
            f"the event time '{view.source.event_time}' of feature view '{view.name}'",
            is_aware(event),
        )


def _times(view: FeatureView) -> list[str]:
    created = view.source.created_time
    return [view.source.event_time] if created is None else [view.source.event_time, created]


# -- SQL ----------------------------------------------------------------------------------


def _literal(value: pa.Scalar, *, aware: bool) -> str:
    return f"{'TIMESTAMPTZ' if aware else 'TIMESTAMP'} '{value.as_py().isoformat(timespec='microseconds')}'"


def _asof_sql(view: FeatureView, features: Sequence[str], *, aware: bool, cutoff: pa.Scalar | None) -> str:
    stamp = "TIMESTAMPTZ" if aware else "TIMESTAMP"
    event = quote(view.source.event_time)
    created = view.source.created_time
    keys = [quote(k) for k in view.join_keys]
    # The ASOF inequality compares structs field by field: latest event time, then latest
    # created time (none counts as the earliest), then the row written last.
    if created is None:
        right_key = f"{{'t': {event}, 'o': {quote(_ORD)}}}"
        left_key = f"{{'t': {quote(_TS)}, 'o': {_MAX_ORDINAL}}}"
    else:
        right_key = f"{{'t': {event}, 'c': coalesce({quote(created)}, '-infinity'::{stamp}), 'o': {quote(_ORD)}}}"
        left_key = f"{{'t': {quote(_TS)}, 'c': 'infinity'::{stamp}, 'o': {_MAX_ORDINAL}}}"
    where = f"{event} IS NOT NULL"
    if cutoff is not None:
        known = quote(created) if created is not None else event
        where += f" AND {known} <= {_literal(cutoff, aware=aware)}"
    ttl_us = view.ttl_delta // timedelta(microseconds=1)
    # Times are read back out of the keys rather than carried beside them: each column the
    # join carries is copied into its sort, on both sides.
    fresh = f"struct_extract(f.{quote(_KEY)}, 't') >= struct_extract(e.{quote(_KEY)}, 't') - to_microseconds({ttl_us})"
    selected = ", ".join(f"CASE WHEN {fresh} THEN f.{quote(name)} END" for name in features)
    on = " AND ".join([*(f"e.{k} = f.{k}" for k in keys), f"e.{quote(_KEY)} >= f.{quote(_KEY)}"])
    return (
        f"SELECT e.{quote(_ROW)}, {selected} "
        f"FROM (SELECT {', '.join(keys)}, {quote(_ROW)}, {left_key} AS {quote(_KEY)} FROM lg_entity) e "
        f"ASOF LEFT JOIN (SELECT {', '.join(keys)}, {right_key} AS {quote(_KEY)}, "
        f"{', '.join(quote(name) for name in features)} FROM lg_rows WHERE {where}) f "
        f"ON {on}"
    )
