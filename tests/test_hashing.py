"""Content hashes: equal content gives equal hashes, whatever the container."""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from lockgate.hashing import canonical_json, sha256_bytes, sha256_file, sha256_json, sha256_stream, table_hash
from lockgate.tables import to_arrow


def test_byte_file_and_stream_hashes_are_plain_sha256(tmp_path: Path) -> None:
    data = b"lockgate" * 300_000  # larger than one read chunk
    expected = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_bytes(data) == expected
    assert sha256_file(path) == expected
    assert sha256_stream(io.BytesIO(data)) == (expected, len(data))
    assert sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_canonical_json_ignores_key_order_and_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == b'{"a":[1,{"c":3,"d":2}],"b":1}'
    assert sha256_json({"x": 1, "y": 2}) == sha256_json({"y": 2, "x": 1})
    assert sha256_json({"x": 1}) != sha256_json({"x": 2})


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2, 3, None], pa.int64()),
            "name": pa.array(["a", None, "c", "d"]),
            "tags": pa.array([["x"], [], None, ["y", "z"]]),
            "score": pa.array([0.5, 1.5, None, 2.5]),
        }
    )


def test_a_table_hash_ignores_chunking_metadata_and_layout() -> None:
    table = _table()
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert chunked.column("name").num_chunks == 3
    with_metadata = table.replace_schema_metadata({"origin": "somewhere"})
    large = table.cast(
        pa.schema(
            [
                ("id", pa.int64()),
                ("name", pa.large_string()),
                ("tags", pa.large_list(pa.large_string())),
                ("score", pa.float64()),
            ]
        )
    )
    views = table.cast(
        pa.schema(
            [("id", pa.int64()), ("name", pa.string_view()), ("tags", pa.list_(pa.string())), ("score", pa.float64())]
        )
    )
    hashes = {table_hash(t) for t in (table, chunked, with_metadata, large, views)}
    assert len(hashes) == 1


def test_a_pandas_frame_hashes_like_the_arrow_table_it_equals() -> None:
    table = pa.table({"id": [1, 2, 3], "name": ["a", None, "c"], "score": [0.5, None, 2.5]})
    frame = pd.DataFrame({"id": [1, 2, 3], "name": ["a", None, "c"], "score": [0.5, None, 2.5]}, index=[7, 8, 9])
    assert table_hash(to_arrow(frame)) == table_hash(table)
    assert to_arrow(frame).schema.equals(table.schema)  # the recorded schema agrees too


def test_a_table_hash_changes_with_values_names_types_and_order() -> None:
    table = _table()
    base = table_hash(table)
    assert table_hash(table.slice(0, 3)) != base
    assert table_hash(table.rename_columns(["id", "label", "tags", "score"])) != base
    assert table_hash(table.select(["name", "id", "tags", "score"])) != base
    assert table_hash(table.set_column(0, "id", pa.array([1, 2, 3, None], pa.int32()))) != base
    assert table_hash(table.set_column(0, "id", pa.array([1, 2, 4, None], pa.int64()))) != base
    assert table_hash(table.take([1, 0, 2, 3])) != base


def test_empty_tables_hash_alike_however_they_were_made() -> None:
    table = _table()
    empty = table.slice(0, 0)
    assert table_hash(empty) == table_hash(table.filter(pa.array([False] * 4)))
    assert table_hash(empty) == table_hash(pa.concat_tables([table.slice(0, 0), table.slice(2, 0)]))
    assert table_hash(empty) != table_hash(table)


def test_the_bytes_under_null_slots_do_not_count() -> None:
    # pandas keeps the NaN under a null float; Arrow writes zero there.
    from_pandas = to_arrow(pd.DataFrame({"f": [1.5, None, 2.5]}))
    from_arrow = pa.table({"f": pa.array([1.5, None, 2.5])})
    assert table_hash(from_pandas) == table_hash(from_arrow)
    # The same values with different garbage under the null, built buffer by buffer.
    validity = pa.py_buffer(bytes([0b101]))
    garbage = [pa.py_buffer(np.array([1, value, 3], np.int64).tobytes()) for value in (0, 99)]
    arrays = [pa.Array.from_buffers(pa.int64(), 3, [validity, g]) for g in garbage]
    assert arrays[0].to_pylist() == arrays[1].to_pylist() == [1, None, 3]
    assert table_hash(pa.table({"x": arrays[0]})) == table_hash(pa.table({"x": arrays[1]}))


def test_nested_values_hash_by_content() -> None:
    lists = pa.array([[1, None], None, [], [4]], pa.list_(pa.int64()))
    structs = pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "z"}, {"a": 4, "b": None}])
    maps = pa.array([[("k", 1)], None, [], [("j", 2), ("k", 3)]], pa.map_(pa.string(), pa.int64()))
    fixed = pa.array([[1, 2], None, [3, 4], [5, 6]], pa.list_(pa.int64(), 2))
    categories = pa.array(["a", "b", None, "a"]).dictionary_encode()
    table = pa.table({"lists": lists, "structs": structs, "maps": maps, "fixed": fixed, "cat": categories})
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert table_hash(rechunked) == table_hash(table)
    # Parquet names list items 'element' where Arrow says 'item': the same data either way.
    renamed = table.set_column(0, "lists", lists.cast(pa.list_(pa.field("element", pa.int64()))))
    assert table_hash(renamed) == table_hash(table)
    changed = table.set_column(
        1, "structs", pa.array([{"a": 1, "b": "x"}, None, {"a": 2, "b": "z"}, {"a": 4, "b": None}])
    )
    assert table_hash(changed) != table_hash(table)
    assert table_hash(table.drop_columns(["cat"])) != table_hash(table)


_COLUMNS = {
    "int": (st.integers(min_value=-(2**63), max_value=2**63 - 1), pa.int64()),
    "float": (st.floats(allow_nan=False), pa.float64()),
    "text": (st.text(max_size=5), pa.string()),
    "bool": (st.booleans(), pa.bool_()),
    "list": (st.lists(st.one_of(st.none(), st.integers(min_value=-5, max_value=5)), max_size=3), pa.list_(pa.int64())),
}


@given(
    kind=st.sampled_from(sorted(_COLUMNS)),
    data=st.data(),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=4),
)
def test_any_split_of_any_column_hashes_like_the_whole(kind: str, data: st.DataObject, cuts: list[int]) -> None:
    values_strategy, dtype = _COLUMNS[kind]
    values = data.draw(st.lists(st.one_of(st.none(), values_strategy), max_size=30))
    whole = pa.table({"v": pa.array(values, dtype)})
    bounds = sorted({0, len(values), *(min(c, len(values)) for c in cuts)})
    pieces = [whole.slice(a, b - a) for a, b in itertools.pairwise(bounds)] or [whole]
    assert table_hash(pa.concat_tables(pieces)) == table_hash(whole)
    if kind != "list":  # a frame from pandas holds the same values
        rebuilt = pa.table({"v": pa.array(pd.Series(values, dtype=object).tolist(), dtype)})
        assert table_hash(rebuilt) == table_hash(whole)
