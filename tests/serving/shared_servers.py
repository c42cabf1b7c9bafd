"""One workspace and one running server shared by the protocol, client, endpoint and OpenAPI
tests: starting ``lockgate serve`` costs seconds (imports, model loads, ONNX conversions), so
the test modules share a server per session through :func:`shared_server`.

The deployments (one per kind of request the tests send):

- ``clf-api``: a gradient-boosted classifier on six numeric features, following
  ``clf@champion`` (v1; v2 is registered too); ``reg-api``: a linear regressor, pinned.
- ``mixed-api``: a pipeline with a one-hot encoded string column (``channel``) and two numeric
  ones, so its v2 inputs are one tensor per feature, ``BYTES`` for the string;
  ``mixed-checked``: the same model behind the data contract ``requests``.
- ``strict-api``: a pipeline whose first step skl2onnx cannot convert, so it runs on
  scikit-learn, which refuses NaN and values beyond float32.
- ``fs-api``, ``fs-strict``, ``fs-default``: a classifier on the feature service ``svc`` (view
  ``card_stats``), with the view's ``last_known`` policy, ``fail_closed`` and ``default``.
  Cards ``c0`` … ``c199`` are fresh, ``c_stale`` is three days old (ttl one day), ``c_gone`` was
  never written.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import lockgate as lg
from lockgate.data import Contract
from lockgate.features import Entity, FeatureService, FeatureView, ParquetSource
from tests.serving.conftest import Server, start_server, training_frame

__all__ = ["CARD_FEATURES", "MIXED_COLUMNS", "mixed_frame", "shared_server"]

MIXED_COLUMNS = ["channel", "amount", "count"]
CARD_FEATURES = ["amount_avg", "txn_count"]
_SERVERS: dict[str, Server] = {}


def mixed_frame(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "channel": rng.choice(["web", "pos", "app"], rows),
            "amount": rng.normal(50, 20, rows),
            "count": rng.integers(0, 10, rows),
        }
    )
    return x, ((x.channel == "web") & (x.amount > 50)).astype(int)


def _mixed_model() -> Any:
    x, y = mixed_frame()
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["channel"]), (StandardScaler(), ["amount", "count"])
    )
    return make_pipeline(encode, LogisticRegression()).fit(x, y), x


def _feature_store(ws: lg.Workspace, root: Path, now: datetime) -> pd.DataFrame:
    """The view ``card_stats`` materialized online; returns the training set it gives."""
    rng = np.random.default_rng(3)
    cards = [f"c{i}" for i in range(200)]
    fresh = now - timedelta(hours=1)
    table = pa.table(
        {
            "card_id": [*cards, "c_stale"],
            "ts": [fresh] * len(cards) + [now - timedelta(days=3)],
            "amount_avg": np.append(rng.gamma(2.0, 30.0, len(cards)).round(2), 42.0),
            "txn_count": np.append(rng.integers(0, 40, len(cards)), 7),
        }
    )
    (root / "stats").mkdir(parents=True)
    pq.write_table(table, root / "stats" / "part-0.parquet")
    card = Entity("card", join_keys=["card_id"])
    view = FeatureView(
        name="card_stats",
        entities=[card],
        ttl="1d",
        source=ParquetSource(str(root / "stats") + "/", event_time="ts"),
        features={"amount_avg": "float64", "txn_count": "int64"},
        defaults={"amount_avg": 0.0, "txn_count": 0},
    )
    ws.features.apply([card, view, FeatureService("svc", ["card_stats:*"])])
    ws.features.materialize(end=now)
    spine = pa.table({"card_id": cards, "event_timestamp": [now] * len(cards)})
    train: pd.DataFrame = ws.features.training_set(spine, "svc").to_pandas()
    return train


def build_workspace(home: Path) -> dict[str, Any]:
    """Register the models and create the deployments; returns the fitted models by name."""
    now = datetime.now(UTC).replace(microsecond=0)
    x, y = training_frame()
    models: dict[str, Any] = {}
    with lg.Workspace.open(home) as ws:
        for seed in (0, 1):
            clf = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=seed).fit(x, y)
            ws.models.register(clf, name="clf", input_example=x.head(40))
            models.setdefault("clf", clf)
        ws.models.set_alias("clf", "champion", 1)
        models["reg"] = LinearRegression().fit(x, x.f0 * 2.0)
        ws.models.register(models["reg"], name="reg", input_example=x.head(40))
        models["mixed"], mx = _mixed_model()
        ws.models.register(models["mixed"], name="mixed", input_example=mx.head(40))
        strict = make_pipeline(FunctionTransformer(np.abs), GradientBoostingClassifier(n_estimators=5, random_state=0))
        models["strict"] = strict.fit(x, y)
        ws.models.register(models["strict"], name="strict", input_example=x.head(40))

        train = _feature_store(ws, home.parent / "features", now)
        features = train[CARD_FEATURES]
        label = ((features.amount_avg > 60) | (features.txn_count > 30)).astype(int)
        models["cards"] = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(features, label)
        ws.models.register(models["cards"], name="cards", input_example=features.head(40), feature_service="svc")

        ws.data.contracts.register(
            Contract.from_dict(
                {
                    "name": "requests",
                    "columns": {
                        "channel": {"type": "string", "allowed": ["web", "pos", "app"]},
                        "amount": {"type": "float64", "min": 0, "nullable": False},
                        "count": {"type": "int64"},
                    },
                }
            )
        )
        ws.deployments.create("clf-api", "models:/clf@champion", settings={"max_wait_ms": 2})
        ws.deployments.create("reg-api", "models:/reg/1")
        ws.deployments.create("mixed-api", "models:/mixed/1")
        ws.deployments.create("mixed-checked", "models:/mixed/1", settings={"contract": "requests"})
        ws.deployments.create("strict-api", "models:/strict/1")
        ws.deployments.create("fs-api", "models:/cards/1", settings={"feature_service": "svc"})
        for name, policy in (("fs-strict", "fail_closed"), ("fs-default", "default")):
            ws.deployments.create(name, "models:/cards/1", settings={"feature_service": "svc", "stale_policy": policy})
    return models


def shared_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    """The session's server over :func:`build_workspace`, started by the first module that
    asks and stopped when the session ends; ``server.extra["models"]`` holds the fitted models."""
    server = _SERVERS.get("main")
    if server is not None and server.process.poll() is None:
        return server
    home = tmp_path_factory.mktemp("served") / "ws"
    with pytest.MonkeyPatch.context() as env:  # as the autouse _isolated_env does for a test
        for key in list(os.environ):
            if key.startswith("LOCKGATE_") and key not in ("LOCKGATE_REQUIRE_SERVICES", "LOCKGATE_TEST_PG"):
                env.delenv(key)
        env.setenv("LOCKGATE_CAPTURE_CODE", "false")
        models = build_workspace(home)
        server = start_server(home, "--max-body-mb", "1")
    request.addfinalizer(lambda: server.stop(timeout=15))
    server.wait_ready(timeout=180)
    server.extra["models"] = models
    _SERVERS["main"] = server
    return server
