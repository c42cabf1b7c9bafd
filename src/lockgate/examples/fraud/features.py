"""The fraud model's inputs: the card features, defined once for the feature store
(``lockgate features apply`` on this file), and the fields each transaction brings itself.

The card features (velocity, the card's 7-day spend and the amount against it) exist in one
place only, the definitions below. Training builds its training set through the feature
service ``fraud_v1`` with a point-in-time join (``train.feature_frame``) and serving looks
the same service up online, so training and serving cannot compute them differently. The
transaction's own fields (:func:`request_fields`) come with every request.
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
    "CARD_FEATURES",
    "CATEGORICAL",
    "FEATURES",
    "NUMERIC",
    "REQUEST_FIELDS",
    "amount_ratio",
    "card",
    "card_aggregates",
    "definitions",
    "fraud_v1",
    "request_fields",
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
"""The model's input columns, in the order it is fitted on."""
CARD_FEATURES = ["txn_count_1h", "txn_count_24h", "avg_amount_7d", "amount_ratio"]
"""The inputs the feature service ``fraud_v1`` gives (looked up per card online)."""
REQUEST_FIELDS = [name for name in FEATURES if name not in CARD_FEATURES]
"""The inputs that come with the transaction itself."""

# ``is_foreign`` compares the country with the card's first one; that history is not in the
# feature store yet, so it is still computed here (see README.md).
_SQL = """
SELECT
    transaction_id,
    card_id,
    ts,
    merchant_category,
    channel,
    amount,
    CAST(hour(ts) AS DOUBLE) AS hour,
    CAST(hour(ts) < 6 AS DOUBLE) AS is_night,
    CAST(country <> first_value(country) OVER (PARTITION BY card_id ORDER BY ts, transaction_id) AS DOUBLE)
        AS is_foreign
FROM tx
ORDER BY ts, transaction_id
"""


def request_fields(transactions: pa.Table) -> pa.Table:
    """Each transaction's own fields as the model reads them: category, channel, amount, the
    hour of day (UTC) and whether the country is not the card's first one.

    >>> from lockgate.examples.fraud.data import generate
    >>> request_fields(generate(days=3, cards=50, shift_days=0).transactions).column_names[:3]
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


def definitions(transactions: str | Path) -> list[Entity | FeatureView | OnDemandFeature | FeatureService]:
    """The same definitions, reading the daily batches in the folder ``transactions``.

    >>> [d.name for d in definitions("data/transactions")]
    ['card', 'card_aggregates', 'amount_ratio', 'fraud_v1']
    """
    aggregates, service = _views(str(transactions))
    return [card, aggregates, amount_ratio, service]
