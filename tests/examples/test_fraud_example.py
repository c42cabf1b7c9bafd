"""The fraud example ships with the package and agrees with itself."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path

import pyarrow.compute as pc
import pytest

import lockgate as lg
from lockgate.data import Contract
from lockgate.examples.fraud.data import TRANSACTIONS_SCHEMA, generate, write_daily_parquet
from lockgate.examples.fraud.features import FEATURES, definitions
from lockgate.examples.fraud.train import feature_frame, train, training_frame


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


def test_features_only_look_backwards(tmp_path: Path) -> None:
    data = generate(days=10, cards=200, shift_days=0)
    tx = data.transactions.drop_columns(["is_fraud"])
    cut = data.start + timedelta(days=5)
    early = tx.filter(pc.less(tx["ts"], cut))
    frames = []
    for name, table in (("full", tx), ("early", early)):
        folder = tmp_path / name / "transactions"
        write_daily_parquet(table, folder)
        with lg.Workspace.open(tmp_path / name / "ws") as ws:
            frames.append(feature_frame(ws.features, table, definitions(folder)))
    full, partial = frames
    # Computing features on the past alone gives the same values: no feature saw the future.
    head = full.slice(0, partial.num_rows).select(FEATURES)
    assert head.equals(partial.select(FEATURES))


def test_card_features_are_the_cards_as_of_its_previous_transaction(tmp_path: Path) -> None:
    """The training set's card features are the feature store's, checked against a plain
    reference: counts and the 7-day mean as of the card's latest earlier transaction (what the
    online store holds when serving scores a transaction), never including the current one."""
    data = generate(days=8, cards=100, shift_days=0)
    tx = data.transactions.drop_columns(["is_fraud"])
    folder = tmp_path / "transactions"
    write_daily_parquet(tx, folder)
    with lg.Workspace.open(tmp_path / "ws") as ws:
        frame = feature_frame(ws.features, tx, definitions(folder))
        # Training never reads definitions other than the registered ones serving reads.
        with pytest.raises(lg.ConflictError, match="feature view 'card_aggregates' differs from its registered"):
            feature_frame(ws.features, tx, definitions(f"{folder}/"))
    assert frame.num_rows == tx.num_rows
    assert set(FEATURES) <= set(frame.column_names)
    rows = frame.to_pylist()
    by_card: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_card.setdefault(str(row["card_id"]), []).append(row)
    checked = 0
    for history in by_card.values():
        for i, row in enumerate(history):
            earlier = [h for h in history[:i] if h["ts"] < row["ts"]]  # type: ignore[operator]
            if not earlier or row["ts"] - earlier[-1]["ts"] >= timedelta(days=7):  # type: ignore[operator]
                assert row["avg_amount_7d"] is None  # no earlier transaction within the ttl
                continue
            last = earlier[-1]["ts"]
            window = [h["amount"] for h in earlier if last - h["ts"] < timedelta(days=7)]  # type: ignore[operator]
            assert row["avg_amount_7d"] == pytest.approx(sum(window) / len(window))  # type: ignore[arg-type]
            hour = [h for h in earlier if last - h["ts"] < timedelta(hours=1)]  # type: ignore[operator]
            assert row["txn_count_1h"] == len(hour)
            assert row["amount_ratio"] == pytest.approx(row["amount"] / row["avg_amount_7d"])  # type: ignore[operator]
            checked += 1
    assert checked > 300


def test_training_uses_only_labels_known_at_training_time(tmp_path: Path) -> None:
    data = generate(days=60, cards=1500)
    as_of = data.shift_start
    frame = training_frame(data, as_of=as_of)
    assert pc.max(frame["ts"]).as_py() < as_of - timedelta(days=30)
    source = tmp_path / "data" / "transactions"
    write_daily_parquet(data.transactions.drop_columns(["is_fraud"]), source)
    ws = lg.Workspace.open(tmp_path / "ws")
    result = train(ws, data, source=source, as_of=as_of, params={"max_iter": 30})
    assert result.metrics["auc"] > 0.8
    run = ws.runs.get(result.run_id)
    assert run.params["as_of"] == as_of.isoformat()
    upstream = ws.lineage_of(result.model_version.uri, direction="upstream")
    datasets = {n.id.split("@")[0] for n in upstream.nodes if n.kind == "dataset"}
    assert {"fraud_training", "fraud_v1", "labels", "transactions", str(source)} <= datasets
    # The registration example has every input, numbers as the model reads them.
    example = ws.models.input_example(result.model_version.uri)
    assert example is not None
    assert example.num_rows == 5
    assert all(c.null_count == 0 for c in example.columns)
    types = {i["name"]: i["type"] for i in result.model_version.signature["inputs"]}
    assert types == {n: "string" if n in ("merchant_category", "channel") else "double" for n in FEATURES}
    # The model version is bound to the feature service its training set came through.
    binding = ws.features.service_of(result.model_version.uri)
    assert binding is not None
    assert binding.service == "fraud_v1"
    assert [f.ref for f in binding.features] == [
        "card_aggregates:txn_count_1h",
        "card_aggregates:txn_count_24h",
        "card_aggregates:avg_amount_7d",
        "amount_ratio",
    ]
