"""Card features computed from raw transactions, in one DuckDB query.

One definition serves training and (later) serving, which is how training-serving skew is
kept out: the windows only look backwards from each transaction, so no feature ever sees
the future.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

__all__ = ["CATEGORICAL", "FEATURES", "NUMERIC", "card_features"]

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
