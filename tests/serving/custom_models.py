"""Custom models the serving tests register. A server unpickles them by importing this module,
so it imports nothing heavy (a test module would bring pytest, the fixtures and
scikit-learn's ensembles into every worker: seconds per start)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lockgate.serving import CustomModel

__all__ = ["LOAD_SECONDS", "SlowLoading", "SlowModel"]

LOAD_SECONDS = 1.5


class SlowModel(CustomModel):
    """Doubles ``x`` after sleeping the batch's largest ``delay`` (capped at 5 s): a model
    whose calls take as long as a test needs."""

    task = "regression"

    def predict(self, data: Any) -> Any:
        delay = float(np.max(np.asarray(data["delay"], dtype=float), initial=0.0))
        time.sleep(min(max(delay, 0.0), 5.0))
        return np.asarray(data["x"], dtype=float) * 2


class SlowLoading(CustomModel):
    """Takes LOAD_SECONDS to load (a big model), then doubles ``x``."""

    task = "regression"

    def load(self, artifacts: Any) -> None:
        time.sleep(LOAD_SECONDS)

    def predict(self, data: Any) -> Any:
        return np.asarray(data["x"], dtype=float) * 2
