"""``lockgate triggers`` and ``lockgate scheduler`` as a user meets them: --json that parses,
exit code 2 and one sentence for bad input, and a scheduler that stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import lockgate as lg
from lockgate.cli import main
from lockgate.pipelines import Scheduler, TriggerService

FLOW = """\
from lockgate import pipeline, step


@step
def double(n: int) -> int:
    return 2 * n


@pipeline
def flow(n: int = 1):
    return double(n)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a pipeline and a data folder, as the current directory."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "day=1.csv").write_text("amount\n1.0\n")
    (root / "flow.py").write_text(FLOW)
    monkeypatch.chdir(root)
    return root


def cli(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_add_list_show_fire_and_remove(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = project / "ws"
    nightly = ["nightly", "--pipeline", "flow.py", "--cron", "0 2 * * *", "--param", "n=100", "--cooldown", "1h"]
    assert cli(home, "triggers", "add", *nightly, "--json") == 0
    added = out_json(capsys)
    assert (added["kind"], added["params"], added["cooldown_s"]) == ("cron", {"n": 100}, 3600.0)
    assert added["pipeline"] == str(project / "flow.py")
    assert added["next_fire_at"].endswith("T02:00:00.000+00:00")
    assert cli(home, "triggers", "add", "fresh", "--pipeline", "flow.py", "--watch", "data/") == 0
    assert "added trigger fresh (watch data/)" in capsys.readouterr().err
    assert cli(home, "triggers", "list", "--json") == 0
    assert [(t["name"], t["kind"]) for t in out_json(capsys)] == [("fresh", "data"), ("nightly", "cron")]
    assert cli(home, "triggers", "list") == 0
    assert "nightly" in capsys.readouterr().out

    assert cli(home, "triggers", "fire", "nightly", "--executor", "inline", "-d", "ticket=ML-42", "--json") == 0
    fired = out_json(capsys)
    assert (fired["status"], fired["reason"], fired["details"]) == ("SUCCEEDED", "manual", {"ticket": "ML-42"})
    assert fired["actor"].startswith("user:")
    assert cli(home, "triggers", "fire", "nightly") == 2
    assert "did not fire: cooling down until" in capsys.readouterr().err
    assert cli(home, "triggers", "fire", "nightly", "--force", "--queue", "--reason", "hotfix", "--json") == 0
    assert out_json(capsys)["status"] == "PENDING"
    assert cli(home, "triggers", "show", "nightly", "--json") == 0
    shown = out_json(capsys)
    assert [(f["reason"], f["status"]) for f in shown["firings"]] == [("hotfix", "PENDING"), ("manual", "SUCCEEDED")]
    assert cli(home, "triggers", "show", "nightly") == 0
    assert "hotfix" in capsys.readouterr().out

    assert cli(home, "triggers", "disable", "fresh") == 0
    assert cli(home, "triggers", "fire", "fresh") == 2
    assert "is disabled" in capsys.readouterr().err
    assert cli(home, "triggers", "enable", "fresh") == 0
    assert cli(home, "triggers", "remove", "fresh", "--yes") == 0
    assert cli(home, "triggers", "list", "--json") == 0
    assert [t["name"] for t in out_json(capsys)] == ["nightly"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "--pipeline", "flow.py", "--cron", "not a cron"], "cron expression 'not a cron' does not parse"),
        (["add", "x", "--pipeline", "missing.py", "--cron", "0 2 * * *"], "pipeline file missing.py does not exist"),
        (["add", "x", "--pipeline", "missing.py", "--param", "n=1"], "pipeline file missing.py does not exist"),
        (["add", "x", "--pipeline", "flow.py", "--watch", "nowhere/"], "watch folder nowhere/ does not exist"),
        (["add", "x", "--pipeline", "flow.py", "--param", "depth=3"], "pipeline 'flow' has no parameter 'depth'"),
        (["add", "x", "--pipeline", "flow.py", "--cooldown", "soon"], "duration 'soon' does not parse"),
        (["add", "taken", "--pipeline", "flow.py"], "trigger 'taken' already exists"),
        (["fire", "ghost"], "trigger 'ghost' does not exist; see: lockgate triggers list"),
        (["remove", "ghost", "--yes"], "trigger 'ghost' does not exist"),
        (["show", "ghost"], "trigger 'ghost' does not exist"),
        (["fire", "taken", "--detail", "no-equals"], "--detail 'no-equals' must look like KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    home = project / "ws"
    assert cli(home, "triggers", "add", "taken", "--pipeline", "flow.py") == 0
    capsys.readouterr()
    assert cli(home, "triggers", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("error:")
    assert "Traceback" not in err


def test_scheduler_run_once_waits_for_the_lease_holder_then_fires(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = project / "ws"
    assert cli(home, "triggers", "add", "fresh", "--pipeline", "flow.py", "--watch", "data") == 0
    (project / "data" / "day=2.csv").write_text("amount\n2.0\n")
    with lg.Workspace.open(home) as ws:
        other = Scheduler(ws, holder="scheduler:elsewhere")
        assert other.acquire()
        assert cli(home, "scheduler", "status", "--json") == 0
        assert out_json(capsys)["lease"]["holder"] == "scheduler:elsewhere"
        assert cli(home, "scheduler", "run", "--once") == 0
        assert "held by scheduler:elsewhere" in capsys.readouterr().err
        assert TriggerService(ws).history("fresh") == []
        other.release()
        assert cli(home, "scheduler", "run", "--once", "--executor", "inline") == 0
        assert "fired 1, skipped 0, ran 1: fresh#1 SUCCEEDED" in capsys.readouterr().err
        [done] = TriggerService(ws).history("fresh")
        assert (done.reason, done.details["new_files"]) == ("new_data", ["day=2.csv"])
        assert Scheduler(ws).lease() is None
    assert cli(home, "scheduler", "run", "--poll", "0") == 2
    assert "--poll must be a positive number" in capsys.readouterr().err


def test_sigterm_stops_lockgate_scheduler_run_cleanly(project: Path) -> None:
    home = project / "ws"
    log = project / "scheduler.log"
    command = [sys.executable, "-c", "from lockgate.cli import run; run()", "--home", str(home)]
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [*command, "scheduler", "run", "--poll", "0.2"], stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
        try:
            deadline = time.monotonic() + 60
            while "holds the scheduler lease" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "received SIGTERM; stopping" in text
    assert "stopped" in text.splitlines()[-1]
    with lg.Workspace.open(home) as ws:
        assert Scheduler(ws).lease() is None  # released on the way out: the next one starts at once
