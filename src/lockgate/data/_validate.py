"""Validate data against a contract: the schema first (and nothing else when it is wrong), then
every column rule, the table rules and the custom checks, into one :class:`ValidationReport`.

>>> contract = Contract.from_yaml('''
... name: payments
... columns:
...   amount: {type: float64, min: 0, max: 50000}
... ''')
>>> report = validate(pa.table({"amount": [12.5, 61200.5, -3.0]}), contract)
>>> report.passed
False
>>> for failure in report.failures:
...     print(failure.message)
amount: 1 row (33.3%) below the minimum 0, e.g. -3.0.
amount: 1 row (33.3%) above the maximum 50000, e.g. 61200.5.

The same call validates a serving payload (a few rows as dicts or a record batch) in well
under a millisecond: nothing is compiled per call (the contract's plan is cached) and no
query engine starts unless the contract has a SQL check.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lockgate.data._checks import Mask
from lockgate.data._column_rules import ColumnPlan, column_findings
from lockgate.data._contract import Contract
from lockgate.data._custom import custom_hits, mentioned_columns, register_batch_check
from lockgate.data._findings import Failure, Finding, example_values
from lockgate.data._frames import as_table, peek_parquet
from lockgate.data._profile import ColumnProfile, profile_table
from lockgate.data._schema_rules import schema_findings
from lockgate.data._table_rules import (
    duplicate_rows_finding,
    freshness_finding,
    label_finding,
    primary_key_finding,
    row_count_findings,
)
from lockgate.data._wording import examples, rows, share, verb
from lockgate.errors import InvalidInputError

__all__ = ["Failure", "ValidationReport", "register_batch_check", "validate"]


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    """The outcome of :func:`validate`: every failure of either severity, and the verdict.

    ``passed`` is true when no error-level failure stands; under ``on_error: quarantine`` the
    rows that broke an error-level row rule are in ``quarantined`` (their failures are marked
    ``quarantined``), the rest in ``passed_rows``, and those failures no longer fail the report.
    Both tables are None under ``on_error: fail``. ``profiles`` describes each column for the
    HTML report; it is computed on first use, so a gate that only needs the verdict never pays.
    """

    contract_name: str
    contract_version: int | None
    rows: int
    seconds: float
    passed: bool
    failures: list[Failure]
    checked_at: datetime
    """The ``now`` that freshness and label availability were judged at (UTC)."""
    skipped: list[str] = field(default_factory=list)
    """Rules that could not run, and why (e.g. a reference comparison without a reference)."""
    quarantined: pa.Table | None = field(default=None, repr=False, compare=False)
    passed_rows: pa.Table | None = field(default=None, repr=False, compare=False)
    data: pa.Table | None = field(default=None, repr=False, compare=False)
    """The rows that were validated, as Arrow (None when the schema check stopped before reading)."""

    @property
    def errors(self) -> list[Failure]:
        """The error-level failures (including quarantined ones)."""
        return [f for f in self.failures if f.severity == "error"]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "warn"]

    @cached_property
    def profiles(self) -> dict[str, ColumnProfile]:
        """A profile per column of the data, in column order (empty without data)."""
        return {} if self.data is None else profile_table(self.data)

    def to_json(self, *, profiles: bool = True) -> dict[str, Any]:
        """The report as JSON-able data with keys in a fixed order; ``profiles=False`` leaves
        the column profiles out (they cost a pass over the data)."""
        out: dict[str, Any] = {
            "contract_name": self.contract_name,
            "contract_version": self.contract_version,
            "passed": self.passed,
            "rows": self.rows,
            "seconds": round(self.seconds, 6),
            "checked_at": self.checked_at.isoformat(),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "quarantined_rows": None if self.quarantined is None else self.quarantined.num_rows,
            "failures": [f.to_json() for f in self.failures],
            "skipped": list(self.skipped),
        }
        if profiles:
            out["profiles"] = [p.to_json() for p in self.profiles.values()]
        return out


@dataclass(frozen=True)
class _Plan:
    contract: Contract
    columns: dict[str, ColumnPlan]
    types: dict[str, pa.DataType]
    uses_reference: bool


_PLANS: OrderedDict[int, _Plan] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_PLANS_KEPT = 64


def _plan(contract: Contract) -> _Plan:
    """The contract's data-independent preparation, cached: a serving path validates many
    small batches against one contract, and rebuilding this per call would dominate."""
    with _PLANS_LOCK:
        plan = _PLANS.get(id(contract))
        if plan is not None and plan.contract is contract:
            _PLANS.move_to_end(id(contract))
            return plan
    plan = _Plan(
        contract,
        {name: ColumnPlan.build(name, spec) for name, spec in contract.columns.items()},
        {name: spec.arrow for name, spec in contract.columns.items()},
        contract.max_row_count_change is not None
        or any(
            s.max_new_categories is not None or s.max_distinct_change is not None for s in contract.columns.values()
        ),
    )
    with _PLANS_LOCK:
        _PLANS[id(contract)] = plan  # the plan holds the contract, so its id cannot be reused meanwhile
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    return plan


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if not isinstance(now, datetime):
        raise InvalidInputError(f"now must be a datetime, not {type(now).__name__}")
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def validate(
    data: Any,
    contract: Contract,
    *,
    reference: Any = None,
    now: datetime | None = None,
) -> ValidationReport:
    """Check ``data`` against ``contract`` and report every failure.

    Args:
        data: a ``pyarrow`` Table or RecordBatch, a pandas or polars DataFrame, a list of row
            dicts (a serving payload), or a path or URI of Parquet or CSV data.
        contract: the contract to check against.
        reference: an earlier version of the data (anything ``data`` can be), for the rules
            that compare with one: new categories, distinct-count and row-count change.
        now: the moment freshness and label availability are judged at (default: now, UTC).

    Returns:
        A :class:`ValidationReport`. Data that breaks the contract is not an exception: look
        at ``report.passed``. Unreadable data, or a contract that cannot apply to it (a SQL
        check that does not run, ``min`` on a text column), raises ``InvalidInputError``.
    """
    started = time.perf_counter()
    if not isinstance(contract, Contract):
        raise InvalidInputError(
            f"contract must be a Contract, not a {type(contract).__name__}; load one with Contract.load(path)"
        )
    checked_at = _utc(now)
    plan = _plan(contract)

    def report(findings: list[Finding], n: int, **tables: pa.Table | None) -> ValidationReport:
        failures = [f.failure for f in findings]
        return ValidationReport(
            contract_name=contract.name,
            contract_version=contract.version,
            rows=n,
            seconds=time.perf_counter() - started,
            passed=not any(f.severity == "error" and not f.quarantined for f in failures),
            failures=failures,
            checked_at=checked_at,
            skipped=skipped,
            **tables,
        )

    skipped: list[str] = []
    if isinstance(data, (str, Path)):
        # Fail fast on a file's schema before reading all of it.
        peeked = peek_parquet(data)
        if peeked is not None:
            schema, n = peeked
            early = schema_findings(schema.empty_table(), contract, plan.types, rows=n)
            if any(f.failure.severity == "error" for f in early):
                return report(early, n)

    table = as_table(data, plan.types)
    n = table.num_rows
    findings = schema_findings(table, contract, plan.types)
    if any(f.failure.severity == "error" for f in findings):
        return report(findings, n, data=table)
    # A reference is read only when a rule compares with it (it may be a whole file).
    ref = None if reference is None or not plan.uses_reference else as_table(reference)
    findings += _rule_findings(table, plan, ref, checked_at, skipped)

    if contract.on_error != "quarantine":
        return report(findings, n, data=table)
    row_errors = [i for i, f in enumerate(findings) if f.hits is not None and f.failure.severity == "error"]
    if not row_errors:
        return report(findings, n, data=table, quarantined=table.slice(0, 0), passed_rows=table)
    failing: Mask = np.logical_or.reduce([findings[i].hits.mask for i in row_errors])  # type: ignore[union-attr]
    for i in row_errors:
        findings[i] = findings[i].quarantine()
    keep = pa.array(~failing)
    return report(findings, n, data=table, quarantined=table.filter(pa.array(failing)), passed_rows=table.filter(keep))


def _rule_findings(
    table: pa.Table, plan: _Plan, reference: pa.Table | None, now: datetime, skipped: list[str]
) -> list[Finding]:
    contract = plan.contract
    out: list[Finding] = []
    # Exact duplicate rows must share every column's value, so a key with no repeats proves
    # there are none, and one with repeats leaves only its repeated rows to compare.
    copies_impossible = False
    candidates: list[Mask] = []
    for name, column_plan in plan.columns.items():
        outcome = column_findings(table.column(name), column_plan, reference=reference, skipped=skipped)
        out.extend(outcome.findings)
        if outcome.unique_checked:
            if outcome.maybe_copies is None:
                copies_impossible = True
            else:
                candidates.append(outcome.maybe_copies)

    key = contract.primary_key
    if key:
        only = contract.columns[key[0]]
        if len(key) > 1 or not (only.unique is not None and only.unique.value and not only.nullable):
            finding = primary_key_finding(table, key)
            if finding is None:
                copies_impossible = True
            else:
                out.append(finding)
                assert finding.hits is not None
                candidates.append(finding.hits.mask)

    if contract.duplicate_rows is not None and not copies_impossible:
        within = np.logical_and.reduce(candidates) if candidates else None
        finding = duplicate_rows_finding(table, contract.duplicate_rows, within, skipped)
        if finding is not None:
            out.append(finding)

    out.extend(row_count_findings(table, contract, reference, skipped))
    if contract.event_time is not None:
        finding = freshness_finding(table, contract.event_time, now)
        if finding is not None:
            out.append(finding)
    if contract.label is not None:
        finding = label_finding(table, contract.label, contract.event_time, now)
        if finding is not None:
            out.append(finding)
    out.extend(_custom_findings(table, contract))
    return out


def _custom_findings(table: pa.Table, contract: Contract) -> list[Finding]:
    out: list[Finding] = []
    n = table.num_rows
    for check in contract.checks:
        hits = custom_hits(check, table)
        if hits is None:
            continue
        shown = mentioned_columns(check, table.column_names) or contract.primary_key or table.column_names[:3]
        found = example_values(table.select(shown[:6]), hits.mask)
        what = f" ({check.sql})" if check.sql is not None else f" ({check.python})"
        failure = Failure(
            check=f"custom:{check.name}",
            column=None,
            severity=check.severity,
            rows=hits.count,
            share=hits.count / n,
            examples=found,
            message=(
                f"custom check {check.name!r}{what}: {rows(hits.count)} ({share(hits.count / n)}) "
                f"{verb(hits.count, 'fails', 'fail')}{examples(found)}."
            ),
        )
        out.append(Finding(failure, hits))
    return out
