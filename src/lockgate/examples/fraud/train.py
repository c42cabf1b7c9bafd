"""Train the fraud model on what was known at training time, and record everything.

The card features come from the feature store: each transaction is an entity row at the
moment just before it, joined point in time with the feature service ``fraud_v1``
(:func:`feature_frame`), exactly what serving looks up online when that transaction arrives.
The labels are the ones that had arrived by ``as_of``: the last 30 days are only partly
labelled (chargebacks come late), so the model is fitted on the fully labelled window
before that, and validated on its last fifth, split by time, never at random.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from lockgate.entities import DatasetVersion, ModelVersion
from lockgate.errors import ConflictError, InvalidInputError
from lockgate.examples.fraud.data import FraudData, labels_known_at, write_daily_parquet
from lockgate.examples.fraud.features import CATEGORICAL, FEATURES, NUMERIC, request_fields
from lockgate.examples.fraud.features import definitions as fraud_definitions
from lockgate.features import FeatureService, FeatureStore
from lockgate.workspace import Workspace

__all__ = [
    "DEFAULT_PARAMS",
    "TrainResult",
    "build_model",
    "entity_rows",
    "evaluate",
    "feature_frame",
    "fit",
    "fit_in_epochs",
    "input_example",
    "labelled_frame",
    "split",
    "train",
    "training_frame",
]

DEFAULT_PARAMS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "l2_regularization": 1.0,
    "random_state": 0,
}
_LABEL_WINDOW = timedelta(days=30)
_JUST_BEFORE = pa.scalar(timedelta(microseconds=1))


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    run_id: str
    model_version: ModelVersion
    dataset: DatasetVersion
    metrics: dict[str, float]
    train_rows: int
    valid_rows: int
    params: dict[str, Any] = field(default_factory=dict)


def build_model(params: dict[str, Any]) -> Pipeline:
    """Ordinal-encode the categories (unknown ones become missing), then gradient boosting."""
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan),
                CATEGORICAL,
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    boost = HistGradientBoostingClassifier(categorical_features=list(range(len(CATEGORICAL))), **params)
    return Pipeline([("encode", encode), ("boost", boost)])


def entity_rows(transactions: pa.Table) -> pa.Table:
    """The transactions as serving meets them: each one's own fields (:func:`request_fields`)
    and its card, at ``event_timestamp``, one microsecond before the transaction.

    The card's features are looked up as they stood just before the transaction, without it:
    when serving scores a transaction, the online store does not hold it yet.
    """
    fields = request_fields(transactions)
    return fields.append_column("event_timestamp", pc.subtract(fields["ts"], _JUST_BEFORE))


def feature_frame(
    store: FeatureStore,
    transactions: pa.Table,
    definitions: Sequence[Any],
    *,
    run_id: str | None = None,
) -> pa.Table:
    """Every transaction with the model's inputs: its own fields, and the card features of the
    feature service in ``definitions`` as of just before it (a point-in-time join in ``store``).

    The definitions must be the registered ones, which serving reads: those not registered yet
    (a fresh workspace, a reproduction) are applied; one that differs from its registered
    version is refused, to be applied on purpose first. The training set is recorded in
    lineage, linked to ``run_id`` when given.
    """
    plan = store.apply(definitions, dry_run=True)
    if plan.changed:
        first = plan.changed[0]
        what = "; ".join(str(f) for f in first.fields[:3])
        raise ConflictError(
            f"{first.kind.replace('_', ' ')} '{first.name}' differs from its registered version, which serving "
            f"reads ({what}); apply the definitions first (lockgate features apply, or ws.features.apply), "
            "then train"
        )
    store.apply(definitions)  # registers what is new; this process then runs their on-demand functions
    (service,) = [d for d in definitions if isinstance(d, FeatureService)]
    table = store.training_set(entity_rows(transactions), service, run_id=run_id)
    return table.sort_by([("ts", "ascending"), ("transaction_id", "ascending")])


def labelled_frame(features: pa.Table, labels: pa.Table, *, as_of: datetime) -> pa.Table:
    """Features joined with the labels known at ``as_of`` (``label_ts <= as_of``), keeping
    only rows old enough to be fully labelled."""
    cutoff_labels = pa.scalar(as_of, type=labels.schema.field("label_ts").type)
    known = labels.filter(pc.less_equal(labels["label_ts"], cutoff_labels)).select(["transaction_id", "is_fraud"])
    joined = features.join(known, "transaction_id", join_type="inner")
    cutoff = pa.scalar(as_of - _LABEL_WINDOW, type=joined.schema.field("ts").type)
    complete = joined.filter(pc.and_(pc.less(joined["ts"], cutoff), pc.is_valid(joined["is_fraud"])))
    return complete.sort_by([("ts", "ascending"), ("transaction_id", "ascending")])


def training_frame(data: FraudData, *, as_of: datetime) -> pa.Table:
    """Features joined with the labels known at ``as_of``, fully labelled rows only, built
    through the feature store of a scratch workspace in a temporary folder (for tests and
    notebooks; :func:`train` uses the caller's workspace)."""
    with tempfile.TemporaryDirectory(prefix="lockgate-fraud-") as tmp:
        transactions = data.transactions.drop_columns(["is_fraud"])
        folder = Path(tmp) / "transactions"
        write_daily_parquet(transactions, folder)
        with Workspace.open(Path(tmp) / "ws") as ws:
            features = feature_frame(ws.features, transactions, fraud_definitions(folder))
    return labelled_frame(features, data.labels, as_of=as_of)


def input_example(frame: pa.Table, rows: int = 5) -> Any:
    """The registration example: the model's inputs for the first ``rows`` rows that have every
    feature (a card with history), numbers as float64, as the model is fitted on them."""
    complete = frame.select(FEATURES).drop_null().slice(0, rows)
    numbers = [pa.field(n, pa.float64()) if n in NUMERIC else complete.schema.field(n) for n in FEATURES]
    return complete.cast(pa.schema(numbers)).to_pandas()


def split(frame: pa.Table) -> tuple[pa.Table, pa.Table]:
    """First 80% of the time-ordered rows to train, the rest to validate: never at random."""
    cut = int(frame.num_rows * 0.8)
    train_t, valid_t = frame.slice(0, cut), frame.slice(cut)
    if len(set(train_t["is_fraud"].to_pylist())) < 2 or len(set(valid_t["is_fraud"].to_pylist())) < 2:
        raise InvalidInputError(
            f"only {frame.num_rows:,} fully labelled rows, too few to hold both classes in training and "
            "validation; generate more days or cards"
        )
    return train_t, valid_t


def fit(frame: pa.Table, params: dict[str, Any]) -> Pipeline:
    """The model, fitted on the training part of ``frame``."""
    train_t, _ = split(frame)
    x = train_t.select(FEATURES).to_pandas()
    y = train_t["is_fraud"].to_numpy(zero_copy_only=False).astype(int)
    return build_model({**DEFAULT_PARAMS, **params}).fit(x, y)


def fit_in_epochs(
    frame: pa.Table,
    params: dict[str, Any],
    *,
    trees_per_epoch: int = 10,
    restore: Callable[[], dict[str, Any] | None] = lambda: None,
    checkpoint: Callable[[dict[str, Any]], dict[str, Any]] = lambda state: state,
) -> Pipeline:
    """The same model as :func:`fit`'s recipe, grown ``trees_per_epoch`` trees at a time by
    warm-started boosting, handing each epoch's state to ``checkpoint``.

    A run that ``restore``s a state continues from it and ends with the very model, byte for
    byte, that an uninterrupted run builds: every epoch refits the encoder on the same rows,
    boosting continues from the stored trees with the stored random seed, and both kinds of
    run continue from the state as ``checkpoint`` returns it (as restored), never from the
    live objects.
    """
    train_t, _ = split(frame)
    x = train_t.select(FEATURES).to_pandas()
    y = train_t["is_fraud"].to_numpy(zero_copy_only=False).astype(int)
    settings = {**DEFAULT_PARAMS, **params}
    total = int(settings.pop("max_iter"))
    state = restore()
    if state is None:
        # Early stopping would hold out a random slice per fit; epochs grow a fixed number of trees.
        model, done = build_model({**settings, "max_iter": 1, "warm_start": True, "early_stopping": False}), 0
    else:
        model, done = state["model"], int(state["trees"])
        print(f"resuming at epoch {done // trees_per_epoch} ({done} of {total} trees already grown)")
    while done < total:
        done = min(done + trees_per_epoch, total)
        model.set_params(boost__max_iter=done)
        model.fit(x, y)
        print(f"epoch {-(-done // trees_per_epoch)}: {done} of {total} trees")
        # Go on from what was checkpointed, exactly as a resumed run would.
        model = checkpoint({"model": model, "trees": done})["model"]
    return model


def evaluate(model: Pipeline, frame: pa.Table) -> dict[str, float]:
    """Ranking and threshold metrics on the validation part of ``frame``."""
    _, valid_t = split(frame)
    x = valid_t.select(FEATURES).to_pandas()
    y = valid_t["is_fraud"].to_numpy(zero_copy_only=False).astype(int)
    scores = model.predict_proba(x)[:, 1]
    predicted = (scores >= 0.5).astype(int)
    return {
        "auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "fraud_rate": float(y.mean()),
    }


def train(
    ws: Workspace,
    data: FraudData,
    *,
    source: str | Path,
    as_of: datetime,
    params: dict[str, Any] | None = None,
    model_name: str = "fraud",
    experiment: str = "fraud",
    run_name: str = "train-fraud",
) -> TrainResult:
    """Fit, evaluate, and log data sets, params, metrics and model in one run.

    ``source`` is the folder holding ``data``'s daily batches (``write_daily_parquet``), which
    the feature views read; the model version is bound to ``fraud_v1``, the feature service its
    training set came through.
    """
    params = {**DEFAULT_PARAMS, **(params or {})}
    transactions = data.transactions.drop_columns(["is_fraud"])

    with ws.start_run(run_name, experiment=experiment, params=params) as run:
        features = feature_frame(ws.features, transactions, fraud_definitions(source), run_id=run.id)
        frame = labelled_frame(features, data.labels, as_of=as_of)
        train_t, valid_t = split(frame)
        run.log_params({"as_of": as_of.isoformat(), "features": ",".join(FEATURES), "split": "time 80/20"})
        run.log_dataset(transactions, name="transactions", role="source")
        run.log_dataset(
            labels_known_at(data, as_of).select(["transaction_id", "is_fraud", "label_ts"]),
            name="labels",
            role="labels",
        )
        dataset = run.log_dataset(frame, name="fraud_training", role="training")
        model = fit(frame, params)
        metrics = evaluate(model, frame)
        run.log_metrics(metrics)
        for i, loss in enumerate(model.named_steps["boost"].train_score_):
            run.log_metric("train_log_loss", float(-loss), step=i)
        run.log_dict(
            {"numeric": NUMERIC, "categorical": CATEGORICAL, "label": "is_fraud", "rows": frame.num_rows},
            "feature_spec.json",
        )
        mv = run.log_model(
            model,
            name=model_name,
            input_example=input_example(valid_t),
            features=FEATURES,
            description="HistGradientBoosting on card velocity, amount and time-of-day features",
        )
    return TrainResult(
        run_id=run.id,
        model_version=mv,
        dataset=dataset,
        metrics=metrics,
        train_rows=train_t.num_rows,
        valid_rows=valid_t.num_rows,
        params=params,
    )
