"""Feature store: definitions, current versions, feature service bindings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_definitions",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "version", name=op.f("pk_feature_definitions")),
    )
    op.create_table(
        "feature_heads",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=2048), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["kind", "name", "version"],
            ["feature_definitions.kind", "feature_definitions.name", "feature_definitions.version"],
            name=op.f("fk_feature_heads_kind_feature_definitions"),
        ),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_feature_heads")),
    )
    op.create_table(
        "feature_service_bindings",
        sa.Column("service", sa.String(length=256), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("model_version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("service_version", sa.String(length=64), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("service", "model_name", "model_version", name=op.f("pk_feature_service_bindings")),
    )
    op.create_index(
        "ix_feature_service_bindings_model", "feature_service_bindings", ["model_name", "model_version"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_feature_service_bindings_model", table_name="feature_service_bindings")
    op.drop_table("feature_service_bindings")
    op.drop_table("feature_heads")
    op.drop_table("feature_definitions")
