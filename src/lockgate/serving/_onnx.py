"""ONNX Runtime: the fast path for scikit-learn models skl2onnx can convert.

A conversion is accepted only when, on the registration example, the converted model gives
the same labels and probabilities within ``atol`` (default 1e-5) of scikit-learn's, or for a
regressor predictions within ``atol + rtol * |y|`` (1e-5 and 1e-4: float32 arithmetic). The
example is the evidence, not a proof: ONNX computes in float32, so a row whose feature sits
within float32 rounding of a tree threshold can still take the other branch (the W6 anchor
saw a max difference of 2.9e-7 over 10,000 rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from lockgate.errors import InvalidInputError
from lockgate.serving._batch import Batch, batch_columns, numeric_matrix
from lockgate.serving._runtimes import Prediction, RuntimeKind, SignedRuntime, SklearnRuntime
from lockgate.serving._signature import Signature

__all__ = ["OnnxConversion", "OnnxRuntime", "converter_versions"]

_log = logging.getLogger(__name__)
_INPUT = "input"


def converter_versions() -> dict[str, str]:
    """The versions a conversion depends on (a cached result is reused only under the same)."""
    import onnxruntime
    import skl2onnx
    import sklearn

    return {"skl2onnx": skl2onnx.__version__, "onnxruntime": onnxruntime.__version__, "sklearn": sklearn.__version__}


@dataclass(frozen=True, slots=True, kw_only=True)
class OnnxConversion:
    """The outcome of :meth:`OnnxRuntime.convert`: the runtime when accepted, else why not."""

    runtime: OnnxRuntime | None
    reason: str | None
    max_abs_diff: float | None = None
    onnx_bytes: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.runtime is not None


class OnnxRuntime(SignedRuntime):
    """A model in ONNX form, run by onnxruntime with one thread and sequential execution.

    One intra-op thread, because a serving request is a few rows and a thread pool's
    hand-off costs more than the trees (``bench/w6_inprocess_runtimes.py`` measures both).
    Inputs: one float32 tensor ``input`` ``[N, F]`` for an all-numeric signature, else one
    ``[N, 1]`` tensor per column (strings as strings).
    """

    kind: RuntimeKind = "onnx"

    def __init__(self, model_bytes: bytes, signature: Signature, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self._signature = signature
        inputs = [i.name for i in self._session.get_inputs()]
        self._matrix = inputs == [_INPUT] and signature.all_numeric
        if not self._matrix and sorted(inputs) != sorted(signature.names):
            raise InvalidInputError(
                f"the ONNX model takes inputs {', '.join(inputs)}, not the signature's {', '.join(signature.names)}"
            )
        self._outputs = [o.name for o in self._session.get_outputs()]

    def predict(self, batch: Batch) -> Prediction:
        results = self._session.run(self._outputs, self._feeds(batch))
        if self._signature.task == "regression":
            return Prediction(kind="onnx", prediction=np.asarray(results[0], dtype=np.float64).reshape(-1))
        return Prediction(kind="onnx", label=results[0], probabilities=results[1].astype(np.float64))

    def check(self, batch: Batch) -> None:
        """Refuse values beyond float32's range, as :meth:`predict` would."""
        self._feeds(batch)

    def _feeds(self, batch: Batch) -> dict[str, Any]:
        if self._matrix:
            matrix = numeric_matrix(batch, self._signature)
            with np.errstate(over="ignore"):
                narrowed = matrix.astype(np.float32)
            _check_narrowed(matrix, narrowed)
            return {_INPUT: narrowed}
        cols = batch_columns(batch, self._signature)
        feeds: dict[str, Any] = {}
        for col in self._signature.columns:
            values = cols[col.name]
            if col.is_string:
                # onnxruntime wants str objects; a missing category becomes "", which an
                # OrdinalEncoder with unknown_value maps like any unseen category.
                feeds[col.name] = np.array(["" if v is None else str(v) for v in values], dtype=object)[:, None]
            else:
                wide = values.astype(np.float64, copy=False).reshape(-1, 1)
                _check_narrowed(wide, wide)
                with np.errstate(over="ignore"):
                    feeds[col.name] = wide.astype(np.float32)
        return feeds

    @classmethod
    def convert(
        cls,
        model: Any,
        signature: Signature,
        example: Batch,
        *,
        atol: float = 1e-5,
        rtol: float = 1e-4,
    ) -> OnnxConversion:
        """Convert a scikit-learn model with skl2onnx and check it against the model itself on
        ``example``; never raises for a model that cannot be converted or does not match."""
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType

        if signature.all_numeric:
            initial: list[tuple[str, Any]] = [(_INPUT, FloatTensorType([None, len(signature.columns)]))]
        else:
            initial = [
                (c.name, StringTensorType([None, 1]) if c.is_string else FloatTensorType([None, 1]))
                for c in signature.columns
            ]
        options = {id(model): {"zipmap": False}} if signature.task == "classification" else None
        try:
            onx = convert_sklearn(model, initial_types=initial, options=options)
            data = onx.SerializeToString()
            runtime = cls(data, signature)
        except Exception as exc:  # noqa: BLE001 - any converter failure means "serve with scikit-learn"
            return _rejected(f"skl2onnx could not convert it: {_short(exc)}")
        try:
            reference = SklearnRuntime(model, signature).predict(example)
            converted = runtime.predict(example)
        except Exception as exc:  # noqa: BLE001 - the converted graph failing at run time is a rejection too
            return _rejected(f"the converted model failed on the registration example: {_short(exc)}")
        if signature.task == "regression":
            assert reference.prediction is not None
            assert converted.prediction is not None
            diff = float(np.max(np.abs(reference.prediction - converted.prediction), initial=0.0))
            ok = bool(np.allclose(converted.prediction, reference.prediction, atol=atol, rtol=rtol))
            if not ok:
                return _rejected(f"predictions differ from scikit-learn's by up to {diff:.3g}", diff)
        else:
            assert reference.probabilities is not None
            assert converted.probabilities is not None
            if reference.probabilities.shape != converted.probabilities.shape:
                return _rejected(
                    f"probabilities have shape {converted.probabilities.shape}, scikit-learn's {reference.probabilities.shape}"
                )
            diff = float(np.max(np.abs(reference.probabilities - converted.probabilities), initial=0.0))
            if diff > atol:
                return _rejected(f"probabilities differ from scikit-learn's by up to {diff:.3g} (> {atol:g})", diff)
            if not np.array_equal(np.asarray(reference.label), np.asarray(converted.label)):
                return _rejected("labels differ from scikit-learn's on the registration example", diff)
        return OnnxConversion(runtime=runtime, reason=None, max_abs_diff=diff, onnx_bytes=data)


