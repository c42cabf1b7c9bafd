"""The metadata schema, in one place.

Every table lockgate keeps lives here; Alembic migrations in ``migrations/versions`` create
and evolve them. Times are integer milliseconds since the epoch (UTC) so SQLite and
PostgreSQL compare and sort them the same way.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

__all__ = [
    "MetricValue",
    "aliases",
    "artifacts",
    "audit_events",
    "audit_head",
    "contracts",
    "dataset_facts",
    "datasets",
    "deployments",
    "environments",
    "experiments",
    "feature_definitions",
    "feature_heads",
    "feature_service_bindings",
    "latest_metrics",
    "lineage_edges",
    "metadata",
    "metrics",
    "model_version_counters",
    "model_versions",
    "params",
    "pipeline_steps",
    "registered_models",
    "rollout_stats",
    "run_artifacts",
    "runs",
    "scheduler_leases",
    "step_cache",
    "tags",
    "trigger_fires",
    "triggers",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class MetricValue(sa.types.TypeDecorator[float]):
    """A float column that keeps NaN the same way on every backend.

    SQLite cannot store NaN (it silently becomes NULL) and PostgreSQL sorts NaN above every
    number, so ``metrics.loss > 0.9`` would match a diverged run there only. NaN is stored as
    NULL everywhere and read back as NaN: comparisons never match it and it sorts with missing
    values, on SQLite and PostgreSQL alike.
    """

    impl = sa.Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> float | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return float(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> float:
        return math.nan if value is None else float(value)


experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
)

environments = sa.Table(
    "environments",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("python", sa.String(64), nullable=False),
    sa.Column("platform", sa.String(256), nullable=False),
    sa.Column("packages_sha256", sa.String(64), nullable=False),
    sa.Column("package_count", sa.Integer, nullable=False),
    sa.Column("lockfile", sa.String(512)),
    sa.Column("lockfile_sha256", sa.String(64)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("parent_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=False),
    sa.Column("end_time", sa.BigInteger),
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("git_repo", sa.String(1024)),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("git_branch", sa.String(256)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("code_diff_sha256", sa.String(64)),
    sa.Column("environment_hash", sa.String(64), sa.ForeignKey("environments.hash")),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_runs_experiment_start", "experiment_id", "start_time"),
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_parent", "parent_id"),
)

params = sa.Table(
    "params",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(256), nullable=False),
    sa.Column("value", MetricValue, nullable=True),  # NULL is NaN
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

latest_metrics = sa.Table(
    "latest_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("value", MetricValue, nullable=True),  # NULL is NaN
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("ix_latest_metrics_key_value", "key", "value"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

run_artifacts = sa.Table(
    "run_artifacts",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("artifacts.sha256"), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("source_uri", sa.String(2048)),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("num_rows", sa.BigInteger, nullable=False),
    sa.Column("artifact_sha256", sa.String(64), sa.ForeignKey("artifacts.sha256")),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.UniqueConstraint("name", "content_hash"),
)

dataset_facts = sa.Table(
    "dataset_facts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(256), nullable=False),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Index("ix_dataset_facts_dataset_key", "dataset_id", "key"),
)

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(256), sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("artifact_sha256", sa.String(64), sa.ForeignKey("artifacts.sha256"), nullable=False),
    sa.Column("flavor", sa.String(64), nullable=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
)

# The highest version number ever given to a model name. It outlives deleted versions and
# deleted models, so ``models:/fraud/3`` names one artifact forever and is never reused.
model_version_counters = sa.Table(
    "model_version_counters",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("last_version", sa.Integer, nullable=False),
)

aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("name", sa.String(256), sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("src_kind", sa.String(32), nullable=False),
    sa.Column("src_id", sa.String(512), nullable=False),
    sa.Column("relation", sa.String(32), nullable=False),
    sa.Column("dst_kind", sa.String(32), nullable=False),
    sa.Column("dst_id", sa.String(512), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("src_kind", "src_id", "relation", "dst_kind", "dst_id"),
    sa.Index("ix_lineage_edges_dst", "dst_kind", "dst_id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_kind", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(512), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_object", "object_kind", "object_id"),
)

# One row that every audit append locks first, so appends are serialized on PostgreSQL too.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


# One row per step of a pipeline run: what ran (or was reused), its cache key and outputs.
# Resume reads it to know which steps already finished.
pipeline_steps = sa.Table(
    "pipeline_steps",
    metadata,
    sa.Column("pipeline_run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("node", sa.String(256), primary_key=True),
    sa.Column("step_run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cache_key", sa.String(64)),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("ended_at", sa.BigInteger),
)

# Step results by cache key (source, inputs, parameters, environment): a hit reuses outputs.
step_cache = sa.Table(
    "step_cache",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(256), nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("step_run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


# Continuous-training triggers: what starts a pipeline (a cron schedule, new data in a watched
# folder, a person, or a monitor calling ``fire``), with its cooldown and what it last saw.
triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("pipeline", sa.String(2048), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("workdir", sa.String(2048), nullable=False),  # firings run here: relative paths mean the same
    sa.Column("schedule", sa.String(256)),
    sa.Column("watch", sa.String(2048)),
    sa.Column("cooldown_ms", sa.BigInteger, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("last_tick_at", sa.BigInteger),  # cron: the newest schedule tick already handled
    sa.Column("watch_state", sa.JSON),  # new data: the folder's files as last handled
    sa.Column("last_fired_at", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# One row per firing: why (reason, details, actor), the event it stands for (dedup_key: one
# firing per schedule tick, data version or caller-given key), and the pipeline run it started.
trigger_fires = sa.Table(
    "trigger_fires",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trigger_id", sa.Integer, sa.ForeignKey("triggers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("dedup_key", sa.String(256)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("fired_at", sa.BigInteger, nullable=False),
    sa.Column("runner", sa.String(256)),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("ended_at", sa.BigInteger),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("error", sa.Text),
    sa.UniqueConstraint("trigger_id", "dedup_key"),
    sa.Index("ix_trigger_fires_status", "status"),
)

# Who may run the scheduler loop: one row per lease, held until ``expires_at`` unless renewed.
scheduler_leases = sa.Table(
    "scheduler_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("acquired_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)


# Data contracts, one row per registered version: the contract as plain data, its canonical
# hash (registering the same document again is a no-op) and the compatibility mode that
# governed its registration. Versions are numbered per name from 1, without gaps.
contracts = sa.Table(
    "contracts",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("compatibility", sa.String(32), nullable=False),
    sa.Column("contract", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
)


# Feature-store definitions (entities, feature views, on-demand features, feature services),
# one row per version ever applied: the canonical spec and the hash it is versioned by.
# Applying a definition again adds nothing; its history stays when a file no longer has it.
feature_definitions = sa.Table(
    "feature_definitions",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
)

# The current version of each definition (a revert points back at an older row), and the file
# it was last applied from: where a process finds an on-demand feature's function again.
feature_heads = sa.Table(
    "feature_heads",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("origin", sa.String(2048)),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.ForeignKeyConstraint(
        ["kind", "name", "version"],
        ["feature_definitions.kind", "feature_definitions.name", "feature_definitions.version"],
    ),
)

# Model versions bound to the feature service they were trained with, and the features that
# service resolved to then (view, feature, type): what a definition change may not take away.
# No foreign key to model_versions: a deleted model version simply stops being a consumer.
feature_service_bindings = sa.Table(
    "feature_service_bindings",
    metadata,
    sa.Column("service", sa.String(256), primary_key=True),
    sa.Column("model_name", sa.String(256), primary_key=True),
    sa.Column("model_version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("service_version", sa.String(64), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Index("ix_feature_service_bindings_model", "model_name", "model_version"),
)


# Deployments: a name that serves model versions online. ``spec`` holds the routes (model
# reference, role, weight) and the serving settings. ``revision`` comes from one counter
# across the whole table, bumped by every write (deletes too: a deleted deployment stays as a
# tombstone), so a server asks "what changed after revision N?" with one indexed query.
deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.Index("ix_deployments_revision", "revision", unique=True),
)


# What each server process saw of each deployment arm under a rollout, one row per flush (about
# a second): request and error counts, and sparse histograms of latency and scores (plus, for a
# shadow, how its answers compared with the primary's). Rows from every process and every
# server sum into the window a canary analysis reads; old rows are pruned by the analyst.
rollout_stats = sa.Table(
    "rollout_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("worker", sa.String(128), nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Index("ix_rollout_stats_deployment_ts", "deployment", "ts"),
)
