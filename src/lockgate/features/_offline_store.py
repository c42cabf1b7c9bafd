"""The offline store: every row of every feature view, as Parquet, for training sets.

Layout under the root (a folder or ``s3://bucket/prefix``)::

    <root>/<view name>/<view version>/data.parquet      a computed view's output, replaced whole
    <root>/<view name>/pushed/<push id>.parquet         rows pushed to the view, one file per push

A plain view's rows are its source's (read in place, never copied) plus its pushed rows; a
computed view's rows are its computed output plus its pushed rows. The computed output is kept
per version, so changing a definition never mixes old and new values. A push id is
``<nanoseconds since the epoch, 20 digits>-<random>``: names sort in the order the pushes
happened (by the writers' clocks), which is the order ties are broken in (see
:func:`~lockgate.features._pit_join.point_in_time_join`).

Where the root comes from is the caller's decision; the workspace uses
``Settings.resolved_offline_store`` (``Settings.offline_store``, else ``<home>/offline``).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lockgate.artifacts import _one_line
from lockgate.config import Settings
from lockgate.data._sources import Source
from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.features._definitions import FeatureView
from lockgate.features._offline_files import Files, Location, file_columns, typed_dataset
from lockgate.features._offline_schema import (
    ViewLayout,
    as_arrow,
    compatible,
    is_aware,
    key_family,
    mixed_time_kinds,
    show_type,
    to_microseconds,
)

__all__ = ["OfflineStore", "ViewLineage", "conform"]

_UNITS = ("s", "ms", "us", "ns")


@dataclass(frozen=True, slots=True)
class ViewLineage:
    """What a training set read from one view, for lineage: the definition's version and the
    content fingerprints of the data (the source for a plain view, the computed output for a
    computed one) and of the pushed rows."""

    view: str
    version: str
    data: str
    fingerprint: str
    pushed: str | None = None
    pushed_fingerprint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OfflineStore:
    """Where computed feature views and pushed rows live (see the module docstring for the layout).

    ``root`` is a folder or ``s3://bucket/prefix``; ``s3_endpoint_url`` points S3 roots and S3
    sources at an S3-compatible server (botocore's own endpoint otherwise). Nothing is read or
    created until a method needs it.
    """

    def __init__(self, root: str | os.PathLike[str], *, s3_endpoint_url: str | None = None) -> None:
        text = os.fspath(root)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the offline store needs a root: a folder or s3://bucket/prefix")
        text = text.removeprefix("file://")
        self.root = text.rstrip("/") if text.startswith("s3://") else os.path.abspath(text)
        self.s3_endpoint_url = s3_endpoint_url
        self._location = Location(s3_endpoint_url=s3_endpoint_url)

    def __repr__(self) -> str:
        return f"OfflineStore({self.root!r})"

    # -- where things are --------------------------------------------------------------

    def computed_uri(self, view: FeatureView) -> str:
        """The file a computed view's output (for this version of its definition) is kept in."""
        return f"{self.root}/{view.name}/{view.version}/data.parquet"

    def pushed_uri(self, view: FeatureView) -> str:
        """The folder of a view's pushed rows, one Parquet file per push."""
        return f"{self.root}/{view.name}/pushed"

    def has_computed(self, view: FeatureView) -> bool:
        return self._location.files(self.computed_uri(view), missing_ok=True) is not None

    # -- writing ----------------------------------------------------------------------

    def write_computed(self, view: FeatureView, table: pa.Table) -> str:
        """Replace a computed view's output with ``table`` (as :func:`compute_view` returns it);
        returns the file's URI."""
        if not view.computed:
            raise InvalidInputError(
                f"feature view '{view.name}' reads its features from its source; only views with "
                "aggregations= or sql= have computed output"
            )
        rows = conform(ViewLayout.of(view), as_arrow(table, what="computed rows"), what="the computed rows")
        uri = self.computed_uri(view)
        self._location.write_parquet(uri, rows)
        return uri

    def append_pushed(self, view: FeatureView, table: Any) -> str:
        """Add rows to a view (keys, event time, every feature; the created time too when the
        source has one, else it is the time of the push); returns the new file's URI."""
        layout = ViewLayout.of(view)
        rows = as_arrow(table, what="pushed rows")
        event = rows.schema.field(layout.event_time).type if layout.event_time in rows.column_names else None
        fill = layout.created_time is not None and layout.created_time not in rows.column_names
        if fill and event is not None and pa.types.is_timestamp(event):
            assert layout.created_time is not None
            aware = is_aware(event)
            now = datetime.now(UTC) if aware else datetime.now(UTC).replace(tzinfo=None)
            stamp = pa.scalar(now, type=pa.timestamp("us", tz="UTC" if aware else None))
            rows = rows.append_column(layout.created_time, pa.repeat(stamp, rows.num_rows))
        rows = conform(layout, rows, what=f"the rows pushed to feature view '{view.name}'")
        uri = f"{self.pushed_uri(view)}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
        self._location.write_parquet(uri, rows)
        return uri

    # -- reading ----------------------------------------------------------------------

    def scan(self, view: FeatureView) -> ds.Dataset:
        """All rows of a view: its source (plain) or computed output (computed), then its pushed
        rows in push order, with the columns keys, event time, created time (if any) and
        features, typed as declared.

        Every file's schema is checked first: a missing column or a type that does not read as
        the declared one is an :class:`~lockgate.errors.InvalidInputError` naming the view, the
        file, the column, the declared and the found type.
        """
        layout = ViewLayout.of(view)
        parts = [self._base_files(view)]
        pushed = self._location.files(self.pushed_uri(view), missing_ok=True)
        if pushed is not None:
            parts.append(pushed)
        found = [(files, file_columns(files)) for files in parts]
        schema = _checked_schema(layout, [(f.shown, f.columns) for _, columns in found for f in columns])
        children = [typed_dataset(files, columns, schema) for files, columns in found]
        return children[0] if len(children) == 1 else ds.dataset(children, schema=schema)

    def source_files(self, view: FeatureView) -> Files:
        """The raw source files of a view (its events, for a computed view)."""
        files = self._location.files(view.source.path, what=f"the source of feature view '{view.name}',")
        assert files is not None
        return files

    def _base_files(self, view: FeatureView) -> Files:
        if not view.computed:
            return self.source_files(view)
        files = self._location.files(self.computed_uri(view), missing_ok=True)
        if files is None:
            raise NotFoundError(
                f"feature view '{view.name}' (version {view.version}) has not been computed yet; "
                "compute it first (compute_view, then write_computed)"
            )
        return files

    def lineage(self, view: FeatureView) -> ViewLineage:
        """The version and data fingerprints of what :meth:`scan` reads, for lineage."""
        settings = Settings.model_construct(s3_endpoint_url=self.s3_endpoint_url)
        data = self.computed_uri(view) if view.computed else view.source.path
        if view.computed:
            self._base_files(view)  # a clear error when not computed yet
        pushed = self.pushed_uri(view)
        has_pushed = self._location.files(pushed, missing_ok=True) is not None
        return ViewLineage(
            view=view.name,
            version=view.version,
            data=data,
            fingerprint=Source.parse(data).fingerprint(settings=settings),
            pushed=pushed if has_pushed else None,
            pushed_fingerprint=Source.parse(pushed).fingerprint(settings=settings) if has_pushed else None,
        )


# -- schema checks ------------------------------------------------------------------------


def _checked_schema(layout: ViewLayout, parts: list[tuple[str, dict[str, pa.DataType]]]) -> pa.Schema:
    """The schema a view's rows are read with, after checking every file's columns against it."""
    label = f"feature view '{layout.view}'"
    key_types: dict[str, tuple[pa.DataType, str]] = {}
    time_kinds: dict[str, tuple[bool, str]] = {}
    units: set[str] = {"us"}
    for shown, columns in parts:
        for name in layout.columns:
            if name not in columns:
                raise InvalidInputError(
                    f"{label}: {shown} has no column '{name}' (found: {', '.join(sorted(columns)) or 'none'}); "
                    "add it to the data or fix the view's definition"
                )
        for name in layout.keys:
            family = key_family(columns[name])
            if family is None:
                raise InvalidInputError(
                    f"{label}: join key '{name}' in {shown} is {show_type(columns[name])}, which cannot be "
                    "a join key; use integers or strings"
                )
            first = key_types.setdefault(name, (family, shown))
            if first[0] != family:
                raise InvalidInputError(
                    f"{label}: join key '{name}' is {show_type(first[0])} in {first[1]} but "
                    f"{show_type(columns[name])} in {shown}; store it with one type"
                )
        for name in layout.times:
            dtype = columns[name]
            if not pa.types.is_timestamp(dtype):
                raise InvalidInputError(
                    f"{label}: time column '{name}' in {shown} is {show_type(dtype)}, not a timestamp; "
                    "store it as a timestamp"
                )
            units.add(dtype.unit)
            kind = time_kinds.setdefault("all", (is_aware(dtype), f"'{name}' in {shown}"))
            if kind[0] != is_aware(dtype):
                raise mixed_time_kinds(f"{label}: {kind[1]}", kind[0], f"'{name}' in {shown}", is_aware(dtype))
        for name, declared in layout.features.items():
            if not compatible(columns[name], declared):
                raise InvalidInputError(
                    f"{label}: column '{name}' in {shown} is {show_type(columns[name])}, but the view declares "
                    f"{show_type(declared)}; convert the data or change the declared type"
                )
    aware = time_kinds["all"][0] if time_kinds else True
    unit = max(units, key=_UNITS.index)  # the finest unit: every coarser one widens exactly
    time_type = pa.timestamp(unit, tz="UTC" if aware else None)
    fields = [pa.field(name, key_types[name][0]) for name in layout.keys]
    fields += [pa.field(name, time_type) for name in layout.times]
    fields += [pa.field(name, dtype) for name, dtype in layout.features.items()]
    return pa.schema(fields)


def conform(
    layout: ViewLayout, table: pa.Table, *, what: str, cast: Literal["compatible", "safe"] = "compatible"
) -> pa.Table:
    """``table`` as a view's rows: its layout's columns only, typed as stored (keys as int64 or
    string, times as ``timestamp[us]``, features as declared); errors name the column.

    A feature's type must be :func:`compatible` with the declared one, or with ``cast="safe"``
    (a SQL view's result) merely cast to it without losing a value.
    """
    missing = [name for name in layout.columns if name not in table.column_names]
    if missing:
        raise InvalidInputError(
            f"{what} have no column '{missing[0]}' (found: {', '.join(table.column_names) or 'none'}); "
            f"feature view '{layout.view}' needs {', '.join(layout.columns)}"
        )
    columns: list[Any] = []
    fields: list[pa.Field] = []
    for name in layout.keys:
        column = table.column(name)
        family = key_family(column.type)
        if family is None:
            raise InvalidInputError(
                f"{what}: join key '{name}' is {show_type(column.type)}, which cannot be a join key; use integers or strings"
            )
        if column.null_count:
            raise InvalidInputError(f"{what}: {column.null_count} rows have no '{name}'; every row needs its join keys")
        columns.append(column.cast(family))
        fields.append(pa.field(name, family))
    aware = None
    for name in layout.times:
        column = table.column(name)
        if not pa.types.is_timestamp(column.type):
            raise InvalidInputError(f"{what}: '{name}' is {show_type(column.type)}, not a timestamp; convert it")
        if aware is None:
            aware = is_aware(column.type)
        elif aware != is_aware(column.type):
            raise mixed_time_kinds(f"{what}: '{layout.event_time}'", aware, f"'{name}'", is_aware(column.type))
        if name == layout.event_time and column.null_count:
            raise InvalidInputError(
                f"{what}: {column.null_count} rows have no '{name}'; every row needs its event time"
            )
        columns.append(to_microseconds(column, aware=aware))
        fields.append(pa.field(name, columns[-1].type))
    for name, declared in layout.features.items():
        column = table.column(name)
        mismatch = InvalidInputError(
            f"{what}: feature '{name}' is {show_type(column.type)}, but feature view '{layout.view}' declares "
            f"{show_type(declared)}; convert it or change the declared type"
        )
        if cast == "compatible" and not compatible(column.type, declared):
            raise mismatch
        try:
            columns.append(pc.cast(column, declared))
        except pa.ArrowNotImplementedError:
            raise mismatch from None
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(
                f"{what}: a value of feature '{name}' does not fit {show_type(declared)} ({_one_line(exc)}); "
                "fix the value or change the declared type"
            ) from None
        fields.append(pa.field(name, declared))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
