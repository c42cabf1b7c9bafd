"""Compatibility of contract versions: Confluent's modes over tables, and the table in
docs/contracts.md held to what the code does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lockgate as lg
from lockgate.data import Compatibility, Consumer, Contract, check_compatibility, readable_as

DOCS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
MODES = list(Compatibility)


def contract(version: int | None = None, extra: str = "warn", **columns: dict[str, Any] | str) -> Contract:
    """A contract called ``t``; a column given as a string is just its type (nullable)."""
    spec = {name: {"type": c} if isinstance(c, str) else c for name, c in columns.items()}
    return Contract.from_dict({"name": "t", "version": version, "extra_columns": extra, "columns": spec})


def numbered(*versions: Contract) -> list[Contract]:
    return [c.model_copy(update={"version": i}) for i, c in enumerate(versions, 1)]


def rules(found: list[Any]) -> list[tuple[str, str, int | None]]:
    return [(v.rule, v.column, v.version) for v in found]


# -- the classic transitive case -----------------------------------------------------------------


def test_the_classic_transitive_case() -> None:
    v1 = contract(id="string", f={"type": "int64", "nullable": False})
    v2 = contract(id="string")
    v3 = contract(id="string", f={"type": "string", "nullable": True})
    registered = numbered(v1, v2)
    assert check_compatibility(v3, registered, "backward") == []
    refused = check_compatibility(v3, registered, "backward_transitive")
    assert rules(refused) == [("type_changed", "f", 1)]
    assert refused[0].direction == "backward"
    assert "column 'f' changes type from int64 (v1) to string" in refused[0].message
    # v2 itself was fine under both: dropping a column is what BACKWARD allows.
    assert check_compatibility(v2, registered[:1], "backward_transitive") == []


def test_transitive_modes_list_the_violation_against_every_version_it_breaks() -> None:
    v1 = contract(a="int64")
    v2 = contract(a="int64", b="string")
    new = contract(a="string", b="string")
    found = check_compatibility(new, numbered(v1, v2), "full_transitive")
    assert sorted(rules(found)) == sorted([("type_changed", "a", 1)] * 2 + [("type_changed", "a", 2)] * 2)
    assert {v.direction for v in found} == {"backward", "forward"}


# -- one sentence per violation, naming the column and the version --------------------------------


def test_every_rule_names_its_column_version_and_fix() -> None:
    old = numbered(contract(keep={"type": "int64", "nullable": False}, gone={"type": "string", "nullable": False}))
    new = contract(
        extra="error",
        keep={"type": "int32", "nullable": True},
        added={"type": "float64", "nullable": False},
    )
    found = check_compatibility(new, old, "full")
    assert sorted(rules(found)) == sorted(
        [
            ("added_required_column", "added", 1),
            ("became_nullable", "keep", 1),
            ("dropped_required_column", "gone", 1),
            ("extra_column_refused", "gone", 1),
            ("type_changed", "keep", 1),
        ]
    )
    for v in found:
        assert f"'{v.column}'" in v.message
        assert "v1" in v.message
        assert v.message.count(". ") == 0
        assert ";" in v.message  # one sentence: what broke; what to do
        assert str(v) == v.message
        assert v.to_dict()["rule"] == v.rule


def test_an_unknown_mode_is_bad_input() -> None:
    with pytest.raises(lg.InvalidInputError, match="compatibility mode 'sideways' is unknown; use one of: backward"):
        check_compatibility(contract(a="int64"), [], "sideways")
    assert check_compatibility(contract(a="int64"), [], "FULL_TRANSITIVE") == []


# -- the consumers rule --------------------------------------------------------------------------


def test_a_consumer_column_may_not_be_dropped_or_retyped_in_any_mode() -> None:
    old = numbered(contract(amount="float64", hour="int64", note="string"))
    model = Consumer(kind="model", name="fraud v3", contract_version=1, columns=("amount", "hour", "derived"))
    dropped = contract(hour="int64", note="string")
    retyped = contract(amount="float64", hour="string", note="string")
    for mode in MODES:
        found = check_compatibility(dropped, old, mode, consumers=[model])
        mine = [v for v in found if v.rule == "consumer_uses_column"]
        assert [(v.column, v.consumer) for v in mine] == [("amount", "model fraud v3")], mode
        assert mine[0].message.startswith("model fraud v3 uses column 'amount' (float64 in v1)")
    found = check_compatibility(retyped, old, "none", consumers=[model])
    assert [v.message for v in found] == [
        (
            "model fraud v3 uses column 'hour' (int64 in v1), and the new version changes it to string; "
            "retire or retrain model fraud v3 without it first"
        )
    ]
    # Columns the consumer does not read are free to go, and layout-only changes are no change.
    fine = contract(amount="float64", hour="int64")
    assert check_compatibility(fine, old, "none", consumers=[model]) == []
    assert check_compatibility(contract(amount="float64", hour="int64", note="large_string"), old, "none") == []


# -- the documented table is the behaviour ---------------------------------------------------------

NN = {"type": "int64", "nullable": False}
CONSUMER = Consumer(kind="model", name="m v1", contract_version=1, columns=("x",))
# Each row of the table in docs/contracts.md, as (old, new, consumers).
ROWS: dict[str, list[tuple[Contract, Contract, list[Consumer]]]] = {
    "add an optional column (nullable or defaulted)": [
        (contract(id="string"), contract(id="string", x="int64"), []),
        (contract(id="string"), contract(id="string", x={"type": "int64", "nullable": False, "default": 0}), []),
    ],
    "add a required column (not nullable, no default)": [(contract(id="string"), contract(id="string", x=NN), [])],
    "drop an optional column": [(contract(id="string", x="int64"), contract(id="string"), [])],
    "drop a required column": [(contract(id="string", x=NN), contract(id="string"), [])],
    "give a required column a default": [(contract(x=NN), contract(x={**NN, "default": 0}), [])],
    "widen a type (`int32 → int64`)": [(contract(x={**NN, "type": "int32"}), contract(x=NN), [])],
    "narrow a type (`int64 → int32`)": [(contract(x=NN), contract(x={**NN, "type": "int32"}), [])],
    "change to an unrelated type (`int64 → string`)": [(contract(x=NN), contract(x={**NN, "type": "string"}), [])],
    "`string ↔ large_string`": [
        (contract(x="string"), contract(x="large_string"), []),
        (contract(x="large_string"), contract(x="string"), []),
    ],
    "make a column non-nullable": [(contract(x="int64"), contract(x=NN), [])],
    "make a column nullable": [(contract(x=NN), contract(x="int64"), [])],
    "add an optional column while the old version has `extra_columns: error`": [
        (contract(extra="error", id="string"), contract(extra="error", id="string", x="int64"), [])
    ],
    "drop an optional column while the new version has `extra_columns: error`": [
        (contract(id="string", x="int64"), contract(extra="error", id="string"), [])
    ],
    "drop or retype a column a registered consumer reads": [
        (contract(id="string", x="int64"), contract(id="string"), [CONSUMER]),
        (contract(id="string", x="int64"), contract(id="string", x="float64"), [CONSUMER]),
    ],
}


def documented_rows() -> dict[str, dict[str, bool]]:
    text = DOCS.read_text()
    section = text.split("### The rules, change by change", 1)[1].split("\n\n", 2)[2]
    lines = [line for line in section.split("\n\n", 1)[0].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows[cells[0]] = {mode: cells[i] == "✓" for i, mode in enumerate(header) if i}
    return rows


def test_the_docs_table_covers_every_row_and_every_plain_mode() -> None:
    rows = documented_rows()
    assert set(rows) == set(ROWS)
    assert all(set(modes) == {"backward", "forward", "full", "none"} for modes in rows.values())


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_documented_rule_is_what_the_code_does(row: str) -> None:
    expected = documented_rows()[row]
    for old, new, consumers in ROWS[row]:
        registered = numbered(old)
        for mode, allowed in expected.items():
            for variant in (mode, f"{mode}_transitive") if mode != "none" else (mode,):
                found = check_compatibility(new, registered, variant, consumers=consumers)
                assert (found == []) is allowed, (row, variant, [v.message for v in found])


# -- type widenings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "read", "ok"),
    [
        (pa.int8(), pa.int16(), True),
        (pa.uint32(), pa.int64(), True),
        (pa.int32(), pa.uint64(), False),  # negative values
        (pa.uint32(), pa.int32(), False),
        (pa.int16(), pa.float32(), True),
        (pa.int32(), pa.float32(), False),
        (pa.int32(), pa.float64(), True),
        (pa.int64(), pa.float64(), False),
        (pa.float32(), pa.float64(), True),
        (pa.float64(), pa.float32(), False),
        (pa.int32(), pa.decimal128(12, 2), True),
        (pa.int64(), pa.decimal128(20, 2), False),
        (pa.decimal128(10, 2), pa.decimal128(12, 3), True),
        (pa.decimal128(10, 2), pa.decimal128(10, 3), False),
        (pa.timestamp("ms", tz="UTC"), pa.timestamp("us", tz="UTC"), True),
        (pa.timestamp("us", tz="UTC"), pa.timestamp("ms", tz="UTC"), False),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), False),
        (pa.string(), pa.large_string(), True),
        (pa.bool_(), pa.int8(), False),
        (pa.date32(), pa.timestamp("us"), False),
    ],
)
def test_readable_as(written: pa.DataType, read: pa.DataType, ok: bool) -> None:
    assert readable_as(written, read) is ok


# -- properties ------------------------------------------------------------------------------------

TYPES = [
    "int8",
    "int32",
    "int64",
    "uint16",
    "float32",
    "float64",
    "string",
    "large_string",
    "bool",
    "timestamp[ms, tz=UTC]",
    "timestamp[us, tz=UTC]",
    "decimal(10, 2)",
]
columns = st.builds(
    lambda t, nullable, default: {"type": t, "nullable": nullable, "default": default},
    st.sampled_from(TYPES),
    st.booleans(),
    st.sampled_from([None, 0]),
)
contracts = st.builds(
    lambda cols, extra: contract(extra=extra, **cols),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), columns, min_size=1),
    st.sampled_from(["allow", "warn", "error"]),
)
histories = st.lists(contracts, min_size=1, max_size=4).map(lambda cs: numbered(*cs))


def keys(found: list[Any]) -> set[tuple[Any, ...]]:
    return {(v.rule, v.column, v.version, v.direction) for v in found}


@given(contracts)
def test_a_contract_is_compatible_with_itself_in_every_mode(c: Contract) -> None:
    for mode in MODES:
        assert check_compatibility(c, numbered(c), mode) == []


@given(contracts, histories)
def test_full_is_backward_and_forward(new: Contract, registered: list[Contract]) -> None:
    for full, back, fwd in (
        ("full", "backward", "forward"),
        ("full_transitive", "backward_transitive", "forward_transitive"),
    ):
        both = keys(check_compatibility(new, registered, full))
        assert both == keys(check_compatibility(new, registered, back)) | keys(
            check_compatibility(new, registered, fwd)
        )
        if not both:  # FULL ⇒ BACKWARD and FORWARD
            assert check_compatibility(new, registered, back) == check_compatibility(new, registered, fwd) == []


@given(contracts, histories)
def test_transitive_checks_more_and_equals_plain_against_one_version(new: Contract, registered: list[Contract]) -> None:
    for plain in ("backward", "forward", "full"):
        once = keys(check_compatibility(new, registered, plain))
        every = keys(check_compatibility(new, registered, f"{plain}_transitive"))
        assert once <= every
        assert keys(check_compatibility(new, registered[-1:], plain)) == keys(
            check_compatibility(new, registered[-1:], f"{plain}_transitive")
        )


@given(contracts, contracts)
def test_backward_is_forward_the_other_way_round(a: Contract, b: Contract) -> None:
    old_a, old_b = numbered(a)[0], numbered(b)[0]
    assert (check_compatibility(b, [old_a], "backward") == []) == (check_compatibility(a, [old_b], "forward") == [])


@given(contracts, histories)
def test_none_accepts_anything_without_consumers(new: Contract, registered: list[Contract]) -> None:
    assert check_compatibility(new, registered, "none") == []
    assert check_compatibility(new, [], "full_transitive") == []
