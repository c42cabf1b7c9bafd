"""Data contracts and quality gates: what a table must look like, checked fast, before it
reaches training or serving."""

from __future__ import annotations

from lockgate.data._compat import Consumer, IncompatibleContract, Violation, check_compatibility, readable_as
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
from lockgate.data._registry import ConsumerProvider, ContractRegistry, ModelConsumers, RegisteredContract
from lockgate.data._service import Admission, ContractNotPassed, ContractOutcome, DataService

__all__ = [
    "Admission",
    "ColumnSpec",
    "Compatibility",
    "Consumer",
    "ConsumerProvider",
    "Contract",
    "ContractNotPassed",
    "ContractOutcome",
    "ContractRegistry",
    "CustomCheck",
    "DataService",
    "EventTimeSpec",
    "IncompatibleContract",
    "LabelSpec",
    "ModelConsumers",
    "RegisteredContract",
    "Rule",
    "Severity",
    "Violation",
    "arrow_type",
    "check_compatibility",
    "readable_as",
    "type_name",
]
