"""DataRef on every kind of outside data: how it is stored with runs and triggers, and how it
is told apart from other data. (The cache tests against S3 and PostgreSQL themselves are in
tests/integration/test_dataref_sources.py, next to the services' fixtures.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lockgate as lg
from lockgate.pipelines import DataRef
from lockgate.pipelines._dataref import decode_params, encode_params

PG = "postgresql://ml@db.internal:5432/warehouse"


def test_a_plain_dataref_is_stored_exactly_as_before() -> None:
    assert encode_params({"source": DataRef("data/tx/")}) == {"source": {"__dataref__": "data/tx/"}}
    assert decode_params({"source": {"__dataref__": "s3://lake/tx/"}}) == {"source": DataRef("s3://lake/tx/")}


def test_a_sql_dataref_round_trips_through_json_with_its_query() -> None:
    params = {"source": DataRef(PG, query="SELECT * FROM tx"), "n": 3, "other": {"__dataref__": 1, "x": 2}}
    stored = json.loads(json.dumps(encode_params(params)))
    assert stored["source"] == {"__dataref__": PG, "query": "SELECT * FROM tx"}
    assert decode_params(stored) == params


def test_each_query_is_its_own_data_and_a_path_is_its_own_key() -> None:
    a = DataRef(PG, query="SELECT * FROM tx")
    b = DataRef(PG, query="SELECT * FROM tx WHERE amount > 0")
    assert a.key != b.key
    assert a.key.startswith(f"{PG}#query=")
    assert DataRef("s3://lake/tx/").key == "s3://lake/tx/"
    assert DataRef("data/tx.csv").key == "data/tx.csv"


def test_a_dataref_refuses_what_a_source_refuses() -> None:
    with pytest.raises(lg.InvalidInputError, match="needs a path or URI"):
        DataRef("")
    with pytest.raises(lg.InvalidInputError, match="needs a query"):
        DataRef(PG)
    with pytest.raises(lg.InvalidInputError, match="takes no query"):
        DataRef("data/tx.csv", query="SELECT 1")
    with pytest.raises(lg.InvalidInputError, match="not a local path"):
        _ = DataRef("s3://lake/tx/").path


def test_a_file_url_dataref_has_the_hash_of_its_path(tmp_path: Path) -> None:
    (tmp_path / "tx.csv").write_text("x\n1\n")
    assert DataRef(f"file://{tmp_path / 'tx.csv'}").content_hash() == DataRef(str(tmp_path / "tx.csv")).content_hash()
    assert DataRef(f"file://{tmp_path / 'tx.csv'}").path == tmp_path / "tx.csv"


def test_a_sql_source_can_be_given_on_the_command_line_as_json(project: Path) -> None:
    from lockgate.pipelines import load_pipeline, parse_params

    flow = load_pipeline(str(project / "flow.py"))
    spec = '{"uri": "postgresql://postgres@127.0.0.1/test", "query": "select 1 as x"}'
    (source,) = parse_params(flow, [f"source={spec}"], None).values()
    assert source == DataRef("postgresql://postgres@127.0.0.1/test", query="select 1 as x")
    with pytest.raises(lg.InvalidInputError, match="password file") as refused:
        parse_params(flow, ["source=postgresql://postgres:hunter2@127.0.0.1/test"], None)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(lg.InvalidInputError, match="must be a path or URI, or JSON like"):
        parse_params(flow, ['source={"url": "x"}'], None)
