"""``validate``: what a user sees when data meets, or breaks, its contract."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lockgate as lg
from lockgate.data import Contract, _checks, _custom
from lockgate.data._validate import ValidationReport, register_batch_check, validate
from lockgate.examples.fraud.data import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "contracts"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def contract(**fields: Any) -> Contract:
    """A contract called ``t`` from keyword fields; ``columns`` may give a bare type per column.

    Duplicate rows are not checked unless asked for, to keep small tables readable.
    """
    columns = {name: {"type": c} if isinstance(c, str) else c for name, c in fields.pop("columns").items()}
    return Contract.from_dict({"name": "t", "columns": columns, "duplicate_rows": None, **fields})


def checks(report: ValidationReport) -> list[tuple[str, str | None, int]]:
    return [(f.check, f.column, f.rows) for f in report.failures]


# -- the example data ----------------------------------------------------------------------------


def test_the_fraud_data_passes_its_contract() -> None:
    data = generate(days=10, cards=200, merchants=60, shift_days=0)
    report = validate(data.transactions, Contract.load(EXAMPLES / "transactions.yaml"), now=data.end)
    assert report.passed, [f.message for f in report.failures]
    assert report.rows == data.transactions.num_rows
    # The hidden ground truth is a column the contract does not name: a warning, not an error.
    assert checks(report) == [("extra_column", "is_fraud", report.rows)]
    assert report.warnings == report.failures
    assert report.errors == []


def test_the_drifted_fraud_data_warns_about_the_new_category() -> None:
    data = generate(days=30, cards=300, merchants=80, shift_days=14)
    report = validate(data.transactions, Contract.load(EXAMPLES / "transactions.yaml"), now=data.end)
    assert report.passed  # a new category is drift to weigh, not broken data: a warning
    [crypto] = [f for f in report.warnings if f.check == "allowed"]
    assert crypto.check == "allowed"
    assert crypto.column == "merchant_category"
    assert crypto.examples == ("crypto",)
    expected = pc.sum(pc.equal(data.transactions["merchant_category"], "crypto")).as_py()
    assert crypto.rows == expected
    assert crypto.message.startswith(f"merchant_category: {expected:,} rows (")
    assert crypto.message.endswith("not among the 9 allowed values, e.g. 'crypto'.")


# -- schema first ----------------------------------------------------------------------------------


def test_a_renamed_column_fails_fast_as_missing() -> None:
    c = contract(columns={"card_id": {"type": "string", "nullable": False}, "amount": {"type": "float64", "min": 0}})
    table = pa.table({"card": ["c1", "c2"], "amount": [-1.0, 2.0]})
    report = validate(table, c)
    assert not report.passed
    # Only the schema is reported: the negative amount is not looked at.
    assert checks(report) == [("missing_column", "card_id", 2), ("extra_column", "card", 2)]
    assert report.failures[0].message == "card_id: the column is missing; similar names in the data: 'card'."
    assert report.failures[1].severity == "warn"


def test_a_wrong_type_fails_fast_with_example_values() -> None:
    c = contract(columns={"amount": {"type": "float64", "max": 10}})
    report = validate(pa.table({"amount": ["12.5", "n/a", None]}), c)
    [failure] = report.failures
    assert (failure.check, failure.severity, failure.examples) == ("type", "error", ("12.5", "n/a"))
    assert failure.message == "amount: expected float64, found string, e.g. '12.5', 'n/a'."


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("string", pa.array(["a"], pa.large_string())),
        ("string", pa.array(["a"]).dictionary_encode()),
        ("string", pa.array(["a"], pa.string_view())),
        ("int64", pa.array([1], pa.int32())),
        ("int64", pa.array([1], pa.uint16())),
        ("float64", pa.array([1.5], pa.float32())),
        ("timestamp[us, tz=UTC]", pa.array([0], pa.timestamp("ns", tz="UTC"))),
        ("timestamp[us, tz=UTC]", pa.array([0], pa.timestamp("us", tz="Etc/UTC"))),
        ("date", pa.array([0], pa.date64())),
        ("float64", pa.nulls(1)),
    ],
)
def test_layouts_and_lossless_widenings_are_accepted(declared: str, data: pa.Array) -> None:
    assert validate(pa.table({"x": data}), contract(columns={"x": declared})).passed


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("float64", pa.array([1], pa.int64())),
        ("int32", pa.array([1], pa.int64())),
        ("int32", pa.array([1], pa.uint32())),
        ("uint32", pa.array([1], pa.int8())),
        ("timestamp[us, tz=UTC]", pa.array([0], pa.timestamp("us"))),
        ("timestamp[us, tz=UTC]", pa.array([0], pa.timestamp("us", tz="Europe/Berlin"))),
        ("string", pa.array([b"a"], pa.binary())),
    ],
)
def test_lossy_or_different_types_are_refused(declared: str, data: pa.Array) -> None:
    report = validate(pa.table({"x": data}), contract(columns={"x": declared}))
    assert [f.check for f in report.failures] == ["type"]


@pytest.mark.parametrize(("policy", "expected"), [("allow", []), ("warn", ["warn"]), ("error", ["error"])])
def test_extra_columns_follow_the_policy(policy: str, expected: list[str]) -> None:
    report = validate(pa.table({"a": [1], "b": [2]}), contract(columns={"a": "int64"}, extra_columns=policy))
    assert [f.severity for f in report.failures] == expected
    assert report.passed == (policy != "error")


def test_a_parquet_file_is_validated_by_path_and_its_schema_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.table({"id": [1, 2, 2], "amount": [1.0, 2.0, 3.0]}), path)
    ok = contract(columns={"id": {"type": "int64", "unique": True}, "amount": "float64"})
    assert checks(validate(path, ok)) == [("unique", "id", 2)]
    assert validate(str(path), ok).data is not None
    renamed = contract(columns={"key": "int64", "amount": "float64"}, extra_columns="allow")
    early = validate(path, renamed)
    assert checks(early) == [("missing_column", "key", 3)]
    assert early.data is None  # answered from the footer


def test_csv_files_and_partition_folders_are_read_by_path(tmp_path: Path) -> None:
    c = contract(columns={"id": {"type": "int64", "unique": True}, "amount": {"type": "float64", "max": 10}})
    csv = tmp_path / "batch.csv"
    csv.write_text("id,amount\n1,2.5\n2,12.0\n")
    assert checks(validate(csv, c)) == [("max", "amount", 1)]
    folder = tmp_path / "days"
    for day, ids in (("2026-11-27", [1, 2]), ("2026-11-28", [2, 3])):
        (folder / f"day={day}").mkdir(parents=True)
        pq.write_table(pa.table({"id": ids, "amount": [1.0, 2.0]}), folder / f"day={day}" / "part-0.parquet")
    report = validate(folder, contract(columns={"id": {"type": "int64", "unique": True}, "amount": "float64"}))
    assert ("unique", "id", 2) in checks(report)


def test_an_unreadable_file_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(lg.InvalidInputError) as info:
        validate(bad, contract(columns={"x": "int64"}))
    assert "broken.parquet" in str(info.value)
    assert "\n" not in str(info.value)


# -- value rules ----------------------------------------------------------------------------------


def test_out_of_range_amounts_are_counted_with_examples() -> None:
    amounts = [12.5] * 96 + [61200.5, 99000.0, 61200.5, -3.0]
    c = contract(columns={"amount": {"type": "float64", "min": 0, "max": 50000}})
    report = validate(pa.table({"amount": amounts}), c)
    assert [f.message for f in report.failures] == [
        "amount: 1 row (1.0%) below the minimum 0, e.g. -3.0.",
        "amount: 3 rows (3.0%) above the maximum 50000, e.g. 61200.5, 99000.0.",
    ]
    above = report.failures[1]
    assert (above.rows, above.share, above.examples) == (3, 0.03, (61200.5, 99000.0))


def test_nulls_nan_and_null_rate() -> None:
    c = contract(
        columns={
            "a": {"type": "float64", "nullable": False},
            "b": {"type": "string", "max_null_rate": {"value": 0.2, "severity": "warn"}},
        }
    )
    table = pa.table({"a": [1.0, float("nan"), None, 4.0], "b": ["x", None, None, "y"]})
    report = validate(table, c)
    assert checks(report) == [("not_null", "a", 2), ("max_null_rate", "b", 2)]
    assert report.failures[0].examples == (1, 2)  # row numbers: the values are missing
    assert report.failures[0].message == "a: 2 rows (50%) missing, but the column is not nullable, e.g. row 1, 2."
    assert report.failures[1].message == "b: 50% of rows (2) are missing, above the allowed 20%."


def test_allowed_values_regex_and_uniqueness() -> None:
    c = contract(
        columns={
            "channel": {"type": "string", "allowed": ["pos", "online", "atm"]},
            "card": {"type": "string", "regex": r"^c\d{3}$"},
            "id": {"type": "int64", "unique": True},
            "code": {"type": "string", "unique": {"value": True, "severity": "warn"}},
        }
    )
    table = pa.table(
        {
            "channel": ["pos", "ATM", None, "pos", "fax"],
            "card": ["c001", "c01", "x001", None, "c999"],
            "id": [5, 3, 5, None, 5],
            "code": ["a", "b", "a", None, None],
        }
    )
    report = validate(table, c)
    assert checks(report) == [
        ("allowed", "channel", 2),
        ("regex", "card", 2),
        ("unique", "id", 3),
        ("unique", "code", 2),
    ]
    assert report.failures[0].examples == ("ATM", "fax")
    assert report.failures[1].message == r"card: 2 rows (40%) do not match ^c\d{3}$, e.g. 'c01', 'x001'."
    assert report.failures[2].examples == (5,)
    assert report.failures[3].severity == "warn"


def test_ranges_on_integer_and_decimal_columns() -> None:
    c = contract(columns={"n": {"type": "int32", "min": 0, "max": 9}, "d": {"type": "decimal(10, 2)", "max": 100}})
    table = pa.table(
        {
            "n": pa.array([-1, 5, 10, None], pa.int32()),
            "d": pa.array([Decimal("100.01"), None, Decimal("1"), Decimal("3")], pa.decimal128(10, 2)),
        }
    )
    report = validate(table, c)
    assert checks(report) == [("min", "n", 1), ("max", "n", 1), ("max", "d", 1)]
    assert report.failures[2].examples == (Decimal("100.01"),)


def test_allowed_values_on_dictionary_and_integer_columns() -> None:
    c = contract(columns={"s": {"type": "string", "allowed": ["a", "b"]}, "n": {"type": "int64", "allowed": [1, 2]}})
    table = pa.table({"s": pa.array(["a", "c", "b", None]).dictionary_encode(), "n": [1, 2, 3, None]})
    assert checks(validate(table, c)) == [("allowed", "s", 1), ("allowed", "n", 1)]


def test_rules_that_cannot_apply_are_bad_input() -> None:
    with pytest.raises(lg.InvalidInputError, match="'min' applies to numbers"):
        validate(pa.table({"s": ["a"]}), contract(columns={"s": {"type": "string", "min": 0}}))
    with pytest.raises(lg.InvalidInputError, match="allowed values"):
        validate(pa.table({"n": [1]}), contract(columns={"n": {"type": "int64", "allowed": ["x"]}}))
    with pytest.raises(lg.InvalidInputError, match="RE2"):
        validate(pa.table({"s": ["a"]}), contract(columns={"s": {"type": "string", "regex": "(?=a)a"}}))


def test_primary_key_and_duplicate_rows() -> None:
    c = contract(columns={"a": "int64", "b": "string", "v": "float64"}, primary_key=["a", "b"], duplicate_rows="warn")
    table = pa.table(
        {"a": [1, 1, 1, 2, 3, 3], "b": ["x", "y", "x", None, "z", "z"], "v": [1.0, 2.0, 1.0, 3.0, 4.0, 5.0]}
    )
    report = validate(table, c)
    assert checks(report) == [("primary_key", None, 5), ("duplicate_rows", None, 1)]
    key, dup = report.failures
    assert key.severity == "error"
    assert key.examples[0] == {"a": 1, "b": "x"}
    assert dup.examples == (2,)  # the later copy of row 0
    assert dup.message == "1 row (16.7%) repeats an earlier row exactly, e.g. row 2."


def test_duplicate_rows_on_a_table_without_keys() -> None:
    table = pa.table({"a": [1, 2, 1, 1], "b": ["x", "y", "x", "z"]})
    report = validate(table, contract(columns={"a": "int64", "b": "string"}, duplicate_rows="error"))
    assert checks(report) == [("duplicate_rows", None, 1)]
    assert not report.passed


def test_a_clean_key_proves_there_are_no_duplicate_rows() -> None:
    table = pa.table({"id": np.arange(50_000), "v": np.zeros(50_000)})
    report = validate(table, contract(columns={"id": {"type": "int64", "unique": True}, "v": "float64"}))
    assert report.passed
    assert report.failures == []


def test_warnings_do_not_fail_the_report() -> None:
    c = contract(columns={"amount": {"type": "float64", "max": {"value": 10, "severity": "warn"}}})
    report = validate(pa.table({"amount": [1.0, 20.0]}), c)
    assert report.passed
    assert [f.severity for f in report.failures] == ["warn"]
    assert report.errors == []


def test_min_rows_and_an_empty_table() -> None:
    c = contract(columns={"x": {"type": "int64", "nullable": False, "unique": True}}, min_rows=1)
    report = validate(pa.table({"x": pa.array([], pa.int64())}), c)
    assert checks(report) == [("min_rows", None, 0)]
    assert report.failures[0].message == "the data has 0 rows, fewer than the required 1."


# -- time ------------------------------------------------------------------------------------------


def events(ages: list[timedelta | None], labels: list[bool | None]) -> pa.Table:
    ts = [None if a is None else NOW - a for a in ages]
    return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "label": labels})


TIMED = contract(
    columns={"ts": "timestamp[us, tz=UTC]", "label": "bool"},
    event_time={"column": "ts", "max_lag": "2h"},
    label={"column": "label", "max_delay": "7d", "min_available": 0.75},
)


def test_freshness_is_judged_at_the_given_now() -> None:
    fresh = events([timedelta(hours=1), timedelta(days=1)], [None, True])
    assert validate(fresh, TIMED, now=NOW).passed
    stale = events([timedelta(hours=3, minutes=12), timedelta(days=1)], [None, True])
    report = validate(stale, TIMED, now=NOW)
    assert checks(report) == [("freshness", "ts", 2)]
    assert report.failures[0].message == (
        "ts: the newest event, 2026-11-28 08:48:00+00:00, is 3h 12m old at 2026-11-28 12:00:00+00:00; at most 2h is allowed."
    )
    assert validate(stale, TIMED, now=NOW - timedelta(hours=2)).passed
    # A naive now is read as UTC.
    assert validate(stale, TIMED, now=datetime(2026, 11, 28, 10, 0)).passed


def test_label_availability_counts_only_rows_older_than_the_delay() -> None:
    old = [timedelta(days=8 + i) for i in range(4)]
    young = [timedelta(hours=1)] * 4
    enough = events(old + young, [True, True, False, None, None, None, None, None])
    assert validate(enough, TIMED, now=NOW).passed  # 3 of 4 old rows labelled: 75%
    short = events(old + young, [True, None, False, None, None, None, None, None])
    report = validate(short, TIMED, now=NOW)
    assert checks(report) == [("label_availability", "label", 2)]
    failure = report.failures[0]
    assert failure.share == 0.5
    assert failure.message == "label: 50% of the 4 rows older than 7d have a label; at least 75% must."


# -- against a reference ----------------------------------------------------------------------


def test_new_categories_distinct_and_row_count_change_against_a_reference() -> None:
    c = contract(
        columns={
            "country": {"type": "string", "max_new_categories": 0.1},
            "merchant": {"type": "string", "max_distinct_change": 0.5},
        },
        max_row_count_change=0.5,
    )
    reference = pa.table({"country": ["DE", "FR"] * 5, "merchant": ["m1", "m2", "m3", "m4", "m5"] * 2})
    batch = pa.table({"country": ["DE", "BR", "BR", "US"], "merchant": ["m1"] * 4})
    report = validate(batch, c, reference=reference)
    assert checks(report) == [
        ("new_categories", "country", 3),
        ("distinct_change", "merchant", 4),
        ("row_count_change", None, 4),
    ]
    new = report.failures[0]
    assert new.examples == ("BR", "US")
    assert (
        new.message
        == "country: 75% of rows (3) have values the reference never had, above the allowed 10%, e.g. 'BR', 'US'."
    )
    assert report.failures[2].message == (
        "the data has 4 rows against 10 in the reference (-60.0%), more than the allowed 50% change."
    )
    alone = validate(batch, c)
    assert alone.passed
    assert len(alone.skipped) == 3


# -- custom checks ----------------------------------------------------------------------------------


def test_a_sql_check_over_each_row() -> None:
    c = contract(
        columns={"refund": "float64", "amount": "float64", "id": "string"},
        primary_key=["id"],
        checks=[{"name": "refund_le_amount", "sql": "refund <= amount"}],
    )
    table = pa.table({"id": ["a", "b", "c", "d"], "refund": [1.0, 30.0, None, 5.0], "amount": [10.0, 10.0, 10.0, 5.0]})
    report = validate(table, c)
    [failure] = report.failures
    assert (failure.check, failure.rows, failure.severity) == ("custom:refund_le_amount", 1, "error")
    assert failure.examples == ({"refund": 30.0, "amount": 10.0},)  # the columns the SQL names
    assert "(refund <= amount): 1 row (25%) fail" in failure.message


def test_a_bad_sql_check_names_the_check() -> None:
    table = pa.table({"a": [1]})
    for sql, match in (("a <=", "does not run"), ("nope > 1", "does not run"), ("a + 1", "boolean")):
        c = contract(columns={"a": "int64"}, checks=[{"name": "mine", "sql": sql}])
        with pytest.raises(lg.InvalidInputError, match=f"custom check 'mine'.*{match}"):
            validate(table, c)


def test_a_registered_python_check_over_the_batch() -> None:
    @register_batch_check("even_amounts")
    def even(batch: pa.Table) -> Any:
        return pc.equal(pc.bit_wise_and(batch["amount"], 1), 0)

    c = contract(columns={"amount": "int64"}, checks=[{"name": "even", "python": "even_amounts", "severity": "warn"}])
    report = validate(pa.table({"amount": [2, 3, 4, 5, None]}), c)
    assert checks(report) == [("custom:even", None, 2)]
    assert report.passed

    @register_batch_check("numpy_result")
    def as_numpy(batch: pa.Table) -> Any:
        return np.ones(batch.num_rows, dtype=bool)

    ok = contract(columns={"amount": "int64"}, checks=[{"name": "np", "python": "numpy_result"}])
    assert validate(pa.table({"amount": [1]}), ok).passed


def test_python_check_mistakes_are_reported_with_its_name() -> None:
    table = pa.table({"a": [1, 2]})
    missing = contract(columns={"a": "int64"}, checks=[{"name": "c", "python": "never_registered"}])
    with pytest.raises(lg.InvalidInputError, match="'never_registered', which is not registered"):
        validate(table, missing)

    @register_batch_check("raises")
    def raises(batch: pa.Table) -> Any:
        raise KeyError("nope")

    with pytest.raises(lg.UserCodeError, match=r"Python check 'raises'.*KeyError") as info:
        validate(table, contract(columns={"a": "int64"}, checks=[{"name": "c", "python": "raises"}]))
    assert isinstance(info.value.__cause__, KeyError)

    @register_batch_check("short")
    def short(batch: pa.Table) -> Any:
        return [True]

    with pytest.raises(lg.UserCodeError, match="gave 1 values for 2 rows"):
        validate(table, contract(columns={"a": "int64"}, checks=[{"name": "c", "python": "short"}]))


# -- quarantine -----------------------------------------------------------------------------------


def test_quarantine_moves_failing_rows_out_and_the_rest_passes() -> None:
    c = contract(
        columns={
            "id": {"type": "int64", "nullable": False},
            "amount": {"type": "float64", "min": 0, "max": {"value": 100, "severity": "warn"}},
        },
        on_error="quarantine",
    )
    table = pa.table({"id": [1, 2, 3, None, 5], "amount": [5.0, -1.0, 500.0, 7.0, 8.0]})
    report = validate(table, c)
    assert report.passed
    assert report.quarantined is not None
    assert report.passed_rows is not None
    assert report.quarantined.to_pydict() == {"id": [2, None], "amount": [-1.0, 7.0]}
    # The warning's row (500.0) is reported but stays.
    assert report.passed_rows.to_pydict() == {"id": [1, 3, 5], "amount": [5.0, 500.0, 8.0]}
    assert [(f.check, f.quarantined) for f in report.failures] == [("not_null", True), ("min", True), ("max", False)]
    assert report.failures[0].message.endswith("; moved to quarantine.")
    assert report.to_json(profiles=False)["quarantined_rows"] == 2


def test_quarantine_does_not_hide_table_level_failures() -> None:
    c = contract(columns={"x": {"type": "int64", "max_null_rate": 0.1}}, on_error="quarantine")
    report = validate(pa.table({"x": [1, None]}), c)
    assert not report.passed
    assert report.quarantined is not None
    assert report.quarantined.num_rows == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.floats(-50, 150, allow_nan=False)), st.sampled_from(["a", "b", "c", None])),
        max_size=60,
    )
)
def test_quarantine_splits_every_row_exactly_once(rows: list[tuple[float | None, str | None]]) -> None:
    c = contract(
        columns={
            "v": {"type": "float64", "nullable": False, "min": 0, "max": 100},
            "k": {"type": "string", "allowed": ["a", "b"]},
        },
        on_error="quarantine",
    )
    table = pa.table(
        {"v": pa.array([r[0] for r in rows], pa.float64()), "k": pa.array([r[1] for r in rows], pa.string())}
    )
    report = validate(table, c)
    assert report.quarantined is not None
    assert report.passed_rows is not None
    assert report.quarantined.num_rows + report.passed_rows.num_rows == table.num_rows

    def bad(v: float | None, k: str | None) -> bool:
        return v is None or not 0 <= v <= 100 or k == "c"

    assert sum(bad(*r) for r in rows) == report.quarantined.num_rows
    assert not any(bad(*r) for r in zip(*report.passed_rows.to_pydict().values(), strict=True))
    assert report.passed


# -- inputs ---------------------------------------------------------------------------------------

FRAME_CONTRACT = contract(
    columns={
        "id": {"type": "int64", "nullable": False, "unique": True},
        "amount": {"type": "float64", "nullable": False, "max": 100},
        "channel": {"type": "string", "allowed": ["pos", "atm"]},
        "ts": "timestamp[us, tz=UTC]",
    }
)
FRAME = {
    "id": [1, 2, 2, 4],
    "amount": [5.0, float("nan"), 500.0, 7.0],
    "channel": ["pos", "atm", "web", None],
    "ts": [NOW, NOW, NOW, NOW],
}
FRAME_FAILURES = [("unique", "id", 2), ("not_null", "amount", 1), ("max", "amount", 1), ("allowed", "channel", 1)]


def test_pandas_frames_are_validated_like_arrow_tables() -> None:
    frame = pd.DataFrame(FRAME)
    assert checks(validate(frame, FRAME_CONTRACT)) == FRAME_FAILURES
    # NaN is missing whichever way the frame came: through Arrow it is a NaN value, not a null.
    table = pa.table({**FRAME, "ts": pa.array(FRAME["ts"], pa.timestamp("us", tz="UTC"))})
    assert checks(validate(table, FRAME_CONTRACT)) == FRAME_FAILURES
    nullable = pd.DataFrame({**FRAME, "id": pd.array([1, 2, 2, 4], dtype="Int64")})
    assert checks(validate(nullable, FRAME_CONTRACT)) == FRAME_FAILURES


def test_polars_frames_are_validated_like_arrow_tables() -> None:
    frame = pl.DataFrame({**FRAME, "ts": pl.Series(FRAME["ts"]).dt.replace_time_zone(None).dt.replace_time_zone("UTC")})
    assert checks(validate(frame, FRAME_CONTRACT)) == FRAME_FAILURES


def test_a_serving_payload_of_row_dicts_is_typed_by_the_contract() -> None:
    c = contract(columns={"amount": {"type": "float64", "max": 100}, "channel": {"type": "string", "allowed": ["pos"]}})
    assert validate([{"amount": 12, "channel": "pos"}], c).passed  # JSON's 12 is a float here
    assert validate({"amount": 12.5, "channel": "pos"}, c).passed  # one row
    report = validate([{"amount": 120, "channel": "pos"}, {"amount": 1, "channel": "web"}], c)
    assert checks(report) == [("max", "amount", 1), ("allowed", "channel", 1)]
    wrong = validate([{"amount": "12", "channel": "pos"}], c)
    assert checks(wrong) == [("type", "amount", 1)]
    missing = validate([{"channel": "pos"}], c)
    assert checks(missing) == [("missing_column", "amount", 1)]
    with pytest.raises(lg.InvalidInputError, match="mixes value types"):
        validate([{"amount": 1.0, "channel": "pos"}, {"amount": "x", "channel": "pos"}], c)


def test_a_serving_batch_does_not_start_duckdb() -> None:
    c = contract(columns={"amount": {"type": "float64", "max": 100}})
    batch = pa.RecordBatch.from_pydict({"amount": [1.0, 2.0]})
    seen: list[object] = []

    def serve() -> None:
        validate(batch, c)
        seen.append(getattr(_custom._LOCAL, "duckdb", None))

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    assert seen == [None]


def test_anything_else_is_refused_in_one_sentence() -> None:
    with pytest.raises(lg.InvalidInputError, match="cannot validate a set"):
        validate({1, 2}, FRAME_CONTRACT)
    with pytest.raises(lg.InvalidInputError, match="contract must be a Contract"):
        validate(pa.table({"a": [1]}), "contract.yaml")  # type: ignore[arg-type]


def test_the_report_as_json() -> None:
    report = validate(pd.DataFrame(FRAME), FRAME_CONTRACT, now=NOW)
    data = report.to_json()
    assert list(data) == [
        "contract_name",
        "contract_version",
        "passed",
        "rows",
        "seconds",
        "checked_at",
        "errors",
        "warnings",
        "quarantined_rows",
        "failures",
        "skipped",
        "profiles",
    ]
    assert data["checked_at"] == "2026-11-28T12:00:00+00:00"
    assert data["failures"][1] == {
        "check": "not_null",
        "column": "amount",
        "severity": "error",
        "rows": 1,
        "share": 0.25,
        "examples": [1],
        "message": "amount: 1 row (25%) missing, but the column is not nullable, e.g. row 1.",
        "quarantined": False,
    }
    assert [p["name"] for p in data["profiles"]] == ["id", "amount", "channel", "ts"]


# -- the kernels' fast paths agree with the general ones --------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.text(alphabet="ab\x00é", min_size=0, max_size=9), min_size=1, max_size=40),
    allowed=st.lists(st.text(alphabet="ab\x00é", min_size=0, max_size=9), max_size=6),
    large=st.booleans(),
    cut=st.integers(0, 40),
)
def test_the_fixed_width_string_path_agrees_with_hashing(
    values: list[str], allowed: list[str], large: bool, cut: int
) -> None:
    dtype = pa.large_string() if large else pa.string()
    full = pa.array(values * 3, dtype)
    # A slice shares its buffers with an offset: the kernel must respect both.
    col = pa.chunked_array([full.slice(cut % len(full)), full.slice(0, cut % len(full))], dtype)
    keys = _checks.StringKeys(allowed)
    threshold = _checks._FIXED_MIN
    _checks._FIXED_MIN = 1
    try:
        fast = _checks.allowed_hits(col, pa.array(allowed, pa.string()), keys)
        _checks.FIXED_WIDTH = False
        slow = _checks.allowed_hits(col, pa.array(allowed, pa.string()), keys)
    finally:
        _checks._FIXED_MIN, _checks.FIXED_WIDTH = threshold, True
    expected = np.array([v not in allowed for v in col.to_pylist()])
    for found in (fast, slow):
        mask = np.zeros(len(col), dtype=bool) if found is None else found.mask
        assert mask.tolist() == expected.tolist()


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=40),
    st.integers(0, 40),
    st.booleans(),
)
def test_numeric_duplicates_agree_with_pandas(values: list[int | None], cut: int, as_float: bool) -> None:
    dtype = pa.float64() if as_float else pa.int64()
    arr = pa.array(values, dtype)
    at = cut % (len(values) + 1)
    col = pa.chunked_array([arr.slice(0, at), arr.slice(at)], dtype)
    found = _checks.NumericColumn(col).duplicated()
    series = pd.Series(values, dtype="float64")
    expected = series.duplicated(keep=False) & series.notna()
    mask = np.zeros(len(values), dtype=bool) if found is None else found.mask
    assert mask.tolist() == expected.tolist()


def test_a_wide_sorted_id_column_is_unique_without_counting() -> None:
    ids = np.arange(0, 3_000_000_000, 1000, dtype=np.int64)
    assert _checks.NumericColumn(pa.chunked_array([ids[:100], ids[100:]])).duplicated() is None
    shuffled = ids.copy()
    shuffled[[5, 9]] = shuffled[[9, 5]]
    shuffled[7] = shuffled[2]
    found = _checks.NumericColumn(pa.chunked_array([shuffled])).duplicated()
    assert found is not None
    assert np.flatnonzero(found.mask).tolist() == [2, 7]
