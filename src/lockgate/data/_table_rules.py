"""Rules about the table as a whole: the primary key, duplicate rows, the row count (alone and
against a reference version), freshness of the newest event, and label availability."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lockgate.data._checks import Hits, Mask, NumericColumn, is_numeric, unique_hits
from lockgate.data._column_rules import missing_hits
from lockgate.data._contract import Contract, EventTimeSpec, LabelSpec, Severity
from lockgate.data._findings import EXAMPLES, Failure, Finding, example_values
from lockgate.data._wording import age, examples, rows, share, value, verb
from lockgate.errors import InvalidInputError

__all__ = [
    "duplicate_rows_finding",
    "freshness_finding",
    "label_finding",
    "primary_key_finding",
    "row_count_findings",
]

_ROW = "__lockgate_row"


def _failure(
    check: str, column: str | None, severity: Severity, count: int, of: int, found: tuple[Any, ...], message: str
) -> Failure:
    return Failure(
        check=check,
        column=column,
        severity=severity,
        rows=count,
        share=count / of if of else 0.0,
        examples=found,
        message=message,
    )


def _repeated(table: pa.Table, *, keep_first: bool) -> Mask:
    """Rows whose values (in every column of ``table``) another row has too.

    With ``keep_first`` only the later copies are flagged (what a de-duplication drops);
    otherwise every row of a repeated key is (no copy is more right than another).
    """
    m = table.num_rows
    numbered = table.append_column(_ROW, pa.array(np.arange(m, dtype=np.int64)))
    groups = numbered.group_by(table.column_names).aggregate([(_ROW, "min"), (_ROW, "count")])
    firsts = groups.column(f"{_ROW}_min").to_numpy()
    mask = np.ones(m, dtype=np.bool_)
    if keep_first:
        mask[firsts] = False
    else:
        mask[firsts[groups.column(f"{_ROW}_count").to_numpy() == 1]] = False
    return mask


def primary_key_finding(table: pa.Table, key: list[str]) -> Finding | None:
    """Rows whose key another row has too, or with a missing key part."""
    n = table.num_rows
    if n == 0:
        return None
    parts: list[Hits] = []
    for name in key:
        missing = missing_hits(
            table.column(name), NumericColumn(table.column(name)) if is_numeric(table.column(name).type) else None
        )
        if missing is not None:
            parts.append(missing)
    if len(key) == 1:
        col = table.column(key[0])
        repeated = NumericColumn(col).duplicated() if is_numeric(col.type) else unique_hits(col)
        if repeated is not None:
            parts.append(repeated)
    else:
        mask = _repeated(table.select(key), keep_first=False)
        if mask.any():
            parts.append(Hits(int(np.count_nonzero(mask)), mask))
    if not parts:
        return None
    mask = np.logical_or.reduce([p.mask for p in parts])
    hits = Hits(int(np.count_nonzero(mask)), mask)
    found = example_values(table.select(key), mask) if len(key) > 1 else example_values(table.column(key[0]), mask)
    label = ", ".join(key)
    message = (
        f"primary key ({label}): {rows(hits.count)} ({share(hits.count / n)}) share their key with another row "
        f"or miss a part of it{examples(found)}."
    )
    return Finding(_failure("primary_key", None, "error", hits.count, n, found, message), hits)


def duplicate_rows_finding(
    table: pa.Table, severity: Severity, candidates: Mask | None, skipped: list[str]
) -> Finding | None:
    """Rows that repeat an earlier row exactly. Only ``candidates`` can be copies (None: any row)."""
    n = table.num_rows
    if n < 2:
        return None
    subset = table if candidates is None else table.filter(pa.array(candidates))
    try:
        later = _repeated(subset, keep_first=True)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
        skipped.append(f"duplicate_rows skipped: the columns cannot be compared ({str(exc).splitlines()[0]})")
        return None
    if candidates is None:
        mask = later
    else:
        mask = np.zeros(n, dtype=np.bool_)
        mask[np.flatnonzero(candidates)[later]] = True
    count = int(np.count_nonzero(mask))
    if count == 0:
        return None
    at = tuple(int(i) for i in np.flatnonzero(mask)[:EXAMPLES])
    message = (
        f"{rows(count)} ({share(count / n)}) {verb(count, 'repeats', 'repeat')} an earlier row exactly"
        f"{examples(at, prefix=', e.g. row ')}."
    )
    return Finding(_failure("duplicate_rows", None, severity, count, n, at, message), Hits(count, mask))


def row_count_findings(
    table: pa.Table, contract: Contract, reference: pa.Table | None, skipped: list[str]
) -> list[Finding]:
    """The row count: at least ``min_rows``, and within ``max_row_count_change`` of the reference."""
    n = table.num_rows
    out: list[Finding] = []
    if contract.min_rows is not None and n < contract.min_rows.value:
        message = f"the data has {rows(n)}, fewer than the required {contract.min_rows.value:,}."
        out.append(Finding(_failure("min_rows", None, contract.min_rows.severity, n, n, (), message)))
    rule = contract.max_row_count_change
    if rule is not None:
        if reference is None:
            skipped.append("max_row_count_change needs a reference version to compare with")
            return out
        ref_n = reference.num_rows
        change = (n - ref_n) / ref_n if ref_n else (float("inf") if n else 0.0)
        if abs(change) > rule.value:
            message = (
                f"the data has {rows(n)} against {ref_n:,} in the reference ({change:+.1%}), "
                f"more than the allowed {share(rule.value)} change."
            )
            out.append(Finding(_failure("row_count_change", None, rule.severity, n, n, (n, ref_n), message)))
    return out


def _as_utc(moment: Any) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):  # a date
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _event_times(table: pa.Table, column: str) -> pa.ChunkedArray:
    col = table.column(column)
    if not (pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)):
        raise InvalidInputError(
            f"event_time column {column!r} must hold timestamps or dates, not {col.type}; fix the contract"
        )
    return col


def freshness_finding(table: pa.Table, spec: EventTimeSpec, now: datetime) -> Finding | None:
    """Whether the newest event is at most ``max_lag`` old at ``now``."""
    if spec.max_lag is None:
        return None
    col = _event_times(table, spec.column)
    n = table.num_rows
    newest = pc.max(col)
    if pa.types.is_timestamp(col.type) and col.type.unit == "ns":
        newest = newest.cast(pa.timestamp("us", tz=col.type.tz), safe=False)
    latest = _as_utc(newest.as_py())
    if latest is None:
        message = f"{spec.column}: no event times, so nothing shows the data is fresh (at most {age(spec.max_lag)} old is required)."
        return Finding(_failure("freshness", spec.column, spec.severity, n, n, (), message))
    lag = now - latest
    if lag <= spec.max_lag:
        return None
    message = (
        f"{spec.column}: the newest event, {value(latest)}, is {age(lag)} old at {value(now)}; "
        f"at most {age(spec.max_lag)} is allowed."
    )
    return Finding(_failure("freshness", spec.column, spec.severity, n, n, (latest,), message))


def _older_than(col: pa.ChunkedArray, cutoff: datetime) -> Mask:
    if pa.types.is_date(col.type):
        limit = pa.scalar(cutoff.date(), type=col.type)
    elif col.type.tz is None:
        limit = pa.scalar(cutoff.replace(tzinfo=None), type=pa.timestamp(col.type.unit))
    else:
        limit = pa.scalar(cutoff, type=pa.timestamp(col.type.unit, tz=col.type.tz))
    older = pc.fill_null(pc.less(col, limit), False)
    if not older.num_chunks:
        return np.zeros(0, dtype=np.bool_)
    mask: Mask = np.concatenate([c.to_numpy(zero_copy_only=False) for c in older.chunks])
    return mask


def label_finding(table: pa.Table, spec: LabelSpec, event_time: EventTimeSpec | None, now: datetime) -> Finding | None:
    """Among rows older than ``max_delay``, whether at least ``min_available`` have their label."""
    n = table.num_rows
    eligible = (
        _older_than(_event_times(table, event_time.column), now - spec.max_delay)
        if event_time is not None
        else np.ones(n, dtype=np.bool_)
    )
    due = int(np.count_nonzero(eligible))
    if due == 0:
        return None
    label = table.column(spec.column)
    missing = missing_hits(label, NumericColumn(label) if is_numeric(label.type) else None)
    unlabelled = int(np.count_nonzero(eligible & missing.mask)) if missing is not None else 0
    available = (due - unlabelled) / due
    if available >= spec.min_available:
        return None
    message = (
        f"{spec.column}: {share(available)} of the {rows(due)} older than {age(spec.max_delay)} have a label; "
        f"at least {share(spec.min_available)} must."
    )
    return Finding(_failure("label_availability", spec.column, spec.severity, unlabelled, due, (), message))
