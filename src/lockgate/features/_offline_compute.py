"""Computed feature views: windowed aggregations and SQL transformations, run in DuckDB.

An aggregation view gets **one row per entity and raw event time**: at each time ``t`` at which
the entity has events, every aggregate over the entity's events with event time in
``(t - window, t]`` (several events at ``t`` give one row, counting all of them). A
point-in-time join then picks, for an entity row at time ``T``, the aggregates as of the
entity's latest event at or before ``T``. The consequence: **a value does not decay between
events**: a 1-hour count computed at 10:00 is still what a 15:00 lookup sees if no event came
in between (it is what was true at the entity's last activity, not "events in the hour before
15:00"). The view's ``ttl`` bounds how long such a value is served; choose it no longer than
the windows if decay matters.

The functions follow SQL: ``Count`` counts non-null values, ``CountDistinct`` distinct
non-null values; ``Sum``, ``Mean``, ``Min`` and ``Max`` ignore nulls and are null when the
window holds no value (never zero). Times are floored to the microsecond, so
``(t - window, t]`` is the frame ``window - 1µs PRECEDING`` to ``CURRENT ROW`` in DuckDB's
``RANGE`` terms. ``CountDistinct`` uses DuckDB's ``count(DISTINCT x)`` window aggregate, which
DuckDB (1.1 and later) evaluates exactly over ``RANGE`` frames; the tests hold it to a
brute-force reference.

When the source has a created time, an output row's created time is the latest created time
among the events of its widest window: the first moment the value could have been computed.
So ``as_of`` never sees a value built from an event not yet known; when a late event changes
an aggregate, ``as_of`` before its arrival falls back to the entity's previous value rather
than the one recomputed without the late event (which is not stored).

A SQL view runs its query with the source's files as the table ``source``; the result must
hold the join keys, the event time (and the created time when the source has one) and every
declared feature in a type that casts to the declared one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lockgate.errors import InvalidInputError
from lockgate.features._definitions import Aggregation, FeatureView
from lockgate.features._offline_engine import RowStream, connect, quote
from lockgate.features._offline_files import Files, Location, file_columns, typed_dataset
from lockgate.features._offline_schema import (
    ViewLayout,
    is_aware,
    key_family,
    mixed_time_kinds,
    show_type,
    timestamp_scalar,
)
from lockgate.features._offline_store import conform

__all__ = ["compute_view"]

_NUMERIC = ("sum", "mean", "min", "max")
_UNITS = ("s", "ms", "us", "ns")


def compute_view(
    view: FeatureView,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    s3_endpoint_url: str | None = None,
) -> pa.Table:
    """A computed view's rows from its raw source (see the module docstring), sorted by keys
    and event time, typed as the view declares: ready for :meth:`OfflineStore.write_computed`.

    ``start`` and ``end`` limit the output to event times in ``[start, end)``; an aggregation
    still reads the events its windows need before ``start``. ``s3_endpoint_url`` is for an
    ``s3://`` source on an S3-compatible server.
    """
    if not view.computed:
        raise InvalidInputError(
            f"feature view '{view.name}' reads its features from its source; only views with "
            "aggregations= or sql= are computed"
        )
    files = Location(s3_endpoint_url=s3_endpoint_url).files(
        view.source.path, what=f"the source of feature view '{view.name}',"
    )
    assert files is not None
    if view.aggregations:
        return _aggregate(view, files, start, end)
    return _transform(view, files, start, end)


# -- aggregations ---------------------------------------------------------------------------


def _aggregate(view: FeatureView, files: Files, start: datetime | None, end: datetime | None) -> pa.Table:
    layout = ViewLayout.of(view)
    label = f"feature view '{view.name}'"
    columns = [c for c in dict.fromkeys(a.column for a in view.aggregations) if c not in (*layout.keys, *layout.times)]
    found = file_columns(files)
    schema = _raw_schema(view, found, columns)
    dataset = typed_dataset(files, found, schema)
    aware = is_aware(schema.field(layout.event_time).type)
    stream = RowStream(
        dataset,
        columns=[*layout.keys, *layout.times, *columns],
        times=layout.times,
        label=f"the source of {label}",
    )
    bounds = {
        name: timestamp_scalar(value, aware=aware, what=name, other=f"the event time of {label}")
        for name, value in (("start", start), ("end", end))
        if value is not None
    }
    sql = _aggregation_sql(view, bounds, aware=aware)
    with connect() as con:
        con.register("lg_events", stream.reader())
        try:
            table = con.sql(sql).to_arrow_table()
        except Exception:
            if stream.error is not None:
                raise stream.error from None
            raise
    return conform(layout, table, what=f"the computed rows of {label}")


def _raw_schema(view: FeatureView, found: list[Any], columns: list[str]) -> pa.Schema:
    """The raw events' schema: each needed column with one type across the files."""
    layout = ViewLayout.of(view)
    label = f"feature view '{view.name}'"
    types: dict[str, pa.DataType] = {}
    first: dict[str, str] = {}
    aware: tuple[bool, str] | None = None
    units = {"us"}
    for f in found:
        for name in [*layout.keys, *layout.times, *columns]:
            if name not in f.columns:
                raise InvalidInputError(
                    f"{label}: {f.shown} has no column '{name}' (found: {', '.join(sorted(f.columns)) or 'none'}); "
                    "add it to the data or fix the view's definition"
                )
        for name in layout.times:
            dtype = f.columns[name]
            if not pa.types.is_timestamp(dtype):
                raise InvalidInputError(
                    f"{label}: time column '{name}' in {f.shown} is {show_type(dtype)}, not a timestamp; "
                    "store it as a timestamp"
                )
            units.add(dtype.unit)
            if aware is None:
                aware = (is_aware(dtype), f"'{name}' in {f.shown}")
            elif aware[0] != is_aware(dtype):
                raise mixed_time_kinds(f"{label}: {aware[1]}", aware[0], f"'{name}' in {f.shown}", is_aware(dtype))
        for name in [*layout.keys, *columns]:
            dtype = key_family(f.columns[name]) if name in layout.keys else _column_family(f.columns[name])
            if dtype is None:
                raise InvalidInputError(
                    f"{label}: join key '{name}' in {f.shown} is {show_type(f.columns[name])}, which cannot be "
                    "a join key; use integers or strings"
                )
            earlier = types.setdefault(name, dtype)
            first.setdefault(name, f.shown)
            if earlier != dtype:
                if pa.types.is_floating(earlier) and pa.types.is_integer(dtype):
                    continue
                if pa.types.is_integer(earlier) and pa.types.is_floating(dtype):
                    types[name] = dtype
                    continue
                raise InvalidInputError(
                    f"{label}: column '{name}' is {show_type(earlier)} in {first[name]} but "
                    f"{show_type(f.columns[name])} in {f.shown}; store it with one type"
                )
    time_type = pa.timestamp(max(units, key=_UNITS.index), tz="UTC" if aware is None or aware[0] else None)
    types.update(dict.fromkeys(layout.times, time_type))
    for agg in view.aggregations:
        dtype = types[agg.column]
        if agg.function in _NUMERIC and not (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)):
            raise InvalidInputError(
                f"{label}: {type(agg).__name__}({agg.column!r}) needs numbers, but '{agg.column}' is "
                f"{show_type(dtype)}; aggregate a numeric column, or count it with Count or CountDistinct"
            )
    fields = [pa.field(name, types[name]) for name in layout.keys]
    fields += [pa.field(name, time_type) for name in layout.times]
    fields += [pa.field(name, types[name]) for name in columns]
    return pa.schema(fields)


