"""The run-tracking contract: every metadata backend (SQLite, PostgreSQL) passes these."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.entities import Metric

# -- lifecycle --------------------------------------------------------------------------------


def test_a_run_ends_finished_failed_or_killed_by_how_its_block_exits(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run("train", experiment="fraud") as run:
        assert backend_ws.runs.get(run.id).status is lg.RunStatus.RUNNING
    record = backend_ws.runs.get(run.id)
    assert record.status is lg.RunStatus.FINISHED
    assert run.status is lg.RunStatus.FINISHED
    assert (record.experiment, record.name, record.actor) == ("fraud", "train", backend_ws.settings.actor)
    assert record.end_time is not None
    assert record.end_time >= record.start_time

    with pytest.raises(ZeroDivisionError), backend_ws.start_run("boom") as failed:
        _ = 1 / 0  # the error still reaches the caller
    assert backend_ws.runs.get(failed.id).status is lg.RunStatus.FAILED

    with pytest.raises(KeyboardInterrupt), backend_ws.start_run("interrupted") as killed:
        raise KeyboardInterrupt
    assert backend_ws.runs.get(killed.id).status is lg.RunStatus.KILLED


def test_an_ended_run_refuses_more_logging_and_ending_twice_is_harmless(ws: lg.Workspace) -> None:
    run = ws.start_run("once")
    run.end()
    run.end(lg.RunStatus.FAILED)
    assert ws.runs.get(run.id).status is lg.RunStatus.FINISHED
    with pytest.raises(lg.ConflictError, match="already ended"):
        run.log_metric("auc", 0.5)


# -- params ------------------------------------------------------------------------------------


def test_params_are_write_once(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run(params={"lr": 0.1, "depth": 6}) as run:
        run.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(lg.ParamConflictError, match=r"param 'lr' .* is already '0\.1'") as info:
            run.log_params({"batch": 32, "lr": 0.2})
        assert isinstance(info.value, lg.ConflictError)
    record = backend_ws.runs.get(run.id)
    # Nothing of the refused call was written, not even the new key logged beside it.
    assert record.params == {"depth": "6", "lr": "0.1"}


def test_a_refused_batch_writes_none_of_its_metrics_or_tags(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run(params={"lr": 0.1}) as run:
        with pytest.raises(lg.ParamConflictError):
            run.log_batch(
                params={"lr": 0.3},
                metrics=[Metric(key="auc", value=0.9, step=1, timestamp=1)],
                tags={"team": "fraud"},
            )
        run.log_batch(params={"seed": 1}, metrics=[Metric(key="auc", value=0.8, step=1, timestamp=1)])
    record = backend_ws.runs.get(run.id)
    assert record.params == {"lr": "0.1", "seed": "1"}
    assert record.metrics == {"auc": 0.8}
    assert record.tags == {}


@pytest.mark.parametrize("key", ["db_password", "API_KEY", "aws_secret_access_key", "hf_token", "passwd"])
def test_secret_looking_param_keys_are_refused(ws: lg.Workspace, key: str) -> None:
    with ws.start_run() as run:
        with pytest.raises(lg.InvalidInputError, match="looks like a secret"):
            run.log_param(key, "hunter2")
    assert ws.runs.get(run.id).params == {}


def test_a_run_started_with_a_secret_param_is_not_created_at_all(ws: lg.Workspace) -> None:
    with pytest.raises(lg.InvalidInputError, match="looks like a secret"):
        ws.start_run("leaky", params={"password": "hunter2"})
    assert ws.runs.list() == []
    assert [e.action for e in ws.audit.events()] == []


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "num_passes", "bypass_cache", "secretary_count"])
def test_ordinary_param_names_that_contain_secret_words_are_accepted(ws: lg.Workspace, key: str) -> None:
    with ws.start_run(params={key: 1}) as run:
        pass
    assert ws.runs.get(run.id).params == {key: "1"}


def test_values_with_nul_characters_are_refused_on_every_backend(ws: lg.Workspace) -> None:
    # PostgreSQL cannot store them, so SQLite refuses them too: the backends agree.
    with ws.start_run() as run:
        with pytest.raises(lg.InvalidInputError, match="NUL"):
            run.log_param("p", "a\x00b")
        with pytest.raises(lg.InvalidInputError, match="NUL"):
            run.set_tag("t", "a\x00b")
    assert ws.runs.get(run.id).params == {}


@pytest.mark.parametrize("key", ["", "a" * 257, "bad\nkey", "auc\n", "tab\tkey", "quote'key"])
def test_malformed_keys_are_refused(ws: lg.Workspace, key: str) -> None:
    with ws.start_run() as run:
        with pytest.raises(lg.InvalidInputError, match="is not valid"):
            run.log_metric(key, 1.0)
        with pytest.raises(lg.InvalidInputError, match="is not valid"):
            run.log_param(key, 1)


# -- metrics and tags ---------------------------------------------------------------------------


def test_metrics_keep_step_timestamp_and_full_history(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run() as run:
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("loss", loss, step=step, timestamp=1_000 + step)
        run.log_metrics({"auc": 0.7, "f1": 0.6}, step=2, timestamp=5_000)
    history = backend_ws.runs.metric_history(run.id, "loss")
    assert history == [
        Metric(key="loss", value=0.9, step=0, timestamp=1_000),
        Metric(key="loss", value=0.5, step=1, timestamp=1_001),
        Metric(key="loss", value=0.3, step=2, timestamp=1_002),
    ]
    assert {m.key for m in backend_ws.runs.metric_history(run.id)} == {"auc", "f1", "loss"}
    assert backend_ws.runs.get(run.id).metrics == {"auc": 0.7, "f1": 0.6, "loss": 0.3}


def test_the_latest_metric_is_the_highest_step_not_the_last_logged(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run() as run:
        run.log_metric("auc", 0.8, step=5, timestamp=100)
        run.log_metric("auc", 0.1, step=3, timestamp=200)  # a late point for an earlier step
        run.log_metric("loss", 0.4, step=1, timestamp=100)
        run.log_metric("loss", 0.2, step=1, timestamp=300)  # same step, later: wins
        run.log_metric("loss", 0.9, step=1, timestamp=200)  # same step, earlier: does not
        run.log_batch(
            metrics=[
                Metric(key="f1", value=0.5, step=2, timestamp=1),
                Metric(key="f1", value=0.7, step=9, timestamp=1),
                Metric(key="f1", value=0.6, step=4, timestamp=1),
            ]
        )
    assert backend_ws.runs.get(run.id).metrics == {"auc": 0.8, "f1": 0.7, "loss": 0.2}
    assert len(backend_ws.runs.metric_history(run.id, "auc")) == 2


def test_nan_and_infinite_metrics_are_kept_the_same_way_on_every_backend(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run("diverged", experiment="nan") as diverged:
        diverged.log_metric("loss", float("nan"), step=3)
        diverged.log_metric("peak", float("inf"))
    with backend_ws.start_run("fine", experiment="nan") as fine:
        fine.log_metric("loss", 0.5, step=3)
    record = backend_ws.runs.get(diverged.id)
    assert math.isnan(record.metrics["loss"])
    assert record.metrics["peak"] == math.inf
    (point,) = backend_ws.runs.metric_history(diverged.id, "loss")
    assert math.isnan(point.value)
    assert point.step == 3
    # NaN matches no comparison and sorts with the runs that lack the metric.
    assert [r.name for r in backend_ws.runs.search("metrics.loss > 0.1", experiment="nan")] == ["fine"]
    assert [r.name for r in backend_ws.runs.search("metrics.loss < 100", experiment="nan")] == ["fine"]
    for order in ("metrics.loss desc", "metrics.loss asc"):
        names = [r.name for r in backend_ws.runs.search(experiment="nan", order_by=order)]
        assert names == ["fine", "diverged"]


def test_non_numeric_metric_values_are_refused(ws: lg.Workspace) -> None:
    with ws.start_run() as run, pytest.raises(lg.InvalidInputError, match="must be a number"):
        run.log_metric("auc", "high")  # type: ignore[arg-type]


def test_tags_can_be_overwritten(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run(tags={"stage": "draft", "team": "fraud"}) as run:
        run.set_tag("stage", "reviewed")
    run.set_tag("stage", "final")  # tags, unlike params, may change after the run ended
    assert backend_ws.runs.get(run.id).tags == {"stage": "final", "team": "fraud"}


# -- finding runs -------------------------------------------------------------------------------


def test_child_runs_hang_under_their_parent_and_list_shows_top_level_newest_first(
    backend_ws: lg.Workspace,
) -> None:
    with backend_ws.start_run("sweep", experiment="hp") as parent:
        with backend_ws.start_run("trial-1", experiment="hp", parent=parent) as t1:
            pass
        with backend_ws.start_run("trial-2", experiment="hp", parent=parent.id[:8]) as t2:
            pass
    with backend_ws.start_run("later", experiment="hp") as later:
        pass
    assert backend_ws.runs.get(t1.id).parent_id == parent.id
    assert backend_ws.runs.get(t2.id).parent_id == parent.id
    assert [r.id for r in backend_ws.runs.list(experiment="hp")] == [later.id, parent.id]
    everything = backend_ws.runs.list(experiment="hp", include_children=True)
    assert [r.id for r in everything] == [later.id, t2.id, t1.id, parent.id]
    assert [r.name for r in backend_ws.runs.list(experiment="hp", limit=1)] == ["later"]
    with backend_ws.start_run("elsewhere", experiment="other"):
        pass
    assert [r.name for r in backend_ws.runs.list(experiment="other")] == ["elsewhere"]
    assert [r.name for r in backend_ws.runs.list()] == ["elsewhere", "later", "sweep"]
    assert [e.name for e in backend_ws.runs.experiments()] == ["hp", "other"]


def test_deleting_runs_hides_them_but_keeps_their_records(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run("keep") as keep:
        pass
    with backend_ws.start_run("drop") as drop:
        run_metric = 0.5
        drop.log_metric("auc", run_metric)
    assert backend_ws.runs.delete([f"runs:/{drop.id}"]) == [drop.id]
    assert [r.id for r in backend_ws.runs.list()] == [keep.id]
    assert [r.id for r in backend_ws.runs.search("metrics.auc > 0")] == []
    assert {r.id for r in backend_ws.runs.search(include_deleted=True)} == {keep.id, drop.id}
    assert backend_ws.runs.get(drop.id).metrics == {"auc": run_metric}  # records stay for lineage


def test_short_ids_and_run_uris_resolve_and_unknown_ids_say_what_to_do(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run() as run:
        pass
    for ref in (run.id, run.id[:8], run.id[:4], f"runs:/{run.id}", f"runs:/{run.id[:8]}", run.uri):
        assert backend_ws.runs.resolve(ref) == run.id
        assert backend_ws.runs.get(ref).id == run.id
    unknown = "deadbeef" if not run.id.startswith("deadbeef") else "feedface"
    with pytest.raises(lg.NotFoundError, match=rf"run '{unknown}' does not exist; see: lockgate runs list") as info:
        backend_ws.runs.get(unknown)
    assert isinstance(info.value, LookupError)
    with pytest.raises(lg.NotFoundError):
        backend_ws.runs.delete(["0" * 32])


@pytest.mark.parametrize("ref", ["not-a-run", "abc", "runs:/xyz", "ABCDEF12"])
def test_malformed_run_ids_are_refused_with_a_hint(ws: lg.Workspace, ref: str) -> None:
    with pytest.raises(lg.InvalidInputError, match="is not a"):
        ws.runs.get(ref)


def test_a_parent_that_does_not_exist_is_refused(ws: lg.Workspace) -> None:
    with pytest.raises(lg.NotFoundError):
        ws.start_run(parent="feedface")
    assert ws.runs.list() == []


def test_to_pandas_has_one_row_per_run_with_prefixed_columns(ws: lg.Workspace) -> None:
    with ws.start_run("a", params={"depth": 3}, tags={"team": "x"}) as run:
        run.log_metric("auc", 0.7)
    frame = ws.runs.list().to_pandas()
    assert list(frame["run_id"]) == [run.id]
    assert frame.loc[0, "metrics.auc"] == 0.7
    assert frame.loc[0, "params.depth"] == "3"
    assert frame.loc[0, "tags.team"] == "x"
    assert frame.loc[0, "status"] == "FINISHED"


# -- datasets -----------------------------------------------------------------------------------


def _transactions() -> pa.Table:
    return pa.table(
        {
            "tx_id": pa.array(range(10), pa.int64()),
            "amount": pa.array([float(i) * 1.5 for i in range(10)]),
            "merchant": pa.array([f"m{i % 3}" for i in range(10)]),
            "is_fraud": pa.array([i % 4 == 0 for i in range(10)]),
        }
    )


def test_a_dataset_hash_ignores_chunking_and_whether_it_came_from_pandas(backend_ws: lg.Workspace) -> None:
    table = _transactions()
    rechunked = pa.concat_tables([table.slice(0, 3), table.slice(3, 4), table.slice(7)])
    assert rechunked.column("amount").num_chunks == 3
    frame = table.to_pandas()
    frame.index = frame.index + 100  # a pandas index is not data
    with backend_ws.start_run() as run:
        v1 = run.log_dataset(table, name="transactions")
        v2 = run.log_dataset(rechunked, name="transactions")
        v3 = run.log_dataset(frame, name="transactions")
    assert v1.content_hash == v2.content_hash == v3.content_hash
    assert v1.id == v2.id == v3.id  # the same data is the same version
    assert len(backend_ws.datasets.versions("transactions")) == 1
    registered = [e for e in backend_ws.audit.events(object_kind="dataset") if e.action == "dataset.registered"]
    assert len(registered) == 1


def test_a_dataset_version_records_schema_rows_and_its_rows_and_changes_make_new_ones(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run() as run:
        version = run.log_dataset(_transactions().to_pandas(), name="transactions")
    assert version.num_rows == 10
    assert version.schema == [
        {"name": "tx_id", "type": "int64", "nullable": True},
        {"name": "amount", "type": "double", "nullable": True},
        {"name": "merchant", "type": "string", "nullable": True},
        {"name": "is_fraud", "type": "bool", "nullable": True},
    ]
    assert version.uri == f"datasets:/transactions@{version.content_hash[:12]}"
    assert backend_ws.datasets.get(version.uri) == version
    assert backend_ws.datasets.get("transactions") == version
    assert backend_ws.datasets.load(version.uri).equals(_transactions())

    smaller = backend_ws.datasets.log(_transactions().slice(0, 5), name="transactions")
    assert smaller.content_hash != version.content_hash
    assert smaller.num_rows == 5
    assert backend_ws.datasets.get("datasets:/transactions@latest") == smaller
    assert [v.id for v in backend_ws.datasets.versions("transactions")] == [smaller.id, version.id]
    with pytest.raises(lg.NotFoundError, match="does not exist"):
        backend_ws.datasets.get("datasets:/transactions@0000aaaa")


def test_a_dataset_logged_without_rows_cannot_be_loaded(ws: lg.Workspace) -> None:
    version = ws.datasets.log(pd.DataFrame({"x": [1, 2]}), name="tiny", store=False)
    assert version.artifact_sha256 is None
    with pytest.raises(lg.NotFoundError, match="store=False"):
        ws.datasets.load(version.uri)


def test_a_dataset_file_records_where_it_came_from(ws: lg.Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    pq.write_table(_transactions(), path)
    with ws.start_run() as run:
        version = run.log_dataset(path, name="transactions")
    assert version.source_uri == str(path.resolve())
    assert version.content_hash == ws.datasets.log(_transactions(), name="transactions").content_hash


def test_log_batch_checks_metric_values_like_log_metric(ws: lg.Workspace) -> None:
    with ws.start_run() as run:
        with pytest.raises(lg.InvalidInputError, match="must be a number"):
            run.log_batch(metrics=[lg.Metric(key="auc", value="abc", step=0, timestamp=1)])  # type: ignore[arg-type]
        with pytest.raises(lg.InvalidInputError, match="must be a number"):
            run.log_metric("auc", "0.9")  # type: ignore[arg-type]
        run.set_tags({})  # nothing to write is not an error
    assert ws.runs.get(run.id).metrics == {}


def test_facts_attach_to_a_dataset_version_and_are_audited(backend_ws: lg.Workspace) -> None:
    version = backend_ws.datasets.log(pa.table({"amount": [1.0, 2.0]}), name="transactions")
    backend_ws.datasets.add_fact(version.uri, "contract", {"name": "transactions", "version": 3, "passed": True})
    facts = backend_ws.datasets.facts(f"datasets:/transactions@{version.content_hash}")
    assert [(f["key"], f["value"]) for f in facts] == [
        ("contract", {"name": "transactions", "version": 3, "passed": True})
    ]
    assert backend_ws.audit.events(limit=1)[0].action == "dataset.fact_added"
    with pytest.raises(lg.NotFoundError):
        backend_ws.datasets.add_fact("datasets:/nope", "contract", {})
