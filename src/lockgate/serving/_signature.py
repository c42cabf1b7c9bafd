"""A model's input columns and task, read from the registry's stored signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from lockgate.errors import InvalidInputError

__all__ = ["Column", "Signature", "Task"]

Task = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True)
class Column:
    """One input feature: its name and Arrow type."""

    name: str
    type: pa.DataType

    @property
    def is_string(self) -> bool:
        t = pa.types
        return bool(t.is_string(self.type) or t.is_large_string(self.type) or t.is_string_view(self.type))

    @property
    def is_numeric(self) -> bool:
        t = pa.types
        return bool(t.is_integer(self.type) or t.is_floating(self.type) or t.is_boolean(self.type))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype a batch carries this column as (strings as ``object``)."""
        if self.is_string:
            return np.dtype(object)
        dtype: np.dtype[Any] = np.dtype(self.type.to_pandas_dtype())
        return dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """Ordered input columns, the task, and the class labels of a classifier.

    >>> sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}], "kind": "regressor"})
    >>> sig.names, sig.task, sig.all_numeric
    (('a',), 'regression', True)
    """

    columns: tuple[Column, ...]
    task: Task
    classes: tuple[Any, ...] | None = None
    # Asked on every request: computed once here (14 µs a call otherwise, measured).
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _all_numeric: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(c.name for c in self.columns))
        object.__setattr__(self, "_all_numeric", all(c.is_numeric for c in self.columns))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def all_numeric(self) -> bool:
        return self._all_numeric

    @classmethod
    def from_registry(cls, signature: Mapping[str, Any]) -> Signature:
        """The signature a model version was registered with (``ModelVersion.signature``)."""
        inputs: Sequence[Mapping[str, Any]] = signature.get("inputs") or []
        if not inputs:
            raise InvalidInputError(
                "the model version has no input signature, so requests cannot be checked; "
                "register it again with an input_example"
            )
        columns = tuple(Column(str(i["name"]), _arrow_type(str(i["type"]), str(i["name"]))) for i in inputs)
        for col in columns:
            if not (col.is_numeric or col.is_string):
                raise InvalidInputError(
                    f"input '{col.name}' has type {col.type}, which serving does not take; "
                    "send numbers or strings (cast dates to numbers before training)"
                )
        kind = signature.get("kind")
        if kind is not None and kind not in ("classifier", "regressor"):
            raise InvalidInputError(
                f"the model's signature is of a {kind!r}, which serves no label or prediction; "
                "register a classifier or regressor, or a CustomModel"
            )
        task: Task = "classification" if kind == "classifier" else "regression"
        classes = signature.get("classes")
        return cls(columns=columns, task=task, classes=None if classes is None else tuple(classes))


def _arrow_type(name: str, column: str) -> pa.DataType:
    try:
        return pa.type_for_alias(name)
    except ValueError:
        raise InvalidInputError(f"input '{column}' has type {name!r}, which serving does not understand") from None
