"""Pipeline steps and the step cache

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_steps",
        sa.Column("pipeline_run_id", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=256), nullable=False),
        sa.Column("step_run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"], ["runs.id"], name=op.f("fk_pipeline_steps_pipeline_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["step_run_id"], ["runs.id"], name=op.f("fk_pipeline_steps_step_run_id_runs")),
        sa.PrimaryKeyConstraint("pipeline_run_id", "node", name=op.f("pk_pipeline_steps")),
    )
    op.create_table(
        "step_cache",
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=256), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("step_run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["step_run_id"], ["runs.id"], name=op.f("fk_step_cache_step_run_id_runs")),
        sa.PrimaryKeyConstraint("cache_key", name=op.f("pk_step_cache")),
    )


def downgrade() -> None:
    op.drop_table("step_cache")
    op.drop_table("pipeline_steps")
