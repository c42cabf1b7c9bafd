"""Behaviour of the synthetic card-fraud data the demo is built on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lockgate.examples.fraud.data import (
    CATEGORIES,
    FraudData,
    generate,
    labels_known_at,
    write_daily_parquet,
)

SMALL = {"days": 21, "cards": 800, "merchants": 200, "shift_days": 7, "seed": 3}
TS = pa.timestamp("us", tz="UTC")


@pytest.fixture(scope="module")
def small() -> FraudData:
    return generate(**SMALL)


@pytest.fixture(scope="module")
def default() -> FraudData:
    return generate()


def _np(table: pa.Table, column: str) -> np.ndarray:
    array: np.ndarray = table[column].to_numpy()
    return array


def test_schema_and_types(small: FraudData) -> None:
    tx = small.transactions
    assert tx.schema.names == [
        "transaction_id",
        "card_id",
        "merchant_id",
        "merchant_category",
        "country",
        "amount",
        "ts",
        "channel",
        "is_fraud",
    ]
    for name in ("transaction_id", "card_id", "merchant_id", "merchant_category"):
        assert tx.schema.field(name).type == pa.string()
    assert tx.schema.field("country").type == pa.string()
    assert tx.schema.field("amount").type == pa.float64()
    assert tx.schema.field("ts").type == TS
    assert tx.schema.field("channel").type == pa.string()
    assert tx.schema.field("is_fraud").type == pa.bool_()
    assert all(tx[c].null_count == 0 for c in tx.schema.names)

    assert small.labels.schema.names == ["transaction_id", "is_fraud", "label_ts"]
    assert small.labels.schema.field("label_ts").type == TS
    assert small.labels.schema.field("is_fraud").type == pa.bool_()


def test_values_look_like_card_payments(small: FraudData) -> None:
    tx = small.transactions
    amount = _np(tx, "amount")
    assert (amount > 0).all()
    np.testing.assert_allclose(amount, np.round(amount, 2), atol=1e-9)
    assert set(pc.unique(tx["channel"]).to_pylist()) == {"pos", "online", "atm"}
    assert set(pc.unique(tx["merchant_category"]).to_pylist()) <= set(CATEGORIES)
    countries = pc.unique(tx["country"]).to_pylist()
    assert all(len(c) == 2 and c.isupper() for c in countries)
    assert str(tx["card_id"][0]).startswith("c")
    assert str(tx["merchant_id"][0]).startswith("m")
    # Most payments happen at home, in Germany.
    de_share = pc.mean(pc.equal(tx["country"], "DE").cast(pa.int8())).as_py()
    assert 0.6 < de_share < 0.9


def test_each_merchant_has_one_category_and_country(small: FraudData) -> None:
    per_merchant = small.transactions.group_by("merchant_id").aggregate(
        [("merchant_category", "count_distinct"), ("country", "count_distinct")]
    )
    assert pc.max(per_merchant["merchant_category_count_distinct"]).as_py() == 1
    assert pc.max(per_merchant["country_count_distinct"]).as_py() == 1


def test_transaction_ids_are_unique(small: FraudData) -> None:
    ids = small.transactions["transaction_id"]
    assert pc.count_distinct(ids).as_py() == small.transactions.num_rows
    assert ids[0].as_py() == "t0000001"


def test_ts_sorted_within_start_end(small: FraudData) -> None:
    ts = _np(small.transactions, "ts").astype("datetime64[us]").astype(np.int64)
    assert (np.diff(ts) >= 0).all()
    assert pc.min(small.transactions["ts"]).as_py() >= small.start
    assert pc.max(small.transactions["ts"]).as_py() < small.end
    assert small.end - small.start == timedelta(days=SMALL["days"])
    assert small.shift_start == small.end - timedelta(days=SMALL["shift_days"])
    assert small.start.tzinfo is not None
    assert small.start.utcoffset() == timedelta(0)


def test_more_payments_by_day_than_at_night(small: FraudData) -> None:
    hour = pc.hour(small.transactions["ts"]).to_numpy()
    night = int(((hour >= 0) & (hour < 6)).sum())
    afternoon = int(((hour >= 12) & (hour < 18)).sum())
    assert afternoon > 4 * night


def test_cards_have_heterogeneous_activity(small: FraudData) -> None:
    counts = np.sort(small.transactions.group_by("card_id").aggregate([("ts", "count")])["ts_count"].to_numpy())
    # The busiest tenth of cards makes far more payments than the quietest half.
    assert counts[-len(counts) // 10 :].mean() > 4 * counts[: len(counts) // 2].mean()


def test_same_arguments_give_identical_tables() -> None:
    a = generate(**SMALL)
    b = generate(**SMALL)
    assert a.transactions.equals(b.transactions)
    assert a.labels.equals(b.labels)
    other = generate(**{**SMALL, "seed": 4})
    assert not a.transactions.equals(other.transactions)


def test_defaults_size_and_fraud_rate(default: FraudData) -> None:
    tx = default.transactions
    assert tx.num_rows >= 100_000
    rate = pc.mean(tx["is_fraud"].cast(pa.int8())).as_py()
    assert 0.004 <= rate <= 0.012
    assert pc.count_distinct(tx["card_id"]).as_py() > 3500
    assert default.end == datetime(2026, 11, 28, tzinfo=UTC)


def test_fraud_prefers_risky_categories_and_bursts(default: FraudData) -> None:
    tx = default.transactions
    before = tx.filter(pc.less(tx["ts"], pa.scalar(default.shift_start, type=TS)))
    risky = pc.is_in(
        before["merchant_category"],
        pa.array(["electronics", "jewelry", "gaming", "online"]),
    )
    fraud = before["is_fraud"]
    risky_in_fraud = pc.mean(pc.filter(risky, fraud).cast(pa.int8())).as_py()
    risky_in_legit = pc.mean(pc.filter(risky, pc.invert(fraud)).cast(pa.int8())).as_py()
    assert risky_in_fraud > 2 * risky_in_legit


def test_labels_cover_every_transaction_with_the_truth(small: FraudData) -> None:
    labels = small.labels
    assert labels.num_rows == small.transactions.num_rows
    joined = small.transactions.select(["transaction_id", "is_fraud"]).join(
        labels, "transaction_id", right_suffix="_label"
    )
    assert joined.num_rows == labels.num_rows
    assert joined["is_fraud"].equals(joined["is_fraud_label"])


def test_label_delays(small: FraudData) -> None:
    joined = small.transactions.select(["transaction_id", "ts"]).join(small.labels, "transaction_id")
    delay = pc.subtract(joined["label_ts"], joined["ts"]).to_numpy()
    fraud = joined["is_fraud"].to_numpy()
    fraud_delay = delay[fraud]
    assert fraud_delay.size > 0
    assert (fraud_delay >= np.timedelta64(1, "D")).all()
    assert (fraud_delay <= np.timedelta64(30, "D")).all()
    # Chargebacks are skewed early: most arrive within two weeks.
    assert np.median(fraud_delay) < np.timedelta64(14, "D")
    # Legitimate payments are confirmed when the 30-day chargeback window closes.
    assert (delay[~fraud] == np.timedelta64(30, "D")).all()
    # Labels are in arrival order, and some arrive after `end` (the future).
    label_ts = small.labels["label_ts"]
    assert pc.all(pc.greater_equal(label_ts.slice(1), label_ts.slice(0, label_ts.length() - 1))).as_py()
    assert pc.max(label_ts).as_py() > small.end


def test_shift_brings_crypto_higher_amounts_and_card_testing(
    default: FraudData,
) -> None:
    tx = default.transactions
    shift = pa.scalar(default.shift_start, type=TS)
    before = tx.filter(pc.less(tx["ts"], shift))
    after = tx.filter(pc.greater_equal(tx["ts"], shift))

    def share(table: pa.Table, column: str, value: str) -> float:
        return float(pc.mean(pc.equal(table[column], value).cast(pa.int8())).as_py())

    assert share(before, "merchant_category", "crypto") == 0.0
    assert 0.01 < share(after, "merchant_category", "crypto") < 0.1
    assert share(before, "country", "BR") == 0.0
    assert share(after, "country", "BR") > 0.0
    # Card testing: fraud in the new country is tiny and online.
    tests = after.filter(pc.and_(pc.equal(after["country"], "BR"), after["is_fraud"]))
    assert tests.num_rows > 20
    assert pc.max(tests["amount"]).as_py() < 5
    assert pc.unique(tests["channel"]).to_pylist() == ["online"]

    legit_before = pc.mean(before.filter(pc.invert(before["is_fraud"]))["amount"]).as_py()
    legit_after = pc.mean(after.filter(pc.invert(after["is_fraud"]))["amount"]).as_py()
    assert 1.2 < legit_after / legit_before < 1.6


def test_no_shift_when_shift_days_is_zero() -> None:
    data = generate(**{**SMALL, "shift_days": 0})
    assert data.shift_start == data.end
    assert "crypto" not in pc.unique(data.transactions["merchant_category"]).to_pylist()


def test_labels_known_at_hides_recent_labels(small: FraudData) -> None:
    as_of = small.end
    known = labels_known_at(small, as_of)
    assert known.num_rows == small.transactions.num_rows
    assert known["transaction_id"].equals(small.transactions["transaction_id"])
    assert known.schema.field("is_fraud").type == pa.bool_()
    assert known.schema.field("label_ts").type == TS

    ts = known["ts"]
    label = known["is_fraud"]
    last_week = pc.greater_equal(ts, pa.scalar(as_of - timedelta(days=7), type=TS))
    older = pc.less(ts, pa.scalar(as_of - timedelta(days=30), type=TS))
    # Nothing of the last week is confirmed legitimate yet; only early chargebacks are known.
    recent_labels = pc.filter(label, last_week)
    assert recent_labels.null_count > 0.99 * len(recent_labels)
    # The only labels known for the last week are early chargebacks, i.e. frauds.
    assert pc.all(pc.fill_null(recent_labels, True)).as_py()
    # Everything older than the 30-day window is fully labelled.
    assert pc.filter(label, older).null_count == 0
    # Known labels agree with the ground truth and arrived by as_of.
    truth = small.transactions["is_fraud"]
    has = pc.is_valid(label)
    assert pc.filter(label, has).equals(pc.filter(truth, has))
    assert pc.max(known["label_ts"]).as_py() <= as_of


def test_labels_known_at_grows_with_time(small: FraudData) -> None:
    earlier = labels_known_at(small, small.end - timedelta(days=10))
    later = labels_known_at(small, small.end + timedelta(days=31))
    assert earlier["is_fraud"].null_count > labels_known_at(small, small.end)["is_fraud"].null_count
    assert later["is_fraud"].null_count == 0
    with pytest.raises(ValueError):
        labels_known_at(small, datetime(2026, 11, 1))


def test_write_daily_parquet(small: FraudData, tmp_path: Path) -> None:
    tx = small.transactions
    paths = write_daily_parquet(tx, tmp_path / "landing")
    assert len(paths) == SMALL["days"]
    expected_first = small.start.date().isoformat() + ".parquet"
    assert paths[0].name == expected_first
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == [p.name for p in paths]

    total = 0
    for path in paths:
        day_table = pq.read_table(path)
        day = datetime.fromisoformat(path.stem).replace(tzinfo=UTC)
        lo, hi = pa.scalar(day, type=TS), pa.scalar(day + timedelta(days=1), type=TS)
        assert pc.min(day_table["ts"]).as_py() >= day
        assert pc.max(day_table["ts"]).as_py() < day + timedelta(days=1)
        in_day = tx.filter(pc.and_(pc.greater_equal(tx["ts"], lo), pc.less(tx["ts"], hi)))
        assert day_table.equals(in_day)
        total += day_table.num_rows
    assert total == tx.num_rows

    # Rewriting replaces files in place and leaves no temporary files behind.
    again = write_daily_parquet(tx, tmp_path / "landing")
    assert again == paths
    assert len(list((tmp_path / "landing").iterdir())) == len(paths)


def test_write_daily_parquet_on_labels_uses_the_given_column(small: FraudData, tmp_path: Path) -> None:
    paths = write_daily_parquet(small.labels, tmp_path, ts_column="label_ts")
    assert sum(pq.read_metadata(p).num_rows for p in paths) == small.labels.num_rows
    assert write_daily_parquet(small.labels.slice(0, 0), tmp_path / "empty", ts_column="label_ts") == []


def _features(tx: pa.Table, median_until: datetime) -> np.ndarray:
    """Per-row features a fraud model would use, derived without row loops."""
    card_codes, card = np.unique(tx["card_id"].to_numpy(zero_copy_only=False), return_inverse=True)
    ts = pc.cast(tx["ts"], pa.int64()).to_numpy()
    amount = tx["amount"].to_numpy()
    hour = pc.hour(tx["ts"]).to_numpy()
    category = pc.index_in(tx["merchant_category"], value_set=pa.array(CATEGORIES)).to_numpy()
    channel = pc.index_in(tx["channel"], value_set=pa.array(["pos", "online", "atm"])).to_numpy()
    countries, country = np.unique(tx["country"].to_numpy(zero_copy_only=False), return_inverse=True)

    # The card's usual amount and home country, from the training window only.
    past = ts < (median_until - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    by_card = np.lexsort((amount[past], card[past]))
    past_card, past_amount = card[past][by_card], amount[past][by_card]
    starts = np.searchsorted(past_card, np.arange(len(card_codes)))
    ends = np.searchsorted(past_card, np.arange(len(card_codes)), side="right")
    has_past = ends > starts
    mid_lo = past_amount[np.minimum((starts + ends - 1) // 2, len(past_amount) - 1)]
    mid_hi = past_amount[np.minimum((starts + ends) // 2, len(past_amount) - 1)]
    median = np.where(has_past, (mid_lo + mid_hi) / 2, np.median(amount[past]))
    pair_counts = np.zeros((len(card_codes), len(countries)), dtype=np.int64)
    np.add.at(pair_counts, (card[past], country[past]), 1)
    home = pair_counts.argmax(axis=1)

    # How many payments the card made in the hour before this one.
    key = card * (1 << 50) + ts
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    previous = np.empty(len(key), dtype=np.int64)
    previous[order] = np.arange(len(key)) - np.searchsorted(sorted_key, sorted_key - 3_600_000_000)

    return np.column_stack(
        [
            hour,
            amount / median[card],
            amount,
            category,
            channel,
            (country != home[card]).astype(np.int64),
            previous,
        ]
    ).astype(np.float64)


def test_fraud_is_learnable(default: FraudData) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    tx = default.transactions
    split = default.start + timedelta(days=40)
    test_end = default.start + timedelta(days=46)
    features = _features(tx, split)
    ts = tx["ts"]
    train = pc.less(ts, pa.scalar(split, type=TS)).to_numpy(zero_copy_only=False)
    test = pc.and_(
        pc.greater_equal(ts, pa.scalar(split, type=TS)),
        pc.less(ts, pa.scalar(test_end, type=TS)),
    ).to_numpy(zero_copy_only=False)
    y = tx["is_fraud"].to_numpy(zero_copy_only=False)

    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, categorical_features=[3, 4], random_state=0)
    model.fit(features[train], y[train])
    auc = roc_auc_score(y[test], model.predict_proba(features[test])[:, 1])
    print(f"learnability ROC AUC on days 40-46: {auc:.4f}")
    assert auc > 0.85


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        generate(end=datetime(2026, 11, 28))
    with pytest.raises(ValueError):
        generate(days=7, shift_days=8)
    with pytest.raises(ValueError):
        generate(merchants=10)
