"""Serving: model runtimes (scikit-learn, ONNX Runtime, custom Python models), the conversions
between requests (JSON records, Open Inference Protocol v2) and batches, batch scoring, and
what a receiver of async-job callbacks needs to check their signatures."""

from lockgate.serving._batch import (
    Batch,
    NumericBatch,
    concat_batches,
    from_records,
    from_v2_inputs,
    to_v2_outputs,
    v2_metadata,
)
from lockgate.serving._batch_scoring import BatchPredictionResult, batch_predict
from lockgate.serving._callbacks import signed_headers, verify_signature
from lockgate.serving._loading import OnnxCheck, load_runtime, onnx_check
from lockgate.serving._onnx import OnnxConversion, OnnxRuntime
from lockgate.serving._runtimes import CustomRuntime, ModelRuntime, Prediction, RuntimeKind, SklearnRuntime
from lockgate.serving._signature import Column, Signature, Task
from lockgate.serving.base import CustomModel

__all__ = [
    "Batch",
    "BatchPredictionResult",
    "Column",
    "CustomModel",
    "CustomRuntime",
    "ModelRuntime",
    "NumericBatch",
    "OnnxCheck",
    "OnnxConversion",
    "OnnxRuntime",
    "Prediction",
    "RuntimeKind",
    "Signature",
    "SklearnRuntime",
    "Task",
    "batch_predict",
    "concat_batches",
    "from_records",
    "from_v2_inputs",
    "load_runtime",
    "onnx_check",
    "signed_headers",
    "to_v2_outputs",
    "v2_metadata",
    "verify_signature",
]
