"""``lockgate data`` as a user meets it: exit 0 for data that passes, 1 for data that fails
its contract or a contract that breaks compatibility, 2 for a contract that is not valid;
--json that parses; the HTML report written where asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import lockgate as lg
from lockgate.cli import main

CONTRACT = """\
name: payments
owner: payments-data
columns:
  payment_id: {type: string, nullable: false, unique: true}
  amount: {type: float64, min: 0}
  f: {type: int64, nullable: false}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the current directory) with a contract, a good and a bad batch."""
    root = tmp_path / "project"
    (root / "contracts").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "contracts" / "payments.yaml").write_text(CONTRACT)
    good = pa.table({"payment_id": ["a", "b", "c"], "amount": [1.0, 2.5, 9.0], "f": [1, 2, 3]})
    bad = pa.table({"payment_id": ["a", "a", "c"], "amount": [1.0, -2.5, 9.0], "f": [1, 2, 3]})
    pq.write_table(good, root / "data" / "good.parquet")
    pq.write_table(bad, root / "data" / "bad.parquet")
    monkeypatch.chdir(root)
    return root


def cli(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- contracts ---------------------------------------------------------------------------------------


def test_register_show_list_and_register_again(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    assert cli(home, "data", "contract", "register", "contracts/payments.yaml", "--json") == 0
    first = out_json(capsys)
    assert (first["registered"], first["name"], first["version"], first["owner"]) == (
        True,
        "payments",
        1,
        "payments-data",
    )
    assert cli(home, "data", "contract", "register", "contracts/payments.yaml") == 0
    assert "payments@1 is already registered with this content; nothing changed" in capsys.readouterr().err
    assert cli(home, "data", "contract", "list", "--json") == 0
    assert [(c["name"], c["version"], c["versions"]) for c in out_json(capsys)] == [("payments", 1, 1)]
    assert cli(home, "data", "contract", "show", "payments@1", "--json") == 0
    shown = out_json(capsys)
    assert shown["contract"]["columns"]["amount"] == {"type": "float64", "min": 0.0}
    assert [v["version"] for v in shown["versions"]] == [1]
    assert cli(home, "data", "contract", "show", "payments") == 0
    text = capsys.readouterr().out
    assert "contract payments@1" in text
    assert "payment_id" in text
    assert "min 0.0" in text
    assert cli(home, "data", "contract", "list") == 0
    assert "payments" in capsys.readouterr().out
    assert cli(home, "audit", "log", "--json") == 0
    assert "contract.registered" in [e["action"] for e in out_json(capsys)]


def test_a_breaking_contract_is_refused_listing_every_violation(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = project / "ws"
    assert cli(home, "data", "contract", "register", "contracts/payments.yaml") == 0
    capsys.readouterr()
    v2 = write(project / "contracts" / "v2.yaml", CONTRACT.replace("  f: {type: int64, nullable: false}\n", ""))
    assert cli(home, "data", "contract", "register", v2) == 0
    capsys.readouterr()
    breaking = CONTRACT.replace("{type: int64, nullable: false}", "{type: string}")
    breaking = breaking.replace(
        "payment_id: {type: string, nullable: false", "payment_id: {type: int64, nullable: false"
    )
    breaking += "compatibility: backward_transitive\n"
    v3 = write(project / "contracts" / "v3.yaml", breaking)
    assert cli(home, "data", "contract", "register", v3) == 1
    err = capsys.readouterr().err
    assert "error: contract 'payments' was not registered: 3 violations under backward_transitive compatibility" in err
    assert "- column 'f' changes type from int64 (v1) to string" in err
    assert err.count("- column 'payment_id' changes type from string") == 2  # against v1 and v2
    assert cli(home, "data", "contract", "register", v3, "--json") == 1
    refused = out_json(capsys)
    assert refused["registered"] is False
    assert len(refused["violations"]) == 3
    assert cli(home, "data", "contract", "show", "payments", "--json") == 0
    assert out_json(capsys)["version"] == 2


def test_check_for_ci(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    assert cli(home, "data", "contract", "check", "contracts/payments.yaml") == 0
    assert "contract payments is valid (3 columns)" in capsys.readouterr().err
    assert cli(home, "data", "contract", "check", "contracts/payments.yaml", "--against-registered") == 0
    assert "no version of it is registered yet" in capsys.readouterr().err
    cli(home, "data", "contract", "register", "contracts/payments.yaml")
    capsys.readouterr()
    nullable = write(project / "v2.yaml", CONTRACT.replace("f: {type: int64, nullable: false}", "f: {type: int64}"))
    assert cli(home, "data", "contract", "check", nullable, "--against-registered") == 0
    assert "compatible with the registered versions under backward (latest is v1)" in capsys.readouterr().err
    assert cli(home, "data", "contract", "check", nullable, "--mode", "FULL", "--json") == 1
    checked = out_json(capsys)
    assert (checked["compatible"], checked["compatibility"], checked["registered_latest"]) == (False, "full", 1)
    assert [v["rule"] for v in checked["violations"]] == ["became_nullable"]
    assert cli(home, "data", "contract", "check", nullable, "--mode", "sideways") == 2
    assert "compatibility mode 'sideways' is unknown" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name: payments\ncolumns:\n  a: {type: int65}\n", "unknown type 'int65'"),
        ("name: payments\ncolumns: [a, b\n", "is not valid YAML at line"),
        ("name: payments\ncolumns:\n  a: {type: int64, nulable: true}\n", "unknown field"),
    ],
)
def test_a_contract_that_does_not_parse_exits_2_with_one_sentence(
    project: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    home = project / "ws"
    write(project / "bad.yaml", text)
    bad = "bad.yaml"
    for args in (
        ["data", "contract", "check", bad],
        ["data", "contract", "register", bad],
        ["data", "validate", "data/good.parquet", "--contract", bad],
    ):
        assert cli(home, *args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: contract bad.yaml is not valid")
        assert says in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_unknown_names_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    assert cli(home, "data", "contract", "show", "nothing") == 2
    assert "no contract named 'nothing' is registered" in capsys.readouterr().err
    assert cli(home, "data", "contract", "register", "contracts/missing.yaml") == 2
    assert "contract file contracts/missing.yaml does not exist" in capsys.readouterr().err
    assert cli(home, "data", "versions", "nothing") == 2
    assert "no data set named 'nothing'" in capsys.readouterr().err


# -- validate ----------------------------------------------------------------------------------------


def test_passing_data_exits_0_and_failing_data_exits_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    assert cli(home, "data", "validate", "data/good.parquet", "--contract", "contracts/payments.yaml") == 0
    capsys.readouterr()
    assert cli(home, "data", "validate", "data/bad.parquet", "--contract", "contracts/payments.yaml") == 1
    capsys.readouterr()
    assert cli(home, "data", "validate", "data/bad.parquet", "--contract", "contracts/payments.yaml", "--json") == 1
    report = out_json(capsys)
    assert report["passed"] is False


def test_validate_writes_the_html_report(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    out = project / "reports" / "bad.html"
    args = ["data", "validate", "data/bad.parquet", "--contract", "contracts/payments.yaml", "--html", str(out)]
    assert cli(home, *args) == 1
    assert f"HTML report: {out}" in capsys.readouterr().err
    page = out.read_text()
    assert page.lstrip().lower().startswith(("<!doctype html", "<html"))
    assert "payments" in page
    assert not list(out.parent.glob(".*.tmp"))


def test_the_gate_registers_passing_data_and_versions_shows_what_it_passed(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = project / "ws"
    cli(home, "data", "contract", "register", "contracts/payments.yaml")
    gate = ["data", "validate", "--contract", "payments", "--dataset", "payments"]
    assert cli(home, *gate[:2], "data/good.parquet", *gate[2:], "--json") == 0
    admitted = out_json(capsys)
    assert admitted["dataset"].startswith("datasets:/payments@")
    assert cli(home, *gate[:2], "data/bad.parquet", *gate[2:], "--reference", "payments@latest") == 1
    assert "data set 'payments' was not registered" in capsys.readouterr().err
    assert cli(home, "data", "versions", "payments", "--json") == 0
    found = out_json(capsys)
    assert len(found) == 1
    assert [(c["contract"], c["version"], c["passed"]) for c in found[0]["contracts"]] == [("payments", 1, True)]
    assert cli(home, "data", "versions", "payments") == 0
    assert "payments@1 passed" in capsys.readouterr().out
    ws = lg.Workspace.open(home)
    try:
        assert ws.data.require_passed("payments@latest", "payments").version == 1
    finally:
        ws.close()


def test_a_file_contract_cannot_be_recorded_until_registered(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    args = ["data", "validate", "data/good.parquet", "--contract", "contracts/payments.yaml", "--dataset", "payments"]
    assert cli(home, *args) == 2
    assert "contract 'payments' is not registered" in capsys.readouterr().err
    cli(home, "data", "contract", "register", "contracts/payments.yaml")
    capsys.readouterr()
    assert cli(home, *args) == 0  # the file is exactly version 1, so its outcome can be recorded


def test_infer_prints_a_contract_that_registers(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    assert cli(home, "data", "contract", "infer", "data/good.parquet", "--name", "inferred") == 0
    text = capsys.readouterr().out
    inferred = yaml.safe_load(text)
    assert inferred["name"] == "inferred"
    assert set(inferred["columns"]) == {"payment_id", "amount", "f"}
    path = write(project / "inferred.yaml", text)
    assert cli(home, "data", "contract", "register", path) == 0
    assert cli(home, "data", "validate", "data/good.parquet", "--contract", "inferred@1") == 0
    capsys.readouterr()
    assert cli(home, "data", "contract", "infer", "data/good.parquet") == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "good"
