"""A first contract from real data: what the data is today, for a person to tighten or loosen.

>>> import pyarrow as pa
>>> table = pa.table({"id": [1, 2, 3, 4], "channel": ["pos", "atm", "pos", "pos"], "amount": [9.5, 12.0, None, 3.25]})
>>> contract = infer_contract(table, "payments")
>>> contract.primary_key, contract.columns["channel"].allowed.value, contract.columns["amount"].nullable
(['id'], ['atm', 'pos'], True)
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from lockgate.data._checks import NumericColumn, distinct_values, is_numeric
from lockgate.data._column_rules import missing_hits
from lockgate.data._contract import Contract, arrow_type, type_name
from lockgate.data._frames import as_table
from lockgate.errors import InvalidInputError

__all__ = ["infer_contract"]

_KEY_WORDS = ("id", "key", "uuid")
_TIME_WORDS = ("ts", "timestamp", "event_time", "event_ts", "time", "created_at", "occurred_at")


def infer_contract(table: Any, name: str, *, max_categories: int = 20) -> Contract:
    """A contract that ``table`` passes, as a starting point to edit.

    Each column gets its type, ``nullable: false`` when it has no missing values, the observed
    ``min`` and ``max`` for numbers, ``allowed`` values for text with at most ``max_categories``
    distinct values (each seen at least twice on average), and ``unique`` for integer or text
    columns without repeats. The primary key is the unique, complete column whose name looks
    like a key (``id``, ``*_id``, ``key``), else the first such column; the event time is the
    one timestamp column (or the one named like ``ts``), without a freshness limit. Columns of
    types a contract cannot name (lists, structs) are left out.

    Args:
        table: anything :func:`~lockgate.data.validate` accepts as data.
        name: the contract's name.
        max_categories: the most distinct values a text column may have to get ``allowed``.
    """
    data = as_table(table)
    n = data.num_rows
    columns: dict[str, dict[str, Any]] = {}
    keys: list[str] = []
    times: list[str] = []
    for column in data.column_names:
        col = data.column(column)
        dtype = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        type_text = _contract_type(dtype)
        if type_text is None:
            continue
        spec: dict[str, Any] = {"type": type_text}
        num = NumericColumn(col) if is_numeric(dtype) and not pa.types.is_dictionary(col.type) else None
        missing = missing_hits(col, num)
        spec["nullable"] = n == 0 or missing is not None
        if num is not None:
            lo, hi = num.extremes
            if lo is not None and math.isfinite(float(lo)) and math.isfinite(float(hi)):
                spec["min"], spec["max"] = float(lo), float(hi)
            if not num.is_float and n >= 2 and num.duplicated() is None:
                spec["unique"] = True
        elif type_text in ("string", "large_string") and n:
            distinct = distinct_values(col)
            present = n - (0 if missing is None else missing.count)
            if len(distinct) == present and n >= 2:
                spec["unique"] = True
            elif 0 < len(distinct) <= max_categories and present >= 2 * len(distinct):
                spec["allowed"] = sorted(distinct.to_pylist())
        if spec.get("unique") and not spec["nullable"]:
            keys.append(column)
        if pa.types.is_timestamp(dtype):
            times.append(column)
        columns[column] = spec
    if not columns:
        raise InvalidInputError("the data has no column of a type a contract can describe; nothing to infer")
    contract: dict[str, Any] = {"name": name, "columns": columns}
    key = next((k for k in keys if _looks_like(k, _KEY_WORDS)), keys[0] if keys else None)
    if key is not None:
        contract["primary_key"] = [key]
    moment = next((t for t in times if t.lower() in _TIME_WORDS), times[0] if len(times) == 1 else None)
    if moment is not None:
        contract["event_time"] = {"column": moment}
    return Contract.from_dict(contract, source=f"the contract inferred for {name!r}")


def _looks_like(column: str, words: tuple[str, ...]) -> bool:
    lower = column.lower()
    return lower in words or any(lower.endswith(f"_{w}") for w in words)


def _contract_type(dtype: pa.DataType) -> str | None:
    """The contract's name for an Arrow type; string layouts all become ``string``."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return "binary"
    if pa.types.is_date(dtype):
        return "date"
    try:
        text = type_name(dtype)
        arrow_type(text)
    except (ValueError, KeyError):
        return None
    return text
