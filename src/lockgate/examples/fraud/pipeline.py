"""The fraud training pipeline: raw daily batches and late labels in, a fitted model out.

Run it with ``lockgate pipeline run examples/fraud/pipeline.py --param transactions=... ``
(``lockgate demo`` writes the data and runs it). Every step is cached by its code, inputs,
parameters and environment, so a second run with nothing changed reuses every output.

The card features come through the workspace's feature store (feature service ``fraud_v1``,
defined in features.py), the same definitions serving looks up online; a model version
registered from the ``train_model`` step's run is bound to that service automatically.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
from sklearn.pipeline import Pipeline as SklearnPipeline

from lockgate.examples.fraud import features as fraud_features
from lockgate.examples.fraud import train as training
from lockgate.pipelines import DataRef, StepContext, contract_gate, pipeline, step

__all__ = ["build_features", "evaluate", "fraud", "load", "train_model", "training_set"]


@step
def load(source: DataRef) -> pa.Table:
    """A folder of daily Parquet batches (or one file) as one table."""
    table: pa.Table = source.read()
    print(f"read {table.num_rows:,} rows from {source.uri}")
    return table


@step
def build_features(transactions: pa.Table, source: DataRef, ctx: StepContext = StepContext.INJECTED) -> pa.Table:
    """Each transaction with its own fields and the card features of feature service
    ``fraud_v1`` as they stood just before it: a point-in-time join in the workspace's
    feature store, over the views lockgate computes from the batches at ``source``."""
    definitions = fraud_features.definitions(source.uri)
    return training.feature_frame(ctx.features, transactions, definitions, run_id=ctx.run_id)


@step
def training_set(features: pa.Table, labels: pa.Table, as_of: str) -> pa.Table:
    """Features with the labels known at ``as_of``: what a team could honestly train on then."""
    frame = training.labelled_frame(features, labels, as_of=datetime.fromisoformat(as_of))
    print(f"{frame.num_rows:,} fully labelled rows as of {as_of}")
    return frame


@step(max_preemptions=3)
def train_model(
    data: pa.Table,
    max_iter: int = 60,
    learning_rate: float = 0.1,
    ctx: StepContext = StepContext.INJECTED,
) -> SklearnPipeline:
    """Gradient boosting on the time-ordered first 80% of the rows, checkpointed every epoch:
    a preempted or killed worker's retry continues from the last epoch, not from scratch."""
    return training.fit_in_epochs(
        data,
        {"max_iter": max_iter, "learning_rate": learning_rate},
        restore=ctx.restore,
        checkpoint=ctx.checkpoint,
    )


@step
def evaluate(model: SklearnPipeline, data: pa.Table) -> dict[str, float]:
    """AUC, average precision, precision and recall on the last 20%."""
    return training.evaluate(model, data)


CONTRACT = Path(__file__).resolve().parent / "contracts" / "transactions.yaml"


@pipeline
def fraud(
    transactions: DataRef = DataRef("data/transactions"),
    labels: DataRef = DataRef("data/labels.parquet"),
    contract: DataRef = DataRef(str(CONTRACT)),
    validated_at: str = "2026-11-28T00:00:00+00:00",
    as_of: str = "2026-11-14T00:00:00+00:00",
    max_iter: int = 60,
    learning_rate: float = 0.1,
) -> dict[str, object]:
    # The gate stands between the raw batches and everything downstream: a batch that breaks
    # an error-level rule of the contract stops the run here, before features and training.
    checked = contract_gate(load(transactions), contract, now=validated_at)
    frame = training_set(build_features(checked, transactions), load(labels), as_of=as_of)
    model = train_model(frame, max_iter=max_iter, learning_rate=learning_rate)
    return {"model": model, "metrics": evaluate(model, frame)}
