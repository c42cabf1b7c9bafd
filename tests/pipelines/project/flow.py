"""The pipeline the runner tests drive: data in, features, a model, metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from helpers import scale  # type: ignore[import-not-found]
from sklearn.linear_model import LogisticRegression

from lockgate.pipelines import DataRef, pipeline, step


@step
def load(source: DataRef) -> pa.Table:
    print(f"loading {source.uri}")
    return source.read()


@step
def features(data: pa.Table) -> pa.Table:
    return data.append_column("x2", pc.multiply(data["x"], scale(1.0)))


@step
def train(data: pa.Table, c: float = 1.0) -> LogisticRegression:
    marker = os.environ.get("LOCKGATE_TEST_FAIL_ONCE")
    if marker and not Path(marker).exists():
        Path(marker).write_text("failed once")
        raise RuntimeError("simulated failure in train")
    frame = data.to_pandas()
    return LogisticRegression(C=c).fit(frame[["x", "x2"]], frame["y"])


@step
def evaluate(model: LogisticRegression, data: pa.Table) -> dict[str, float]:
    frame = data.to_pandas()
    return {"accuracy": float(model.score(frame[["x", "x2"]], frame["y"]))}


@pipeline
def flow(source: DataRef = DataRef("data.csv"), c: float = 1.0):
    data = features(load(source))
    model = train(data, c=c)
    return evaluate(model, data)
