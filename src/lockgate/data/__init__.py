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
from lockgate.data._custom import register_batch_check
from lockgate.data._findings import Failure
from lockgate.data._infer import infer_contract
from lockgate.data._registry import ConsumerProvider, ContractRegistry, ModelConsumers, RegisteredContract
from lockgate.data._report import report_html, report_json, verdict
from lockgate.data._service import Admission, ContractNotPassed, ContractOutcome, DataService
from lockgate.data._validate import ValidationReport, validate

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
    "Failure",
    "IncompatibleContract",
    "LabelSpec",
    "ModelConsumers",
    "RegisteredContract",
    "Rule",
    "Severity",
    "ValidationReport",
    "Violation",
    "arrow_type",
    "check_compatibility",
    "infer_contract",
    "readable_as",
    "register_batch_check",
    "report_html",
    "report_json",
    "type_name",
    "validate",
    "verdict",
]
