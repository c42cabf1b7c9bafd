"""Data contracts: what a table must look like, declared in YAML or in Python.

A contract names its columns with Arrow types, and the rules each column and the table as a
whole must meet. Every rule has a severity: ``error`` blocks (a gate stops, a data set is not
registered), ``warn`` is reported. A rule is written bare (``max: 50000``) or with its
severity (``max: {value: 50000, severity: warn}``).

>>> c = Contract.from_yaml('''
... name: transactions
... primary_key: [transaction_id]
... columns:
...   transaction_id: {type: string, nullable: false, unique: true}
...   amount: {type: float64, min: 0, max: {value: 50000, severity: warn}}
... ''')
>>> c.columns["amount"].min
Rule(value=0.0, severity='error')
>>> c.columns["amount"].max.severity
'warn'
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from lockgate.clock import format_duration, parse_duration
from lockgate.errors import InvalidInputError

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
    "format_duration",
    "parse_duration",
    "type_name",
]

Severity = Literal["error", "warn"]
T = TypeVar("T")


class Compatibility(StrEnum):
    """How a new version of a contract may differ from the registered ones (Confluent's modes)."""

    BACKWARD = "backward"
    BACKWARD_TRANSITIVE = "backward_transitive"
    FORWARD = "forward"
    FORWARD_TRANSITIVE = "forward_transitive"
    FULL = "full"
    FULL_TRANSITIVE = "full_transitive"
    NONE = "none"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict, Generic[T]):
    """A rule's value and what a failure of it means."""

    value: T
    severity: Severity = "error"

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        return data if isinstance(data, dict) and "value" in data else {"value": data}

    def __repr__(self) -> str:
        return f"Rule(value={self.value!r}, severity={self.severity!r})"


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "double": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "date32": pa.date32(),
}
_TIMESTAMP = re.compile(r"^timestamp(?:\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([\w/+:-]+)\s*)?\])?$")
_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type a contract's type name stands for.

    >>> arrow_type("timestamp[us, tz=UTC]")
    TimestampType(timestamp[us, tz=UTC])
    """
    text = name.strip()
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    if m := _TIMESTAMP.match(text):
        return pa.timestamp(m.group(1) or "us", tz=m.group(2))
    if m := _DECIMAL.match(text):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    known = ", ".join([*_SIMPLE_TYPES, "timestamp[us, tz=UTC]", "decimal(p, s)"])
    raise ValueError(f"unknown type {name!r}; use one of: {known}")


def type_name(dtype: pa.DataType) -> str:
    """The contract name of an Arrow type (the inverse of :func:`arrow_type`).

    >>> type_name(pa.timestamp("us", tz="UTC"))
    'timestamp[us, tz=UTC]'
    """
    if pa.types.is_timestamp(dtype):
        return f"timestamp[{dtype.unit}, tz={dtype.tz}]" if dtype.tz else f"timestamp[{dtype.unit}]"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision}, {dtype.scale})"
    if pa.types.is_dictionary(dtype):
        return type_name(dtype.value_type)
    if pa.types.is_large_string(dtype):
        return "large_string"
    if pa.types.is_date32(dtype):
        return "date"
    return {"double": "float64", "float": "float32", "halffloat": "float16", "utf8": "string"}.get(
        str(dtype), str(dtype)
    )


class ColumnSpec(_Strict):
    """One column: its Arrow type and the rules its values meet.

    ``nullable`` defaults to true (as in Arrow and SQL); a nullable column, or one with a
    ``default``, is *optional* for compatibility: readers cope when it is missing.
    """

    type: str
    nullable: bool = True
    default: Any = None
    description: str | None = None
    unique: Rule[bool] | None = None
    min: Rule[float] | None = None
    max: Rule[float] | None = None
    allowed: Rule[list[Any]] | None = None
    regex: Rule[str] | None = None
    max_null_rate: Rule[float] | None = None
    max_new_categories: Rule[float] | None = Field(
        default=None, description="the largest share of rows whose value the reference version never had"
    )
    max_distinct_change: Rule[float] | None = Field(
        default=None, description="the largest relative change of the distinct count against the reference"
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        arrow_type(value)
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, rule: Rule[str] | None) -> Rule[str] | None:
        if rule is not None:
            try:
                re.compile(rule.value)
            except re.error as exc:
                raise ValueError(f"regex {rule.value!r} does not compile ({exc})") from None
        return rule

    @field_validator("max_null_rate", "max_new_categories")
    @classmethod
    def _share(cls, rule: Rule[float] | None) -> Rule[float] | None:
        if rule is not None and not 0 <= rule.value <= 1:
            raise ValueError(f"a share must be between 0 and 1, not {rule.value}")
        return rule

    @property
    def arrow(self) -> pa.DataType:
        return arrow_type(self.type)

    @property
    def optional(self) -> bool:
        """Readers cope without it: nullable or defaulted (Confluent's optional field)."""
        return self.nullable or self.default is not None


class EventTimeSpec(_Strict):
    """The column holding when each row happened, and how stale the newest row may be."""

    column: str
    max_lag: timedelta | None = None
    severity: Severity = "error"

    @field_validator("max_lag", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_serializer("max_lag")
    def _show(self, value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)


class LabelSpec(_Strict):
    """The label column: rows older than ``max_delay`` must mostly have their label."""

    column: str
    max_delay: timedelta
    min_available: float = 0.95
    severity: Severity = "error"

    @field_validator("max_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_serializer("max_delay")
    def _show(self, value: timedelta) -> str:
        return format_duration(value)

    @field_validator("min_available")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"min_available must be between 0 and 1, not {value}")
        return value


class CustomCheck(_Strict):
    """A rule beyond single columns: a SQL boolean expression every row must satisfy
    (``refund <= amount``), or a registered Python function over an Arrow batch."""

    name: str
    sql: str | None = None
    python: str | None = None
    severity: Severity = "error"
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CustomCheck:
        if (self.sql is None) == (self.python is None):
            raise ValueError(f"check {self.name!r} needs exactly one of 'sql' (an expression) or 'python' (a name)")
        return self


class Contract(_Strict):
    """What a table must look like; see the module docs for the YAML form."""

    name: str
    version: int | None = None
    owner: str | None = None
    description: str | None = None
    compatibility: Compatibility = Compatibility.BACKWARD
    primary_key: list[str] = Field(default_factory=list)
    event_time: EventTimeSpec | None = None
    label: LabelSpec | None = None
    columns: dict[str, ColumnSpec]
    extra_columns: Literal["allow", "warn", "error"] = "warn"
    on_error: Literal["fail", "quarantine"] = "fail"
    duplicate_rows: Severity | None = "warn"
    min_rows: Rule[int] | None = None
    max_row_count_change: Rule[float] | None = Field(
        default=None, description="the largest relative change of the row count against the reference"
    )
    checks: list[CustomCheck] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", value):
            raise ValueError(f"contract name {value!r} must be letters, digits, '_', '.', '-'")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"version must be 1 or more, not {value}")
        return value

    @model_validator(mode="after")
    def _columns_known(self) -> Contract:
        if not self.columns:
            raise ValueError("a contract needs at least one column under 'columns'")
        named = [(k, "primary_key") for k in self.primary_key]
        named += [(s.column, key) for key, s in (("event_time", self.event_time), ("label", self.label)) if s]
        for column, where in named:
            if column not in self.columns:
                raise ValueError(f"{where} names column {column!r}, which is not under 'columns'")
        names = [c.name for c in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("two custom checks share a name; give each check its own name")
        return self

    # -- reading and writing ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "the contract") -> Contract:
        """Build a contract, turning every validation problem into one readable sentence."""
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"{source} is not a mapping of contract fields; start from 'lockgate data contract infer'"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("function-", "Rule[")))
            message = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                message = "unknown field; check its spelling against the contract reference in docs/contracts.md"
            raise InvalidInputError(f"{source} is not valid: {where or 'contract'}: {message}") from None

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "the contract") -> Contract:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise InvalidInputError(f"{source} is not valid YAML{at}; fix the syntax") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path: str | Path) -> Contract:
        """A contract from a YAML file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInputError(f"contract file {p} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read contract file {p} ({exc})") from None
        return cls.from_yaml(text, source=f"contract {p}")

    def to_dict(self) -> dict[str, Any]:
        """The contract as plain data (what is stored and hashed), rules written bare when they can be."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        data["name"] = self.name
        data["columns"] = {name: _bare_rules(spec) for name, spec in data.get("columns", {}).items()}
        for key in ("min_rows", "max_row_count_change"):
            if isinstance(data.get(key), dict) and set(data[key]) == {"value"}:
                data[key] = data[key]["value"]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema the contract describes."""
        return pa.schema([pa.field(n, c.arrow, nullable=c.nullable) for n, c in self.columns.items()])


def _bare_rules(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value["value"] if isinstance(value, dict) and set(value) == {"value"} else value
        for key, value in spec.items()
    }
