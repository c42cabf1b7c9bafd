"""NaN metrics stored as NULL; model version numbers that are never reused

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("metrics", "latest_metrics"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("value", existing_type=sa.Float(), nullable=True)

    op.create_table(
        "model_version_counters",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model_version_counters")),
    )
    op.execute(
        "INSERT INTO model_version_counters (name, last_version) "
        "SELECT name, MAX(version) FROM model_versions GROUP BY name"
    )


def downgrade() -> None:
    op.drop_table("model_version_counters")
    for table in ("metrics", "latest_metrics"):
        op.execute(f"DELETE FROM {table} WHERE value IS NULL")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("value", existing_type=sa.Float(), nullable=False)
