"""Synthetic card-fraud data: the data set the lockgate demo tells its story with.

The demo needs data that behaves like the real thing in the ways an MLOps platform
cares about, without shipping anyone's real card data:

* **Learnable fraud.** Fraud follows patterns a gradient-boosting model finds from
  ordinary features (velocity, amount relative to the card's habit, merchant
  category, foreign country, hour of day), so that a trained model clears a gate.
* **Late labels.** Ground truth arrives as chargebacks 1-30 days after the
  transaction, and "legitimate" is only confirmed once the chargeback window has
  passed, so the most recent weeks are only partly labelled, as in production.
* **Drift.** In the last ``shift_days`` days the world changes (a new merchant
  category, higher amounts, a new fraud pattern from a new country), which the
  monitoring part of the demo has to detect.
* **Determinism and speed.** The same arguments give byte-identical tables and the
  default size (~130k rows) is generated in well under a second, fully vectorised
  with numpy, so that tests and the demo can regenerate it at will.

Times are UTC and the hour-of-day patterns are read on the UTC clock (the cards are
mostly European, so UTC is close enough to the local clock for the story).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "COUNTRIES",
    "LABELS_SCHEMA",
    "TRANSACTIONS_SCHEMA",
    "FraudData",
    "generate",
    "labels_known_at",
    "write_daily_parquet",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_TS_TYPE: Final = pa.timestamp("us", tz="UTC")

TRANSACTIONS_SCHEMA: Final = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("card_id", pa.string(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("ts", _TS_TYPE, nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
    ]
)
"""Schema of :attr:`FraudData.transactions`; ``is_fraud`` is the hidden ground truth."""

LABELS_SCHEMA: Final = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("label_ts", _TS_TYPE, nullable=False),
    ]
)
"""Schema of :attr:`FraudData.labels`: one label per transaction, with its arrival time."""

CATEGORIES: Final = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "online",
    "electronics",
    "jewelry",
    "gaming",
    "other",
    "crypto",
)
"""Merchant categories; ``crypto`` only appears after the behaviour shift."""

CHANNELS: Final = ("pos", "online", "atm")

_GROCERY, _RESTAURANT, _FUEL, _TRAVEL, _ONLINE = 0, 1, 2, 3, 4
_ELECTRONICS, _JEWELRY, _GAMING, _OTHER, _CRYPTO = 5, 6, 7, 8, 9
_POS, _CHANNEL_ONLINE, _ATM = 0, 1, 2

# Per category, in CATEGORIES order. Shares of the (pre-shift) merchant population
# and of legitimate spending differ on purpose: there are many restaurants but people
# spend most often at grocery stores.
_MERCHANT_SHARE: Final = np.array([0.22, 0.25, 0.08, 0.05, 0.12, 0.06, 0.04, 0.04, 0.14, 0.0])
_LEGIT_SHARE: Final = np.array([0.30, 0.20, 0.10, 0.03, 0.16, 0.04, 0.01, 0.04, 0.12, 0.0])
# Typical ticket relative to the card's own scale (a flight costs more than a coffee).
_AMOUNT_MULT: Final = np.array([1.0, 1.0, 1.6, 6.0, 1.3, 4.0, 5.0, 0.5, 1.0, 4.0])
# Probability that a legitimate / fraudulent payment in the category is card-not-present.
_LEGIT_ONLINE: Final = np.array([0.03, 0.05, 0.0, 0.6, 1.0, 0.4, 0.15, 0.9, 0.1, 1.0])
_LEGIT_ATM: Final = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0])
_FRAUD_ONLINE: Final = np.array([0.3, 0.3, 0.0, 0.8, 1.0, 0.8, 0.6, 1.0, 0.5, 1.0])
# Category preferences of the fraud patterns: risky categories dominate (pattern c).
_BURST_PREF: Final = np.array([0.03, 0.02, 0.01, 0.04, 0.30, 0.25, 0.12, 0.18, 0.05, 0.0])
_BIG_AMOUNT_PREF: Final = np.array([0.01, 0.01, 0.0, 0.15, 0.15, 0.30, 0.25, 0.03, 0.10, 0.0])
_NIGHT_PREF: Final = np.array([0.04, 0.04, 0.02, 0.04, 0.25, 0.24, 0.15, 0.15, 0.07, 0.0])

COUNTRIES: Final = ("DE", "AT", "NL", "FR", "PL", "IT", "ES", "CH", "GB", "US", "BR")
_NEW_COUNTRY: Final = COUNTRIES.index("BR")  # only seen in the post-shift card testing
_HOME_SHARE: Final = np.array([0.78, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02, 0, 0, 0, 0])
_MERCHANT_COUNTRY_SHARE: Final = np.array([0.55, 0.06, 0.06, 0.07, 0.04, 0.05, 0.05, 0.03, 0.04, 0.05, 0.0])
_TRIP_DEST: Final = np.array([0.08, 0.12, 0.08, 0.12, 0.04, 0.16, 0.18, 0.07, 0.07, 0.08, 0.0])
_FRAUD_DEST: Final = np.array([0.05, 0.03, 0.05, 0.07, 0.08, 0.07, 0.07, 0.03, 0.20, 0.35, 0.0])

# Relative activity by UTC hour: busy from morning to evening, quiet at night.
_HOUR_PROFILE: Final = np.array(
    [
        0.25,
        0.15,
        0.1,
        0.08,
        0.08,
        0.12,
        0.3,
        0.6,
        0.9,
        1.0,
        1.1,
        1.25,
        1.4,
        1.3,
        1.15,
        1.1,
        1.2,
        1.4,
        1.5,
        1.4,
        1.2,
        0.95,
        0.7,
        0.45,
    ]
)
_LEGIT_HOUR_P: Final = _HOUR_PROFILE / _HOUR_PROFILE.sum()
# Fraudsters care less about the clock: half flat, half the usual profile.
_FRAUD_HOUR_P: Final = 0.5 * _LEGIT_HOUR_P + 0.5 / 24
_NIGHT_HOUR_P: Final = np.array([1.0] * 6 + [0.0] * 18) / 6  # 00:00-05:59
_WEEKDAY_FACTOR: Final = np.array([0.95, 0.95, 1.0, 1.02, 1.12, 1.15, 0.81])  # Mon..Sun

_MEAN_DAILY_TX: Final = 0.54  # per card: ~130k rows for 4000 cards over 60 days
_ACTIVITY_SHAPE: Final = 1.5  # gamma shape: a few very active cards, many quiet ones
# Fraud events per 1000 card-days (per pattern).
_BURSTS_PER_KCD: Final = 0.40
_BIG_AMOUNTS_PER_KCD: Final = 0.75
_NIGHT_FOREIGN_PER_KCD: Final = 0.50
_CARD_TESTS_PER_KCD: Final = 0.40
_SHIFT_AMOUNT_GROWTH: Final = 1.27
_SHIFT_CRYPTO_SHARE: Final = 0.04
_LEGIT_LABEL_DELAY_DAYS: Final = 30

_US_PER_SECOND: Final = 1_000_000
_US_PER_MINUTE: Final = 60 * _US_PER_SECOND
_US_PER_HOUR: Final = 60 * _US_PER_MINUTE
_US_PER_DAY: Final = 24 * _US_PER_HOUR
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_LEGIT, _BURST, _BIG_AMOUNT, _NIGHT_FOREIGN, _CARD_TEST = 0, 1, 2, 3, 4


@dataclass(frozen=True, kw_only=True)
class FraudData:
    """A generated data set plus the time frame the demo needs to replay it.

    ``transactions`` carries the ground truth ``is_fraud`` so that tests and
    evaluations can score against it; the demo hides that column and reveals the
    truth only through ``labels`` (see :func:`labels_known_at`), the way a real
    fraud team only learns about fraud from chargebacks.
    """

    transactions: pa.Table
    """One row per transaction, sorted by ``ts``; schema :data:`TRANSACTIONS_SCHEMA`."""
    labels: pa.Table
    """One label per transaction, sorted by ``label_ts``; may lie after ``end``."""
    start: datetime
    """Inclusive start of the transactions (tz-aware UTC)."""
    end: datetime
    """Exclusive end of the transactions (tz-aware UTC): "now" in the demo."""
    shift_start: datetime
    """Start of the behaviour shift (new category, higher amounts, card testing)."""


@dataclass(frozen=True, kw_only=True)
class _Merchants:
    category: IntArray
    country: IntArray
    popularity: FloatArray
    kind: IntArray  # 0 = regular, 1 = crypto (post-shift), 2 = new country (card testing)


@dataclass(frozen=True, kw_only=True)
class _Cards:
    home: IntArray
    scale: FloatArray  # typical ticket in EUR


@dataclass(frozen=True, kw_only=True)
class _Rows:
    """Column arrays of transactions before they are sorted and turned into Arrow."""

    card: IntArray
    ts: IntArray  # microseconds since the epoch, UTC
    merchant: IntArray
    amount: FloatArray
    channel: IntArray
    pattern: IntArray  # _LEGIT or one of the fraud patterns


def generate(
    *,
    days: int = 60,
    cards: int = 4000,
    merchants: int = 800,
    seed: int = 7,
    end: datetime = datetime(2026, 11, 28, tzinfo=UTC),
    shift_days: int = 14,
) -> FraudData:
    """Generate ``days`` days of card transactions ending (exclusively) at ``end``.

    Legitimate spending: each card has a home country, a lognormal typical amount
    and a gamma-distributed activity rate; volume follows a day/night and weekly
    rhythm; some cardholders travel abroad for a few days. Fraud (~0.6-0.9% of rows)
    comes from four patterns: bursts of 3-8 payments within an hour on a
    compromised card, single payments several times the card's usual amount,
    foreign payments at night, and (only in the last ``shift_days`` days) card
    testing: runs of tiny online payments at merchants of a country never seen
    before. The shift also brings a new ``crypto`` category and ~30% higher amounts.

    The output is a pure function of the arguments (one ``numpy`` generator seeded
    with ``seed``), so a pipeline can regenerate its input instead of storing it.
    """
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be timezone-aware (UTC)")
    if days < 1 or cards < 1:
        raise ValueError("days and cards must be at least 1")
    if merchants < 50:
        raise ValueError("merchants must be at least 50 to cover every country")
    if not 0 <= shift_days <= days:
        raise ValueError("shift_days must be between 0 and days")
    end = end.astimezone(UTC)
    start = end - timedelta(days=days)
    shift_start = end - timedelta(days=shift_days)
    start_us, end_us, shift_us = _to_us(start), _to_us(end), _to_us(shift_start)

    rng = np.random.default_rng(seed)
    merchant_table = _make_merchants(rng, merchants)
    card_table = _make_cards(rng, cards)
    rows = _concat(
        [
            _legit(rng, card_table, merchant_table, start_us, end_us, shift_us),
            _bursts(rng, card_table, merchant_table, start_us, end_us, shift_us),
            _big_amounts(rng, card_table, merchant_table, start_us, end_us, shift_us),
            _night_foreign(rng, card_table, merchant_table, start_us, end_us, shift_us),
            _card_tests(rng, card_table, merchant_table, shift_us, end_us),
        ]
    )
    amount = rows.amount.copy()
    amount[(rows.ts >= shift_us) & (rows.pattern != _CARD_TEST)] *= _SHIFT_AMOUNT_GROWTH
    atm = rows.channel == _ATM  # cash comes in round sums of at least 20
    amount[atm] = np.maximum(20.0, np.round(amount[atm] * 2.5, -1))
    amount = np.maximum(np.round(amount, 2), 0.01)

    order = np.argsort(rows.ts, kind="stable")
    is_fraud = rows.pattern[order] != _LEGIT
    ts = rows.ts[order]
    merchant = rows.merchant[order]
    n = int(order.size)
    transaction_ids = _ids("t", n, 7)
    transactions = pa.Table.from_arrays(
        [
            transaction_ids,
            _ids("c", cards, 4).take(pa.array(rows.card[order])),
            _ids("m", merchants, 4).take(pa.array(merchant)),
            pa.array(CATEGORIES).take(pa.array(merchant_table.category[merchant])),
            pa.array(COUNTRIES).take(pa.array(merchant_table.country[merchant])),
            pa.array(amount[order], type=pa.float64()),
            pa.array(ts, type=_TS_TYPE),
            pa.array(CHANNELS).take(pa.array(rows.channel[order])),
            pa.array(is_fraud, type=pa.bool_()),
        ],
        schema=TRANSACTIONS_SCHEMA,
    )

    # Chargebacks come 1-30 days after the payment, most within the first week or
    # two; a payment counts as legitimate once the 30-day window passed without one.
    delay = np.full(n, _LEGIT_LABEL_DELAY_DAYS * _US_PER_DAY, dtype=np.int64)
    n_fraud = int(is_fraud.sum())
    delay[is_fraud] = _US_PER_DAY + (rng.beta(1.2, 3.5, n_fraud) * 29 * _US_PER_DAY).astype(np.int64)
    label_ts = ts + delay
    label_order = np.argsort(label_ts, kind="stable")
    labels = pa.Table.from_arrays(
        [
            transaction_ids.take(pa.array(label_order)),
            pa.array(is_fraud[label_order], type=pa.bool_()),
            pa.array(label_ts[label_order], type=_TS_TYPE),
        ],
        schema=LABELS_SCHEMA,
    )
    return FraudData(
        transactions=transactions,
        labels=labels,
        start=start,
        end=end,
        shift_start=shift_start,
    )


def labels_known_at(data: FraudData, as_of: datetime) -> pa.Table:
    """Return the transactions with the labels a fraud team would know at ``as_of``.

    This is the honest training set at a point in time: every transaction of
    ``data`` (in ``ts`` order, ground-truth column removed) with ``is_fraud`` and
    ``label_ts`` taken from the labels that arrived by ``as_of`` (inclusive), and
    null where the label had not arrived yet, which is the case for all recent
    legitimate payments and for frauds not yet charged back. Transactions after
    ``as_of`` are kept (with null labels) so that the row set never changes.
    """
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    labels = data.labels
    cutoff = pa.scalar(as_of.astimezone(UTC), type=_TS_TYPE)
    visible = labels.filter(pc.less_equal(labels["label_ts"], cutoff))
    transactions = data.transactions.drop_columns(["is_fraud"])
    position = pc.index_in(
        transactions["transaction_id"],
        value_set=visible["transaction_id"].combine_chunks(),
    )
    return transactions.append_column(
        pa.field("is_fraud", pa.bool_()), visible["is_fraud"].take(position)
    ).append_column(pa.field("label_ts", _TS_TYPE), visible["label_ts"].take(position))


def write_daily_parquet(table: pa.Table, folder: Path, *, ts_column: str = "ts") -> list[Path]:
    """Write ``table`` as one Parquet file per UTC day of ``ts_column``.

    Daily files named ``YYYY-MM-DD.parquet`` are how the demo lands data the way an
    upstream system would, one partition per day. Each file is written under a
    hidden temporary name and then renamed with :func:`os.replace`, so a reader
    polling ``folder`` never sees a half-written file, and re-running overwrites a
    day atomically. Rows keep their relative order within a day. Naive timestamps
    are read as UTC. Returns the written paths in day order (empty for no rows).
    """
    column = table[ts_column]
    if not pa.types.is_timestamp(column.type):
        raise TypeError(f"column {ts_column!r} must be a timestamp, got {column.type}")
    if column.null_count:
        raise ValueError(f"column {ts_column!r} has null timestamps")
    per_day = {
        "s": 86_400,
        "ms": 86_400_000,
        "us": _US_PER_DAY,
        "ns": _US_PER_DAY * 1000,
    }
    ticks = column.cast(pa.int64()).to_numpy()
    day = np.floor_divide(ticks, per_day[column.type.unit])
    order = np.argsort(day, kind="stable")
    days, first = np.unique(day[order], return_index=True)
    bounds = [*first.tolist(), int(order.size)]
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, d in enumerate(days.tolist()):
        path = folder / f"{date(1970, 1, 1) + timedelta(days=int(d))}.parquet"
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        pq.write_table(table.take(pa.array(order[bounds[i] : bounds[i + 1]])), tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


# --------------------------------------------------------------------------- helpers


def _to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _ids(prefix: str, n: int, min_width: int) -> pa.Array:
    """``prefix`` + zero-padded 1-based numbers, e.g. ``c0001``, built in Arrow."""
    width = max(min_width, len(str(n)))
    numbers = pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width=width, padding="0"), "")


def _allocate(n: int, share: FloatArray) -> IntArray:
    """Split ``n`` into integer counts proportional to ``share`` (largest remainder)."""
    exact = n * share / share.sum()
    counts: IntArray = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


def _make_merchants(rng: np.random.Generator, n: int) -> _Merchants:
    n_crypto = max(2, round(0.03 * n))
    n_new = max(2, round(0.01 * n))
    n_regular = n - n_crypto - n_new
    # Regular merchants' countries are allocated, not drawn, so that every home
    # country has merchants even for small configurations.
    regular_country = np.repeat(
        np.arange(len(COUNTRIES), dtype=np.int64),
        _allocate(n_regular, _MERCHANT_COUNTRY_SHARE),
    )
    regular_category = rng.choice(len(CATEGORIES), size=n_regular, p=_MERCHANT_SHARE)
    crypto_country = rng.choice(len(COUNTRIES), size=n_crypto, p=_MERCHANT_COUNTRY_SHARE)
    category = np.concatenate([regular_category, np.full(n_crypto, _CRYPTO), np.full(n_new, _ONLINE)]).astype(np.int64)
    country = np.concatenate([regular_country, crypto_country, np.full(n_new, _NEW_COUNTRY)]).astype(np.int64)
    kind = np.repeat(np.array([0, 1, 2], dtype=np.int64), [n_regular, n_crypto, n_new])
    perm = rng.permutation(n)  # so that merchant ids do not give the kind away
    return _Merchants(
        category=category[perm],
        country=country[perm],
        popularity=rng.lognormal(0.0, 0.8, n),
        kind=kind[perm],
    )


def _make_cards(rng: np.random.Generator, n: int) -> _Cards:
    return _Cards(
        home=rng.choice(len(COUNTRIES), size=n, p=_HOME_SHARE).astype(np.int64),
        scale=rng.lognormal(math.log(35.0), 0.55, n),
    )


def _weights(merchants: _Merchants, preference: FloatArray) -> FloatArray:
    """Sampling weights over regular merchants that yield ``preference`` per category."""
    per_merchant = preference / np.where(_MERCHANT_SHARE > 0, _MERCHANT_SHARE, 1.0)
    weight = merchants.popularity * per_merchant[merchants.category]
    return np.where(merchants.kind == 0, weight, 0.0)


def _pick_merchants(
    rng: np.random.Generator,
    merchants: _Merchants,
    target: IntArray,
    weight: FloatArray,
) -> IntArray:
    """Pick one merchant per row in the row's ``target`` country, by ``weight``."""
    out = np.zeros(target.size, dtype=np.int64)
    for country in np.unique(target).tolist():
        rows = np.flatnonzero(target == country)
        candidates = np.flatnonzero((merchants.country == country) & (weight > 0))
        if candidates.size == 0:  # tiny configurations: fall back to any eligible merchant
            candidates = np.flatnonzero(weight > 0)
        w = weight[candidates]
        out[rows] = candidates[rng.choice(candidates.size, size=rows.size, p=w / w.sum())]
    return out


