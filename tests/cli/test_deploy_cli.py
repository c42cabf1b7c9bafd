"""``lockgate deploy`` as a user meets it: --json that parses, the version served now,
exit code 2 and one sentence for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.cli import main


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    with lg.Workspace.open(home) as ws:
        for _ in range(3):
            ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")
        ws.models.set_alias("fraud", "champion", 2)
    return home


def cli(home: Path, *args: str) -> int:
    return main(["--home", str(home), "deploy", *args])


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_create_list_show_update_delete(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # tables unwrapped, so references read whole
    assert cli(home, "create", "fraud-api", "--model", "models:/fraud@champion", "--max-batch-size", "64") == 0
    assert "serves models:/fraud/2 (following models:/fraud@champion), revision 1" in capsys.readouterr().err
    assert cli(home, "create", "fraud-pinned", "--model", "models:/fraud/3", "--json") == 0
    pinned = out_json(capsys)
    assert (pinned["revision"], pinned["routes"][0]["resolved"]) == (2, "models:/fraud/3")

    assert main(["--home", str(home), "models", "alias", "fraud", "champion", "1"]) == 0
    capsys.readouterr()
    assert cli(home, "show", "fraud-api", "--json") == 0
    shown = out_json(capsys)
    assert shown["routes"] == [
        {
            "model": "models:/fraud@champion",
            "role": "primary",
            "weight": 1.0,
            "version": 1,
            "resolved": "models:/fraud/1",
            "problem": None,
        }
    ]
    assert (shown["settings"]["max_batch_size"], shown["revision"], shown["deleted"]) == (64, 1, False)

    assert cli(home, "show", "fraud-api") == 0
    text = capsys.readouterr().out
    assert "models:/fraud@champion" in text
    assert "models:/fraud/1" in text

    assert cli(home, "update", "fraud-api", "--model", "models:/fraud/3", "--max-wait-ms", "2", "--json") == 0
    updated = out_json(capsys)
    assert (updated["revision"], updated["settings"]["max_wait_ms"], updated["settings"]["max_batch_size"]) == (
        3,
        2,
        64,
    )

    assert cli(home, "delete", "fraud-pinned", "--yes") == 0
    capsys.readouterr()
    assert cli(home, "list", "--json") == 0
    assert [(d["name"], d["routes"][0]["resolved"]) for d in out_json(capsys)] == [("fraud-api", "models:/fraud/3")]
    assert cli(home, "list") == 0
    assert "fraud-api" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--model", "models:/fraud/9"], "model 'fraud' has no version 9 (latest is 3)"),
        (["create", "x", "--model", "models:/fraud@nope"], "model 'fraud' has no alias 'nope'"),
        (["create", "x", "--model", "fraud"], "is not a model reference"),
        (["create", "x y", "--model", "models:/fraud/1"], "deployment name 'x y' is not valid"),
        (["create", "x", "--model", "models:/fraud/1", "--max-queue", "0"], "max_queue must be"),
        (["show", "nope"], "deployment 'nope' does not exist; see: lockgate deploy list"),
        (["delete", "nope", "--yes"], "deployment 'nope' does not exist"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli(home, *args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_an_existing_name_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "create", "fraud-api", "--model", "models:/fraud/1") == 0
    assert cli(home, "create", "fraud-api", "--model", "models:/fraud/2") == 2
    assert "already exists; change it with: lockgate deploy update fraud-api" in capsys.readouterr().err


def test_list_is_friendly_when_empty(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "list") == 0
    assert "no deployments yet" in capsys.readouterr().err
    assert cli(home, "list", "--json") == 0
    assert out_json(capsys) == []
