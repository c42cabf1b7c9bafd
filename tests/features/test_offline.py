"""The offline store and engine: what a user sees when computing views, pushing rows and
building point-in-time training sets, and the one-sentence errors for bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate.data._sources import Source
from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.features import Count, Entity, FeatureView, Mean, ParquetSource, Sum
from lockgate.features._offline import (
    OfflineStore,
    compute_view,
    feature_columns,
    point_in_time_join,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
CARD = Entity("card", join_keys=["card_id"])


def at(hours: float, *, aware: bool = True) -> datetime:
    value = T0 + timedelta(hours=hours)
    return value if aware else value.replace(tzinfo=None)


def times(hours: list[float], *, aware: bool = True, unit: str = "us") -> pa.Array:
    return pa.array([at(h, aware=aware) for h in hours], pa.timestamp("us", tz="UTC" if aware else None)).cast(
        pa.timestamp(unit, tz="UTC" if aware else None)
    )


def write(path: Path, **columns: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def card_view(path: Path, *, name: str = "card_stats", created: str | None = None, **features: str) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[CARD],
        ttl="10h",
        source=ParquetSource(str(path), event_time="ts", created_time=created),
        features=features or {"amount": "float64"},
    )


@pytest.fixture
def store(tmp_path: Path) -> OfflineStore:
    return OfflineStore(tmp_path / "offline")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write(
        tmp_path / "cards.parquet",
        card_id=pa.array([1, 1, 2], pa.int64()),
        ts=times([0, 2, 1]),
        amount=pa.array([10.0, 20.0, 30.0]),
    )


def entity_rows(ids: list[int | None], hours: list[float], *, aware: bool = True) -> pa.Table:
    return pa.table({"card_id": pa.array(ids, pa.int64()), "event_timestamp": times(hours, aware=aware)})


# -- the store ------------------------------------------------------------------------------


def test_scan_reads_every_file_of_a_plain_view_with_its_declared_types(tmp_path: Path, store: OfflineStore) -> None:
    folder = tmp_path / "cards"
    write(
        folder / "day=1" / "a.parquet",
        card_id=pa.array([1], pa.int32()),
        ts=times([0], unit="ns"),
        n=pa.array([1], pa.int16()),
    )
    write(
        folder / "day=2" / "b.parquet",
        card_id=pa.array([2], pa.int64()),
        ts=times([1], unit="ms"),
        n=pa.array([2], pa.int64()),
    )
    write(folder / "_SUCCESS.parquet", junk=pa.array([0]))  # not data, as for every Parquet reader
    view = card_view(folder, n="int64")
    table = store.scan(view).to_table()
    assert table.schema == pa.schema([("card_id", pa.int64()), ("ts", pa.timestamp("ns", tz="UTC")), ("n", pa.int64())])
    assert table.to_pydict() == {"card_id": [1, 2], "ts": [at(0), at(1)], "n": [1, 2]}


def test_scan_names_the_view_the_file_the_column_and_both_types(tmp_path: Path, store: OfflineStore) -> None:
    path = write(tmp_path / "cards.parquet", card_id=pa.array([1]), ts=times([0]), amount=pa.array(["12.5"]))
    with pytest.raises(InvalidInputError) as err:
        store.scan(card_view(path))
    assert str(err.value) == (
        f"feature view 'card_stats': column 'amount' in {path} is string, but the view declares double; "
        "convert the data or change the declared type"
    )
    missing = write(tmp_path / "other.parquet", card_id=pa.array([1]), ts=times([0]))
    with pytest.raises(InvalidInputError, match=r"feature view 'card_stats': .*other.parquet has no column 'amount'"):
        store.scan(card_view(missing))
    write(tmp_path / "naive" / "b.parquet", card_id=pa.array([1]), ts=times([0], aware=False), amount=[1.0])
    write(tmp_path / "naive" / "a.parquet", card_id=pa.array([1]), ts=times([0]), amount=[1.0])
    with pytest.raises(InvalidInputError, match=r"is timezone-aware but 'ts' in .*b.parquet is naive"):
        store.scan(card_view(tmp_path / "naive"))


def test_a_computed_view_is_read_from_its_output_for_its_version(tmp_path: Path, store: OfflineStore) -> None:
    events = write(tmp_path / "tx.parquet", card_id=pa.array([1, 1]), ts=times([0, 1]), amount=pa.array([5.0, 7.0]))
    view = FeatureView(
        name="card_tx",
        entities=[CARD],
        ttl="1d",
        source=ParquetSource(str(events), event_time="ts"),
        aggregations=[Sum("amount", window="2h")],
    )
    with pytest.raises(NotFoundError, match=r"feature view 'card_tx' \(version \w+\) has not been computed yet"):
        store.scan(view)
    uri = store.write_computed(view, compute_view(view))
    assert uri == f"{store.root}/card_tx/{view.version}/data.parquet"
    assert store.scan(view).to_table().column("amount_sum_2h").to_pylist() == [5.0, 12.0]
    store.write_computed(view, compute_view(view, start=at(1)))  # replaced whole
    assert store.scan(view).to_table().column("amount_sum_2h").to_pylist() == [12.0]
    assert [p.name for p in Path(uri).parent.iterdir()] == ["data.parquet"]  # no temporary file left
    with pytest.raises(InvalidInputError, match="only views with aggregations= or sql= have computed output"):
        store.write_computed(card_view(events), pa.table({"x": [1]}))


def test_pushed_rows_are_kept_one_file_per_push_in_order(source: Path, store: OfflineStore) -> None:
    view = card_view(source, created="created")
    write(source, card_id=pa.array([1]), ts=times([0]), created=times([0]), amount=[10.0])
    first = store.append_pushed(view, pd.DataFrame({"card_id": [1], "ts": [at(5)], "amount": [1.5]}))
    second = store.append_pushed(view, pl.DataFrame({"card_id": [2], "ts": [at(6)], "created": [at(9)], "amount": [2]}))
    assert Path(first).parent == Path(store.pushed_uri(view))
    assert first < second
    table = store.scan(view).to_table()
    assert table.column("amount").to_pylist() == [10.0, 1.5, 2.0]
    pushed_created = table.column("created").to_pylist()[1]
    assert abs(pushed_created - datetime.now(UTC)) < timedelta(minutes=1)  # no created time: the push's time
    with pytest.raises(
        InvalidInputError, match="feature 'amount' is string, but feature view 'card_stats' declares double"
    ):
        store.append_pushed(view, pa.table({"card_id": [1], "ts": times([0]), "amount": ["x"]}))
    with pytest.raises(InvalidInputError, match="have no column 'amount'"):
        store.append_pushed(view, pa.table({"card_id": [1], "ts": times([0])}))
    with pytest.raises(InvalidInputError, match="1 rows have no 'card_id'"):
        store.append_pushed(
            view, pa.table({"card_id": pa.array([None], pa.int64()), "ts": times([0]), "amount": [1.0]})
        )


def test_lineage_names_the_version_and_fingerprints_what_a_join_reads(source: Path, store: OfflineStore) -> None:
    view = card_view(source)
    before = store.lineage(view)
    assert (before.view, before.version, before.data) == ("card_stats", view.version, str(source))
    assert before.fingerprint == Source.parse(source).fingerprint()
    assert before.pushed is None
    assert before.pushed_fingerprint is None
    store.append_pushed(view, pa.table({"card_id": [3], "ts": times([0]), "amount": [1.0]}))
    after = store.lineage(view)
    assert after.fingerprint == before.fingerprint
    assert after.pushed == store.pushed_uri(view)
    assert after.pushed_fingerprint
    assert after.as_dict()["version"] == view.version


def test_the_store_needs_a_root() -> None:
    with pytest.raises(InvalidInputError, match="needs a root"):
        OfflineStore(" ")
    assert repr(OfflineStore("s3://lake/offline/")) == "OfflineStore('s3://lake/offline')"


# -- point-in-time joins --------------------------------------------------------------------


def test_a_training_set_keeps_every_entity_row_in_order_with_its_columns(source: Path, store: OfflineStore) -> None:
    entity = entity_rows([1, 2, 1, 9, 1], [1, 1.5, 2, 3, 13]).append_column("label", pa.array([0, 1, 0, 1, 1]))
    out = point_in_time_join(entity, [(card_view(source), ["amount"])], store=store)
    assert out.column_names == ["card_id", "event_timestamp", "label", "amount"]
    # 13h is more than the 10h ttl after the last event (2h): null, never the stale value.
    assert out.column("amount").to_pylist() == [10.0, 30.0, 20.0, None, None]
    assert out.select(["card_id", "event_timestamp", "label"]).equals(entity)


def test_pandas_and_polars_entity_frames_give_the_same_training_set(source: Path, store: OfflineStore) -> None:
    frame = pd.DataFrame({"card_id": [1, 2], "event_timestamp": pd.to_datetime([at(1), at(1)], utc=True)})
    requests = [(card_view(source), ["amount"])]
    from_pandas = point_in_time_join(frame, requests, store=store)
    from_polars = point_in_time_join(pl.from_pandas(frame), requests, store=store)
    assert from_pandas.column("amount").to_pylist() == from_polars.column("amount").to_pylist() == [10.0, 30.0]


def test_features_from_several_views_are_named_plainly_unless_they_clash(tmp_path: Path, store: OfflineStore) -> None:
    merchant = Entity("merchant", join_keys=["merchant_id"])
    cards = card_view(
        write(tmp_path / "c.parquet", card_id=pa.array([1]), ts=times([0]), amount=[1.0], n=pa.array([5])),
        n="int64",
        amount="float64",
    )
    merchants = FeatureView(
        name="merchant_stats",
        entities=[merchant],
        ttl="1d",
        source=ParquetSource(
            str(write(tmp_path / "m.parquet", merchant_id=pa.array(["m1"]), ts=times([0]), amount=[2.0])),
            event_time="ts",
        ),
        features={"amount": "float64"},
    )
    entity = pa.table({"card_id": [1, 1], "merchant_id": ["m1", "m2"], "event_timestamp": times([1, 1]), "n": [0, 0]})
    requests = [(cards, ["amount", "n"]), (merchants, ["amount"])]
    names = feature_columns(requests, entity_columns=entity.column_names)
    assert names == {
        ("card_stats", "amount"): "card_stats__amount",
        ("card_stats", "n"): "card_stats__n",  # the entity rows have an 'n' column
        ("merchant_stats", "amount"): "merchant_stats__amount",
    }
    out = point_in_time_join(entity, requests, store=store)
    assert out.column_names == ["card_id", "merchant_id", "event_timestamp", "n", *names.values()]
    assert out.column("card_stats__amount").to_pylist() == [1.0, 1.0]
    assert out.column("merchant_stats__amount").to_pylist() == [2.0, None]
    assert out.column("card_stats__n").type == pa.int64()
    assert feature_columns([(cards, ["amount"]), (cards, ["n", "amount"])]) == {
        ("card_stats", "amount"): "amount",
        ("card_stats", "n"): "n",
    }


def test_as_of_builds_the_training_set_known_at_that_time(tmp_path: Path, store: OfflineStore) -> None:
    path = write(
        tmp_path / "c.parquet",
        card_id=pa.array([1, 1]),
        ts=times([0, 2]),
        created=times([0, 8]),  # the 2h value arrived late, at 8h
        amount=[1.0, 2.0],
    )
    view = card_view(path, created="created")
    entity = entity_rows([1], [3])
    assert point_in_time_join(entity, [(view, ["amount"])], store=store).column("amount").to_pylist() == [2.0]
    known = point_in_time_join(entity, [(view, ["amount"])], as_of=at(5), store=store)
    assert known.column("amount").to_pylist() == [1.0]


def test_an_empty_entity_frame_gives_an_empty_training_set(source: Path, store: OfflineStore) -> None:
    out = point_in_time_join(entity_rows([], []), [(card_view(source), ["amount"])], store=store)
    assert out.num_rows == 0
    assert out.column_names == ["card_id", "event_timestamp", "amount"]


def test_times_are_compared_at_microsecond_precision(tmp_path: Path, store: OfflineStore) -> None:
    base = pd.Timestamp(at(1))
    path = write(
        tmp_path / "c.parquet",
        card_id=pa.array([1]),
        ts=pa.array([base + pd.Timedelta(nanoseconds=900)], pa.timestamp("ns", tz="UTC")),
        amount=[1.0],
    )
    entity = pa.table(
        {
            "card_id": [1],
            "event_timestamp": pa.array([base + pd.Timedelta(nanoseconds=100)], pa.timestamp("ns", tz="UTC")),
        }
    )
    # Both floor to the same microsecond: the row counts as known at the entity's time.
    assert point_in_time_join(entity, [(card_view(path), ["amount"])], store=store).column("amount").to_pylist() == [
        1.0
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e, v: (e, [(v, ["amount", "amount_7d"])], {}),
            "feature view 'card_stats' has no feature 'amount_7d'; its features are: amount",
        ),
        (
            lambda e, v: (e.rename_columns(["card_id", "ts"]), [(v, ["amount"])], {}),
            (
                "the entity rows have no timestamp column 'event_timestamp' (columns: card_id, ts); add it, "
                "or pass timestamp_column= naming the column that holds each row's time"
            ),
        ),
        (
            lambda e, v: (e.set_column(1, "event_timestamp", pa.array(["2024-03-01"])), [(v, ["amount"])], {}),
            "the entity rows' 'event_timestamp' is string, not a timestamp",
        ),
        (
            lambda e, v: (
                e.set_column(1, "event_timestamp", pa.array([None], pa.timestamp("us", tz="UTC"))),
                [(v, ["amount"])],
                {},
            ),
            "1 entity rows have no 'event_timestamp'",
        ),
        (
            lambda e, v: (e.set_column(1, "event_timestamp", times([1], aware=False)), [(v, ["amount"])], {}),
            (
                "the entity rows' 'event_timestamp' is naive (no time zone) but the event time 'ts' of feature view "
                "'card_stats' is timezone-aware; make both timezone-aware"
            ),
        ),
        (
            lambda e, v: (e, [(v, ["amount"])], {"as_of": datetime(2024, 3, 2)}),
            "as_of is naive (no time zone) but feature view 'card_stats''s 'ts' is timezone-aware",
        ),
        (
            lambda e, v: (e.drop_columns(["card_id"]), [(v, ["amount"])], {}),
            "the entity rows have no column 'card_id', the join key of feature view 'card_stats'; add it",
        ),
        (
            lambda e, v: (e.set_column(0, "card_id", pa.array(["1"])), [(v, ["amount"])], {}),
            "join key 'card_id' is string in the entity rows but int64 in feature view 'card_stats'",
        ),
        (lambda e, v: (e, [], {}), "no features are requested"),
        (lambda e, v: (e, [(v, "amount")], {}), "the features of view 'card_stats' must be a list of names"),
        (lambda e, v: (e, [v], {}), "a feature request must be a (FeatureView, [feature names]) pair"),
    ],
)
def test_bad_input_is_one_clear_sentence(source: Path, store: OfflineStore, change: Any, message: str) -> None:
    entity, requests, options = change(entity_rows([1], [1]), card_view(source))
    with pytest.raises(InvalidInputError) as err:
        point_in_time_join(entity, requests, store=store, **options)
    assert message in str(err.value)


def test_naive_sources_meet_naive_entity_rows_only(tmp_path: Path, store: OfflineStore) -> None:
    path = write(tmp_path / "c.parquet", card_id=pa.array([1]), ts=times([0], aware=False), amount=[1.0])
    view = card_view(path)
    naive = point_in_time_join(entity_rows([1], [1], aware=False), [(view, ["amount"])], store=store)
    assert naive.column("amount").to_pylist() == [1.0]
    with pytest.raises(
        InvalidInputError, match="is timezone-aware but the event time 'ts' of feature view 'card_stats' is naive"
    ):
        point_in_time_join(entity_rows([1], [1]), [(view, ["amount"])], store=store)


def test_a_value_that_does_not_fit_its_declared_type_is_named(tmp_path: Path, store: OfflineStore) -> None:
    path = write(tmp_path / "c.parquet", card_id=pa.array([1]), ts=times([0]), amount=pa.array([2**60 + 1]))
    with pytest.raises(
        InvalidInputError, match=r"cannot read feature view 'card_stats': .*fix the data or the declared type"
    ):
        point_in_time_join(entity_rows([1], [1]), [(card_view(path), ["amount"])], store=store)


# -- computed views -------------------------------------------------------------------------


def test_an_aggregation_view_joins_as_of_the_entitys_last_event(tmp_path: Path, store: OfflineStore) -> None:
    events = write(
        tmp_path / "tx" / "part-0.parquet",
        card_id=pa.array([1, 1, 1, 2]),
        ts=times([0, 0.5, 3, 1]),
        amount=pa.array([10, 20, 30, 5]),
    )
    view = FeatureView(
        name="card_tx",
        entities=[CARD],
        ttl="1d",
        source=ParquetSource(str(events.parent), event_time="ts"),
        aggregations=[Count("amount", window="1h"), Mean("amount", window="1d", name="avg_amount")],
    )
    table = compute_view(view)
    assert table.to_pydict() == {
        "card_id": [1, 1, 1, 2],
        "ts": [at(0), at(0.5), at(3), at(1)],
        "amount_count_1h": [1, 2, 1, 1],
        "avg_amount": [10.0, 15.0, 20.0, 5.0],
    }
    store.write_computed(view, table)
    out = point_in_time_join(entity_rows([1, 1], [2, 5]), [(view, ["amount_count_1h", "avg_amount"])], store=store)
    # At 2h the entity's last event was at 0.5h: its 1-hour count is still 2 (values do not decay).
    assert out.column("amount_count_1h").to_pylist() == [2, 1]
    half = compute_view(view, start=at(0.5), end=at(3))
    assert half.to_pydict()["ts"] == [at(0.5), at(1)]
    assert half.column("avg_amount").to_pylist() == [15.0, 5.0]


def test_an_aggregation_of_text_is_refused(tmp_path: Path) -> None:
    events = write(tmp_path / "tx.parquet", card_id=pa.array([1]), ts=times([0]), city=pa.array(["Oslo"]))
    view = FeatureView(
        name="card_tx",
        entities=[CARD],
        ttl="1d",
        source=ParquetSource(str(events), event_time="ts"),
        aggregations=[Sum("city", window="1h")],
    )
    with pytest.raises(InvalidInputError, match=r"Sum\('city'\) needs numbers, but 'city' is string"):
        compute_view(view)


def sql_view(path: Path, sql: str, **features: str) -> FeatureView:
    return FeatureView(
        name="card_sql",
        entities=[CARD],
        ttl="1d",
        source=ParquetSource(str(path), event_time="ts"),
        sql=sql,
        features=features or {"big": "int64"},
    )


def test_a_sql_view_runs_its_query_over_the_source(tmp_path: Path, store: OfflineStore) -> None:
    events = write(tmp_path / "tx.parquet", card_id=pa.array([1, 2]), ts=times([0, 1]), amount=[5.0, 500.0])
    view = sql_view(events, "SELECT card_id, ts, CAST(amount > 100 AS INTEGER) AS big, 'x' AS extra FROM source")
    table = compute_view(view)
    assert table.to_pydict() == {"card_id": [1, 2], "ts": [at(0), at(1)], "big": [0, 1]}
    assert compute_view(view, end=at(1)).num_rows == 1
    store.write_computed(view, table)
    out = point_in_time_join(entity_rows([2], [2]), [(view, ["big"])], store=store)
    assert out.column("big").to_pylist() == [1]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT card_id, ts FROM sourze", "feature view 'card_sql': its sql does not run (Catalog Error"),
        ("SELECT card_id, ts FROM source", "have no column 'big' (found: card_id, ts)"),
        ("SELECT card_id, ts, 'many' AS big FROM source", "a value of feature 'big' does not fit int64"),
        ("SELECT card_id, ts, [1] AS big FROM source", "feature 'big' is list<l: int32>, but feature view"),
        ("SELECT card_id, 5 AS ts, 1 AS big FROM source", "'ts' is int32, not a timestamp"),
    ],
)
def test_a_sql_view_whose_result_does_not_fit_is_refused(tmp_path: Path, sql: str, message: str) -> None:
    events = write(tmp_path / "tx.parquet", card_id=pa.array([1]), ts=times([0]), amount=[5.0])
    with pytest.raises(InvalidInputError) as err:
        compute_view(sql_view(events, sql))
    assert message in str(err.value)


def test_a_feature_named_like_the_created_time_is_refused(source: Path) -> None:
    with pytest.raises(
        InvalidInputError, match="feature 'amount' has the name of a join key, the event time or the created time"
    ):
        card_view(source, created="amount", amount="float64")
