"""The online store contract, and the SQLite backend that must pass it.

``OnlineStoreContract`` is backend-neutral: a backend's test class subclasses it and supplies
the ``store`` fixture. SQLite runs it here; ``tests/integration/test_online_redis.py`` runs the
very same class against the real Redis on 127.0.0.1.

Times are near the wall clock on purpose: Redis expires a value at its event time plus the
view's ttl by its own clock, so a value written "in 2024" would never be stored there.
Staleness is tested by reading with a ``now`` past the ttl instead.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lockgate.errors import InvalidInputError, LockgateError, UnavailableError
from lockgate.features import Entity, FeatureView, ParquetSource
from lockgate.features._online import OnlineStore, StaleFeatures, open_online_store
from lockgate.features._online_base import ViewLayout, _empty_latest, to_micros

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
CARD = Entity("card", join_keys=["card_id"])


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def make_view(
    name: str = "card_stats",
    *,
    ttl: str = "1d",
    stale_policy: Any = "last_known",
    defaults: dict[str, Any] | None = None,
    created: bool = False,
    features: dict[str, str] | None = None,
    entities: list[Entity] | None = None,
    online: bool = True,
) -> FeatureView:
    return FeatureView(
        name=name,
        entities=entities or [CARD],
        ttl=ttl,
        source=ParquetSource("stats/", event_time="ts", created_time="created" if created else None),
        features=features or {"spend": "float64", "count": "int64"},
        stale_policy=stale_policy,
        defaults=defaults or {},
        online=online,
    )


def rows(*entries: tuple[Any, float, float, int], created: list[float] | None = None) -> pa.Table:
    """``(card_id, hours after T0, spend, count)`` rows."""
    table = pa.table(
        {
            "card_id": [e[0] for e in entries],
            "ts": pa.array([at(e[1]) for e in entries], pa.timestamp("us", tz="UTC")),
            "spend": [e[2] for e in entries],
            "count": [e[3] for e in entries],
        }
    )
    if created is not None:
        table = table.append_column("created", pa.array([at(h) for h in created], pa.timestamp("us", tz="UTC")))
    return table


def values(store: OnlineStore, view: FeatureView, *ids: Any, now: datetime | None = None) -> list[Any]:
    answer = store.read(view, [{"card_id": i} for i in ids], now=now or at(6))
    return [row.values["spend"] for row in answer]


class OnlineStoreContract:
    """Every online store backend passes these tests; subclasses provide ``store``."""

    @pytest.fixture
    def store(self) -> Iterator[OnlineStore]:
        raise NotImplementedError

    # -- values, event time, age ----------------------------------------------------------------

    def test_read_returns_value_event_time_age_and_status(self, store: OnlineStore) -> None:
        view = make_view()
        assert store.write(view, rows((1, 1.0, 10.5, 3), (2, 2.0, 20.0, 4))) == 2
        answer = store.read(view, [{"card_id": 2}, {"card_id": 1}, {"card_id": 3}], now=at(4))
        assert answer.view == "card_stats"
        assert answer.features == ("spend", "count")
        first, second, third = answer
        assert first.key == 2
        assert first.values == {"spend": 20.0, "count": 4}
        assert first.event_time == at(2.0)
        assert first.age == pytest.approx(2 * 3600)
        assert first.status == "fresh"
        assert second.feature("count") == (3, at(1.0), pytest.approx(3 * 3600), "fresh")
        assert third.values == {"spend": None, "count": None}
        assert (third.event_time, third.age, third.status) == (None, None, "missing")
        assert answer.column("spend") == [20.0, 10.5, None]

    def test_read_a_subset_of_features(self, store: OnlineStore) -> None:
        view = make_view()
        store.write(view, rows((1, 1.0, 10.5, 3)))
        answer = store.read(view, [{"card_id": 1}], ["count"], now=at(2))
        assert answer.features == ("count",)
        assert answer[0].values == {"count": 3}

    def test_read_before_any_write_is_missing(self, store: OnlineStore) -> None:
        assert store.read(make_view(), [{"card_id": 1}]).statuses == ["missing"]

    def test_many_entities_keep_request_order_with_repeats(self, store: OnlineStore) -> None:
        view = make_view()
        n = 700  # more than one IN list on SQLite, one pipeline on Redis
        store.write(view, rows(*[(i, 1.0, float(i), i) for i in range(n)]))
        wanted = [5, 699, 5, 10_000, *range(0, n, 3)]
        got = values(store, view, *wanted)
        assert got == [5.0, 699.0, 5.0, None, *[float(i) for i in range(0, n, 3)]]

    def test_entity_keys_as_an_arrow_table(self, store: OnlineStore) -> None:
        view = make_view()
        store.write(view, rows((1, 1.0, 10.5, 3), (2, 1.0, 7.0, 1)))
        answer = store.read(view, pa.table({"card_id": [2, 1], "other": ["x", "y"]}), now=at(2))
        assert answer.column("spend") == [7.0, 10.5]

    def test_typed_features_and_nulls_round_trip(self, store: OnlineStore) -> None:
        view = make_view(
            features={
                "n": "int32",
                "x": "float32",
                "ok": "bool",
                "label": "string",
                "seen": "timestamp",
                "y": "float64",
            }
        )
        seen = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
        table = pa.table(
            {
                "card_id": [1, 2],
                "ts": pa.array([at(1), at(1)], pa.timestamp("us", tz="UTC")),
                "n": pa.array([7, None], pa.int32()),
                "x": pa.array([0.1, 2.5], pa.float32()),
                "ok": [True, False],
                "label": ["café", ""],
                "seen": pa.array([seen, None], pa.timestamp("us", tz="UTC")),
                "y": [1e300, None],
            }
        )
        store.write(view, table)
        first, second = store.read(view, [{"card_id": 1}, {"card_id": 2}], now=at(2))
        assert first.values == {
            "n": 7,
            "x": pytest.approx(0.1, rel=1e-7),
            "ok": True,
            "label": "café",
            "seen": seen,
            "y": 1e300,
        }
        assert first.values["x"] == float(pa.scalar(0.1, pa.float32()).as_py())
        assert type(first.values["ok"]) is bool
        assert second.values == {"n": None, "x": 2.5, "ok": False, "label": "", "seen": None, "y": None}

    def test_two_join_keys(self, store: OnlineStore) -> None:
        merchant = Entity("merchant", join_keys=["merchant_id"])
        view = make_view("card_merchant", entities=[CARD, merchant], features={"spend": "float64"})
        table = pa.table(
            {
                "card_id": [1, 1, 2],
                "merchant_id": ["m1", "m2", "m1"],
                "ts": pa.array([at(1)] * 3, pa.timestamp("us", tz="UTC")),
                "spend": [1.0, 2.0, 3.0],
            }
        )
        assert store.write(view, table) == 3
        keys = [{"card_id": 1, "merchant_id": "m2"}, {"card_id": 2, "merchant_id": "m1"}]
        keys += [{"card_id": 2, "merchant_id": "m2"}, {"card_id": 1, "merchant_id": "m1"}]
        answer = store.read(view, keys, now=at(2))
        assert answer.column("spend") == [2.0, 3.0, None, 1.0]
        assert answer[0].key == (1, "m2")
        assert store.read(view, keys[:1], now=at(2)).column("spend") == [2.0]

    # -- newer wins -----------------------------------------------------------------------------

    def test_an_older_row_never_replaces_a_newer_one(self, store: OnlineStore) -> None:
        view = make_view()
        assert store.write(view, rows((1, 3.0, 30.0, 3))) == 1
        assert store.write(view, rows((1, 2.0, 20.0, 2))) == 0
        assert values(store, view, 1) == [30.0]
        assert store.write(view, rows((1, 4.0, 40.0, 4))) == 1
        assert values(store, view, 1) == [40.0]
        assert store.write(view, rows((1, 4.0, 40.0, 4))) == 0  # the same row again changes nothing

    def test_created_time_breaks_a_tie_in_event_time(self, store: OnlineStore) -> None:
        view = make_view(created=True)
        store.write(view, rows((1, 3.0, 30.0, 3), created=[3.5]))
        assert store.write(view, rows((1, 3.0, 31.0, 3), created=[3.2])) == 0
        assert store.write(view, rows((1, 3.0, 32.0, 3), created=[3.9])) == 1
        assert values(store, view, 1) == [32.0]

    def test_write_keeps_the_latest_row_per_entity(self, store: OnlineStore) -> None:
        view = make_view()
        table = rows((1, 2.0, 20.0, 2), (2, 1.0, 1.0, 1), (1, 3.0, 30.0, 3), (1, 1.0, 10.0, 1), (2, 0.5, 0.5, 0))
        assert store.write(view, table) == 2
        assert values(store, view, 1, 2) == [30.0, 1.0]

    # -- materialization --------------------------------------------------------------------------

    def test_materialize_is_incremental_and_idempotent(self, store: OnlineStore) -> None:
        view = make_view()
        history = rows((1, 1.0, 10.0, 1), (2, 1.5, 15.0, 1), (1, 2.5, 25.0, 2), (3, 4.0, 40.0, 4))
        assert store.get_watermark(view) is None
        first = store.materialize(view, history, end=at(2))
        assert (first.start, first.end) == (None, at(2))
        assert (first.rows_read, first.rows_in_window, first.entities, first.written) == (4, 2, 2, 2)
        assert store.get_watermark(view) == at(2)
        assert values(store, view, 1, 2, 3) == [10.0, 15.0, None]

        again = store.materialize(view, history, end=at(2))
        assert (again.rows_read, again.written) == (0, 0)

        later = store.materialize(view, history, end=at(5))
        assert (later.start, later.end) == (at(2), at(5))
        assert (later.rows_in_window, later.written) == (2, 2)
        assert values(store, view, 1, 2, 3) == [25.0, 15.0, 40.0]
        assert store.get_watermark(view) == at(5)
        assert store.materialize(view, history, end=at(5)).written == 0

    def test_materialize_windows_by_created_time_so_late_rows_count(self, store: OnlineStore) -> None:
        view = make_view(created=True)
        store.materialize(view, rows((1, 1.0, 10.0, 1), created=[1.1]), end=at(2))
        # Happened at 1.5 h, landed at 2.5 h: after the first run had passed 1.5 h.
        late = rows((1, 1.0, 10.0, 1), (1, 1.5, 15.0, 2), created=[1.1, 2.5])
        result = store.materialize(view, late, end=at(3))
        assert (result.rows_in_window, result.written) == (1, 1)
        assert values(store, view, 1) == [15.0]

    def test_materialize_streams_record_batches_and_reports_progress(self, store: OnlineStore) -> None:
        view = make_view()
        table = rows(*[(i % 50, i / 100, float(i), i) for i in range(300)])
        seen: list[tuple[int, int]] = []
        result = store.materialize(
            view, iter(table.to_batches(max_chunksize=64)), end=at(10), progress=lambda r, w: seen.append((r, w))
        )
        assert (result.rows_read, result.entities, result.written) == (300, 50, 50)
        assert seen[0] == (64, 0)
        assert seen[-1] == (300, 50)
        assert values(store, view, 49) == [299.0]

    def test_materialize_of_nothing_still_moves_the_watermark(self, store: OnlineStore) -> None:
        view = make_view()
        result = store.materialize(view, iter([]), end=at(1))
        assert (result.rows_read, result.written) == (0, 0)
        assert store.get_watermark(view) == at(1)

    def test_rows_without_a_join_key_are_skipped_and_counted(self, store: OnlineStore) -> None:
        view = make_view()
        result = store.materialize(view, rows((1, 1.0, 1.0, 1), (None, 1.0, 2.0, 2), (None, 1.2, 3.0, 3)), end=at(2))
        assert (result.rows_in_window, result.entities, result.written, result.skipped_null_keys) == (3, 1, 1, 2)

    def test_set_watermark_by_hand(self, store: OnlineStore) -> None:
        view = make_view()
        history = rows((1, 1.0, 10.0, 1), (1, 3.0, 30.0, 3))
        store.materialize(view, history, end=at(4))
        store.set_watermark(view, None)
        assert store.get_watermark(view) is None
        replay = store.materialize(view, history, end=at(4))
        assert (replay.rows_in_window, replay.written) == (2, 0)  # newer-wins: nothing changes
        store.set_watermark(view, at(1))
        assert store.get_watermark(view) == at(1)

    def test_a_materialization_never_moves_the_watermark_back(self, store: OnlineStore) -> None:
        view = make_view()
        store.materialize(view, rows((1, 1.0, 10.0, 1)), end=at(5))
        # Two runs that started from the same watermark: the one ending at 2 h commits last.
        # Run through the backend's write primitive, which both runs end in.
        layout = store.layout(view)
        store._upsert(layout, _empty_latest(layout), watermark_us=to_micros(at(2)), progress=lambda r, w: None)
        assert store.get_watermark(view) == at(5)
        store.set_watermark(view, at(2))  # by hand it may go back
        assert store.get_watermark(view) == at(2)

    def test_a_new_version_of_a_view_starts_empty(self, store: OnlineStore) -> None:
        view = make_view()
        store.materialize(view, rows((1, 1.0, 10.0, 1)), end=at(2))
        changed = make_view(ttl="2d")
        assert changed.version != view.version
        assert store.read(changed, [{"card_id": 1}]).statuses == ["missing"]
        assert store.get_watermark(changed) is None

    def test_drop_deletes_values_and_watermark(self, store: OnlineStore) -> None:
        view, other = make_view(), make_view("other")
        store.materialize(view, rows((1, 1.0, 10.0, 1)), end=at(2))
        store.materialize(other, rows((1, 1.0, 10.0, 1)), end=at(2))
        store.drop(view)
        assert store.read(view, [{"card_id": 1}]).statuses == ["missing"]
        assert store.get_watermark(view) is None
        assert values(store, other, 1) == [10.0]

    # -- ttl and stale policies --------------------------------------------------------------------

    def test_ttl_is_enforced_at_read_time(self, store: OnlineStore) -> None:
        view = make_view(ttl="1d")
        store.write(view, rows((1, 1.0, 10.0, 1), (2, 5.0, 50.0, 5)))
        answer = store.read(view, [{"card_id": 1}, {"card_id": 2}], now=at(26))
        assert answer.statuses == ["stale", "fresh"]
        assert answer[0].values == {"spend": 10.0, "count": 1}  # last_known: served, flagged
        assert answer[0].age == pytest.approx(25 * 3600)
        assert store.read(view, [{"card_id": 1}], now=at(25)).statuses == ["fresh"]  # exactly the ttl

    def test_fail_closed_refuses_stale_and_missing_values(self, store: OnlineStore) -> None:
        view = make_view(stale_policy="fail_closed")
        store.write(view, rows((1, 1.0, 10.0, 1), (2, 20.0, 20.0, 2)))
        assert store.read(view, [{"card_id": 2}], now=at(21)).statuses == ["fresh"]
        with pytest.raises(StaleFeatures) as caught:
            store.read(view, [{"card_id": 1}, {"card_id": 2}, {"card_id": 3}], now=at(30))
        error = caught.value
        assert isinstance(error, UnavailableError)
        assert error.view == "card_stats"
        assert error.entities == [1, 3]
        assert error.age == pytest.approx(29 * 3600)
        assert error.retry_after == store.retry_after > 0
        message = str(error)
        assert "'card_stats'" in message
        assert "1 stale" in message
        assert "1 missing" in message
        assert "fail_closed" in message

    def test_default_policy_answers_the_defaults(self, store: OnlineStore) -> None:
        view = make_view(stale_policy="default", defaults={"spend": 0.0, "count": -1})
        store.write(view, rows((1, 1.0, 10.0, 1), (2, 20.0, 20.0, 2)))
        answer = store.read(view, [{"card_id": 1}, {"card_id": 2}, {"card_id": 3}], now=at(30))
        assert answer.statuses == ["default", "fresh", "default"]
        assert answer[0].values == {"spend": 0.0, "count": -1}
        assert answer[0].event_time == at(1.0)  # the stale value the default stands in for
        assert answer[2].values == {"spend": 0.0, "count": -1}
        assert answer[2].event_time is None

    def test_a_consumer_overrides_the_policy(self, store: OnlineStore) -> None:
        view = make_view(defaults={"spend": 0.0})
        store.write(view, rows((1, 1.0, 10.0, 1)))
        with pytest.raises(StaleFeatures):
            store.read(view, [{"card_id": 1}], now=at(30), policy="fail_closed")
        answer = store.read(view, [{"card_id": 1}], ["spend"], now=at(30), policy="default")
        assert (answer[0].values, answer[0].status) == ({"spend": 0.0}, "default")
        with pytest.raises(InvalidInputError, match="has none for 'count'"):
            store.read(view, [{"card_id": 1}], now=at(30), policy="default")
        with pytest.raises(InvalidInputError, match="stale policy"):
            store.read(view, [{"card_id": 1}], policy="sometimes")

    def test_counters_count_values_per_view(self, store: OnlineStore) -> None:
        strict = make_view("strict", stale_policy="fail_closed")
        lenient = make_view("lenient", stale_policy="default", defaults={"spend": 0.0, "count": 0})
        for view in (strict, lenient):
            store.write(view, rows((1, 1.0, 10.0, 1), (2, 20.0, 20.0, 2)))
        store.read(lenient, [{"card_id": 1}, {"card_id": 2}, {"card_id": 3}], now=at(30))
        store.read(strict, [{"card_id": 2}], now=at(30))
        with pytest.raises(StaleFeatures):
            store.read(strict, [{"card_id": 1}, {"card_id": 2}], now=at(30))
        assert store.counters.snapshot() == {
            "lenient": {"fresh": 2, "stale": 2, "missing": 2, "defaulted": 4, "rejected": 0},
            "strict": {"fresh": 4, "stale": 2, "missing": 0, "defaulted": 0, "rejected": 2},
        }

    # -- bad input --------------------------------------------------------------------------------

    def test_unknown_feature_is_refused(self, store: OnlineStore) -> None:
        with pytest.raises(InvalidInputError, match="has no feature 'spnd'; its features are spend, count"):
            store.read(make_view(), [{"card_id": 1}], ["spnd"])

    def test_entity_row_without_the_join_key_is_refused(self, store: OnlineStore) -> None:
        with pytest.raises(InvalidInputError, match=r"lacks 'card_id' \(it has 'card'\)"):
            store.read(make_view(), [{"card_id": 1}, {"card": 2}])
        with pytest.raises(InvalidInputError, match="lacks 'card_id'"):
            store.read(make_view(), pa.table({"card": [1]}))
        with pytest.raises(InvalidInputError, match="null card_id"):
            store.read(make_view(), [{"card_id": None}])
        with pytest.raises(InvalidInputError, match="list of rows"):
            store.read(make_view(), {"card_id": 1})

    def test_rows_missing_a_column_write_nothing(self, store: OnlineStore) -> None:
        view = make_view()
        with pytest.raises(InvalidInputError, match="lack the column 'count'"):
            store.materialize(view, rows((1, 1.0, 10.0, 1)).drop_columns(["count"]), end=at(2))
        assert store.get_watermark(view) is None

    def test_a_value_that_does_not_fit_the_type_writes_nothing(self, store: OnlineStore) -> None:
        view = make_view()
        good = rows(*[(i, 1.0, float(i), i) for i in range(1000)])
        bad = good.set_column(3, "count", pa.array([str(i) for i in range(999)] + ["many"]))
        with pytest.raises(InvalidInputError, match="do not fit its definition"):
            store.materialize(view, bad, end=at(2))
        assert store.get_watermark(view) is None
        assert values(store, view, 0, 998) == [None, None]

    def test_an_offline_scan_error_reaches_the_caller_as_itself(self, store: OnlineStore) -> None:
        class ScanFailed(Exception):
            pass

        def scan() -> Iterator[pa.RecordBatch]:
            yield from rows((1, 1.0, 10.0, 1)).to_batches()
            raise ScanFailed("the offline store went away")

        with pytest.raises(ScanFailed):
            store.materialize(make_view(), scan(), end=at(2))
        assert store.get_watermark(make_view()) is None

    def test_a_view_that_is_not_online_is_refused(self, store: OnlineStore) -> None:
        with pytest.raises(InvalidInputError, match="online=False"):
            store.read(make_view(online=False), [{"card_id": 1}])

    def test_event_time_must_be_a_timestamp(self, store: OnlineStore) -> None:
        table = rows((1, 1.0, 10.0, 1)).set_column(1, "ts", pa.array(["yesterday"]))
        with pytest.raises(InvalidInputError, match="not timestamps"):
            store.write(make_view(), table)

    def test_concurrent_reads_and_writes(self, store: OnlineStore) -> None:
        view = make_view()
        store.write(view, rows(*[(i, 1.0, float(i), 0) for i in range(100)]))
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(30):
                    got = values(store, view, *range(100))
                    assert all(v is not None and v % 1 == 0 for v in got)
            except (AssertionError, LockgateError) as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for step in range(1, 11):
            store.write(view, rows(*[(i, 1.0 + step / 10, float(i + step), step) for i in range(100)]))
        for t in threads:
            t.join()
        assert errors == []
        assert values(store, view, 0, 99) == [10.0, 109.0]


class TestSqliteOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[OnlineStore]:
        store = open_online_store(None, home=tmp_path)
        try:
            yield store
        finally:
            store.close()

    def test_default_file_is_in_the_workspace_in_wal_mode(self, store: OnlineStore, tmp_path: Path) -> None:
        assert store.backend == "sqlite"
        store.write(make_view(), rows((1, 1.0, 10.0, 1)))
        with sqlite3.connect(tmp_path / "online.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    def test_stale_values_stay_readable_as_last_known(self, store: OnlineStore) -> None:
        # Unlike Redis, SQLite keeps a value past its ttl (the ttl is enforced at read time).
        view = make_view(ttl="1h")
        store.write(view, rows((1, -48.0, 10.0, 1)))
        answer = store.read(view, [{"card_id": 1}])
        assert (answer[0].values["spend"], answer[0].status) == (10.0, "stale")

    def test_watermark_travels_with_the_file(self, store: OnlineStore, tmp_path: Path) -> None:
        view = make_view()
        store.materialize(view, rows((1, 1.0, 10.0, 1)), end=at(2))
        store.close()
        with open_online_store(f"sqlite:///{tmp_path / 'online.db'}", home=Path("/nonexistent")) as again:
            assert again.get_watermark(view) == at(2)
            assert values(again, view, 1) == [10.0]

    def test_a_failure_mid_write_leaves_nothing_behind(
        self, store: OnlineStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from lockgate.features import _online_sqlite

        monkeypatch.setattr(_online_sqlite, "_CHUNK", 10)
        view = make_view()
        calls: list[tuple[int, int]] = []

        def progress(read: int, written: int) -> None:
            calls.append((read, written))
            if written >= 20:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            store.materialize(view, rows(*[(i, 1.0, float(i), i) for i in range(50)]), end=at(2), progress=progress)
        assert calls[-1] == (50, 20)
        assert store.get_watermark(view) is None
        assert values(store, view, 0, 15) == [None, None]
        assert store.materialize(view, rows(*[(i, 1.0, float(i), i) for i in range(50)]), end=at(2)).written == 50

    def test_urls(self, tmp_path: Path) -> None:
        with open_online_store("sqlite:///sub/o.db", home=tmp_path) as relative:
            assert relative.url == f"sqlite:///{tmp_path / 'sub' / 'o.db'}"
        with open_online_store(f"sqlite:///{tmp_path / 'abs.db'}", home=Path("/nonexistent")) as absolute:
            assert Path(absolute.url.removeprefix("sqlite:///")) == tmp_path / "abs.db"
        for bad in ("sqlite://", "sqlite:///:memory:", "postgresql://db/x"):
            with pytest.raises(InvalidInputError):
                open_online_store(bad, home=tmp_path)

    def test_a_file_that_is_not_a_database(self, tmp_path: Path) -> None:
        (tmp_path / "online.db").write_bytes(b"not a database at all, just some text" * 100)
        with pytest.raises(UnavailableError, match="cannot be opened"):
            open_online_store(None, home=tmp_path)

    def test_a_key_sqlite_cannot_bind_is_bad_input(self, store: OnlineStore) -> None:
        view = make_view()
        store.write(view, rows((1, 1.0, 10.0, 1)))
        for keys in ([{"card_id": object()}], [{"card_id": 1}, {"card_id": object()}]):
            with pytest.raises(InvalidInputError, match="cannot be looked up"):
                store.read(view, keys)

    def test_layout_is_computed_once_per_view_object(self, store: OnlineStore) -> None:
        view = make_view()
        store.write(view, rows((1, 1.0, 10.0, 1)))
        layout = store.layout(view)
        assert isinstance(layout, ViewLayout)
        store.read(view, [{"card_id": 1}])
        assert store.layout(view) is layout
