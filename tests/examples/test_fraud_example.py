"""The fraud example ships with the package and agrees with itself."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path

import pyarrow.compute as pc

import lockgate as lg
from lockgate.data import Contract
from lockgate.examples.fraud.data import TRANSACTIONS_SCHEMA, generate
from lockgate.examples.fraud.features import FEATURES, card_features
from lockgate.examples.fraud.train import train, training_frame


def test_contract_ships_as_package_data_and_matches_the_generator() -> None:
    text = (resources.files("lockgate.examples.fraud") / "contracts" / "transactions.yaml").read_text()
    contract = Contract.from_yaml(text)
    generated = set(TRANSACTIONS_SCHEMA.names) - {"is_fraud"}
    assert set(contract.columns) == generated
    allowed = contract.columns["merchant_category"].allowed
    assert allowed is not None
    categories = set(allowed.value)
    data = generate(days=20, cards=300)
    before = data.transactions.filter(pc.less(data.transactions["ts"], data.shift_start))
    assert set(pc.unique(before["merchant_category"]).to_pylist()) <= categories


def test_features_only_look_backwards() -> None:
    data = generate(days=10, cards=200, shift_days=0)
    full = card_features(data.transactions)
    cut = data.start + timedelta(days=5)
    early = data.transactions.filter(pc.less(data.transactions["ts"], cut))
    partial = card_features(early)
    # Computing features on the past alone gives the same values: no feature saw the future.
    head = full.slice(0, partial.num_rows).select(FEATURES)
    assert head.equals(partial.select(FEATURES))


def test_training_uses_only_labels_known_at_training_time(tmp_path: Path) -> None:
    data = generate(days=60, cards=1500)
    as_of = data.shift_start
    frame = training_frame(data, as_of=as_of)
    assert pc.max(frame["ts"]).as_py() < as_of - timedelta(days=30)
    ws = lg.Workspace.open(tmp_path / "ws")
    result = train(ws, data, as_of=as_of, params={"max_iter": 30})
    assert result.metrics["auc"] > 0.8
    run = ws.runs.get(result.run_id)
    assert run.params["as_of"] == as_of.isoformat()
    upstream = ws.lineage_of(result.model_version.uri, direction="upstream")
    datasets = sorted(n.id.split("@")[0] for n in upstream.nodes if n.kind == "dataset")
    assert datasets == ["fraud_training", "labels", "transactions"]
