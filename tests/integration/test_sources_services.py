"""Outside data on real services: an S3 prefix on moto's server and a PostgreSQL query, read
to Arrow and fingerprinted so that a change behind the same URI is always seen."""

from __future__ import annotations

import datetime as dt
import io
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.config import Settings
from lockgate.data._sources import Source


@pytest.fixture(autouse=True)
def _no_workspace_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings are loaded as the CLI would, from the current folder: make it an empty one."""
    monkeypatch.chdir(tmp_path)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# -- S3 -------------------------------------------------------------------------------------


@pytest.fixture
def s3_prefix(s3_admin: Any, s3_bucket: str) -> str:
    """Two daily Parquet partitions and a Spark-style marker under s3://<bucket>/tx/."""
    for day, amounts in ((1, [1.0, 2.0]), (2, [3.0])):
        s3_admin.put_object(
            Bucket=s3_bucket, Key=f"tx/day={day}/part-0.parquet", Body=parquet_bytes(pa.table({"amount": amounts}))
        )
    s3_admin.put_object(Bucket=s3_bucket, Key="tx/_SUCCESS", Body=b"")
    return f"s3://{s3_bucket}/tx/"


@pytest.mark.s3
def test_an_s3_prefix_reads_with_its_partitions_and_an_overwrite_changes_its_fingerprint(
    s3_prefix: str, s3_admin: Any, s3_bucket: str
) -> None:
    source = Source.parse(s3_prefix)
    table = source.read()
    assert sorted(zip(table["day"].to_pylist(), table["amount"].to_pylist(), strict=True)) == [
        (1, 1.0),
        (1, 2.0),
        (2, 3.0),
    ]
    before = source.fingerprint()
    assert source.fingerprint() == before  # listing twice: same content, same fingerprint
    s3_admin.put_object(  # the same bytes written again: not a change
        Bucket=s3_bucket, Key="tx/day=2/part-0.parquet", Body=parquet_bytes(pa.table({"amount": [3.0]}))
    )
    assert source.fingerprint() == before
    s3_admin.put_object(
        Bucket=s3_bucket, Key="tx/day=2/part-0.parquet", Body=parquet_bytes(pa.table({"amount": [30.0]}))
    )
    assert source.fingerprint() != before
    assert sorted(source.read()["amount"].to_pylist()) == [1.0, 2.0, 30.0]


@pytest.mark.s3
def test_one_s3_object_reads_and_a_missing_one_is_not_found(s3_admin: Any, s3_bucket: str) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="labels.csv", Body=b"card,fraud\na,1\nb,0\n")
    source = Source.parse(f"s3://{s3_bucket}/labels.csv")
    assert source.read().to_pydict() == {"card": ["a", "b"], "fraud": [1, 0]}
    before = source.fingerprint()
    s3_admin.put_object(Bucket=s3_bucket, Key="labels.csv", Body=b"card,fraud\na,1\nb,1\n")
    assert source.fingerprint() != before
    with pytest.raises(lg.NotFoundError, match=rf"data s3://{s3_bucket}/nope/ does not exist"):
        Source.parse(f"s3://{s3_bucket}/nope/").fingerprint()
    with pytest.raises(lg.NotFoundError, match="does not exist"):
        Source.parse("s3://lockgate-no-such-bucket/tx/").read()


