"""A SQL query against PostgreSQL, validated against a contract from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from lockgate.cli import main

CONTRACT = (
    "name: refunds\ncolumns:\n  id: {type: int64, nullable: false, unique: true}\n  amount: {type: float64, min: 0}\n"
)


def test_rows_of_a_query_are_checked_and_a_bad_row_fails_the_contract(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE refunds (id bigint NOT NULL, amount double precision)")
        conn.execute("INSERT INTO refunds VALUES (1, 5.0), (2, 7.5)")
    contract = tmp_path / "refunds.yaml"
    contract.write_text(CONTRACT)
    home = str(tmp_path / "ws")
    query = "SELECT id, amount FROM refunds ORDER BY id"
    args = ["--home", home, "data", "validate", pg_url, "--query", query, "--contract", str(contract), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO refunds VALUES (3, -1.0)")
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(f["check"], f["column"], f["rows"]) for f in report["failures"]] == [("min", "amount", 1)]
