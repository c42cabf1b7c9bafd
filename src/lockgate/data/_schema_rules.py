"""The schema check the validator runs first: every column there, of an acceptable type, and no
unexpected ones (per ``extra_columns``).

Which types stand in for the contract's type without a failure (:func:`accepts`): those that
hold the same values in another layout, or widen them without loss.

- ``string``, ``large_string``, ``string_view`` and a dictionary of any of them, for
  ``string`` or ``large_string``; the binary family likewise. Dictionary encoding is accepted
  for every value type.
- A narrower integer of the same signedness (``int32`` for ``int64``), or a narrower unsigned
  one for a signed type (``uint16`` for ``int32``); a narrower float (``float32`` for ``float64``).
- A timestamp of another unit (pandas gives ``ns``, the contract says ``us``), as long as both
  have a time zone or neither has; ``UTC``, ``Etc/UTC`` and ``+00:00`` are one zone.
  ``date32`` and ``date64``. A decimal with the same scale and no more precision.
- The ``null`` type (a column with no values at all): nullability decides.

Not accepted: integers for a float column or the reverse, text for anything else, a time zone
that differs.

>>> accepts(pa.int64(), pa.int32()), accepts(pa.string(), pa.dictionary(pa.int8(), pa.large_string()))
(True, True)
>>> accepts(pa.float64(), pa.int64())
False
"""

from __future__ import annotations

import difflib

import pyarrow as pa

from lockgate.data._contract import Contract, Severity, type_name
from lockgate.data._findings import EXAMPLES, Failure, Finding
from lockgate.data._wording import examples

__all__ = ["accepts", "schema_findings"]

_UTC = {"utc", "etc/utc", "z", "+00:00", "00:00", "gmt", "etc/gmt", "zulu", "universal", "etc/universal"}
_BINARIES = ("binary", "large_binary", "binary_view")


def _zone(tz: str | None) -> str | None:
    return None if tz is None else ("UTC" if tz.lower() in _UTC else tz)


def _family(dtype: pa.DataType) -> str:
    text = str(dtype)
    if text in ("string", "large_string", "string_view", "utf8", "large_utf8"):
        return "string"
    if text in _BINARIES:
        return "binary"
    return text


def accepts(expected: pa.DataType, actual: pa.DataType) -> bool:
    """Whether a column of type ``actual`` meets a contract column of type ``expected``."""
    t = pa.types
    if actual.equals(expected) or t.is_null(actual):
        return True
    if t.is_dictionary(actual):
        return accepts(expected, actual.value_type)
    if _family(expected) in ("string", "binary"):
        return _family(actual) == _family(expected)
    if t.is_integer(expected) and t.is_integer(actual):
        wider = int(expected.bit_width)
        if t.is_signed_integer(expected):
            return bool(actual.bit_width <= wider if t.is_signed_integer(actual) else actual.bit_width < wider)
        return bool(t.is_unsigned_integer(actual) and actual.bit_width <= wider)
    if t.is_floating(expected) and t.is_floating(actual):
        return bool(actual.bit_width <= expected.bit_width)
    if t.is_timestamp(expected) and t.is_timestamp(actual):
        return _zone(expected.tz) == _zone(actual.tz)
    if t.is_date(expected) and t.is_date(actual):
        return True
    if t.is_decimal(expected) and t.is_decimal(actual):
        return bool(actual.scale == expected.scale and actual.precision <= expected.precision)
    return False


def _shown(dtype: pa.DataType) -> str:
    try:
        return type_name(dtype)
    except (ValueError, KeyError):
        return str(dtype)


def schema_findings(
    table: pa.Table, contract: Contract, types: dict[str, pa.DataType], *, rows: int | None = None
) -> list[Finding]:
    """Missing columns, columns of the wrong type, and columns the contract does not name.

    ``types`` are the contract's column types (parsed once per contract). ``rows`` is the row count when ``table`` is only the schema (an empty table from a file's footer).
    """
    n = table.num_rows if rows is None else rows
    schema = table.schema
    present = dict(zip(schema.names, schema.types, strict=True))
    out: list[Finding] = []

    def add(check: str, column: str, severity: Severity, found: tuple[object, ...], message: str) -> None:
        failure = Failure(
            check=check, column=column, severity=severity, rows=n, share=1.0, examples=found, message=message
        )
        out.append(Finding(failure))

    for name, spec in contract.columns.items():
        if name not in present:
            close = tuple(difflib.get_close_matches(name, table.column_names, n=3, cutoff=0.6))
            hint = f"; similar names in the data: {', '.join(repr(c) for c in close)}" if close else ""
            add("missing_column", name, "error", close, f"{name}: the column is missing{hint}.")
            continue
        actual = present[name]
        if actual is not types[name] and not accepts(types[name], actual):
            column = table.column(name)
            sample = tuple(column.slice(0, 1000).drop_null().slice(0, EXAMPLES).to_pylist())
            add(
                "type",
                name,
                "error",
                sample,
                f"{name}: expected {spec.type}, found {_shown(actual)}{examples(sample)}.",
            )
    policy = contract.extra_columns
    if policy != "allow":
        severity: Severity = "error" if policy == "error" else "warn"
        for name in present:
            if name not in contract.columns:
                add(
                    "extra_column",
                    name,
                    severity,
                    (),
                    f"{name}: the column is not in the contract (extra_columns: {severity}); "
                    "add it to the contract or drop it.",
                )
    return out
