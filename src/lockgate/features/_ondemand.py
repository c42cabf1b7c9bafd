"""Running on-demand features: the same vectorized call over a training set's columns, over an
online request, and over the examples a definition carries.

>>> import pyarrow as pa
>>> from lockgate.features import on_demand_feature
>>> @on_demand_feature(inputs=["amount", "card_aggregates:avg_amount_7d"], examples=[({"amount": 10.0, "avg_amount_7d": 5.0}, 2.0)])
... def amount_ratio(amount, avg_amount_7d):
...     return pa.compute.divide(amount, avg_amount_7d)
>>> compute(amount_ratio, {"amount": pa.array([3.0]), "avg_amount_7d": pa.array([2.0])}).to_pylist()
[1.5]
>>> check_examples(amount_ratio)
[]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lockgate.errors import InvalidInputError, UserCodeError
from lockgate.features._definitions import OnDemandFeature, arrow_type

__all__ = ["ExampleMismatch", "check_examples", "compute"]


def compute(feature: OnDemandFeature, columns: Mapping[str, Any], *, rows: int | None = None) -> pa.Array:
    """Call the feature's function with its inputs (by argument name, as Arrow arrays) and
    return its output as an array of the declared type, one value per row."""
    arguments = {}
    for ref in feature.inputs:
        arg = OnDemandFeature.argument(ref)
        if arg not in columns:
            raise InvalidInputError(
                f"on-demand feature '{feature.name}' needs {ref!r}"
                + ("" if ":" in ref else " as a request field")
                + "; pass it with the entity rows"
            )
        value = columns[arg]
        arguments[arg] = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    expected = rows if rows is not None else (len(next(iter(arguments.values()))) if arguments else 0)
    try:
        result = feature.function(**arguments)
    except Exception as exc:
        raise UserCodeError(
            f"on-demand feature '{feature.name}' raised {type(exc).__name__}: {exc}; fix its function"
        ) from exc
    try:
        array = _as_array(result, arrow_type(feature.dtype))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise UserCodeError(
            f"on-demand feature '{feature.name}' returned a {type(result).__name__} that is not "
            f"{feature.dtype} values ({exc}); return an array of its dtype"
        ) from exc
    if len(array) != expected:
        raise UserCodeError(
            f"on-demand feature '{feature.name}' returned {len(array)} values for {expected} rows; "
            "return one value per row"
        )
    return array


def _as_array(result: Any, dtype: pa.DataType) -> pa.Array:
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    if isinstance(result, pa.Array):
        return result if result.type == dtype else result.cast(dtype)
    if type(result).__module__.startswith(("pandas", "polars")):
        result = result.to_numpy()
    return pa.array(result, type=dtype)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExampleMismatch:
    """One example whose output is not what the definition promises."""

    feature: str
    inputs: dict[str, Any]
    expected: Any
    got: Any
    error: str | None = None

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.inputs.items())
        if self.error is not None:
            return f"{self.feature}({shown}) failed: {self.error}"
        return f"{self.feature}({shown}) returned {self.got!r}, expected {self.expected!r}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "inputs": self.inputs,
            "expected": self.expected,
            "got": self.got,
            "error": self.error,
        }


def check_examples(
    feature: OnDemandFeature, input_types: Mapping[str, pa.DataType] | None = None
) -> list[ExampleMismatch]:
    """Run each example through the function (as a one-row batch, the way serving calls it)
    and list those whose output differs (floats compared to 1e-9, relative)."""
    found = []
    for inputs, expected in feature.examples:
        columns = {}
        try:
            for name, value in inputs.items():
                dtype = (input_types or {}).get(name)
                columns[name] = pa.array([value], type=dtype) if dtype is not None else pa.array([value])
            got = compute(feature, columns, rows=1)[0].as_py()
        except (InvalidInputError, UserCodeError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            found.append(
                ExampleMismatch(feature=feature.name, inputs=dict(inputs), expected=expected, got=None, error=str(exc))
            )
            continue
        if not _same(got, expected):
            found.append(ExampleMismatch(feature=feature.name, inputs=dict(inputs), expected=expected, got=got))
    return found


def _same(got: Any, expected: Any) -> bool:
    if isinstance(got, float) and isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if math.isnan(got) and math.isnan(float(expected)):
            return True
        return math.isclose(got, float(expected), rel_tol=1e-9, abs_tol=1e-12)
    return bool(got == expected)
