"""Steps that build their training set through the workspace's feature store (``ctx.features``):
in worker processes and inline, cached like any step, recorded in lineage, and the model
version registered from such a run bound to the feature service."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.pipelines import load_pipeline, run_pipeline

DEFINITIONS = """
from lockgate.features import Count, Entity, FeatureService, FeatureView, ParquetSource

card = Entity("card", join_keys=["card_id"])


def definitions(source):
    view = FeatureView(
        name="card_activity", entities=[card], ttl="7d", source=ParquetSource(source, event_time="ts"),
        aggregations=[Count("amount", window="1d", name="n_1d")],
    )
    return [card, view, FeatureService("activity_v1", ["card_activity:*"])]
"""

FLOW = """
from datetime import UTC, datetime

import pyarrow as pa
from sklearn.dummy import DummyClassifier

import card_defs
from lockgate.pipelines import DataRef, StepContext, pipeline, step


@step
def features(source: DataRef, ctx: StepContext = StepContext.INJECTED) -> pa.Table:
    definitions = card_defs.definitions(source.uri)
    ctx.features.apply(definitions)
    entity = pa.table({"card_id": ["c1", "c2", "c9"], "event_timestamp": [datetime(2026, 3, 2, tzinfo=UTC)] * 3})
    return ctx.features.training_set(entity, definitions[-1], run_id=ctx.run_id)


@step
def fit(table: pa.Table) -> DummyClassifier:
    return DummyClassifier().fit(table.select(["n_1d"]).to_pandas().fillna(0), [0, 1, 0])


@pipeline
def training(source: DataRef = DataRef("data/tx")):
    return fit(features(source))
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "project"
    (root / "data" / "tx").mkdir(parents=True)
    (root / "card_defs.py").write_text(textwrap.dedent(DEFINITIONS))
    (root / "flow.py").write_text(textwrap.dedent(FLOW))
    tx = {
        "card_id": ["c1", "c1", "c2"],
        "ts": [datetime(2026, 3, 1, h, tzinfo=UTC) for h in (1, 2, 3)],
        "amount": [10.0, 20.0, 30.0],
    }
    pq.write_table(pa.table(tx), root / "data" / "tx" / "part-0.parquet")
    sys.modules.pop("card_defs", None)
    yield root
    sys.modules.pop("card_defs", None)
    sys.path[:] = [p for p in sys.path if p != str(root)]


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_a_step_builds_its_training_set_through_the_workspace_feature_store(
    ws: lg.Workspace, project: Path, executor: str
) -> None:
    flow = load_pipeline(f"{project / 'flow.py'}:training")
    params = {"source": lg.DataRef(str(project / "data" / "tx"))}
    result = run_pipeline(ws, flow, params=params, executor=executor)
    table = result.output("features")
    assert table.column("n_1d").to_pylist() == [2, 1, None]
    # The worker wrote to the workspace's own registry, offline store and data sets.
    assert [d.name for d in ws.features.registry.list(kind="feature_service")] == ["activity_v1"]
    assert ws.datasets.get("datasets:/activity_v1@latest").num_rows == 3
    step_run = result.step_run("features") or ""
    upstream = ws.lineage_of(f"runs:/{step_run}", direction="upstream")
    assert any(n.kind == "feature_service" and n.id.startswith("activity_v1@") for n in upstream.nodes)
    # A model version registered from the training step's run is bound to the service.
    mv = ws.models.register(result.output("fit"), name="scorer", run_id=result.step_run("fit"))
    binding = ws.features.service_of(mv.uri)
    assert binding is not None
    assert (binding.service, [f.ref for f in binding.features]) == ("activity_v1", ["card_activity:n_1d"])
    # Nothing changed: every step comes from the cache.
    assert run_pipeline(ws, flow, params=params, executor=executor).cache_hits == 2


def test_ctx_features_outside_a_pipeline_says_what_to_do_instead(project: Path) -> None:
    sys.path.insert(0, str(project))
    flow = load_pipeline(f"{project / 'flow.py'}:training")
    (features,) = [s for s in flow.steps() if s.name == "features"]
    with pytest.raises(lg.InvalidInputError, match="only available to a step a pipeline runs"):
        features(lg.DataRef(str(project / "data" / "tx")))