def _pick_kind(rng: np.random.Generator, merchants: _Merchants, kind: int, n: int) -> IntArray:
    candidates = np.flatnonzero(merchants.kind == kind)
    w = merchants.popularity[candidates]
    return candidates[rng.choice(candidates.size, size=n, p=w / w.sum())]


def _foreign(rng: np.random.Generator, home: IntArray, share: FloatArray) -> IntArray:
    """Draw a country other than ``home`` for each row, following ``share``."""
    out = np.zeros(home.size, dtype=np.int64)
    for country in np.unique(home).tolist():
        rows = np.flatnonzero(home == country)
        p = share.copy()
        p[country] = 0.0
        out[rows] = rng.choice(len(COUNTRIES), size=rows.size, p=p / p.sum())
    return out


def _channel(rng: np.random.Generator, category: IntArray, online_p: FloatArray) -> IntArray:
    u = rng.random(category.size)
    channel = np.full(category.size, _POS, dtype=np.int64)
    channel[u < online_p[category]] = _CHANNEL_ONLINE
    return channel


def _event_times(rng: np.random.Generator, n: int, lo_us: int, hi_us: int, hour_p: FloatArray) -> IntArray:
    """Draw ``n`` moments in ``[lo_us, hi_us)`` whose hour of day follows ``hour_p``."""
    if hi_us <= lo_us:
        return np.full(n, lo_us, dtype=np.int64)
    uniform = rng.integers(lo_us, hi_us, n, dtype=np.int64)
    hour = rng.choice(24, size=n, p=hour_p).astype(np.int64)
    within = rng.integers(0, _US_PER_HOUR, n, dtype=np.int64)
    moved = uniform // _US_PER_DAY * _US_PER_DAY + hour * _US_PER_HOUR + within
    return np.where((moved >= lo_us) & (moved < hi_us), moved, uniform)


