"""Runtimes on real registered models: scikit-learn, ONNX (converted and checked), custom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

import lockgate as lg
from lockgate.errors import UserCodeError
from lockgate.examples.fraud.data import generate
from lockgate.examples.fraud.features import CATEGORICAL, FEATURES
from lockgate.examples.fraud.train import fit, training_frame
from lockgate.serving import (
    CustomModel,
    CustomRuntime,
    ModelRuntime,
    OnnxRuntime,
    Signature,
    SklearnRuntime,
    concat_batches,
    from_records,
    load_runtime,
    onnx_check,
    to_v2_outputs,
)

COLS = [f"f{i}" for i in range(6)]


@pytest.fixture
def ws(tmp_path: Path) -> lg.Workspace:
    return lg.Workspace.open(tmp_path / "ws")


def columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: frame[c].to_numpy() for c in frame.columns}


def numeric_data(rows: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, len(COLS)))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    return pd.DataFrame(x, columns=COLS), y


def test_sklearn_classifier_matches_the_model(ws: lg.Workspace) -> None:
    x, y = numeric_data()
    model = LogisticRegression().fit(x, y)
    mv = ws.models.register(model, name="clf", input_example=x.head(5))
    rt = load_runtime(ws, mv.uri, prefer_onnx=False)
    assert isinstance(rt, SklearnRuntime)
    assert isinstance(rt, ModelRuntime)
    assert rt.input_format == "matrix"  # fitted on a frame, fed a matrix in fitted order
    pred = rt.predict(columns(x.head(32)))  # a DataFrame-fitted model fed a matrix warns: filterwarnings=error
    np.testing.assert_array_equal(pred.label, model.predict(x.head(32)))
    np.testing.assert_allclose(pred.probabilities, model.predict_proba(x.head(32)))
    assert rt.task == "classification"
    assert rt.classes == (0, 1)


def test_sklearn_regressor_accepts_columns_in_any_order(ws: lg.Workspace) -> None:
    x, _ = numeric_data()
    y = x["f0"] * 2 + 1
    model = LinearRegression().fit(x, y)
    mv = ws.models.register(model, name="reg", input_example=x.head(5))
    rt = load_runtime(ws, mv.uri, prefer_onnx=False)
    shuffled = {c: x[c].to_numpy() for c in reversed(COLS)}
    pred = rt.predict(shuffled)
    assert rt.task == "regression"
    np.testing.assert_allclose(pred.prediction, model.predict(x))
    assert [t["name"] for t in to_v2_outputs(pred)] == ["prediction"]


def test_all_numeric_model_is_served_by_onnx_within_tolerance(ws: lg.Workspace) -> None:
    x, y = numeric_data()
    model = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    mv = ws.models.register(model, name="gbc", input_example=x.head(5))
    rt = load_runtime(ws, mv.uri)
    assert isinstance(rt, OnnxRuntime)
    check = onnx_check(ws, mv.uri)
    assert check is not None
    assert check.accepted
    assert check.max_abs_diff is not None
    assert check.max_abs_diff <= 1e-5
    records = x.head(64).to_dict("records")
    pred = rt.predict(from_records(records, rt.signature))
    np.testing.assert_allclose(pred.probabilities, model.predict_proba(x.head(64)), atol=1e-5)
    np.testing.assert_array_equal(pred.label, model.predict(x.head(64)))


def test_onnx_regressor_matches(ws: lg.Workspace) -> None:
    x, _ = numeric_data()
    model = LinearRegression().fit(x, x["f0"] * 3 - x["f1"])
    mv = ws.models.register(model, name="lin", input_example=x.head(5))
    rt = load_runtime(ws, mv.uri)
    assert rt.kind == "onnx"
    np.testing.assert_allclose(rt.predict(columns(x)).prediction, model.predict(x), atol=1e-4)


def test_conversion_is_done_once_per_version(ws: lg.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = numeric_data()
    mv = ws.models.register(LogisticRegression().fit(x, y), name="once", input_example=x.head(5))
    assert load_runtime(ws, mv.uri).kind == "onnx"
    onnx_objects = ws.models.attachments(mv.uri, "onnx")
    assert len(onnx_objects) == 1

    def no_conversion(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted again")

    monkeypatch.setattr(OnnxRuntime, "convert", no_conversion)
    reopened = lg.Workspace.open(ws.home)
    assert load_runtime(reopened, mv.uri).kind == "onnx"
    assert ws.models.attachments(mv.uri, "onnx") == onnx_objects
    actions = [e.action for e in ws.audit.events()]
    assert actions.count("model_version.onnx_attached") == 1
    assert actions.count("model_version.onnx_check_attached") == 1
    report = ws.gc(older_than_s=0)
    assert report.removed == 0  # the example, the ONNX bytes and the check survive gc


def fraud_model() -> tuple[Any, pd.DataFrame]:
    data = generate(days=45, cards=300)
    frame = training_frame(data, as_of=data.end)
    return fit(frame, {"max_iter": 15}), frame.select(FEATURES).slice(0, 200).to_pandas()


def test_fraud_pipeline_onnx_outcome_is_recorded_honestly(ws: lg.Workspace) -> None:
    model, x = fraud_model()
    mv = ws.models.register(model, name="fraud", input_example=x.head(5))
    rt = load_runtime(ws, mv.uri)
    check = onnx_check(ws, mv.uri)
    assert check is not None
    if check.accepted:
        assert rt.kind == "onnx"
        assert check.max_abs_diff is not None
        assert check.max_abs_diff <= 1e-5
    else:
        # skl2onnx 1.20 cannot build HistGradientBoosting's TreeEnsemble node (see bench/README).
        assert rt.kind == "sklearn"
        assert check.reason
        assert "skl2onnx could not convert it" in check.reason
        assert isinstance(rt, SklearnRuntime)
        assert rt.input_format == "frame"
    batch = from_records(x.head(16).to_dict("records"), rt.signature)
    pred = rt.predict(batch)
    np.testing.assert_allclose(pred.probabilities, model.predict_proba(x.head(16)), atol=1e-5)
    np.testing.assert_array_equal(pred.label, model.predict(x.head(16)))
    assert [c.name for c in rt.signature.columns if c.is_string] == CATEGORICAL


def test_batches_concatenate_and_predictions_slice(ws: lg.Workspace) -> None:
    x, y = numeric_data()
    model = LogisticRegression().fit(x, y)
    mv = ws.models.register(model, name="cat", input_example=x.head(5))
    rt = load_runtime(ws, mv.uri)
    parts = [from_records(x.iloc[i : i + 3].to_dict("records"), rt.signature) for i in (0, 3, 6)]
    pred = rt.predict(concat_batches(parts, rt.signature))
    assert len(pred) == 9
    np.testing.assert_array_equal(pred.slice(3, 6).label, model.predict(x.iloc[3:6]))


class Flagger(CustomModel):
    """Business rule on top of a score: anything above the limit is flagged."""

    task = "classification"
    classes = ("ok", "flag")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.calls: list[str] = []

    def load(self, artifacts: Any) -> None:
        self.calls.append("load")

    def preprocess(self, inputs: Any) -> Any:
        self.calls.append("preprocess")
        return np.asarray(inputs["amount"], dtype=float)

    def predict(self, data: Any) -> Any:
        self.calls.append("predict")
        return np.clip(data / (2 * self.limit), 0, 1)

    def postprocess(self, outputs: Any) -> dict[str, Any]:
        self.calls.append("postprocess")
        proba = np.column_stack([1 - outputs, outputs])
        label = np.where(outputs > 0.5, "flag", "ok")
        return {"label": label, "probabilities": proba, "rule": np.where(outputs > 0.5, "over_limit", "")}


def test_custom_model_hooks_run_in_order(ws: lg.Workspace) -> None:
    example = pd.DataFrame({"amount": [10.0, 300.0], "country": ["DE", "FR"]})
    mv = ws.models.register(Flagger(limit=100.0), name="rules", input_example=example)
    assert mv.flavor == "custom"
    assert mv.signature["kind"] == "classifier"
    assert [o["name"] for o in mv.signature["outputs"]] == ["label", "probabilities", "rule"]
    rt = load_runtime(ws, mv.uri)
    assert isinstance(rt, CustomRuntime)
    assert isinstance(rt.model, Flagger)
    rt.model.calls.clear()
    pred = rt.predict(
        from_records([{"amount": 250.0, "country": "DE"}, {"amount": 5.0, "country": "FR"}], rt.signature)
    )
    assert rt.model.calls == ["preprocess", "predict", "postprocess"]
    assert pred.label.tolist() == ["flag", "ok"]
    assert pred.extras["rule"].tolist() == ["over_limit", ""]
    outputs = {t["name"]: t for t in to_v2_outputs(pred)}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["probabilities"]["shape"] == [2, 2]


class Broken(CustomModel):
    task = "regression"

    def predict(self, data: Any) -> Any:
        raise KeyError("no such column")


def test_custom_model_failure_names_the_hook() -> None:
    sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}], "kind": "regressor"})
    rt = CustomRuntime(Broken(), sig)
    with pytest.raises(UserCodeError, match=r"Broken\.predict failed") as info:
        rt.predict({"a": np.array([1.0])})
    assert isinstance(info.value.__cause__, KeyError)


def test_check_record_is_json(ws: lg.Workspace) -> None:
    x, y = numeric_data()
    mv = ws.models.register(LogisticRegression().fit(x, y), name="rec", input_example=x.head(5))
    load_runtime(ws, mv.uri)
    (digest,) = ws.models.attachments(mv.uri, "onnx_check")
    record = json.loads(ws.artifacts.get_bytes(digest))
    assert record["accepted"] is True
    assert set(record["versions"]) == {"skl2onnx", "onnxruntime", "sklearn"}