@pytest.mark.s3
def test_a_truncated_object_under_a_prefix_is_named_with_its_s3_uri(
    s3_prefix: str, s3_admin: Any, s3_bucket: str
) -> None:
    good = parquet_bytes(pa.table({"amount": [4.0]}))
    s3_admin.put_object(Bucket=s3_bucket, Key="tx/day=3/part-0.parquet", Body=good[: len(good) // 2])
    with pytest.raises(lg.InvalidInputError) as info:
        Source.parse(s3_prefix).read()
    assert str(info.value).startswith(
        f"cannot read s3://{s3_bucket}/tx/day=3/part-0.parquet: it is not a readable Parquet file, truncated"
    )


@pytest.mark.s3
def test_the_endpoint_comes_from_lockgate_settings_too(
    s3_prefix: str, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only lockgate's setting points at the server now
    assert Source.parse(s3_prefix).read(settings=Settings(s3_endpoint_url=s3_env)).num_rows == 3
    monkeypatch.setenv("LOCKGATE_S3_ENDPOINT_URL", s3_env)  # what a step process sees
    assert Source.parse(s3_prefix).read().num_rows == 3


@pytest.mark.s3
def test_an_unreachable_s3_is_unavailable_within_seconds(s3_env: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(lg.UnavailableError, match="cannot reach S3 for s3://bucket/tx/") as info:
        Source.parse("s3://bucket/tx/").fingerprint(settings=Settings(s3_endpoint_url=f"http://127.0.0.1:{port}"))
    assert info.value.exit_code == 3
    assert time.monotonic() - started < 15


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def pg_table(pg_url: str) -> Iterator[tuple[str, Any]]:
    """A table of transactions in a fresh database; yields (database URL, open connection)."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE tx (id int8 PRIMARY KEY, card text, amount numeric(10, 2), score float8, "
            "fraud bool, at timestamptz, day date, note text)"
        )
        conn.execute(
            "INSERT INTO tx VALUES "
            "(1, 'a', 12.50, 0.25, false, '2026-11-14 10:00:00+01', '2026-11-14', 'two\nlines, \"quoted\"'), "
            "(2, 'b', 3.00, NULL, true, '2026-11-14 12:30:00+00', '2026-11-14', ''), "
            "(3, NULL, 99.99, 1e300, NULL, NULL, NULL, NULL)"
        )
        yield pg_url, conn


@pytest.mark.postgres
def test_a_query_reads_to_arrow_with_the_columns_types(pg_table: tuple[str, Any]) -> None:
    url, _ = pg_table
    table = Source.parse(url, query="SELECT * FROM tx ORDER BY id;").read()
    assert table.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("card", pa.string()),
            ("amount", pa.decimal128(10, 2)),
            ("score", pa.float64()),
            ("fraud", pa.bool_()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("day", pa.date32()),
            ("note", pa.string()),
        ]
    )
    rows = table.to_pylist()
    assert rows[0]["amount"] == Decimal("12.50")
    assert rows[0]["at"] == dt.datetime(2026, 11, 14, 9, 0, tzinfo=dt.UTC)
    assert rows[0]["note"] == 'two\nlines, "quoted"'
    assert rows[1]["note"] == ""  # an empty string stays one; NULL stays null
    assert rows[2] == {
        "id": 3,
        "card": None,
        "amount": Decimal("99.99"),
        "score": 1e300,
        "fraud": None,
        "at": None,
        "day": None,
        "note": None,
    }
    empty = Source.parse(url, query="SELECT id, card FROM tx WHERE false").read()
    assert empty.num_rows == 0
    assert empty.schema == pa.schema([("id", pa.int64()), ("card", pa.string())])


@pytest.mark.postgres
def test_a_query_fingerprint_changes_when_a_row_changes(pg_table: tuple[str, Any]) -> None:
    url, conn = pg_table
    source = Source.parse(url, query="SELECT id, amount FROM tx")
    before = source.fingerprint()
    assert source.fingerprint() == before
    assert Source.parse(url, query="SELECT id, amount FROM tx ").fingerprint() != before  # the query is hashed too
    conn.execute("UPDATE tx SET amount = 12.51 WHERE id = 1")
    assert source.fingerprint() != before


@pytest.mark.postgres
def test_a_bad_query_or_a_writing_one_is_refused(pg_table: tuple[str, Any]) -> None:
    url, conn = pg_table
    with pytest.raises(lg.InvalidInputError, match=r'the query on .* failed \(relation "nope" does not exist\)'):
        Source.parse(url, query="SELECT * FROM nope").read()
    with pytest.raises(lg.InvalidInputError, match="returns two columns named 'id'; give them distinct aliases"):
        Source.parse(url, query="SELECT id, id FROM tx").read()
    conn.execute("CREATE SEQUENCE counter")
    with pytest.raises(lg.InvalidInputError, match="tries to write"):
        Source.parse(url, query="SELECT nextval('counter')").read()
    assert conn.execute("SELECT nextval('counter')").fetchone() == (1,)  # the source's call was rolled back


def test_an_unreachable_postgres_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        lg.UnavailableError, match=rf"cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:{port}/x"
    ):
        Source.parse(f"postgresql://postgres@127.0.0.1:{port}/x", query="SELECT 1").read()
