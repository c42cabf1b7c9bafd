"""The CLI as a user meets it: exit codes, one-line errors, --json that parses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.cli import main


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A workspace with two runs (one a child), a model with two versions and an alias."""
    path = tmp_path / "ws"
    ws = lg.Workspace.open(path)
    with ws.start_run("first", experiment="fraud", params={"max_depth": 4}) as run:
        run.log_metric("auc", 0.81)
        run.log_dataset({"amount": [1.0, 2.0], "label": [0, 1]}, name="tx")
        model = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
        run.log_model(model, name="fraud")
    with ws.start_run("second", experiment="fraud", params={"max_depth": 6}) as run:
        run.log_metric("auc", 0.93)
        with ws.start_run("child", experiment="fraud", parent=run):
            pass
        run.log_model(model, name="fraud")
    ws.models.set_alias("fraud", "champion", 2)
    ws.close()
    return path


def cli(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_runs_list_shows_top_level_runs_newest_first(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "runs", "list", "--json") == 0
    names = [r["name"] for r in out_json(capsys)]
    assert names == ["second", "first"]
    assert cli(home, "runs", "list", "--all", "--json") == 0
    assert {r["name"] for r in out_json(capsys)} == {"first", "second", "child"}


def test_runs_search_show_and_compare(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "runs", "search", "metrics.auc > 0.9", "--experiment", "fraud", "--json") == 0
    found = out_json(capsys)
    assert [r["name"] for r in found] == ["second"]
    run_id = found[0]["id"]
    assert cli(home, "runs", "show", run_id[:8], "--json") == 0
    shown = out_json(capsys)
    assert shown["params"] == {"max_depth": "6"}
    assert shown["outputs"] == [{"model_version": "fraud/2"}]
    assert cli(home, "runs", "list", "--json") == 0
    ids = [r["id"] for r in out_json(capsys)]
    assert cli(home, "runs", "compare", *ids, "--json") == 0
    compared = out_json(capsys)
    assert compared["params"]["max_depth"] == ["6", "4"]
    assert cli(home, "runs", "compare", *ids) == 0
    assert "params.max_depth *" in capsys.readouterr().out


def test_runs_delete_hides_the_run(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(home, "runs", "list", "--json")
    first = next(r["id"] for r in out_json(capsys) if r["name"] == "first")
    assert cli(home, "runs", "delete", first, "--yes") == 0
    capsys.readouterr()
    cli(home, "runs", "list", "--json")
    assert [r["name"] for r in out_json(capsys)] == ["second"]


def test_models_list_show_alias_and_delete(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "models", "list", "--json") == 0
    (listed,) = out_json(capsys)
    assert listed["name"] == "fraud"
    assert listed["latest_version"] == 2
    assert listed["versions"] == 2
    assert listed["aliases"] == {"champion": 2}
    assert listed["created_by"] == lg.Settings.load().actor
    assert cli(home, "models", "show", "models:/fraud@champion", "--json") == 0
    assert out_json(capsys)["version"] == 2
    assert cli(home, "models", "alias", "fraud", "champion", "1") == 0
    capsys.readouterr()
    assert cli(home, "models", "show", "models:/fraud@champion", "--json") == 0
    assert out_json(capsys)["version"] == 1
    assert cli(home, "models", "delete", "models:/fraud/2", "--yes") == 0
    capsys.readouterr()
    assert cli(home, "models", "show", "fraud", "--json") == 0
    assert [v["version"] for v in out_json(capsys)["versions"]] == [1]


def test_unknown_version_is_one_sentence_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "models", "show", "models:/fraud/9") == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: model 'fraud' has no version 9 (latest is 2); see: lockgate models show fraud"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["runs", "show", "ffffffff"], "run 'ffffffff' does not exist"),
        (["models", "show", "models:/nope@champion"], "model 'nope' does not exist"),
        (["models", "show", "models:/fraud@staging"], "has no alias 'staging' (aliases: champion"),
        (["lineage", "models:fraud"], "is not a reference"),
        (["runs", "search", "metrics.auc >"], "search filter"),
        (["runs", "compare", "ffffffff"], "at least two runs"),
    ],
)
def test_bad_input_exits_2_with_a_clear_sentence(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    assert cli(home, *args) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1


def test_unreachable_database_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert cli(tmp_path / "ws", "runs", "list") == 3
    err = capsys.readouterr().err
    assert "cannot reach the metadata database" in err
    assert "127.0.0.1:1" in err


def test_lineage_formats(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "lineage", "models:/fraud@champion", "--upstream") == 0
    text = capsys.readouterr().out
    assert "upstream of" in text
    assert "second" in text
    assert cli(home, "lineage", "models:/fraud/1", "--json") == 0
    graph = out_json(capsys)
    assert graph["root"] == "model_version:fraud/1"
    kinds = {n["kind"] for n in graph["nodes"]}
    assert {"model_version", "run", "dataset", "artifact", "environment"} <= kinds
    assert any(e["relation"] == "input:training" and e["from"].startswith("dataset:tx@") for e in graph["edges"])
    assert cli(home, "lineage", "models:/fraud/1", "--upstream", "--format", "openlineage") == 0
    events = out_json(capsys)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]


