"""The validation report as people and machines read it: terminal, JSON, and one HTML page."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import pyarrow as pa
from rich.console import Console

from lockgate.cli.data import render_terminal
from lockgate.data import Contract
from lockgate.data._report import report_html, report_json
from lockgate.data._validate import ValidationReport, validate

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"

CONTRACT = Contract.from_yaml("""
name: payments
version: 3
primary_key: [payment_id]
columns:
  payment_id: {type: string, nullable: false, unique: true}
  amount: {type: float64, min: 0, max: {value: 1000, severity: warn}}
  channel: {type: string, allowed: [pos, atm]}
  ts: {type: "timestamp[us, tz=UTC]"}
""")


def failing() -> ValidationReport:
    table = pa.table(
        {
            "payment_id": ["p1", "p2", "p3", "p4"],
            "amount": [10.0, -5.0, 2000.0, 30.0],
            "channel": ["pos", EVIL, "[red]markup[/red]", EVIL],
            "ts": pa.array([NOW, NOW, NOW, None], pa.timestamp("us", tz="UTC")),
        }
    )
    return validate(table, CONTRACT, now=NOW)


def passing() -> ValidationReport:
    table = pa.table(
        {"payment_id": ["p1"], "amount": [1.0], "channel": ["pos"], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC"))}
    )
    return validate(table, CONTRACT, now=NOW)


def terminal(report: ValidationReport) -> str:
    out = io.StringIO()
    render_terminal(report, Console(file=out, width=160, color_system=None))
    return out.getvalue()


def test_the_terminal_shows_each_failure_and_a_verdict() -> None:
    text = terminal(failing())
    for word in ("check", "column", "severity", "rows", "share", "examples", "min", "max", "allowed", "-5.0", "2000.0"):
        assert word in text
    # Data is printed as it is, never read as rich markup.
    assert "'[red]markup[/red]'" in text
    verdict = text.strip().splitlines()[-1]
    assert re.fullmatch(r"FAILED: 4 rows against contract payments v3; 2 errors, 1 warning \(\d+\.\d\d s\)", verdict)


def test_the_terminal_verdict_of_a_passing_report() -> None:
    text = terminal(passing())
    assert "check" not in text  # no table without failures
    assert text.startswith("PASSED: 1 row against contract payments v3; 0 errors, 0 warnings")


def test_json_is_stable_and_complete() -> None:
    report = failing()
    document = json.loads(report_json(report))
    assert document["contract_name"] == "payments"
    assert document["contract_version"] == 3
    assert document["passed"] is False
    assert [(f["check"], f["column"], f["rows"]) for f in document["failures"]] == [
        ("min", "amount", 1),
        ("max", "amount", 1),
        ("allowed", "channel", 3),
    ]
    assert document["failures"][2]["examples"] == [EVIL, "[red]markup[/red]"]
    profiles = {p["name"]: p for p in document["profiles"]}
    assert profiles["amount"]["min"] == -5.0
    assert profiles["ts"]["nulls"] == 1
    assert profiles["channel"]["top_values"][0] == {"value": EVIL, "count": 2}
    assert report_json(report) == report_json(report)


def test_html_is_one_self_contained_page() -> None:
    page = report_html(failing())
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded: plotly's JS is inline
    assert not re.search(r"<link[^>]+href=[\"']?https?:", page)
    assert "Plotly.newPlot" in page
    assert len(page) > 1_000_000  # the inlined plotly bundle
    assert page.count('<div id="plot-') == 3  # not for the all-distinct ids
    assert "FAILED" in page


def test_html_escapes_values_from_the_data() -> None:
    page = report_html(failing())
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # in the failures table
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page  # in the plot data
    # The only </script> tags close lockgate's own two script elements.
    assert page.count("</script>") == 2


def test_html_of_a_passing_report_and_of_one_stopped_at_the_schema() -> None:
    assert "None: every rule held." in report_html(passing())
    stopped = validate(pa.table({"other": [1]}), CONTRACT)
    page = report_html(stopped)
    assert "missing_column" in page
    assert "the column is missing" in page
