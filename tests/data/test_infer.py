"""``infer_contract``: a first contract from real data, which that data passes and which
survives its YAML form."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lockgate as lg
from lockgate.data import Contract
from lockgate.data._infer import infer_contract
from lockgate.data._validate import validate
from lockgate.examples.fraud.data import generate


def test_the_fraud_transactions_give_a_sensible_contract() -> None:
    data = generate(days=10, cards=200, merchants=60, shift_days=0)
    contract = infer_contract(data.transactions, "transactions")
    columns = contract.columns
    assert contract.primary_key == ["transaction_id"]
    assert contract.event_time is not None
    assert contract.event_time.column == "ts"
    assert columns["transaction_id"].type == "string"
    assert columns["transaction_id"].unique is not None
    assert columns["channel"].allowed is not None
    assert sorted(columns["channel"].allowed.value) == ["atm", "online", "pos"]
    assert columns["card_id"].allowed is None  # too many distinct values to list
    assert columns["amount"].min is not None
    assert columns["amount"].max is not None
    assert columns["amount"].min.value > 0
    assert not columns["amount"].nullable
    assert columns["ts"].type == "timestamp[us, tz=UTC]"
    assert columns["is_fraud"].type == "bool"
    # The data passes the contract inferred from it, and the contract survives YAML.
    assert validate(data.transactions, contract, now=data.end).failures == []
    assert Contract.from_yaml(contract.to_yaml()) == contract


def test_types_nulls_and_keys_from_a_pandas_frame() -> None:
    frame = pd.DataFrame(
        {
            "order_key": [10, 11, 12, 13],
            "note": ["a", None, "c", "d"],
            "score": [0.5, float("nan"), 0.25, 1.0],
            "when": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"], utc=True),
            "size": pd.array([1, 2, 2, 1], dtype="Int32"),
        }
    )
    contract = infer_contract(frame, "orders")
    c = contract.columns
    assert contract.primary_key == ["order_key"]
    assert (c["order_key"].type, c["order_key"].nullable, c["order_key"].unique is not None) == ("int64", False, True)
    assert c["note"].nullable
    assert c["note"].unique is not None  # the values present are unique
    assert c["score"].nullable  # NaN is missing
    assert (c["score"].min.value, c["score"].max.value) == (0.25, 1.0)  # type: ignore[union-attr]
    assert c["when"].type.startswith("timestamp[")
    assert c["size"].type == "int32"
    assert c["size"].unique is None
    assert validate(frame, contract).failures == []


def test_columns_a_contract_cannot_name_are_left_out() -> None:
    table = pa.table({"id": ["a", "b"], "tags": [["x"], ["y", "z"]]})
    contract = infer_contract(table, "tagged")
    assert list(contract.columns) == ["id"]


_values = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), min_size=1, max_size=30),
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=30),
    st.lists(st.one_of(st.none(), st.sampled_from(["DE", "FR", "a b", "é"])), min_size=1, max_size=30),
    st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=1, max_size=30),
    st.lists(st.one_of(st.none(), st.booleans()), min_size=1, max_size=30),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_values, min_size=1, max_size=4))
def test_any_table_passes_its_inferred_contract_and_round_trips(columns: list[list[object]]) -> None:
    n = min(len(c) for c in columns)
    table = pa.table({f"c{i}": pa.array(c[:n]) for i, c in enumerate(columns)})
    if all(pa.types.is_null(t) for t in table.schema.types):
        # Nothing but nulls: there is no type to write down.
        with pytest.raises(lg.InvalidInputError, match="nothing to infer"):
            infer_contract(table, "any")
        return
    contract = infer_contract(table, "any")
    assert Contract.from_yaml(contract.to_yaml()) == contract
    report = validate(table, contract, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert report.errors == [], [f.message for f in report.errors]
