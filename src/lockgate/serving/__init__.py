"""Online serving: model runtimes (scikit-learn, ONNX Runtime, custom Python models) and the
conversions between requests (JSON records, Open Inference Protocol v2) and batches."""

from lockgate.serving._batch import (
    Batch,
    NumericBatch,
    concat_batches,
    from_records,
    from_v2_inputs,
    to_v2_outputs,
    v2_metadata,
)
from lockgate.serving._loading import OnnxCheck, load_runtime, onnx_check
from lockgate.serving._onnx import OnnxConversion, OnnxRuntime
from lockgate.serving._runtimes import CustomRuntime, ModelRuntime, Prediction, RuntimeKind, SklearnRuntime
from lockgate.serving._signature import Column, Signature, Task
from lockgate.serving.base import CustomModel

__all__ = [
    "Batch",
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
    "concat_batches",
    "from_records",
    "from_v2_inputs",
    "load_runtime",
    "onnx_check",
    "to_v2_outputs",
    "v2_metadata",
]
