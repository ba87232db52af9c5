"""Upgrade workflows: one row per cluster upgrade, its task points as JSON.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:17:50.647278
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upgrade_workflows",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("cluster_version", sa.String(length=32), nullable=False),
        sa.Column("target_version", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_upgrade_workflows_cluster_id_clusters")
        ),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_upgrade_workflows_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upgrade_workflows")),
        sa.UniqueConstraint("work_request_id", name=op.f("uq_upgrade_workflows_work_request_id")),
    )
    with op.batch_alter_table("upgrade_workflows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upgrade_workflows_cluster_id"), ["cluster_id"], unique=False
        )
        batch_op.create_index("ix_upgrade_workflows_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_upgrade_workflows_listing", ["compartment_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("upgrade_workflows", schema=None) as batch_op:
        batch_op.drop_index("ix_upgrade_workflows_listing")
        batch_op.drop_index("ix_upgrade_workflows_created")
        batch_op.drop_index(batch_op.f("ix_upgrade_workflows_cluster_id"))

    op.drop_table("upgrade_workflows")
