"""Candidate models the rollout tests deploy next to a stable classifier. A server unpickles
them by importing this module, so it imports nothing heavy."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lockgate.serving import CustomModel

__all__ = ["Flaky", "Shifted", "Sleepy"]


class _Wrapped(CustomModel):
    """A classifier around a fitted scikit-learn model (``inner``), with something changed."""

    task = "classification"
    classes = (0, 1)

    def __init__(self, inner: Any, features: list[str]) -> None:
        self.inner = inner
        self.features = features

    def proba(self, data: Any) -> np.ndarray[Any, Any]:
        matrix = np.column_stack([np.asarray(data[f], dtype=float) for f in self.features])
        return np.asarray(self.inner.predict_proba(matrix))


class Flaky(_Wrapped):
    """The inner model's answers, but every tenth call fails (a crashing dependency)."""

    calls = 0

    def predict(self, data: Any) -> Any:
        self.calls += 1
        if self.calls % 10 == 0:
            raise RuntimeError("the fraud rules service timed out")
        return self.proba(data)


class Shifted(_Wrapped):
    """Healthy and fast, but every positive-class score is pushed half-way towards 1."""

    def predict(self, data: Any) -> Any:
        p = self.proba(data)[:, 1] * 0.5 + 0.5
        return np.column_stack([1 - p, p])


class Sleepy(_Wrapped):
    """The inner model's answers after 200 ms: a slow candidate to shadow."""

    def predict(self, data: Any) -> Any:
        time.sleep(0.2)
        return self.proba(data)
