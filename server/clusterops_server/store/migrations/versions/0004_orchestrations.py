"""Orchestrations and their operations (one per target cluster).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:44:41.680562
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "orchestrations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("operation_counts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_orchestrations_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orchestrations")),
    )
    with op.batch_alter_table("orchestrations", schema=None) as batch_op:
        batch_op.create_index("ix_orchestrations_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_orchestrations_listing", ["compartment_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "orchestration_operations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("orchestration_id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("global_account_id", sa.String(length=64), nullable=False),
        sa.Column("sub_account_id", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("plan_name", sa.String(length=64), nullable=False),
        sa.Column("shoot_name", sa.String(length=63), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("maintenance_start", sa.String(length=5), nullable=True),
        sa.Column("maintenance_end", sa.String(length=5), nullable=True),
        sa.Column("cluster_version", sa.String(length=32), nullable=False),
        sa.Column("target_version", sa.String(length=32), nullable=False),
        sa.Column("upgrade_workflow_id", sa.String(length=32), nullable=True),
        sa.Column("work_request_id", sa.String(length=32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("previous_attempts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_orchestration_operations_cluster_id_clusters"),
        ),
        sa.ForeignKeyConstraint(
            ["orchestration_id"],
            ["orchestrations.id"],
            name=op.f("fk_orchestration_operations_orchestration_id_orchestrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orchestration_operations")),
    )
    with op.batch_alter_table("orchestration_operations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orchestration_operations_due", ["orchestration_id", "due_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_orchestration_operations_listing", ["orchestration_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_orchestration_operations_state", ["orchestration_id", "state", "id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("orchestration_operations", schema=None) as batch_op:
        batch_op.drop_index("ix_orchestration_operations_state")
        batch_op.drop_index("ix_orchestration_operations_listing")
        batch_op.drop_index("ix_orchestration_operations_due")

    op.drop_table("orchestration_operations")
    with op.batch_alter_table("orchestrations", schema=None) as batch_op:
        batch_op.drop_index("ix_orchestrations_listing")
        batch_op.drop_index("ix_orchestrations_created")

    op.drop_table("orchestrations")
