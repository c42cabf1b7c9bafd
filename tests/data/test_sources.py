"""Outside data as a user points lockgate at it: local files and folders read to Arrow,
fingerprinted by content, and every bad input refused in one sentence that names the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.data._sources import Source
from lockgate.pipelines import DataRef
from lockgate.pipelines._watch import FolderSnapshot

TABLE = pa.table({"card": ["a", "b", "c"], "amount": [12.5, 3.0, 99.9]})


def _partitions(root: Path) -> Path:
    pq.write_to_dataset(pa.table({"amount": [1.0, 2.0, 3.0], "day": [1, 1, 2]}), root, partition_cols=["day"])
    (root / "_SUCCESS").write_text("")
    (root / ".DS_Store").write_bytes(b"\x00")
    return root


# -- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.arrow"])
def test_a_parquet_csv_or_arrow_file_reads_as_the_table_written(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    {"t.parquet": pq.write_table, "t.csv": pacsv.write_csv, "t.arrow": feather.write_feather}[name](TABLE, path)
    assert Source.parse(path).read().equals(TABLE)
    assert Source.parse(f"file://{path}").read().equals(TABLE)


def test_a_tsv_file_and_quoted_newlines_read(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text('note\tn\n"two\nlines"\t1\nplain\t2\n')
    assert Source.parse(tmp_path / "t.tsv").read().to_pydict() == {"note": ["two\nlines", "plain"], "n": [1, 2]}


def test_a_folder_of_hive_partitions_reads_with_its_partition_column(tmp_path: Path) -> None:
    table = Source.parse(_partitions(tmp_path / "tx")).read()
    assert sorted(table["amount"].to_pylist()) == [1.0, 2.0, 3.0]
    assert sorted(table["day"].to_pylist()) == [1, 1, 2]  # markers and dot-files are not data


def test_a_folder_of_csv_partitions_reads_as_one_table(tmp_path: Path) -> None:
    for day, rows in ((1, "1,a\n2,b\n"), (2, "3,c\n")):
        (tmp_path / "tx" / f"day={day}").mkdir(parents=True)
        (tmp_path / "tx" / f"day={day}" / "part.csv").write_text("n,s\n" + rows)
    table = Source.parse(tmp_path / "tx").read().sort_by("n")
    assert table.to_pydict() == {"n": [1, 2, 3], "s": ["a", "b", "c"], "day": [1, 1, 2]}


def test_dataref_reads_through_the_same_source(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "t.parquet")
    ref = DataRef(str(tmp_path / "t.parquet"))
    assert ref.read().equals(TABLE)
    assert ref.content_hash() == Source.parse(tmp_path / "t.parquet").fingerprint()


# -- fingerprints ----------------------------------------------------------------------------


def test_a_file_fingerprint_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x\n1\n")
    assert Source.parse(path).fingerprint() == hashlib.sha256(b"x\n1\n").hexdigest()


def test_a_folder_fingerprint_follows_its_content_and_matches_what_a_trigger_sees(tmp_path: Path) -> None:
    folder = _partitions(tmp_path / "tx")
    before = Source.parse(folder).fingerprint()
    # The same hash a new-data trigger computes, and DataRef always computed (cache keys stay valid).
    assert before == FolderSnapshot.take(folder).content_hash()
    (folder / ".DS_Store").write_bytes(b"\x01")  # dot-files are not content
    assert Source.parse(folder).fingerprint() == before
    pq.write_table(pa.table({"amount": [4.0]}), folder / "day=3.parquet")
    assert Source.parse(folder).fingerprint() != before


# -- bad input: one sentence, the right error class ------------------------------------------


def _refused(path: Path | str, error: type[lg.LockgateError] = lg.InvalidInputError) -> str:
    with pytest.raises(error) as info:
        Source.parse(path).read()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_truncated_parquet_file_is_named_as_unreadable(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(data[: len(data) // 2])
    message = _refused(tmp_path / "t.parquet")
    assert message.startswith(f"cannot read {tmp_path / 't.parquet'}: it is not a readable Parquet file, truncated")
    assert message.endswith("write it again")


def test_the_bad_file_in_a_folder_of_partitions_is_the_one_named(tmp_path: Path) -> None:
    folder = _partitions(tmp_path / "tx")
    (folder / "day=2" / "broken.parquet").write_bytes(b"PAR1 not really")
    assert f"cannot read {folder}/day=2/broken.parquet: it is not a readable Parquet file" in _refused(folder)


def test_a_csv_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes("card,city\na,Montr\xe9al\n".encode("latin-1"))
    assert "it is not UTF-8 text (column 'city' holds other bytes); re-save it as UTF-8" in _refused(tmp_path / "t.csv")
    (tmp_path / "h.csv").write_bytes("caf\xe9,n\nx,1\n".encode("latin-1"))
    assert "it is not UTF-8 text (its header holds other bytes)" in _refused(tmp_path / "h.csv")


def test_a_csv_with_ragged_rows_is_refused_with_the_row(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("card,amount\na,1\nb,2,3\n")
    message = _refused(tmp_path / "t.csv")
    assert message == (
        f"cannot read {tmp_path / 't.csv'}: a row has 3 fields where the header has 2 fields ('b,2,3'); "
        "fix that row, or quote the value that holds the delimiter"
    )


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.arrow"])
def test_an_empty_file_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert _refused(tmp_path / name) == f"cannot read {tmp_path / name}: it is empty (0 bytes); write the data again"


def test_a_missing_path_is_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    assert _refused(missing, lg.NotFoundError) == f"data {missing} does not exist; check the path"
    with pytest.raises(lg.NotFoundError, match="does not exist"):
        Source.parse(missing).fingerprint()


def test_folders_without_data_or_with_two_formats_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "holds no data files" in _refused(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    pq.write_table(TABLE, tmp_path / "mixed" / "a.parquet")
    pacsv.write_csv(TABLE, tmp_path / "mixed" / "b.csv")
    assert "mixes file formats (a.parquet, b.csv); keep one format per folder" in _refused(tmp_path / "mixed")


def test_an_unknown_file_type_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    assert "unknown file type '.xlsx'; use .parquet, .csv, .tsv or .arrow" in _refused(tmp_path / "t.xlsx")


def test_bad_input_is_exit_code_2_and_missing_data_too() -> None:
    assert lg.InvalidInputError("x").exit_code == 2
    assert lg.NotFoundError("x").exit_code == 2


# -- URIs -----------------------------------------------------------------------------------


def test_a_postgres_uri_with_a_password_is_refused_without_repeating_it() -> None:
    for uri in ("postgresql://ml:hunter2@db/warehouse", "postgres://ml@db/warehouse?password=hunter2"):
        with pytest.raises(lg.InvalidInputError) as info:
            Source.parse(uri, query="SELECT 1")
        assert "hunter2" not in str(info.value)
        assert "use a password file (~/.pgpass or PGPASSFILE) or trust authentication" in str(info.value)
        with pytest.raises(lg.InvalidInputError, match="holds a password") as info:
            DataRef(uri, query="SELECT 1")
        assert "hunter2" not in str(info.value)


def test_a_query_needs_a_postgres_uri_and_a_postgres_uri_needs_a_query() -> None:
    with pytest.raises(lg.InvalidInputError, match="takes no query"):
        Source.parse("data/tx.csv", query="SELECT 1")
    with pytest.raises(lg.InvalidInputError, match="needs a query"):
        Source.parse("postgresql://ml@db/warehouse")
    assert Source.parse("postgresql://ml@db/warehouse", query="SELECT 1").kind == "postgresql"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "needs a path or URI"),
        ("s3:///prefix", "names no bucket"),
        ("gs://bucket/x", "'gs://' are not supported"),
        ("ftp://user:secret@host/x", "'ftp://' are not supported"),
    ],
)
def test_uris_that_cannot_be_read_are_refused_up_front(uri: str, message: str) -> None:
    with pytest.raises(lg.InvalidInputError, match=message) as info:
        Source.parse(uri)
    assert "secret" not in str(info.value)
    assert Source.parse("s3://bucket/prefix/").kind == "s3"
