"""Per-column profiles for the data-quality report: missing values, extremes, distinct values,
and the shape of the column (a histogram, or the most frequent values).

Profiles are for people looking at a report, so they are computed only when asked for
(``ValidationReport.profiles``): a gate or a serving call never pays for them. Histograms of
more than ``SAMPLE`` rows are drawn from evenly spaced rows, which keeps the shape and costs a
fixed amount whatever the size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lockgate.data._checks import NumericColumn, is_numeric
from lockgate.data._contract import type_name
from lockgate.data._wording import jsonable

__all__ = ["SAMPLE", "TOP", "ColumnProfile", "profile_table"]

SAMPLE = 200_000
TOP = 10
_BINS = 30


@dataclass(frozen=True, kw_only=True)
class ColumnProfile:
    """What one column looks like."""

    name: str
    type: str
    rows: int
    nulls: int
    """Null values, and ``NaN`` in float columns."""
    min: Any = None
    max: Any = None
    mean: float | None = None
    distinct: int | None = None
    """Distinct non-null values; None where counting them would cost more than the rest (floats)."""
    histogram: tuple[list[Any], list[int]] | None = None
    """Bin edges (one more than counts) and counts, for numbers and times."""
    top_values: list[tuple[Any, int]] | None = field(default=None)
    """The most frequent values and their counts, for text, booleans and categories."""
    sampled: bool = False
    """The histogram was drawn from evenly spaced rows, not all of them."""

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "rows": self.rows,
            "nulls": self.nulls,
            "null_share": self.null_share,
            "min": jsonable(self.min),
            "max": jsonable(self.max),
            "mean": jsonable(self.mean),
            "distinct": self.distinct,
            "histogram": None
            if self.histogram is None
            else {"edges": jsonable(self.histogram[0]), "counts": self.histogram[1]},
            "top_values": None
            if self.top_values is None
            else [{"value": jsonable(v), "count": c} for v, c in self.top_values],
            "sampled": self.sampled,
        }


def profile_table(table: pa.Table) -> dict[str, ColumnProfile]:
    """A profile of every column of ``table``, in column order."""
    return {name: _profile(name, table.column(name)) for name in table.column_names}


def _profile(name: str, col: pa.ChunkedArray) -> ColumnProfile:
    dtype = col.type
    base: dict[str, Any] = {"name": name, "type": _type(dtype), "rows": len(col)}
    if is_numeric(dtype):
        return _numeric(col, base)
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return _temporal(col, base)
    if (
        pa.types.is_dictionary(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
    ):
        return _categorical(col, base)
    return ColumnProfile(nulls=col.null_count, **base)


def _type(dtype: pa.DataType) -> str:
    try:
        return type_name(dtype)
    except (ValueError, KeyError):
        return str(dtype)


def _step(n: int) -> int:
    return max(1, -(-n // SAMPLE))


def _numeric(col: pa.ChunkedArray, base: dict[str, Any]) -> ColumnProfile:
    num = NumericColumn(col)
    missing = num.missing()
    nulls = 0 if missing is None else missing.count
    lo, hi = num.extremes
    if lo is None:
        return ColumnProfile(nulls=nulls, **base)
    step = _step(num.n)
    total, count, samples = 0.0, 0, []
    for start, values, _ in num.parts:
        absent = None if missing is None else missing.mask[start : start + len(values)]
        present = values if absent is None else values[~absent]
        total += float(present.sum(dtype=np.float64))
        count += len(present)
        picked = values[(-start) % step :: step]
        if absent is not None:
            picked = picked[~absent[(-start) % step :: step]]
        samples.append(picked)
    sample = np.concatenate(samples) if samples else np.array([])
    distinct = None
    if not num.is_float and int(hi) - int(lo) <= 4 * num.n:
        kept = np.concatenate([v for _, v, _ in num.parts]) if missing is None else None
        if kept is not None:
            distinct = int(np.count_nonzero(np.bincount((kept - lo).astype(np.intp, copy=False))))
    edges, counts = _histogram(sample, float(lo), float(hi), integral=not num.is_float)
    return ColumnProfile(
        nulls=nulls,
        min=lo.item(),
        max=hi.item(),
        mean=total / count if count else None,
        distinct=distinct,
        histogram=([float(e) for e in edges], counts),
        sampled=step > 1,
        **base,
    )


def _histogram(
    sample: np.ndarray[Any, Any], lo: float, hi: float, *, integral: bool
) -> tuple[np.ndarray[Any, Any], list[int]]:
    """Bin edges and counts: one bin per value for a few integers, else ``_BINS`` equal bins."""
    width = hi - lo
    if integral and width < _BINS:
        bins, span = int(width) + 1, (lo - 0.5, hi + 0.5)
    elif width > 0:
        bins, span = _BINS, (lo, hi)
    else:
        bins, span = 1, (lo - 0.5, hi + 0.5)
    try:
        counts, edges = np.histogram(sample, bins=bins, range=span)
    except ValueError:  # a range narrower than the floats' precision at this magnitude
        counts, edges = np.array([len(sample)]), np.array([lo, hi])
    return edges, [int(c) for c in counts]


def _temporal(col: pa.ChunkedArray, base: dict[str, Any]) -> ColumnProfile:
    extremes = pc.min_max(col)
    lo, hi = extremes["min"], extremes["max"]
    if not lo.is_valid:
        return ColumnProfile(nulls=col.null_count, **base)
    unit = pa.int32() if pa.types.is_date32(col.type) else pa.int64()
    step = _step(len(col))
    picked = pc.take(col, pa.array(np.arange(0, len(col), step))).drop_null()
    ticks = picked.cast(unit).to_numpy(zero_copy_only=False)
    edges, counts = _histogram(ticks, lo.cast(unit).as_py(), hi.cast(unit).as_py(), integral=True)
    edge_values = pa.array(np.round(edges).astype(np.int64)).cast(unit).cast(col.type).to_pylist()
    return ColumnProfile(
        nulls=col.null_count,
        min=lo.as_py(),
        max=hi.as_py(),
        histogram=(edge_values, counts),
        sampled=step > 1,
        **base,
    )


def _categorical(col: pa.ChunkedArray, base: dict[str, Any]) -> ColumnProfile:
    plain = col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
    counts = pc.value_counts(plain)
    values, freq = counts.field("values"), counts.field("counts").to_numpy()
    keep = values.is_valid().to_numpy(zero_copy_only=False)
    order = np.argsort(-freq[keep], kind="stable")[:TOP]
    top_values = values.filter(pa.array(keep)).take(pa.array(order)).to_pylist()
    return ColumnProfile(
        nulls=col.null_count,
        distinct=int(keep.sum()),
        top_values=list(zip(top_values, freq[keep][order].tolist(), strict=True)),
        **base,
    )