def test_audit_verify_passes_then_names_the_tampered_event(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "audit", "verify") == 0
    assert "audit log ok" in capsys.readouterr().out
    import sqlite3

    with sqlite3.connect(home / "lockgate.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 3")
    assert cli(home, "audit", "verify") == 1
    assert "audit event 3 does not verify" in capsys.readouterr().err
    assert cli(home, "audit", "verify", "--json") == 1
    assert out_json(capsys)["first_broken_seq"] == 3


def test_audit_log_lists_who_did_what(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "audit", "log", "--object", "model:fraud", "--json") == 0
    events = out_json(capsys)
    assert [e["action"] for e in events] == ["alias.moved"]


def test_gc_removes_only_unreferenced_objects(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = lg.Workspace.open(home)
    orphan = ws.artifacts.put_bytes(b"nobody points at me")
    ws.close()
    assert cli(home, "gc", "--dry-run", "--older-than", "0") == 0
    assert "1 unreferenced, would remove 1" in capsys.readouterr().out
    assert cli(home, "gc", "--older-than", "0") == 0
    ws = lg.Workspace.open(home)
    assert not ws.artifacts.exists(orphan.sha256)
    assert ws.models.load("models:/fraud@champion") is not None


def test_db_upgrade_and_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path / "fresh", "db", "upgrade") == 0
    assert "upgraded" in capsys.readouterr().out
    assert cli(tmp_path / "fresh", "db", "current") == 0
    from lockgate.store.migrate import head_revision

    assert f"schema {head_revision()}; this lockgate needs {head_revision()}" in capsys.readouterr().out.replace(
        "\n", ""
    )


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "runs" in capsys.readouterr().out
    for noun in ("runs", "models", "audit", "db"):
        assert main([noun, "--help"]) == 0
        assert "Example:" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("lockgate ")
    assert main(["runs", "nope"]) == 2


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "demo"
    assert main(["demo", "--home", str(home), "--days", "50"]) == 0
    out = capsys.readouterr().out
    for chapter in (
        "1. Workspace",
        "2. Data",
        "3. Data gate",
        "4. Features",
        "materialized into SQLite",
        "5. Training",
        "from epoch checkpoint",
        "6. Reproduce",
        "reproduced bit-for-bit",
        "7. Continuous training",
        "reason new_data",
        "8. Serving",
        "answered 200",
        "9. Rollout",
        "async job",
        "batch scoring",
        "10. Lineage",
        "11. Audit",
        "try next",
    ):
        assert chapter in out
    # Every request of the burst was answered, and every scored row reached the prediction log.
    assert " 0/" not in out
    assert "predictions logged" in out
    ws = lg.Workspace.open(home / ".lockgate")
    assert ws.features.freshness(now=datetime(2026, 11, 28, tzinfo=UTC)).passed
    # The gate admitted today's batch and stopped both broken ones.
    (admitted,) = ws.data.versions("transactions-daily")
    assert admitted[1][0].passed
    # The retrained model (v2) passed its canary; the one with shuffled labels (v3) did not.
    assert ws.models.get("models:/fraud@champion").version == 2
    decisions = [e["event"] for e in ws.rollouts.status("fraud-api").events]
    assert decisions.count("rolled_back") == 1
    assert decisions.count("promoted") == 1
    assert ws.audit.verify().ok
    # The demo refuses to wipe a folder it did not make.
    other = tmp_path / "precious"
    other.mkdir()
    assert main(["demo", "--home", str(other)]) == 2


