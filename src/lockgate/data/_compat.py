"""Compatibility of a new contract version with the registered ones: Confluent's modes, carried
over from records to tables.

A contract version is a *writer* (the data produced under it) and a *reader* (the consumers
that validate and use data under it). Reader ``R`` can read what writer ``W`` wrote when:

- every column of ``R`` missing from ``W`` is optional in ``R`` (nullable or defaulted: the
  reader fills it), and, when ``R`` refuses extra columns (``extra_columns: error``), every
  column of ``W`` is in ``R``;
- every column both have keeps a type ``W``'s values convert to without loss (the same type,
  or a safe widening such as ``int32 → int64``) and is nullable in ``R`` if it is in ``W``.

BACKWARD means the new version reads data written under the previous one; FORWARD means the
previous version reads data written under the new one; FULL both. The ``_TRANSITIVE`` modes
check against every registered version instead of only the latest; NONE checks nothing.
docs/contracts.md has the rules as a table.

>>> from lockgate.data import Contract
>>> v1 = Contract.from_dict({"name": "t", "columns": {"f": {"type": "int64", "nullable": False}}})
>>> v2 = Contract.from_dict({"name": "t", "columns": {"f": {"type": "int64"}, "g": {"type": "string"}}})
>>> check_compatibility(v2, [v1], "backward")
[]
>>> [v.rule for v in check_compatibility(v2, [v1], "full")]
['became_nullable']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from lockgate.data._contract import ColumnSpec, Compatibility, Contract
from lockgate.errors import CheckFailed, InvalidInputError

__all__ = [
    "Consumer",
    "IncompatibleContract",
    "Violation",
    "check_compatibility",
    "parse_mode",
    "readable_as",
]

Direction = Literal["backward", "forward"]

_DIRECTIONS: dict[Compatibility, tuple[Direction, ...]] = {
    Compatibility.BACKWARD: ("backward",),
    Compatibility.BACKWARD_TRANSITIVE: ("backward",),
    Compatibility.FORWARD: ("forward",),
    Compatibility.FORWARD_TRANSITIVE: ("forward",),
    Compatibility.FULL: ("backward", "forward"),
    Compatibility.FULL_TRANSITIVE: ("backward", "forward"),
    Compatibility.NONE: (),
}
_TRANSITIVE = {Compatibility.BACKWARD_TRANSITIVE, Compatibility.FORWARD_TRANSITIVE, Compatibility.FULL_TRANSITIVE}


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One reason a new contract version is refused, said in one sentence.

    ``version`` is the registered version it conflicts with; ``rule`` a stable name
    (``added_required_column``, ``dropped_required_column``, ``type_changed``,
    ``became_non_nullable``, ``became_nullable``, ``extra_column_refused``,
    ``consumer_uses_column``); ``direction`` which reading broke (None for a consumer).
    """

    contract: str
    column: str
    version: int | None
    rule: str
    message: str
    direction: Direction | None = None
    consumer: str | None = None

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "column": self.column,
            "version": self.version,
            "rule": self.rule,
            "direction": self.direction,
            "consumer": self.consumer,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Consumer:
    """Something registered that reads columns of a contract: a model version, a feature view.

    ``contract_version`` is the version its data passed; the columns it reads are judged by
    their type in that version.

    >>> str(Consumer(kind="model", name="fraud v3", contract_version=2, columns=("amount",)))
    'model fraud v3'
    """

    kind: str
    name: str
    contract_version: int
    columns: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class IncompatibleContract(CheckFailed):
    """A new contract version breaks the compatibility mode or a consumer; ``violations`` lists every reason."""

    def __init__(self, message: str, violations: Sequence[Violation]) -> None:
        super().__init__(message)
        self.violations = list(violations)


def parse_mode(mode: str | Compatibility) -> Compatibility:
    """A compatibility mode from its name (any case); one clear sentence for anything else."""
    if isinstance(mode, Compatibility):
        return mode
    try:
        return Compatibility(str(mode).strip().lower())
    except ValueError:
        known = ", ".join(m.value for m in Compatibility)
        raise InvalidInputError(f"compatibility mode {mode!r} is unknown; use one of: {known}") from None


def check_compatibility(
    new: Contract,
    registered: Sequence[Contract],
    mode: str | Compatibility,
    *,
    consumers: Sequence[Consumer] = (),
) -> list[Violation]:
    """Every reason ``new`` may not follow ``registered`` (oldest first) under ``mode``.

    Registered contracts carry their version numbers; the consumers rule holds in every mode,
    NONE included: a column a consumer reads may not be dropped or change type.
    """
    mode = parse_mode(mode)
    against = list(registered) if mode in _TRANSITIVE else list(registered[-1:])
    found: list[Violation] = []
    for old in against:
        for direction in _DIRECTIONS[mode]:
            if direction == "backward":
                found.extend(_reads(reader=new, writer=old, old=old, direction=direction))
            else:
                found.extend(_reads(reader=old, writer=new, old=old, direction=direction))
    by_version = {c.version: c for c in registered if c.version is not None}
    for consumer in consumers:
        used = by_version.get(consumer.contract_version)
        if used is not None:
            found.extend(_consumer_violations(new, used, consumer))
    return found


# -- reading one version with another -----------------------------------------------------------


