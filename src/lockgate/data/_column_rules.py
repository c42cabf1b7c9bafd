"""The rules of one contract column, turned into findings: nullability and null rate, range,
allowed values, pattern, uniqueness, and the comparisons with a reference version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lockgate.data._checks import (
    Hits,
    Mask,
    NumericColumn,
    StringKeys,
    allowed_hits,
    compared_hits,
    distinct_values,
    is_numeric,
    is_stringlike,
    new_value_hits,
    regex_hits,
    unique_hits,
)
from lockgate.data._contract import ColumnSpec, Severity
from lockgate.data._findings import EXAMPLES, Failure, Finding, example_values
from lockgate.data._wording import bound, examples, rows, share, verb
from lockgate.errors import InvalidInputError

__all__ = ["ColumnOutcome", "ColumnPlan", "column_findings", "missing_hits"]


@dataclass
class ColumnPlan:
    """What a column's rules need that does not depend on the data: built once per contract."""

    name: str
    spec: ColumnSpec
    keys: StringKeys | None = None
    _allowed: dict[str, pa.Array] = field(default_factory=dict)

    @classmethod
    def build(cls, name: str, spec: ColumnSpec) -> ColumnPlan:
        keys = None
        if spec.allowed is not None and all(isinstance(v, (str, bytes)) for v in spec.allowed.value):
            keys = StringKeys(spec.allowed.value)
        return cls(name=name, spec=spec, keys=keys)

    def allowed(self, dtype: pa.DataType) -> pa.Array:
        """The allowed values as an array of the column's value type (cached per type)."""
        cached = self._allowed.get(str(dtype))
        if cached is None:
            assert self.spec.allowed is not None
            try:
                cached = pa.array(self.spec.allowed.value, type=dtype)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                raise InvalidInputError(
                    f"{self.name}: the allowed values {self.spec.allowed.value!r} do not fit the column's "
                    f"type {dtype}; fix them in the contract"
                ) from None
            self._allowed[str(dtype)] = cached
        return cached


@dataclass
class ColumnOutcome:
    """A column's findings, plus what the duplicate-row check can reuse: whether a uniqueness
    rule ran on this column and, if so, the only rows that can be exact copies of another
    (those sharing a value, and the missing ones); None when there are none."""

    findings: list[Finding]
    unique_checked: bool = False
    maybe_copies: Mask | None = None


def missing_hits(col: pa.ChunkedArray, num: NumericColumn | None = None) -> Hits | None:
    """Rows that are null (or NaN, in a float column)."""
    if num is not None:
        return num.missing()
    if col.null_count == 0:
        return None
    mask = col.is_null().to_numpy(zero_copy_only=False)
    return Hits(col.null_count, np.asarray(mask, dtype=np.bool_))


def _row(
    check: str, column: str, severity: Severity, hits: Hits, n: int, found: tuple[Any, ...], message: str
) -> Finding:
    failure = Failure(
        check=check,
        column=column,
        severity=severity,
        rows=hits.count,
        share=hits.count / n,
        examples=found,
        message=message,
    )
    return Finding(failure, hits)


def _table(
    check: str, column: str, severity: Severity, count: int, n: int, found: tuple[Any, ...], message: str
) -> Finding:
    failure = Failure(
        check=check,
        column=column,
        severity=severity,
        rows=count,
        share=count / n if n else 0.0,
        examples=found,
        message=message,
    )
    return Finding(failure)


