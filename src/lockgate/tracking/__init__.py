"""Runs, params, metrics, artifacts, datasets, and the code and environment they ran with."""

from lockgate.tracking._datasets import DatasetService
from lockgate.tracking._environment import CodeState, EnvironmentState, capture_code, capture_environment
from lockgate.tracking._runs import ActiveRun, ModelLogger, RunList, RunService
from lockgate.tracking._search import parse_filter, parse_order_by

__all__ = [
    "ActiveRun",
    "CodeState",
    "DatasetService",
    "EnvironmentState",
    "ModelLogger",
    "RunList",
    "RunService",
    "capture_code",
    "capture_environment",
    "parse_filter",
    "parse_order_by",
]
