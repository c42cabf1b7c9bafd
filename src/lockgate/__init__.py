"""lockgate: from raw data to a monitored production deployment, through gates, with lineage.

>>> import lockgate as lg, tempfile
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> with ws.start_run("train", experiment="fraud", params={"max_depth": 6}) as run:
...     run.log_metric("auc", 0.93)
>>> [r.metrics["auc"] for r in ws.runs.search("metrics.auc > 0.9", experiment="fraud")]
[0.93]
"""

import typing as _typing

from lockgate._version import __version__
from lockgate.config import Settings
from lockgate.deploy import AnalysisPolicy, Deployment
from lockgate.entities import DatasetVersion, Metric, ModelVersion, RunRecord, RunStatus
from lockgate.errors import (
    AuditChainBroken,
    CheckFailed,
    ConfigError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    InvalidReferenceError,
    LockgateError,
    NotFoundError,
    Overloaded,
    ParamConflictError,
    PermissionDenied,
    SchemaOutdatedError,
    UnavailableError,
    UserCodeError,
)
from lockgate.pipelines import DataRef, Pipeline, PipelineResult, StepContext, pipeline, run_pipeline, step
from lockgate.tracking import ActiveRun
from lockgate.workspace import Workspace

__all__ = [
    "ActiveRun",
    "AnalysisPolicy",
    "AuditChainBroken",
    "BatchPredictionResult",
    "CheckFailed",
    "ConfigError",
    "ConflictError",
    "DataRef",
    "DatasetVersion",
    "Deployment",
    "IntegrityError",
    "InvalidInputError",
    "InvalidReferenceError",
    "LockgateError",
    "Metric",
    "ModelVersion",
    "NotFoundError",
    "Overloaded",
    "ParamConflictError",
    "PermissionDenied",
    "Pipeline",
    "PipelineResult",
    "RunRecord",
    "RunStatus",
    "SchemaOutdatedError",
    "Settings",
    "StepContext",
    "UnavailableError",
    "UserCodeError",
    "Workspace",
    "__version__",
    "batch_predict",
    "pipeline",
    "run_pipeline",
    "step",
]

if _typing.TYPE_CHECKING:
    from lockgate.serving import BatchPredictionResult, batch_predict

# Batch scoring brings pandas and the model runtimes: loaded on first use, so `import lockgate`
# (and every CLI command) stays fast.
_LAZY = {"BatchPredictionResult": "lockgate.serving", "batch_predict": "lockgate.serving"}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lockgate' has no attribute {name!r}")
