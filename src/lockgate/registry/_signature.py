"""Model signatures: the input columns and output tensors, inferred from an input example."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from lockgate.errors import InvalidInputError, UserCodeError
from lockgate.tables import to_arrow

__all__ = ["example_table", "infer_signature"]


def example_table(example: Any) -> pa.Table:
    """The input example as an Arrow table (an array gets columns ``f0``, ``f1``, ...)."""
    if isinstance(example, np.ndarray):
        if example.ndim != 2:
            raise InvalidInputError("input_example as an array must be 2-dimensional (rows x features)")
        return pa.table({f"f{i}": example[:, i] for i in range(example.shape[1])})
    return to_arrow(example)


def _tensor(name: str, values: Any) -> dict[str, Any]:
    arr = np.asarray(values)
    if arr.dtype == object:
        arrow_type = str(pa.array(arr.ravel().tolist()).type)
    else:
        arrow_type = str(pa.from_numpy_dtype(arr.dtype))
    return {"name": name, "type": arrow_type, "shape": [-1, *arr.shape[1:]]}


def infer_signature(model: Any, input_example: Any | None) -> dict[str, Any]:
    """Inputs from the example's columns; outputs from running the model on it.

    Classifiers get ``label`` and ``probabilities`` (with the class list), regressors
    ``prediction``. A model with a ``lockgate_outputs(example)`` method (a serving
    ``CustomModel``) describes its own outputs and its ``lockgate_kind``.
    """
    if input_example is None:
        return {"inputs": [], "outputs": [], "kind": _kind(model)}
    table = example_table(input_example)
    inputs = [{"name": f.name, "type": str(f.type), "shape": [-1], "nullable": f.nullable} for f in table.schema]
    outputs: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    describe = getattr(model, "lockgate_outputs", None)
    try:
        if callable(describe):
            outputs.extend(_tensor(name, values) for name, values in describe(input_example).items())
            classes = getattr(model, "classes", None)
            if classes is not None:
                extra["classes"] = list(classes)
            return {"inputs": inputs, "outputs": outputs, "kind": _kind(model), **extra}
        if hasattr(model, "predict"):
            outputs.append(
                _tensor("label" if hasattr(model, "predict_proba") else "prediction", model.predict(input_example))
            )
        if hasattr(model, "predict_proba"):
            outputs.append(_tensor("probabilities", model.predict_proba(input_example)))
            classes = getattr(model, "classes_", None)
            if classes is not None:
                extra["classes"] = np.asarray(classes).tolist()
    except Exception as exc:
        raise UserCodeError(
            f"the model failed on its input_example ({type(exc).__name__}: {exc}); pass an example it accepts"
        ) from exc
    return {"inputs": inputs, "outputs": outputs, "kind": _kind(model), **extra}


def _kind(model: Any) -> str:
    declared = getattr(model, "lockgate_kind", None)
    if isinstance(declared, str):
        return declared
    if hasattr(model, "predict_proba"):
        return "classifier"
    if hasattr(model, "predict"):
        return "regressor"
    return "custom"
