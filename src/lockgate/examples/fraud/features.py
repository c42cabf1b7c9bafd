"""Card features computed from raw transactions: the training pipeline's DuckDB query, and
the same aggregates declared for the feature store (``lockgate features apply`` on this file).

One definition serves training and serving, which is how training-serving skew is kept out:
the windows only look backwards from each transaction, so no feature ever sees the future.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from lockgate.features import (
    Count,
    Entity,
    FeatureService,
    FeatureView,
    Mean,
    OnDemandFeature,
    ParquetSource,
    on_demand_feature,
)

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "NUMERIC",
    "amount_ratio",
    "card",
    "card_aggregates",
    "card_features",
    "definitions",
    "fraud_v1",
]

NUMERIC = [
    "amount",
    "hour",
    "is_night",
    "is_foreign",
    "txn_count_1h",
    "txn_count_24h",
    "avg_amount_7d",
    "amount_ratio",
]
CATEGORICAL = ["merchant_category", "channel"]
FEATURES = CATEGORICAL + NUMERIC

_SQL = """
WITH base AS (
    SELECT *,
           first_value(country) OVER (PARTITION BY card_id ORDER BY ts) AS home_country
    FROM tx
)
SELECT
    transaction_id,
    card_id,
    ts,
    merchant_category,
    channel,
    amount,
    CAST(hour(ts) AS DOUBLE) AS hour,
    CAST(hour(ts) < 6 AS DOUBLE) AS is_night,
    CAST(country <> home_country AS DOUBLE) AS is_foreign,
    CAST(count(*) OVER w1h AS DOUBLE) AS txn_count_1h,
    CAST(count(*) OVER w24h AS DOUBLE) AS txn_count_24h,
    coalesce(avg(amount) OVER w7d, amount) AS avg_amount_7d,
    amount / coalesce(avg(amount) OVER w7d, amount) AS amount_ratio
FROM base
WINDOW
    w1h AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW),
    w24h AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL 24 HOURS PRECEDING AND CURRENT ROW),
    w7d AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
ORDER BY ts, transaction_id
"""


def card_features(transactions: pa.Table) -> pa.Table:
    """Per-transaction features: velocity, amount relative to the card's habit, time of day.

    >>> from lockgate.examples.fraud.data import generate
    >>> card_features(generate(days=3, cards=50, shift_days=0).transactions).column_names[:3]
    ['transaction_id', 'card_id', 'ts']
    """
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # hour() must read the UTC clock on every machine
        con.register("tx", transactions)
        table: pa.Table = con.sql(_SQL).to_arrow_table()
        return table


# -- the feature store's definitions ------------------------------------------------------------

card = Entity("card", join_keys=["card_id"], description="A payment card.")


@on_demand_feature(
    inputs=["amount", "card_aggregates:avg_amount_7d"],
    examples=[({"amount": 90.0, "avg_amount_7d": 30.0}, 3.0), ({"amount": 12.0, "avg_amount_7d": 0.0}, None)],
)
def amount_ratio(amount: Any, avg_amount_7d: Any) -> Any:
    """The amount against the card's 7-day average: computed per request, the same way offline."""
    safe = pc.if_else(pc.equal(avg_amount_7d, 0.0), None, avg_amount_7d)
    return pc.divide(amount, safe)


def _views(transactions: str) -> tuple[FeatureView, FeatureService]:
    aggregates = FeatureView(
        name="card_aggregates",
        entities=[card],
        ttl="7d",
        freshness_sla="2h",
        owner="fraud-team",
        description="Velocity and spend of each card, computed by lockgate from the raw transactions.",
        source=ParquetSource(transactions, event_time="ts", contract="transactions"),
        aggregations=[
            Count("transaction_id", window="1h", name="txn_count_1h"),
            Count("transaction_id", window="24h", name="txn_count_24h"),
            Mean("amount", window="7d", name="avg_amount_7d"),
        ],
    )
    return aggregates, FeatureService("fraud_v1", ["card_aggregates:*", "amount_ratio"], owner="fraud-team")


# As `lockgate features apply examples/fraud/features.py` reads them, from a project folder
# whose data/transactions/ holds the daily batches.
card_aggregates, fraud_v1 = _views("data/transactions/")


def definitions(data: Path) -> list[Entity | FeatureView | OnDemandFeature | FeatureService]:
    """The same definitions, reading the transactions under ``data`` (as the demo lays it out)."""
    aggregates, service = _views(str(data / "transactions"))
    return [card, aggregates, amount_ratio, service]
