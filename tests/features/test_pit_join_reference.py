"""The offline engine against plain-Python references, on randomized data: zero mismatches.

The data lives on a coarse grid of hours so that the cases that break joins come up all the
time: several rows at one event time (ties on created time, and full ties decided by write
order), rows exactly at the entity's time, rows exactly ``ttl`` before it, rows created long
after their event (``as_of``), duplicate entity rows, null keys, null feature values, and
entities with no row at all.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.features import (
    Count,
    CountDistinct,
    Entity,
    FeatureView,
    Max,
    Mean,
    Min,
    ParquetSource,
    Sum,
)
from lockgate.features._offline import OfflineStore, compute_view, point_in_time_join

HOUR = 3_600_000_000  # microseconds
T0 = datetime(2024, 1, 1, tzinfo=UTC)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stamp(hours: int | None, *, aware: bool = True) -> datetime | None:
    if hours is None:
        return None
    value = T0 + timedelta(hours=hours)
    return value if aware else value.replace(tzinfo=None)


def ts_array(values: list[int | None], *, aware: bool = True) -> pa.Array:
    return pa.array([stamp(v, aware=aware) for v in values], pa.timestamp("us", tz="UTC" if aware else None))


# -- point-in-time join ---------------------------------------------------------------------


@dataclass
class Case:
    """Feature rows in write order (source files, then pushes) and entity rows, on an hour grid."""

    two_keys: bool
    created: bool
    aware: bool
    ttl: int
    files: list[list[dict[str, Any]]]  # source files, in path order
    pushes: list[list[dict[str, Any]]]  # pushed batches, in push order
    entities: list[dict[str, Any]]
    as_of: int | None


def feature_row(draw: Any, created: bool) -> dict[str, Any]:
    event = draw(st.integers(0, 12))
    row = {
        "a": draw(st.integers(0, 2)),
        "b": draw(st.sampled_from(["x", "y"])),
        "ts": event,
        "v": draw(st.none() | st.floats(-100, 100, allow_nan=False)),
        "n": draw(st.none() | st.integers(-5, 5)),
    }
    if created:
        # Mostly soon after the event, sometimes much later; sometimes unknown.
        row["created"] = draw(st.none() | st.integers(0, 3).map(lambda d: event + d) | st.integers(event, 30))
    return row


@st.composite
def cases(draw: Any) -> Case:
    created = draw(st.booleans())
    files = [
        [feature_row(draw, created) for _ in range(draw(st.integers(0, 8)))] for _ in range(draw(st.integers(1, 3)))
    ]
    pushes = [
        [feature_row(draw, created) for _ in range(draw(st.integers(1, 4)))] for _ in range(draw(st.integers(0, 2)))
    ]
    entities = [
        {
            "a": draw(st.none() | st.integers(0, 3)),
            "b": draw(st.sampled_from(["x", "y", "z"])),
            "ts": draw(st.integers(0, 16)),
            "label": i,
        }
        for i in range(draw(st.integers(0, 12)))
    ]
    if entities and draw(st.booleans()):
        entities.append(dict(draw(st.sampled_from(entities))))  # an exact duplicate entity row
    return Case(
        two_keys=draw(st.booleans()),
        created=created,
        aware=draw(st.booleans()),
        ttl=draw(st.integers(1, 6)),
        files=files,
        pushes=pushes,
        entities=entities,
        as_of=draw(st.none() | st.integers(0, 20)),
    )


def reference(case: Case) -> list[tuple[Any, Any]]:
    """For each entity row, (v, n) from the rule written out row by row, with no cleverness."""
    keys = ["a", "b"] if case.two_keys else ["a"]
    rows = [r for group in (*case.files, *case.pushes) for r in group]  # write order
    out = []
    for e in case.entities:
        best = None
        best_rank = None
        if all(e[k] is not None for k in keys):
            for ordinal, r in enumerate(rows):
                if any(r[k] != e[k] for k in keys) or r["ts"] > e["ts"]:
                    continue
                if case.as_of is not None:
                    known = r["created"] if case.created else r["ts"]
                    if known is None or known > case.as_of:
                        continue
                created = r.get("created")
                rank = (r["ts"], -(10**9) if created is None else created, ordinal)
                if best_rank is None or rank > best_rank:
                    best, best_rank = r, rank
        if best is None or best["ts"] < e["ts"] - case.ttl:
            out.append((None, None))
        else:
            out.append((best["v"], best["n"]))
    return out


def feature_table(rows: list[dict[str, Any]], case: Case) -> pa.Table:
    columns = {
        "a": pa.array([r["a"] for r in rows], pa.int64()),
        "b": pa.array([r["b"] for r in rows], pa.string()),
        "ts": ts_array([r["ts"] for r in rows], aware=case.aware),
        "v": pa.array([r["v"] for r in rows], pa.float64()),
        "n": pa.array([r["n"] for r in rows], pa.int64()),
    }
    if case.created:
        columns["created"] = ts_array([r["created"] for r in rows], aware=case.aware)
    return pa.table(columns)


def run(case: Case, root: Path) -> list[tuple[Any, Any]]:
    source = root / "source"
    source.mkdir()
    for i, rows in enumerate(case.files):
        pq.write_table(feature_table(rows, case), source / f"part-{i}.parquet")
    keys = ["a", "b"] if case.two_keys else ["a"]
    view = FeatureView(
        name="v",
        entities=[Entity("e", join_keys=keys)],
        ttl=timedelta(hours=case.ttl),
        source=ParquetSource(str(source), event_time="ts", created_time="created" if case.created else None),
        features={"v": "float64", "n": "int64"},
    )
    store = OfflineStore(str(root / "store"))
    for rows in case.pushes:
        store.append_pushed(view, feature_table(rows, case))
    entity = pa.table(
        {
            "a": pa.array([e["a"] for e in case.entities], pa.int64()),
            "b": pa.array([e["b"] for e in case.entities], pa.string()),
            "event_timestamp": ts_array([e["ts"] for e in case.entities], aware=case.aware),
            "label": pa.array([e["label"] for e in case.entities], pa.int64()),
        }
    )
    out = point_in_time_join(entity, [(view, ["v", "n"])], as_of=stamp(case.as_of, aware=case.aware), store=store)
    assert out.column_names == ["a", "b", "event_timestamp", "label", "v", "n"]
    assert out.select(["a", "b", "event_timestamp", "label"]).equals(entity)  # every row, in order
    return list(zip(out.column("v").to_pylist(), out.column("n").to_pylist(), strict=True))


@FAST
@given(cases())
def test_point_in_time_join_matches_the_reference(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert run(case, Path(tmp)) == reference(case)


def test_the_reference_cases_cover_the_edges() -> None:
    """One hand-made case with every edge at once, so the property test is known to reach them."""
    rows = [
        {"a": 1, "b": "x", "ts": 5, "v": 1.0, "n": 1, "created": 5},
        {"a": 1, "b": "x", "ts": 5, "v": 2.0, "n": 2, "created": 7},  # tie on event time: later created wins
        {"a": 1, "b": "x", "ts": 5, "v": 3.0, "n": 3, "created": 7},  # full tie: written later wins
        {"a": 1, "b": "x", "ts": 8, "v": 4.0, "n": 4, "created": 20},  # known only at 20
        {"a": 2, "b": "x", "ts": 2, "v": None, "n": 5, "created": 2},  # a null value is a value
    ]
    entities = [
        {"a": 1, "b": "x", "ts": 5, "label": 0},  # exactly at the event time
        {"a": 1, "b": "x", "ts": 8, "label": 1},  # as_of hides the row at 8
        {"a": 1, "b": "x", "ts": 8, "label": 2},  # a duplicate
        {"a": 1, "b": "x", "ts": 9, "label": 3},  # exactly ttl (4h) after 5
        {"a": 1, "b": "x", "ts": 10, "label": 4},  # just past it
        {"a": 2, "b": "x", "ts": 3, "label": 5},
        {"a": 3, "b": "x", "ts": 3, "label": 6},  # no rows at all
        {"a": None, "b": "x", "ts": 3, "label": 7},  # a null key matches nothing
    ]
    case = Case(False, True, True, 4, [rows[:2], rows[2:]], [], entities, as_of=19)
    expected = [(3.0, 3), (3.0, 3), (3.0, 3), (3.0, 3), (None, None), (None, 5), (None, None), (None, None)]
    assert reference(case) == expected
    with tempfile.TemporaryDirectory() as tmp:
        assert run(case, Path(tmp)) == expected


# -- windowed aggregations ------------------------------------------------------------------


AGGREGATIONS = [
    Count("x", window="2h"),
    CountDistinct("x", window="3h"),
    Sum("x", window="2h"),
    Mean("x", window="4h"),
    Min("x", window="1h"),
    Max("x", window="3h"),
    Count("x", window="1h", name="x_count_hour"),
]


def aggregate_reference(events: list[dict[str, Any]], created: bool) -> dict[tuple[int, int], dict[str, Any]]:
    """For each key and each event time, every aggregate over events in (t - window, t]."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for key, t in {(e["k"], e["ts"]) for e in events}:
        row: dict[str, Any] = {}
        for agg in AGGREGATIONS:
            width = agg.window_delta // timedelta(hours=1)
            frame = [e for e in events if e["k"] == key and t - width < e["ts"] <= t]
            values = [e["x"] for e in frame if e["x"] is not None]
            row[agg.feature_name] = {
                "count": len(values),
                "count_distinct": len(set(values)),
                "sum": float(sum(values)) if values else None,
                "mean": sum(values) / len(values) if values else None,
                "min": float(min(values)) if values else None,
                "max": float(max(values)) if values else None,
            }[agg.function]
        if created:
            widest = max(a.window_delta for a in AGGREGATIONS) // timedelta(hours=1)
            known = [e["c"] for e in events if e["k"] == key and t - widest < e["ts"] <= t and e["c"] is not None]
            row["c"] = max(known) if known else None
        out[(key, t)] = row
    return out


