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


def test_a_canary_from_the_command_line(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert cli(home, "create", "fraud-api", "--model", "models:/fraud@champion") == 0
    args = ["canary", "fraud-api", "--candidate", "models:/fraud/3", "--steps", "10,50,100", "--interval", "30s"]
    assert cli(home, *args, "--max-psi", "0.3", "--failure-limit", "3") == 0
    assert "canary models:/fraud/3 at 10% of traffic; analysed every 30s" in capsys.readouterr().err
    assert cli(home, "status", "fraud-api", "--json") == 0
    report = out_json(capsys)
    assert [(r["role"], r["weight"]) for r in report["routes"]] == [("primary", 0.9), ("canary", 0.1)]
    assert report["rollout"]["policy"]["max_psi"] == 0.3
    assert report["rollout"]["policy"]["failure_limit"] == 3
    assert [e["event"] for e in report["events"]] == ["started"]

    # No server sent traffic: an analysis now is inconclusive and holds.
    assert cli(home, "analyze", "fraud-api") == 0
    assert "fraud-api: hold at 10% (too little traffic to judge" in capsys.readouterr().err
    assert cli(home, "status", "fraud-api") == 0
    text = capsys.readouterr()
    assert "canary of models:/fraud/3" in text.err
    assert "analysis → hold" in text.out

    assert cli(home, "promote", "fraud-api", "--reason", "looks good") == 0
    assert "promoted models:/fraud/3" in capsys.readouterr().err
    assert main(["--home", str(home), "models", "show", "models:/fraud@champion", "--json"]) == 0
    assert out_json(capsys)["version"] == 3


def test_shadow_split_and_rollback_from_the_command_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "create", "fraud-api", "--model", "models:/fraud@champion") == 0
    assert cli(home, "shadow", "fraud-api", "--candidate", "models:/fraud/3") == 0
    assert "models:/fraud/3 shadows every request" in capsys.readouterr().err
    assert cli(home, "rollback", "fraud-api") == 0
    assert "rolled back models:/fraud/3: fraud-api serves models:/fraud@champion" in capsys.readouterr().err
    assert cli(home, "split", "fraud-api", "--challenger", "models:/fraud/1", "--weight", "20", "--json") == 0
    assert [r["weight"] for r in out_json(capsys)["routes"]] == [0.8, 0.2]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["canary", "fraud-api", "--candidate", "models:/fraud/9"], 2, "model 'fraud' has no version 9"),
        (["canary", "fraud-api", "--candidate", "models:/fraud/3", "--steps", "5,x"], 2, "whole percentages"),
        (["canary", "fraud-api", "--candidate", "models:/fraud/3", "--steps", "5,50"], 2, "must end at 100"),
        (["split", "fraud-api", "--challenger", "models:/fraud/3", "--weight", "120"], 2, "between 0 and 100"),
        (["canary", "fraud-api", "--candidate", "models:/fraud/2"], 2, "already serves models:/fraud/2"),
        (["rollback", "fraud-api"], 2, "has no rollout; start one"),
        (["analyze", "fraud-api"], 2, "has no canary to analyse"),
    ],
)
def test_bad_rollouts_exit_non_zero_with_one_sentence(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    assert cli(home, "create", "fraud-api", "--model", "models:/fraud@champion") == 0
    capsys.readouterr()
    assert cli(home, *args) == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert cli(home, "status", "fraud-api", "--json") == 0
    assert out_json(capsys)["rollout"] is None
