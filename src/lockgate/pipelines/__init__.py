"""Pipelines: typed steps wired by a function, run with caching, resume and lineage.

>>> import lockgate as lg, tempfile
>>> from lockgate.pipelines import pipeline, run_pipeline, step
>>> @step
... def square(x: int) -> int:
...     return x * x
>>> @pipeline
... def squares(x: int = 3):
...     return square(square(x))
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> result = run_pipeline(ws, squares, executor="inline")
>>> result.output("square_2")
81
>>> run_pipeline(ws, squares, executor="inline").cache_hits
2
"""

from lockgate.pipelines._context import Preempted, StepContext, StepTimeout
from lockgate.pipelines._dataref import DataRef
from lockgate.pipelines._dsl import Node, Pipeline, PipelineGraph, Step, StepOutput, pipeline, step
from lockgate.pipelines._executors import EXECUTORS, InlineExecutor, LocalExecutor
from lockgate.pipelines._gates import ContractViolation, contract_gate
from lockgate.pipelines._loader import load_pipeline, parse_params
from lockgate.pipelines._reproduce import Difference, ReproductionReport, reproduce
from lockgate.pipelines._runner import PipelineFailed, PipelineResult, StepResult, run_pipeline
from lockgate.pipelines._scheduler import Evaluation, Lease, Scheduler
from lockgate.pipelines.triggers import Trigger, TriggerFire, TriggerService

__all__ = [
    "EXECUTORS",
    "ContractViolation",
    "DataRef",
    "Difference",
    "Evaluation",
    "InlineExecutor",
    "Lease",
    "LocalExecutor",
    "Node",
    "Pipeline",
    "PipelineFailed",
    "PipelineGraph",
    "PipelineResult",
    "Preempted",
    "ReproductionReport",
    "Scheduler",
    "Step",
    "StepContext",
    "StepOutput",
    "StepResult",
    "StepTimeout",
    "Trigger",
    "TriggerFire",
    "TriggerService",
    "contract_gate",
    "load_pipeline",
    "parse_params",
    "pipeline",
    "reproduce",
    "run_pipeline",
    "step",
]