def _n_events(rng: np.random.Generator, per_kcd: float, cards: int, span_us: int) -> int:
    card_days = cards * max(span_us, 0) / _US_PER_DAY
    return int(rng.poisson(per_kcd * card_days / 1000))


def _legit(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    start_us: int,
    end_us: int,
    shift_us: int,
) -> _Rows:
    """Ordinary spending: per card-day Poisson counts, diurnal hours, trips abroad."""
    base_us = start_us // _US_PER_DAY * _US_PER_DAY  # midnight of the first day
    n_days = -(-(end_us - base_us) // _US_PER_DAY)
    n_cards = cards.home.size
    first_weekday = (date(1970, 1, 1) + timedelta(days=base_us // _US_PER_DAY)).weekday()
    day_factor = _WEEKDAY_FACTOR[(first_weekday + np.arange(n_days)) % 7]
    rate = rng.gamma(_ACTIVITY_SHAPE, _MEAN_DAILY_TX / _ACTIVITY_SHAPE, n_cards)
    counts = rng.poisson(np.outer(rate, day_factor))
    cell = np.repeat(np.arange(n_cards * n_days, dtype=np.int64), counts.ravel())
    card, day = cell // n_days, cell % n_days
    hour = rng.choice(24, size=cell.size, p=_LEGIT_HOUR_P).astype(np.int64)
    within = rng.integers(0, _US_PER_HOUR, cell.size, dtype=np.int64)
    ts = base_us + day * _US_PER_DAY + hour * _US_PER_HOUR + within

    # Some cardholders travel: a 2-10 day trip during which most payments are abroad;
    # a few other payments are cross-border online purchases.
    trip_p = min(0.9, 0.3 * n_days / 60)
    has_trip = rng.random(n_cards) < trip_p
    trip_start = rng.integers(0, n_days, n_cards)
    trip_end = trip_start + rng.integers(2, 11, n_cards)
    trip_dest = _foreign(rng, cards.home, _TRIP_DEST)
    in_trip = has_trip[card] & (day >= trip_start[card]) & (day < trip_end[card])
    u = rng.random(cell.size)
    target = cards.home[card].copy()
    abroad = in_trip & (u < 0.85)
    target[abroad] = trip_dest[card[abroad]]
    cross_border = ~in_trip & (u < 0.015)
    target[cross_border] = _foreign(rng, cards.home[card[cross_border]], _MERCHANT_COUNTRY_SHARE)
    merchant = _pick_merchants(rng, merchants, target, _weights(merchants, _LEGIT_SHARE))

    keep = (ts >= start_us) & (ts < end_us)  # only trims when start is not at midnight
    card, ts, merchant = card[keep], ts[keep], merchant[keep]
    crypto = (ts >= shift_us) & (rng.random(ts.size) < _SHIFT_CRYPTO_SHARE)
    merchant[crypto] = _pick_kind(rng, merchants, 1, int(crypto.sum()))

    category = merchants.category[merchant]
    amount = cards.scale[card] * _AMOUNT_MULT[category] * rng.lognormal(0.0, 0.5, ts.size)
    u = rng.random(ts.size)
    channel = np.full(ts.size, _POS, dtype=np.int64)
    channel[u < _LEGIT_ONLINE[category]] = _CHANNEL_ONLINE
    channel[(u >= _LEGIT_ONLINE[category]) & (u < (_LEGIT_ONLINE + _LEGIT_ATM)[category])] = _ATM
    return _Rows(
        card=card,
        ts=ts,
        merchant=merchant,
        amount=amount,
        channel=channel,
        pattern=np.full(ts.size, _LEGIT, dtype=np.int64),
    )


def _fraud_rows(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    *,
    card: IntArray,
    ts: IntArray,
    target: IntArray,
    preference: FloatArray,
    amount: FloatArray,
    pattern: int,
    shift_us: int,
) -> _Rows:
    """Finish fraud rows: merchant in the target country, channel, crypto after the shift."""
    merchant = _pick_merchants(rng, merchants, target, _weights(merchants, preference))
    crypto = (ts >= shift_us) & (rng.random(ts.size) < 0.2)  # fraudsters like crypto too
    merchant[crypto] = _pick_kind(rng, merchants, 1, int(crypto.sum()))
    return _Rows(
        card=card,
        ts=ts,
        merchant=merchant,
        amount=amount,
        channel=_channel(rng, merchants.category[merchant], _FRAUD_ONLINE),
        pattern=np.full(ts.size, pattern, dtype=np.int64),
    )


def _bursts(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    start_us: int,
    end_us: int,
    shift_us: int,
) -> _Rows:
    """Pattern (a): a compromised card is drained with 3-8 payments within an hour."""
    n = _n_events(rng, _BURSTS_PER_KCD, cards.home.size, end_us - start_us)
    event_card = rng.integers(0, cards.home.size, n)
    event_ts = _event_times(rng, n, start_us, end_us - _US_PER_HOUR, _FRAUD_HOUR_P)
    event_target = cards.home[event_card].copy()
    abroad = rng.random(n) < 0.5
    event_target[abroad] = _foreign(rng, event_target[abroad], _FRAUD_DEST)
    event = np.repeat(np.arange(n), rng.integers(3, 9, n))
    card = event_card[event]
    ts = event_ts[event] + rng.integers(0, 55 * _US_PER_MINUTE, event.size, dtype=np.int64)
    amount = cards.scale[card] * rng.lognormal(math.log(1.6), 0.6, event.size)
    return _fraud_rows(
        rng,
        cards,
        merchants,
        card=card,
        ts=ts,
        target=event_target[event],
        preference=_BURST_PREF,
        amount=amount,
        pattern=_BURST,
        shift_us=shift_us,
    )


def _big_amounts(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    start_us: int,
    end_us: int,
    shift_us: int,
) -> _Rows:
    """Pattern (b): one payment of 4-12 times the card's typical amount."""
    n = _n_events(rng, _BIG_AMOUNTS_PER_KCD, cards.home.size, end_us - start_us)
    card = rng.integers(0, cards.home.size, n)
    ts = _event_times(rng, n, start_us, end_us, _FRAUD_HOUR_P)
    target = cards.home[card].copy()
    abroad = rng.random(n) < 0.2
    target[abroad] = _foreign(rng, target[abroad], _FRAUD_DEST)
    amount = cards.scale[card] * np.exp(rng.uniform(math.log(4.0), math.log(12.0), n))
    return _fraud_rows(
        rng,
        cards,
        merchants,
        card=card,
        ts=ts,
        target=target,
        preference=_BIG_AMOUNT_PREF,
        amount=amount,
        pattern=_BIG_AMOUNT,
        shift_us=shift_us,
    )


def _night_foreign(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    start_us: int,
    end_us: int,
    shift_us: int,
) -> _Rows:
    """Pattern (d): one or two payments abroad between midnight and 6 am."""
    n = _n_events(rng, _NIGHT_FOREIGN_PER_KCD, cards.home.size, end_us - start_us)
    event_card = rng.integers(0, cards.home.size, n)
    event_ts = _event_times(rng, n, start_us, end_us - _US_PER_HOUR, _NIGHT_HOUR_P)
    event_target = _foreign(rng, cards.home[event_card], _FRAUD_DEST)
    sizes = 1 + (rng.random(n) < 0.4).astype(np.int64)
    event = np.repeat(np.arange(n), sizes)
    second = np.zeros(event.size, dtype=bool)
    second[1:] = event[1:] == event[:-1]
    gap = rng.integers(_US_PER_MINUTE, 30 * _US_PER_MINUTE, event.size, dtype=np.int64)
    ts = event_ts[event] + np.where(second, gap, 0)
    card = event_card[event]
    amount = cards.scale[card] * rng.lognormal(math.log(2.0), 0.6, event.size)
    return _fraud_rows(
        rng,
        cards,
        merchants,
        card=card,
        ts=ts,
        target=event_target[event],
        preference=_NIGHT_PREF,
        amount=amount,
        pattern=_NIGHT_FOREIGN,
        shift_us=shift_us,
    )


def _card_tests(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    shift_us: int,
    end_us: int,
) -> _Rows:
    """Post-shift pattern: 5-12 tiny online payments within 20 minutes, new country."""
    n = _n_events(rng, _CARD_TESTS_PER_KCD, cards.home.size, end_us - shift_us)
    event_card = rng.integers(0, cards.home.size, n)
    event_ts = _event_times(rng, n, shift_us, end_us - _US_PER_HOUR, _FRAUD_HOUR_P)
    event_merchant = _pick_kind(rng, merchants, 2, n)
    event = np.repeat(np.arange(n), rng.integers(5, 13, n))
    ts = event_ts[event] + rng.integers(0, 20 * _US_PER_MINUTE, event.size, dtype=np.int64)
    return _Rows(
        card=event_card[event],
        ts=ts,
        merchant=event_merchant[event],
        amount=rng.uniform(0.5, 3.0, event.size),
        channel=np.full(event.size, _CHANNEL_ONLINE, dtype=np.int64),
        pattern=np.full(event.size, _CARD_TEST, dtype=np.int64),
    )


def _concat(parts: list[_Rows]) -> _Rows:
    return _Rows(
        card=np.concatenate([p.card for p in parts]).astype(np.int64),
        ts=np.concatenate([p.ts for p in parts]).astype(np.int64),
        merchant=np.concatenate([p.merchant for p in parts]).astype(np.int64),
        amount=np.concatenate([p.amount for p in parts]).astype(np.float64),
        channel=np.concatenate([p.channel for p in parts]).astype(np.int64),
        pattern=np.concatenate([p.pattern for p in parts]).astype(np.int64),
    )