def _rejected(reason: str, diff: float | None = None) -> OnnxConversion:
    _log.info("ONNX conversion rejected: %s", reason)
    return OnnxConversion(runtime=None, reason=reason, max_abs_diff=diff)


def _short(exc: BaseException) -> str:
    """The exception in one line: skl2onnx puts whole attribute dumps in its messages."""

    def line(e: BaseException) -> str:
        text = str(e).splitlines()[0] if str(e) else ""
        return f"{type(e).__name__}: {text.split(' with name=')[0][:200]}"

    root = exc.__cause__ or exc.__context__
    return line(exc) + (f" (caused by {line(root)})" if root is not None and root is not exc else "")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_narrowed(wide: np.ndarray[Any, Any], _narrow: np.ndarray[Any, Any]) -> None:
    """The ONNX model computes in float32: a finite value beyond its range would be scored as
    infinity, so it is refused instead."""
    # Past the largest float32 (a value may still round down to it): refused, as the document says.
    with np.errstate(invalid="ignore"):
        overflow = (np.abs(wide) > _FLOAT32_MAX) & np.isfinite(wide)
    if overflow.any():
        row, col = (int(i) for i in np.argwhere(overflow)[0])
        raise InvalidInputError(
            f"row {row}: value {float(wide[row, col]):g} is beyond the model's float32 range (about 3.4e38); send a smaller number"
        )