def _column_family(dtype: pa.DataType) -> pa.DataType:
    """The type an aggregated column is read as: integers as int64, floats as float64, text as string."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype):
        return pa.int64()
    if pa.types.is_floating(dtype):
        return pa.float64()
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    return dtype


def _frame(width: timedelta) -> str:
    # (t - width, t] at microsecond resolution is [t - width + 1us, t].
    return f"RANGE BETWEEN to_microseconds({width // timedelta(microseconds=1) - 1}) PRECEDING AND CURRENT ROW"


def _expression(agg: Aggregation) -> str:
    column = quote(agg.column)
    return {
        "count": f"count({column})",
        "count_distinct": f"count(DISTINCT {column})",
        "sum": f"sum(CAST({column} AS DOUBLE))",
        "mean": f"avg(CAST({column} AS DOUBLE))",
        "min": f"min(CAST({column} AS DOUBLE))",
        "max": f"max(CAST({column} AS DOUBLE))",
    }[agg.function]


def _aggregation_sql(view: FeatureView, bounds: dict[str, pa.Scalar], *, aware: bool) -> str:
    layout = ViewLayout.of(view)
    keys = ", ".join(quote(k) for k in layout.keys)
    event = quote(layout.event_time)
    widths = sorted({a.window_delta for a in view.aggregations})
    window_names = {width: f"w{i}" for i, width in enumerate(widths)}
    windows = ", ".join(
        f"{name} AS (PARTITION BY {keys} ORDER BY {event} {_frame(width)})" for width, name in window_names.items()
    )
    inner = [
        f"{_expression(a)} OVER {window_names[a.window_delta]} AS {quote(a.feature_name)}" for a in view.aggregations
    ]
    outer = [f"max({quote(a.feature_name)}) AS {quote(a.feature_name)}" for a in view.aggregations]
    if layout.created_time is not None:
        created = quote(layout.created_time)
        inner.insert(0, f"max({created}) OVER {window_names[widths[-1]]} AS {created}")
        outer.insert(0, f"max({created}) AS {created}")
    stamp = "TIMESTAMPTZ" if aware else "TIMESTAMP"
    where = [f"{event} IS NOT NULL"]
    keep = []
    if "start" in bounds:
        # Events before start still count in the windows of rows from start on.
        since = bounds["start"].as_py() - widths[-1]
        where.append(f"{event} > {_stamp(since, stamp)}")
        keep.append(f"{event} >= {_stamp(bounds['start'].as_py(), stamp)}")
    if "end" in bounds:
        where.append(f"{event} < {_stamp(bounds['end'].as_py(), stamp)}")
    # Events at the same time are peers in a RANGE frame and get the same values; one row each.
    return (
        f"SELECT {keys}, {event}, {', '.join(outer)} FROM ("
        f"SELECT {keys}, {event}, {', '.join(inner)} FROM lg_events WHERE {' AND '.join(where)} "
        f"WINDOW {windows}) "
        f"{'WHERE ' + ' AND '.join(keep) if keep else ''} "
        f"GROUP BY {keys}, {event} ORDER BY {keys}, {event}"
    )


def _stamp(value: datetime, stamp: str) -> str:
    return f"{stamp} '{value.isoformat(timespec='microseconds')}'"


# -- SQL transformations --------------------------------------------------------------------


def _transform(view: FeatureView, files: Files, start: datetime | None, end: datetime | None) -> pa.Table:
    import duckdb

    layout = ViewLayout.of(view)
    label = f"feature view '{view.name}'"
    assert view.sql is not None
    dataset = files.dataset()
    with connect() as con:
        con.register("source", dataset)
        try:
            table = con.sql(view.sql).to_arrow_table()
        except duckdb.Error as exc:
            reason = " ".join(str(exc).split())
            raise InvalidInputError(f"{label}: its sql does not run ({reason}); fix the query") from None
    rows = conform(layout, table, what=f"the result of {label}'s sql", cast="safe")
    event = rows.column(layout.event_time)
    aware = is_aware(event.type)
    mask = None
    for name, value, op in (("start", start, pc.greater_equal), ("end", end, pc.less)):
        if value is None:
            continue
        bound = timestamp_scalar(value, aware=aware, what=name, other=f"the event time of {label}")
        test = op(event, bound)
        mask = test if mask is None else pc.and_(mask, test)
    return rows if mask is None else rows.filter(mask)
