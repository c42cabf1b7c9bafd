"""What the offline store holds for a feature view, and the type and time rules its data obeys.

A view's rows have one layout: the join keys, the event time, the created time when the
source has one, and the features with their declared types. Stored data may use a compatible
type (see :func:`compatible`); anything else is an error naming the view, the column, the
declared and the found type.

Times are compared at microsecond precision (DuckDB's): finer timestamps are floored to the
microsecond. A timestamp column is either timezone-aware (any zone; compared as instants) or
naive (read as UTC); the entity rows, a view's event and created times and ``as_of`` must all
be of one kind, since guessing the zone of naive times would shift every match silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lockgate.errors import InvalidInputError
from lockgate.features._definitions import FeatureView
from lockgate.tables import to_arrow

__all__ = [
    "ViewLayout",
    "as_arrow",
    "compatible",
    "is_aware",
    "key_family",
    "mixed_time_kinds",
    "show_type",
    "time_kind",
    "timestamp_scalar",
    "to_microseconds",
]


@dataclass(frozen=True, slots=True)
class ViewLayout:
    """The columns every row of a view carries, in order: keys, event time, created time, features."""

    view: str
    keys: tuple[str, ...]
    event_time: str
    created_time: str | None
    features: dict[str, pa.DataType]

    @classmethod
    def of(cls, view: FeatureView) -> ViewLayout:
        return cls(
            view=view.name,
            keys=tuple(view.join_keys),
            event_time=view.source.event_time,
            created_time=view.source.created_time,
            features=dict(view.feature_types),
        )

    @property
    def times(self) -> tuple[str, ...]:
        return (self.event_time,) if self.created_time is None else (self.event_time, self.created_time)

    @property
    def columns(self) -> list[str]:
        return [*self.keys, *self.times, *self.features]


def show_type(dtype: pa.DataType) -> str:
    """A type as a user reads it: ``int64``, ``timestamp[us, tz=UTC]``, ``string``."""
    if pa.types.is_dictionary(dtype):
        return f"dictionary of {show_type(dtype.value_type)}"
    return str(dtype)


def _value_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


_INT32_FROM = (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16())
_INT64_FROM = (*_INT32_FROM, pa.int64(), pa.uint32())


def compatible(found: pa.DataType, declared: pa.DataType) -> bool:
    """True when ``found`` data reads as ``declared`` without changing a value.

    Accepted besides equal types: narrower integers for ``int32``/``int64``; any float or
    integer for ``float64`` (a value past 2**53 then fails at read time, never rounds);
    ``float16``/``float32`` and small integers for ``float32``; ``large_string``,
    ``string_view`` and dictionary-encoded strings for ``string``; any timestamp for
    ``timestamp`` (naive values read as UTC).
    """
    found = _value_type(found)
    t = pa.types
    if found == declared:
        return True
    if declared == pa.int64():
        return found in _INT64_FROM
    if declared == pa.int32():
        return found in _INT32_FROM
    if declared == pa.float64():
        return bool(t.is_floating(found) or t.is_integer(found))
    if declared == pa.float32():
        return found in (pa.float16(), pa.float32(), pa.int8(), pa.int16(), pa.uint8(), pa.uint16())
    if declared == pa.string():
        return bool(t.is_string(found) or t.is_large_string(found) or t.is_string_view(found))
    if t.is_timestamp(declared):
        return bool(t.is_timestamp(found))
    return False


def key_family(dtype: pa.DataType) -> pa.DataType | None:
    """The type a join key is compared as: ``int64`` for integers, ``string`` for text, else itself.

    None for a type that cannot be a join key (floats, nested types)."""
    dtype = _value_type(dtype)
    t = pa.types
    if t.is_integer(dtype):
        return pa.int64()
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_string_view(dtype):
        return pa.string()
    if t.is_boolean(dtype) or t.is_date(dtype) or t.is_binary(dtype) or t.is_timestamp(dtype):
        return dtype
    return None


def is_aware(dtype: pa.DataType) -> bool:
    return pa.types.is_timestamp(dtype) and dtype.tz is not None


def time_kind(dtype: pa.DataType) -> str:
    return "timezone-aware" if is_aware(dtype) else "naive (no time zone)"


def mixed_time_kinds(what: str, aware: bool, other: str, other_aware: bool) -> InvalidInputError:
    """The error for naive times meeting timezone-aware ones."""
    first = "timezone-aware" if aware else "naive (no time zone)"
    second = "timezone-aware" if other_aware else "naive (no time zone)"
    return InvalidInputError(
        f"{what} is {first} but {other} is {second}; make both timezone-aware "
        "(e.g. pandas pd.to_datetime(column, utc=True), or pyarrow pc.assume_timezone(column, 'UTC')) "
        "or both naive UTC"
    )


def to_microseconds(column: Any, *, aware: bool) -> Any:
    """A timestamp array or chunked array as ``timestamp[us]`` (``tz=UTC`` when aware), floored.

    Flooring (never rounding) keeps order: a time before another stays before or equal.
    """
    target = pa.timestamp("us", tz="UTC" if aware else None)
    dtype = column.type
    if dtype == target:
        return column
    if dtype.unit == "ns":
        column = pc.floor_temporal(column, unit="microsecond")
    # The cast is exact after flooring: seconds and milliseconds widen, nanoseconds are whole.
    return column.cast(target)


def timestamp_scalar(value: datetime, *, aware: bool, what: str, other: str) -> pa.Scalar:
    """``value`` as a ``timestamp[us]`` scalar of the given kind, or a clear error on a kind mismatch."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, not {type(value).__name__}")
    value_aware = value.tzinfo is not None and value.utcoffset() is not None
    if value_aware != aware:
        raise mixed_time_kinds(what, value_aware, other, aware)
    return pa.scalar(value, type=pa.timestamp("us", tz="UTC" if aware else None))


def as_arrow(data: Any, *, what: str) -> pa.Table:
    """An Arrow table from a table, a record batch or a pandas / polars frame (converted here, at the edge)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        return to_arrow(data)
    except InvalidInputError:
        raise InvalidInputError(
            f"{what} must be an Arrow table or a pandas or polars DataFrame, not {type(data).__name__}"
        ) from None