def column_findings(
    col: pa.ChunkedArray, plan: ColumnPlan, *, reference: pa.Table | None, skipped: list[str]
) -> ColumnOutcome:
    """Every rule of one column, checked against the column's data."""
    name, spec, n = plan.name, plan.spec, len(col)
    value_type = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    num = NumericColumn(col) if is_numeric(col.type) else None
    outcome = ColumnOutcome([])
    out = outcome.findings
    if pa.types.is_null(value_type):
        num = None

    if not spec.nullable or spec.max_null_rate is not None:
        missing = missing_hits(col, num)
        if not spec.nullable and missing is not None:
            at = tuple(int(i) for i in np.flatnonzero(missing.mask)[:EXAMPLES])
            out.append(
                _row(
                    "not_null",
                    name,
                    "error",
                    missing,
                    n,
                    at,
                    f"{name}: {rows(missing.count)} ({share(missing.count / n)}) missing, but the column is not nullable"
                    f"{examples(at, prefix=', e.g. row ')}.",
                )
            )
        rule = spec.max_null_rate
        if rule is not None and n:
            count = 0 if missing is None else missing.count
            if count / n > rule.value:
                out.append(
                    _table(
                        "max_null_rate",
                        name,
                        rule.severity,
                        count,
                        n,
                        (),
                        f"{name}: {share(count / n)} of rows ({count:,}) are missing, above the allowed {share(rule.value)}.",
                    )
                )

    for check, rule, word in (("min", spec.min, "below the minimum"), ("max", spec.max, "above the maximum")):
        if rule is None or pa.types.is_null(value_type):
            continue
        if num is not None:
            hits = num.below(rule.value) if check == "min" else num.above(rule.value)
        elif pa.types.is_decimal(value_type):
            hits = compared_hits(col, below=rule.value) if check == "min" else compared_hits(col, above=rule.value)
        else:
            raise InvalidInputError(
                f"{name}: '{check}' applies to numbers, and the column holds {value_type}; fix the contract"
            )
        if hits is not None:
            found = example_values(col, hits.mask)
            out.append(
                _row(
                    check,
                    name,
                    rule.severity,
                    hits,
                    n,
                    found,
                    f"{name}: {rows(hits.count)} ({share(hits.count / n)}) {word} {bound(rule.value)}{examples(found)}.",
                )
            )

    if spec.allowed is not None and not pa.types.is_null(value_type):
        listed = spec.allowed.value
        hits = allowed_hits(col, plan.allowed(value_type), plan.keys)
        if hits is not None:
            found = example_values(col, hits.mask)
            what = (
                f"the {len(listed)} allowed values"
                if len(listed) > 5
                else "the allowed " + ", ".join(map(repr, listed))
            )
            out.append(
                _row(
                    "allowed",
                    name,
                    spec.allowed.severity,
                    hits,
                    n,
                    found,
                    f"{name}: {rows(hits.count)} ({share(hits.count / n)}) not among {what}{examples(found)}.",
                )
            )

    if spec.regex is not None and not pa.types.is_null(value_type):
        if not (is_stringlike(value_type)):
            raise InvalidInputError(
                f"{name}: 'regex' applies to text, and the column holds {value_type}; fix the contract"
            )
        try:
            hits = regex_hits(col, spec.regex.value)
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(
                f"{name}: the regex {spec.regex.value!r} is not supported ({str(exc).splitlines()[0]}); "
                "the validator uses RE2 syntax, without lookarounds or backreferences"
            ) from None
        if hits is not None:
            found = example_values(col, hits.mask)
            out.append(
                _row(
                    "regex",
                    name,
                    spec.regex.severity,
                    hits,
                    n,
                    found,
                    f"{name}: {rows(hits.count)} ({share(hits.count / n)}) {verb(hits.count, 'does', 'do')} not match "
                    f"{spec.regex.value}{examples(found)}.",
                )
            )

    if spec.unique is not None and spec.unique.value and not pa.types.is_null(value_type):
        hits = num.duplicated() if num is not None else unique_hits(col)
        missing = missing_hits(col, num)
        outcome.unique_checked = True
        if hits is not None or missing is not None:
            outcome.maybe_copies = np.logical_or.reduce([h.mask for h in (hits, missing) if h is not None])
        if hits is not None:
            found = example_values(col, hits.mask)
            out.append(
                _row(
                    "unique",
                    name,
                    spec.unique.severity,
                    hits,
                    n,
                    found,
                    f"{name}: {rows(hits.count)} ({share(hits.count / n)}) share their value with another row{examples(found)}.",
                )
            )

    if spec.max_new_categories is not None or spec.max_distinct_change is not None:
        out.extend(_against_reference(col, plan, reference, skipped))
    return outcome


def _against_reference(
    col: pa.ChunkedArray, plan: ColumnPlan, reference: pa.Table | None, skipped: list[str]
) -> list[Finding]:
    name, spec, n = plan.name, plan.spec, len(col)
    rules = [k for k in ("max_new_categories", "max_distinct_change") if getattr(spec, k) is not None]
    if reference is None:
        skipped.extend(f"{name}: {k} needs a reference version to compare with" for k in rules)
        return []
    if name not in reference.column_names:
        skipped.extend(f"{name}: {k} skipped, the reference has no column {name!r}" for k in rules)
        return []
    ref = reference.column(name)
    known = distinct_values(ref)
    out: list[Finding] = []
    new_rule = spec.max_new_categories
    if new_rule is not None:
        try:
            hits = new_value_hits(col, known)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hits = new_value_hits(col, known.cast(col.type))
        count = 0 if hits is None else hits.count
        if hits is not None and n and count / n > new_rule.value:
            found = example_values(col, hits.mask)
            out.append(
                _table(
                    "new_categories",
                    name,
                    new_rule.severity,
                    count,
                    n,
                    found,
                    f"{name}: {share(count / n)} of rows ({count:,}) have values the reference never had, "
                    f"above the allowed {share(new_rule.value)}{examples(found)}.",
                )
            )
    change_rule = spec.max_distinct_change
    if change_rule is not None:
        now_count, ref_count = len(distinct_values(col)), len(known)
        change = abs(now_count - ref_count) / ref_count if ref_count else (float("inf") if now_count else 0.0)
        if change > change_rule.value:
            signed = (now_count - ref_count) / ref_count if ref_count else float("inf")
            out.append(
                _table(
                    "distinct_change",
                    name,
                    change_rule.severity,
                    n,
                    n,
                    (now_count, ref_count),
                    f"{name}: {now_count:,} distinct values against {ref_count:,} in the reference "
                    f"({signed:+.1%}), more than the allowed {share(change_rule.value)} change.",
                )
            )
    return out
