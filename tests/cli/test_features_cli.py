"""``lockgate features`` as a user meets it: apply with a diff (exit 1 when it would break a
model, 2 for a file that does not import), list and show with consumers, materialize,
freshness and skew as gates, and on-demand examples checked by ``lockgate pipeline check``."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.cli import main

T0 = datetime(2026, 3, 1, tzinfo=UTC)

DEFINITIONS = """
import pyarrow.compute as pc
from lockgate.features import Entity, FeatureService, FeatureView, ParquetSource, on_demand_feature

card = Entity("card", join_keys=["card_id"])
card_profile = FeatureView(
    name="card_profile", entities=[card], ttl="30d", freshness_sla="{sla}", owner="risk",
    source=ParquetSource("data/profile.parquet", event_time="ts"), features={features},
)

@on_demand_feature(inputs=["amount", "card_profile:limit"], examples=[({{"amount": 50.0, "limit": 100.0}}, {expected})])
def limit_share(amount, limit):
    return pc.divide(amount, limit)

fraud_v1 = FeatureService("fraud_v1", ["card_profile:limit", "limit_share"])
"""


def definitions(sla: str = "1000d", features: str = '{"limit": "float64"}', expected: float = 0.5) -> str:
    return textwrap.dedent(DEFINITIONS.format(sla=sla, features=features, expected=expected))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "features.py").write_text(definitions())
    profile = {"card_id": ["c1", "c2"], "ts": [T0, T0 + timedelta(hours=1)], "limit": [100.0, 200.0]}
    pq.write_table(pa.table(profile), root / "data" / "profile.parquet")
    monkeypatch.chdir(root)
    return root


def cli(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_apply_shows_the_diff_and_list_show_name_owners_and_consumers(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "ws"
    assert cli(home, "features", "apply", "features.py", "--dry-run") == 0
    captured = capsys.readouterr()
    assert "+ feature view card_profile (version" in captured.out
    assert "would apply: 4 added, 0 changed, 0 unchanged" in captured.err
    assert cli(home, "features", "list", "--json") == 0
    assert out_json(capsys) == []
    assert cli(home, "features", "apply", "features.py", "--json") == 0
    applied = out_json(capsys)
    assert applied["applied"] is True
    assert [c["action"] for c in applied["changes"]] == ["added"] * 4
    (project / "features.py").write_text(definitions(sla="2000d"))
    assert cli(home, "features", "apply", "features.py") == 0
    out = capsys.readouterr().out
    assert "~ feature view card_profile" in out
    assert "freshness_sla: '1000d' → '2000d'" in out
    # A model version bound to the service makes dropping its feature a refusal naming it.
    with lg.Workspace.open(home) as ws:
        mv = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")
        ws.features.bind("fraud_v1", mv)
    assert cli(home, "features", "list", "--json") == 0
    listed = {d["name"]: d for d in out_json(capsys)}
    assert listed["card_profile"]["owner"] == "risk"
    assert listed["card_profile"]["consumers"] == [
        {"model": "models:/fraud/1", "via": "fraud_v1", "features": ["card_profile:limit", "limit_share"]}
    ]
    assert cli(home, "features", "show", "card_profile") == 0
    shown = capsys.readouterr().out
    assert "model fraud v1" in shown
    assert "fraud_v1" in shown
    assert cli(home, "features", "show", "fraud_v1", "--json") == 0
    assert [b["model"] for b in out_json(capsys)["bindings"]] == ["models:/fraud/1"]
    (project / "features.py").write_text(definitions(sla="2000d", features='{"limit": "int64"}'))
    assert cli(home, "features", "apply", "features.py") == 1
    err = capsys.readouterr().err
    assert "the definitions were not applied: 1 consumer would break" in err
    assert "model fraud v1, bound to feature service 'fraud_v1', reads card_profile:limit (float64)" in err


def test_bad_input_is_one_sentence_and_exit_2(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "ws"
    (project / "broken.py").write_text("raise RuntimeError('boom')\n")
    assert cli(home, "features", "apply", "broken.py") == 2
    assert "broken.py does not import (RuntimeError: boom); fix the file and retry" in capsys.readouterr().err
    assert cli(home, "features", "apply", "missing.py") == 2
    assert cli(home, "features", "show", "nope") == 2
    assert "no feature definition named 'nope' is registered" in capsys.readouterr().err
    assert cli(home, "features", "apply", "features.py") == 0
    assert cli(home, "features", "materialize", "--end", "yesterday") == 2
    assert "--end 'yesterday' is not a time" in capsys.readouterr().err
    assert cli(home, "features", "skew", "nope") == 2


def test_materialize_freshness_and_skew(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "ws"
    assert cli(home, "features", "apply", "features.py") == 0
    capsys.readouterr()
    assert cli(home, "-q", "features", "materialize", "--end", "2026-03-02T00:00:00Z", "--json") == 0
    report = out_json(capsys)
    assert [(v["view"], v["written"]) for v in report["views"]] == [("card_profile", 2)]
    assert cli(home, "features", "materialize", "--end", "2026-03-02T00:00:00Z") == 0
    assert "card_profile" in capsys.readouterr().out
    assert cli(home, "features", "freshness", "--json") == 0
    (view,) = out_json(capsys)["views"]
    assert (view["view"], view["status"]) == ("card_profile", "ok")
    (project / "features.py").write_text(definitions(sla="1h"))
    assert cli(home, "features", "apply", "features.py") == 0
    capsys.readouterr()
    assert cli(home, "features", "freshness") == 1
    assert "not fresh: card_profile" in capsys.readouterr().err
    assert cli(home, "features", "materialize") == 0  # the changed definition is a new version: fill it
    capsys.readouterr()
    payload = project / "request.json"
    payload.write_text(json.dumps({"card_id": "c1", "amount": 10.0}))
    assert cli(home, "features", "skew", "card_profile", "--payload", str(payload), "--json") == 0
    skew = out_json(capsys)
    assert skew["passed"] is True
    assert [f["feature"] for f in skew["features"]] == ["limit"]
    payload.write_text(json.dumps({"amount": 10.0}))
    assert cli(home, "features", "skew", "card_profile", "--payload", str(payload)) == 1
    assert "payload error: the payload lacks join key 'card_id'" in capsys.readouterr().out


def test_pipeline_check_runs_on_demand_examples(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = (
        "import {module}\n"
        "from lockgate.pipelines import pipeline, step\n"
        "@step\ndef make(n: int) -> int:\n    return n\n"
        "@pipeline\ndef flow(n: int = 3):\n    return make(n)\n"
    )
    (project / "flow_ok.py").write_text(flow.format(module="features"))
    (project / "features_bad.py").write_text(definitions(expected=0.25))
    (project / "flow_bad.py").write_text(flow.format(module="features_bad"))
    for module in ("features", "features_bad"):  # the pipelines import them as top-level modules
        monkeypatch.delitem(sys.modules, module, raising=False)
    try:
        assert main(["pipeline", "check", "flow_ok.py", "--json"]) == 0
        results = {r["check"]: r for r in out_json(capsys)}
        assert results["feature_examples"]["ok"] is True
        assert results["feature_examples"]["evidence"]["features"] == ["limit_share"]
        assert main(["pipeline", "check", "flow_bad.py", "--json"]) == 1
        check = {r["check"]: r for r in out_json(capsys)}["feature_examples"]
        assert check["ok"] is False
        assert check["message"] == (
            "1 of 1 on-demand feature examples failed: limit_share(amount=50.0, limit=100.0) returned 0.5, "
            "expected 0.25"
        )
        assert check["evidence"]["mismatches"][0]["got"] == 0.5
    finally:
        for module in ("features", "features_bad"):
            sys.modules.pop(module, None)