@FAST
@given(
    events=st.lists(
        st.fixed_dictionaries(
            {
                "k": st.integers(0, 2),
                "ts": st.integers(0, 10),
                "x": st.none() | st.integers(-3, 3),
                "c": st.none() | st.integers(0, 15),
            }
        ),
        min_size=1,
        max_size=25,
    ),
    created=st.booleans(),
)
def test_aggregations_match_the_reference(events: list[dict[str, Any]], created: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        columns = {
            "k": pa.array([e["k"] for e in events], pa.int64()),
            "ts": ts_array([e["ts"] for e in events]),
            "x": pa.array([e["x"] for e in events], pa.int64()),
        }
        if created:
            columns["c"] = ts_array([e["c"] for e in events])
        pq.write_table(pa.table(columns), path)
        view = FeatureView(
            name="agg",
            entities=[Entity("e", join_keys=["k"])],
            ttl="1d",
            source=ParquetSource(str(path), event_time="ts", created_time="c" if created else None),
            aggregations=AGGREGATIONS,
        )
        table = compute_view(view)
    expected = aggregate_reference(events, created)
    rows = table.to_pylist()
    assert [(r["k"], r["ts"]) for r in rows] == sorted((k, stamp(t)) for k, t in expected)
    for r in rows:
        want = expected[(r["k"], int((r["ts"] - T0) / timedelta(hours=1)))]
        for name, value in want.items():
            got = r[name]
            if name == "c":
                assert got == stamp(value)
            elif isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-12, abs=1e-12), name
            else:
                assert got == value, name
