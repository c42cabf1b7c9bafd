"""Data contracts and quality gates: what a table must look like, checked fast, before it
reaches training or serving."""

from __future__ import annotations

from lockgate.data._contract import (
    ColumnSpec,
    Compatibility,
    Contract,
    CustomCheck,
    EventTimeSpec,
    LabelSpec,
    Rule,
    Severity,
    arrow_type,
    type_name,
)

__all__ = [
    "ColumnSpec",
    "Compatibility",
    "Contract",
    "CustomCheck",
    "EventTimeSpec",
    "LabelSpec",
    "Rule",
    "Severity",
    "arrow_type",
    "type_name",
]