def _reads(*, reader: Contract, writer: Contract, old: Contract, direction: Direction) -> Iterator[Violation]:
    """Why ``reader`` cannot read what ``writer`` wrote, phrased for ``direction``."""
    v = old.version
    at = f"v{v}" if v is not None else "the registered version"

    def violation(column: str, rule: str, message: str) -> Violation:
        return Violation(contract=old.name, column=column, version=v, rule=rule, message=message, direction=direction)

    for name, r in reader.columns.items():
        w = writer.columns.get(name)
        if w is None:
            if not r.optional:
                yield (
                    violation(
                        name,
                        "added_required_column",
                        f"column '{name}' is added as required (not nullable, no default), so data written "
                        f"under {at}, which lacks it, fails the new version; make it nullable or give it a default",
                    )
                    if direction == "backward"
                    else violation(
                        name,
                        "dropped_required_column",
                        f"column '{name}' is dropped, but {at} requires it, so consumers of {at} reject data "
                        "written under the new version; keep it, or give it a default in one version and drop "
                        "it in the next",
                    )
                )
            continue
        old_spec, new_spec = (w, r) if direction == "backward" else (r, w)
        if not readable_as(w.arrow, r.arrow):
            yield violation(
                name,
                "type_changed",
                _type_message(name, old_spec, new_spec, at, direction),
            )
        if w.nullable and not r.nullable:
            yield (
                violation(
                    name,
                    "became_non_nullable",
                    f"column '{name}' becomes non-nullable, but data written under {at} may hold nulls in it; "
                    "keep it nullable",
                )
                if direction == "backward"
                else violation(
                    name,
                    "became_nullable",
                    f"column '{name}' becomes nullable, but consumers of {at} require a value in it; "
                    "keep it non-nullable",
                )
            )
    if reader.extra_columns == "error":
        for name in writer.columns:
            if name not in reader.columns:
                yield (
                    violation(
                        name,
                        "extra_column_refused",
                        f"column '{name}' is dropped while the new version refuses extra columns "
                        f"(extra_columns: error), so data written under {at}, which has it, fails the new "
                        "version; keep the column or set extra_columns to warn",
                    )
                    if direction == "backward"
                    else violation(
                        name,
                        "extra_column_refused",
                        f"column '{name}' is added, but {at} refuses extra columns (extra_columns: error), "
                        f"so consumers of {at} reject data written under the new version; relax extra_columns "
                        "in a version of its own first",
                    )
                )


def _type_message(name: str, old: ColumnSpec, new: ColumnSpec, at: str, direction: Direction) -> str:
    change = f"column '{name}' changes type from {old.type} ({at}) to {new.type}"
    if direction == "backward":
        return f"{change}, and {old.type} values do not convert to {new.type} without loss; keep {old.type} or widen it"
    return f"{change}, which consumers of {at}, reading it as {old.type}, cannot read without loss; keep {old.type}"


def _consumer_violations(new: Contract, used: Contract, consumer: Consumer) -> Iterator[Violation]:
    for name in consumer.columns:
        spec = used.columns.get(name)
        if spec is None:
            continue  # a column the consumer derives itself, not one this contract provides
        now = new.columns.get(name)
        if now is not None and _same_type(spec.arrow, now.arrow):
            continue
        change = "drops it" if now is None else f"changes it to {now.type}"
        yield Violation(
            contract=used.name,
            column=name,
            version=used.version,
            rule="consumer_uses_column",
            consumer=str(consumer),
            message=(
                f"{consumer} uses column '{name}' ({spec.type} in v{used.version}), and the new version {change}; "
                f"retire or retrain {consumer} without it first"
            ),
        )


# -- types ---------------------------------------------------------------------------------------

# Bits of precision a float carries: an integer type converts exactly when its magnitude fits.
_MANTISSA = {16: 11, 32: 24, 64: 53}
# Decimal digits the largest value of each integer width needs.
_DIGITS = {(8, True): 3, (16, True): 5, (32, True): 10, (64, True): 19}
_DIGITS |= {(8, False): 3, (16, False): 5, (32, False): 10, (64, False): 20}
_UNITS = ["s", "ms", "us", "ns"]


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal types, counting ``string`` and ``large_string`` as one (they differ only in layout)."""
    t = pa.types
    if a == b:
        return True
    return bool((t.is_string(a) or t.is_large_string(a)) and (t.is_string(b) or t.is_large_string(b)))


def readable_as(written: pa.DataType, read: pa.DataType) -> bool:
    """Whether every value of type ``written`` converts to type ``read`` without loss.

    Integers widen to wider integers (unsigned also to a wider signed type), to floats whose
    precision holds every value (``int32 → float64`` yes, ``int64 → float64`` no) and to
    decimals with enough integer digits; floats widen; decimals keep or gain integer digits
    and scale; timestamps get a finer unit in the same time zone.

    >>> readable_as(pa.int32(), pa.int64()), readable_as(pa.int64(), pa.int32())
    (True, False)
    >>> readable_as(pa.int32(), pa.float64()), readable_as(pa.int64(), pa.float64())
    (True, False)
    """
    t = pa.types
    if _same_type(written, read):
        return True
    if t.is_integer(written):
        signed = t.is_signed_integer(written)
        if t.is_integer(read):
            wider = read.bit_width > written.bit_width
            return wider and (signed == t.is_signed_integer(read) or not signed)
        if t.is_floating(read):
            return bool(written.bit_width - signed <= _MANTISSA[read.bit_width])
        if t.is_decimal(read):
            return bool(read.precision - read.scale >= _DIGITS[(written.bit_width, signed)])
        return False
    if t.is_floating(written):
        return bool(t.is_floating(read) and read.bit_width > written.bit_width)
    if t.is_decimal(written):
        return bool(
            t.is_decimal(read)
            and read.scale >= written.scale
            and read.precision - read.scale >= written.precision - written.scale
        )
    if t.is_timestamp(written):
        return bool(
            t.is_timestamp(read) and read.tz == written.tz and _UNITS.index(read.unit) >= _UNITS.index(written.unit)
        )
    return False