def test_user_values_are_never_read_as_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = lg.Workspace.open(tmp_path / "ws")
    with ws.start_run("train", experiment="fraud", params={"layers": "[relu, tanh]", "odd": "a[/]b"}) as run:
        run.set_tag("note", "[bold]not bold[/]")
    ws.close()
    assert cli(tmp_path / "ws", "runs", "show", run.id[:8]) == 0
    out = capsys.readouterr().out
    assert "[relu, tanh]" in out
    assert "a[/]b" in out
    assert "[bold]not bold[/]" in out
    assert cli(tmp_path / "ws", "runs", "show", "[/]") == 2
    assert "'[/]' is not a run id" in capsys.readouterr().err


def test_pipeline_check_and_run_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(lg.__file__).parent / "examples" / "fraud" / "pipeline.py"
    assert main(["pipeline", "check", str(example), "--json"]) == 0
    dag = next(r for r in out_json(capsys) if r["check"] == "dag")
    assert dag["check"] == "dag"
    assert dag["ok"] is True
    project = tmp_path / "p"
    project.mkdir()
    (project / "flow.py").write_text(
        "from lockgate.pipelines import pipeline, step\n"
        "@step\ndef make(n: int) -> list[int]:\n    return list(range(n))\n"
        "@step\ndef total(xs: list[int]) -> dict[str, float]:\n    return {'total': float(sum(xs))}\n"
        "@step\ndef shout(text: str) -> str:\n    return text.upper()\n"
        "@pipeline\ndef flow(n: int = 3):\n    return total(make(n))\n"
        "@pipeline\ndef broken():\n    return shout(make(2))\n"
    )
    home = tmp_path / "ws"
    assert (
        main(
            [
                "--home",
                str(home),
                "pipeline",
                "run",
                f"{project / 'flow.py'}:flow",
                "--param",
                "n=5",
                "--executor",
                "inline",
                "--json",
            ]
        )
        == 0
    )
    ran = out_json(capsys)
    assert [s["status"] for s in ran["steps"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert lg.Workspace.open(home).runs.get(ran["run_id"]).metrics == {"total": 10.0}
    assert (
        main(
            [
                "--home",
                str(home),
                "pipeline",
                "run",
                f"{project / 'flow.py'}:flow",
                "-p",
                "n=5",
                "--executor",
                "inline",
                "--json",
            ]
        )
        == 0
    )
    assert [s["status"] for s in out_json(capsys)["steps"]] == ["CACHED", "CACHED"]
    # A type mismatch fails the check (exit 1); a bad parameter is bad input (exit 2).
    assert main(["pipeline", "check", f"{project / 'flow.py'}:broken"]) == 1
    assert "shout(text: str) receives make's list" in capsys.readouterr().err
    assert main(["--home", str(home), "pipeline", "run", f"{project / 'flow.py'}:flow", "-p", "n=many"]) == 2
    assert "must be int, not 'many'" in capsys.readouterr().err
    assert main(["pipeline", "run", str(project / "flow.py")]) == 2
    assert "defines several pipelines" in capsys.readouterr().err
